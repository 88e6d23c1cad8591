// llhttp glue: head accumulation under limits and event delivery to a Sink (see parser.h).
#include "http/parser.h"

#include <cstring>

namespace sluice::http {
namespace {

inline Parser* self(llhttp_t* p) {
  return static_cast<Parser*>(p->data);
}

inline bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

}  // namespace

std::string_view next_list_element(std::string_view& list) {
  const size_t comma = list.find(',');
  std::string_view element = list.substr(0, comma);
  list.remove_prefix(comma == std::string_view::npos ? list.size() : comma + 1);
  while (!element.empty() && is_ows(element.front())) element.remove_prefix(1);
  while (!element.empty() && is_ows(element.back())) element.remove_suffix(1);
  return element;
}

ErrorAnswer error_answer(ParseError e) {
  switch (e) {
    case ParseError::kNoVersion:
      return {400, "missing-http-version"};
    case ParseError::kBadWhitespace:
      return {400, "bad-whitespace"};
    case ParseError::kObsFold:
      return {400, "obs-fold"};
    case ParseError::kBareLf:
      return {400, "bare-lf"};
    case ParseError::kBadTransferEncoding:
      return {400, "bad-transfer-encoding"};
    case ParseError::kUnsupportedCoding:
      return {501, "unsupported-transfer-coding"};
    case ParseError::kUnsupportedVersion:
      return {505, "unsupported-http-version"};
    case ParseError::kHeadTooLarge:
    case ParseError::kTooManyHeaders:
      return {431, "header-too-large"};
    case ParseError::kNone:
    case ParseError::kMalformed:
    case ParseError::kSinkError:
      break;
  }
  return {400, "malformed-request"};
}

Parser::Parser(llhttp_type_t type, Sink& sink, uint32_t max_head_bytes, uint32_t max_headers)
    : sink_(sink),
      max_head_bytes_(max_head_bytes),
      max_headers_(max_headers),
      request_(type == HTTP_REQUEST) {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = &Parser::on_message_begin_cb;
    s.on_url = &Parser::on_first_cb;
    s.on_status = &Parser::on_first_cb;
    s.on_header_field = &Parser::on_field_cb;
    s.on_header_value = &Parser::on_value_cb;
    s.on_headers_complete = &Parser::on_headers_complete_cb;
    s.on_body = &Parser::on_body_cb;
    s.on_chunk_header = &Parser::on_chunk_header_cb;
    s.on_message_complete = &Parser::on_message_complete_cb;
    return s;
  }();
  llhttp_init(&parser_, type, &settings);
  parser_.data = this;
  if (request_) scan_ = Scan::kStart;
  // Room for a typical head; more grows once and is kept for the connection's next messages.
  // Small, because an idle connection keeps it (issue 16: memory per idle connection).
  head_.reserve(256);
  spans_.reserve(8);
  headers_.reserve(8);
}

void Parser::release_memory() {
  if (in_message_) return;
  std::string().swap(head_);
  std::vector<Span>().swap(spans_);
  std::vector<Header>().swap(headers_);
}

void Parser::reset() {
  llhttp_reset(&parser_);
  parser_.data = this;
  error_ = ParseError::kNone;
  in_message_ = head_complete_ = in_value_ = paused_by_sink_ = paused_to_scan_ = false;
  scan_ = request_ ? Scan::kStart : Scan::kDone;
}

Parser::Result Parser::feed(const char* data, size_t len) {
  if (error_ != ParseError::kNone) return {Status::kError, 0};
  const char* p = data;
  const char* const end = data + len;
  for (;;) {
    ParseError scan_error = ParseError::kNone;
    const char* stop = scan_ == Scan::kDone ? end : scan_head(p, end, scan_error);
    llhttp_errno_t rc = llhttp_execute(&parser_, p, static_cast<size_t>(stop - p));
    if (rc == HPE_OK) {
      if (stop == end) return {Status::kOk, len};
      error_ = scan_error;  // llhttp accepted everything before the offending byte
      return {Status::kError, static_cast<size_t>(stop - data)};
    }
    const char* at = llhttp_get_error_pos(&parser_);
    const size_t used = static_cast<size_t>(at - data);
    if (rc == HPE_PAUSED && paused_by_sink_) {
      paused_by_sink_ = false;
      return {Status::kPaused, used};
    }
    if (rc == HPE_PAUSED && paused_to_scan_) {
      // A request ended and the sink wants the next one: check its head before llhttp sees it.
      paused_to_scan_ = false;
      llhttp_resume(&parser_);
      p = at;
      continue;
    }
    if (rc == HPE_PAUSED_UPGRADE) return {Status::kUpgrade, used};
    if (error_ == ParseError::kNone) error_ = ParseError::kMalformed;
    return {Status::kError, used};
  }
}

