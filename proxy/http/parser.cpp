// llhttp glue: head accumulation under limits and event delivery to a Sink (see parser.h).
#include "http/parser.h"

#include <cstring>

namespace sluice::http {
namespace {

inline char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? char(c + 32) : c;
}

inline Parser* self(llhttp_t* p) {
  return static_cast<Parser*>(p->data);
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

Parser::Parser(llhttp_type_t type, Sink& sink, uint32_t max_head_bytes, uint32_t max_headers)
    : sink_(sink), max_head_bytes_(max_head_bytes), max_headers_(max_headers) {
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
    s.on_message_complete = &Parser::on_message_complete_cb;
    return s;
  }();
  llhttp_init(&parser_, type, &settings);
  parser_.data = this;
  head_.reserve(1024);
  spans_.reserve(32);
  headers_.reserve(32);
}

void Parser::reset() {
  llhttp_reset(&parser_);
  parser_.data = this;
  error_ = ParseError::kNone;
  in_message_ = head_complete_ = in_value_ = paused_by_sink_ = false;
}

Parser::Result Parser::feed(const char* data, size_t len) {
  llhttp_errno_t rc = llhttp_execute(&parser_, data, len);
  if (rc == HPE_OK) return {Status::kOk, len};
  size_t used = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
  if (rc == HPE_PAUSED && paused_by_sink_) {
    paused_by_sink_ = false;
    return {Status::kPaused, used};
  }
  if (rc == HPE_PAUSED_UPGRADE) return {Status::kUpgrade, used};
  if (error_ == ParseError::kNone) error_ = ParseError::kMalformed;
  return {Status::kError, used};
}

bool Parser::finish() {
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
  s->first_len_ = 0;
  s->content_length_ = 0;
  s->upgrade_ = false;
  s->body_bytes_ = 0;
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
  if (s->spans_.empty()) return -1;
  s->in_value_ = true;
  if (!s->append(at, len)) return -1;
  s->spans_.back().value_len += static_cast<uint32_t>(len);
  return 0;
}

void Parser::finish_headers() {
  headers_.clear();
  const char* base = head_.data();
  for (const Span& sp : spans_) {
    std::string_view value(base + sp.value_off, sp.value_len);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    headers_.push_back({std::string_view(base + sp.name_off, sp.name_len), value});
  }
}

int Parser::on_headers_complete_cb(llhttp_t* p) {
  Parser* s = self(p);
  s->finish_headers();
  s->head_complete_ = true;
  s->content_length_ = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
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

int Parser::on_message_complete_cb(llhttp_t* p) {
  Parser* s = self(p);
  s->in_message_ = false;
  if (s->sink_.on_message_end(*s)) {
    s->paused_by_sink_ = true;
    return HPE_PAUSED;
  }
  return 0;
}

}  // namespace sluice::http