// RFC 9112 §2.2, §3, §5.2: exactly one SP between the request-line parts and a version at its
// end; every line ends in CRLF; no header line (and nothing between the request line and the
// first header) starts with whitespace. llhttp checks everything else in the head: method, target
// and header bytes, the version's syntax, the colon, and CRLF after each header line.
const char* Parser::scan_head(const char* p, const char* end, ParseError& error) {
  while (p < end) {
    switch (scan_) {
      case Scan::kStart:
        if (*p == '\r') {
          scan_ = Scan::kStartLf;
          ++p;
          break;
        }
        if (*p == '\n') {
          error = ParseError::kBareLf;
          return p;
        }
        scan_ = Scan::kRequestLine;
        line_spaces_ = 0;
        prev_space_ = true;  // a leading space is one too many
        seen_header_line_ = false;
        break;
      case Scan::kStartLf:
        if (*p != '\n') {
          error = ParseError::kMalformed;
          return p;
        }
        scan_ = Scan::kStart;
        ++p;
        break;
      case Scan::kRequestLine: {
        // Method, target and version contain no byte <= SP (llhttp checks): only those bytes
        // need a look here.
        uint32_t spaces = line_spaces_;
        bool prev_space = prev_space_;
        for (; p < end; ++p) {
          const unsigned char c = static_cast<unsigned char>(*p);
          if (c > ' ') {
            prev_space = false;
            continue;
          }
          if (c == ' ' && !prev_space) {
            prev_space = true;
            ++spaces;
            continue;
          }
          if (c == ' ' || c == '\t' || c == '\v' || c == '\f') {
            error = ParseError::kBadWhitespace;
            return p;
          }
          if (c == '\r' || c == '\n') {
            if (spaces < 2) {
              error = ParseError::kNoVersion;  // "GET /path" + CRLF: an HTTP/0.9 request line
              return p;
            }
            if (c == '\n') {
              error = ParseError::kBareLf;
              return p;
            }
            scan_ = Scan::kRequestLineLf;
            ++p;
            break;
          }
          prev_space = false;  // another control byte: llhttp rejects it
        }
        line_spaces_ = spaces;
        prev_space_ = prev_space;
        break;
      }
      case Scan::kRequestLineLf:
        if (*p != '\n') {
          error = ParseError::kMalformed;
          return p;
        }
        scan_ = Scan::kLineStart;
        ++p;
        break;
      case Scan::kLineStart:
        if (is_ows(*p)) {
          error = seen_header_line_ ? ParseError::kObsFold : ParseError::kBadWhitespace;
          return p;
        }
        if (*p == '\n') {
          error = ParseError::kBareLf;
          return p;
        }
        if (*p == '\r') {
          scan_ = Scan::kEndLf;
          ++p;
          break;
        }
        scan_ = Scan::kInLine;
        seen_header_line_ = true;
        break;
      case Scan::kInLine:
        // Line to line while each starts with a field-name byte (the common case).
        for (;;) {
          const void* lf = std::memchr(p, '\n', static_cast<size_t>(end - p));
          if (!lf) return end;
          p = static_cast<const char*>(lf) + 1;
          if (p == end || static_cast<unsigned char>(*p) <= ' ') break;
        }
        scan_ = Scan::kLineStart;
        break;
      case Scan::kEndLf:
        if (*p != '\n') {
          error = ParseError::kMalformed;
          return p;
        }
        scan_ = Scan::kDone;  // the rest is body (or the next request, after on_message_end)
        return end;
      case Scan::kDone:
        return end;
    }
  }
  return end;
}

bool Parser::finish() {
  if (error_ != ParseError::kNone) return false;
  llhttp_errno_t rc = llhttp_finish(&parser_);
  if (rc == HPE_OK || (rc == HPE_PAUSED && paused_by_sink_)) {
    paused_by_sink_ = false;
    return !in_message_;
  }
  return false;
}

std::string_view Parser::header(std::string_view name) const {
  for (const Header& h : headers_)
    if (iequals(h.name, name)) return h.value;
  return {};
}

bool Parser::has_header(std::string_view name) const {
  for (const Header& h : headers_)
    if (iequals(h.name, name)) return true;
  return false;
}

bool Parser::append(const char* at, size_t len) {
  // Count what the peer sent for the head: bytes kept plus ~4 per header for ": " and CRLF.
  if (head_.size() + len + spans_.size() * 4 > max_head_bytes_) {
    error_ = ParseError::kHeadTooLarge;
    return false;
  }
  head_.append(at, len);
  return true;
}

int Parser::on_message_begin_cb(llhttp_t* p) {
  Parser* s = self(p);
  s->in_message_ = true;
  s->head_complete_ = false;
  s->in_value_ = false;
  s->head_.clear();
  s->spans_.clear();
  s->headers_.clear();
  s->empty_name_ = s->has_transfer_encoding_ = false;
  s->first_len_ = 0;
  s->content_length_ = 0;
  s->upgrade_ = false;
  s->body_bytes_ = 0;
  s->trailer_bytes_ = 0;
  if (s->keep_trailers_) {
    s->trailer_text_.clear();
    s->trailers_.clear();
    s->trailer_spans_.clear();
    s->trailer_in_value_ = false;
  }
  s->sink_.on_message_begin(*s);
  return 0;
}

int Parser::on_first_cb(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  if (!s->append(at, len)) return -1;
  s->first_len_ += static_cast<uint32_t>(len);
  return 0;
}

int Parser::on_field_cb(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  if (s->head_complete_) {
    if (s->keep_trailers_) {
      if (s->trailer_spans_.empty() || s->trailer_in_value_) {
        const uint32_t off = static_cast<uint32_t>(s->trailer_text_.size());
        s->trailer_spans_.push_back({off, 0, off, 0});
        s->trailer_in_value_ = false;
      }
      s->trailer_text_.append(at, len);
      s->trailer_spans_.back().name_len += static_cast<uint32_t>(len);
      s->trailer_spans_.back().value_off = static_cast<uint32_t>(s->trailer_text_.size());
    }
    return s->skip_trailer(len);
  }
  if (s->spans_.empty() || s->in_value_) {
    if (s->spans_.size() >= s->max_headers_) {
      s->error_ = ParseError::kTooManyHeaders;
      return -1;
    }
    uint32_t off = static_cast<uint32_t>(s->head_.size());
    s->spans_.push_back({off, 0, off, 0});
    s->in_value_ = false;
  }
  if (!s->append(at, len)) return -1;
  Span& sp = s->spans_.back();
  sp.name_len += static_cast<uint32_t>(len);
  sp.value_off = static_cast<uint32_t>(s->head_.size());
  return 0;
}

int Parser::on_value_cb(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  if (s->head_complete_) {
    if (s->keep_trailers_ && !s->trailer_spans_.empty()) {
      s->trailer_in_value_ = true;
      s->trailer_text_.append(at, len);
      s->trailer_spans_.back().value_len += static_cast<uint32_t>(len);
    }
    return s->skip_trailer(len);
  }
  if (s->spans_.empty()) return -1;
  s->in_value_ = true;
  if (!s->append(at, len)) return -1;
  s->spans_.back().value_len += static_cast<uint32_t>(len);
  return 0;
}

void Parser::finish_headers() {
  headers_.clear();
  const char* base = head_.data();
  bool empty_name = false, transfer_encoding = false;
  for (const Span& sp : spans_) {
    const std::string_view name(base + sp.name_off, sp.name_len);
    empty_name |= name.empty();
    // llhttp flags only non-empty Transfer-Encoding values; an empty one is refused too.
    if (name.size() == 17) transfer_encoding |= iequals(name, "transfer-encoding");
    std::string_view value(base + sp.value_off, sp.value_len);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    headers_.push_back({name, value});
  }
  empty_name_ = empty_name;
  has_transfer_encoding_ = transfer_encoding;
}

// Trailer fields are not forwarded (sluice ends a re-chunked body with an empty trailer), so
// they are only counted: keeping them would grow the head after headers() was handed out.
int Parser::skip_trailer(size_t len) {
  trailer_bytes_ += len;
  if (trailer_bytes_ <= max_head_bytes_) return 0;
  error_ = ParseError::kHeadTooLarge;
  return -1;
}

ParseError Parser::check_head() {
  if (empty_name_) return ParseError::kMalformed;
  if (request_) {
    if (parser_.http_major != 1) return ParseError::kUnsupportedVersion;
    if (parser_.upgrade && parser_.method != HTTP_CONNECT) {
      // Upgrade plus Connection: upgrade. Offering only h2c is no upgrade at all (RFC 9113 §3.1).
      bool other = false;
      for (const Header& h : headers_) {
        if (!iequals(h.name, "upgrade")) continue;
        for (std::string_view list = h.value; !list.empty();) {
          std::string_view protocol = next_list_element(list);
          other |= !protocol.empty() && !iequals(protocol, "h2c");
        }
      }
      if (!other) parser_.upgrade = 0;  // llhttp then neither pauses nor hands over the bytes
    }
  }
  if (has_transfer_encoding_) return check_transfer_encoding();
  return ParseError::kNone;
}

// sluice de-chunks and re-chunks bodies and understands no other coding, so the codings must be
// exactly one final "chunked": anything else would be forwarded mislabelled (RFC 9112 §6.1, §6.3).
ParseError Parser::check_transfer_encoding() const {
  if (parser_.http_major == 1 && parser_.http_minor == 0) return ParseError::kBadTransferEncoding;
  int chunked = 0, others = 0;
  bool chunked_last = false;
  for (const Header& h : headers_) {
    if (!iequals(h.name, "transfer-encoding")) continue;
    for (std::string_view list = h.value; !list.empty();) {
      std::string_view coding = next_list_element(list);
      if (coding.empty()) continue;
      chunked_last = iequals(coding, "chunked");
      ++(chunked_last ? chunked : others);
    }
  }
  if (chunked == 1 && chunked_last)
    return others ? ParseError::kUnsupportedCoding : ParseError::kNone;
  return ParseError::kBadTransferEncoding;
}

int Parser::on_headers_complete_cb(llhttp_t* p) {
  Parser* s = self(p);
  s->finish_headers();
  s->head_complete_ = true;
  s->content_length_ = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
  if (ParseError e = s->check_head(); e != ParseError::kNone) {
    s->error_ = e;
    return -1;
  }
  s->upgrade_ = p->upgrade != 0;
  // An upgrade request is an ordinary message to llhttp: whether the connection switches
  // protocols depends on the answer (101 or not), which only the caller learns.
  if (p->type == HTTP_REQUEST) p->upgrade = 0;
  int rc = s->sink_.on_head(*s);
  if (rc < 0) {
    s->error_ = ParseError::kSinkError;
    return -1;
  }
  return rc;
}

int Parser::on_body_cb(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  s->body_bytes_ += len;
  if (s->sink_.on_body(*s, at, len) < 0) {
    s->error_ = ParseError::kSinkError;
    return -1;
  }
  return 0;
}

int Parser::on_chunk_header_cb(llhttp_t* p) {
  Parser* s = self(p);
  if (!s->request_ || p->content_length != 0) return 0;
  // The last chunk: the trailer section follows, held to the same line rules as the head. The
  // pause hands feed() the position where it starts.
  s->scan_ = Scan::kLineStart;
  s->seen_header_line_ = true;
  s->paused_to_scan_ = true;
  return HPE_PAUSED;
}

int Parser::on_message_complete_cb(llhttp_t* p) {
  Parser* s = self(p);
  s->in_message_ = false;
  if (s->request_) s->scan_ = Scan::kStart;
  if (s->keep_trailers_) {
    for (const Span& sp : s->trailer_spans_) {
      std::string_view value(s->trailer_text_.data() + sp.value_off, sp.value_len);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
        value.remove_suffix(1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      s->trailers_.push_back(
          {std::string_view(s->trailer_text_.data() + sp.name_off, sp.name_len), value});
    }
  }
  if (s->sink_.on_message_end(*s)) {
    s->paused_by_sink_ = true;
    return HPE_PAUSED;
  }
  if (s->request_) {
    s->paused_to_scan_ = true;
    return HPE_PAUSED;
  }
  return 0;
}

}  // namespace sluice::http
