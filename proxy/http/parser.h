// llhttp glue: feeds bytes to a strict llhttp parser, accumulates the message head (request line
// or status line plus headers) under size limits, and reports head/body/end to a Sink. Requests
// are held to RFC 9112 more strictly than llhttp's strict mode (see Parser::feed). Pure: no uv.h.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::http {

// Case-insensitive ASCII comparison of header names. Inline: the header rules call it for
// nearly every header of every message, mostly to reject on the size.
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const char x = a[i], y = b[i];
    if (x == y) continue;
    if ((x | 0x20) != (y | 0x20) || static_cast<unsigned char>((x | 0x20) - 'a') > 'z' - 'a')
      return false;
  }
  return true;
}

// Takes the next element of a comma-separated header list (RFC 9110 §5.6.1) off the front of
// `list`, without surrounding whitespace; empty elements come back empty.
std::string_view next_list_element(std::string_view& list);

struct Header {
  std::string_view name;
  std::string_view value;  // trailing whitespace trimmed
};

// What a parser found wrong, mapped to a status by error_answer() (DESIGN.md §3).
enum class ParseError {
  kNone,
  kMalformed,            // 400 (includes smuggling signs: CL+TE, duplicate CL, bad chunk size)
  kNoVersion,            // 400: request line without an HTTP version (HTTP/0.9 style)
  kBadWhitespace,        // 400: not exactly one SP between request-line parts, or whitespace
                         //      between the request line and the first header
  kObsFold,              // 400: obsolete line folding (a header line starting with SP/HT)
  kBareLf,               // 400: a line ended by LF without CR
  kBadTransferEncoding,  // 400: chunked not final, empty, or in an HTTP/1.0 message
  kUnsupportedCoding,    // 501: a transfer coding other than chunked (RFC 9112 §6.1)
  kUnsupportedVersion,   // 505: an HTTP major version other than 1
  kHeadTooLarge,         // 431
  kTooManyHeaders,       // 431
  kSinkError,            // the sink refused (its own reason is recorded by the sink)
};

// The generated answer for a request that failed to parse: status and x-sluice-error reason.
struct ErrorAnswer {
  int status;
  const char* reason;
};
ErrorAnswer error_answer(ParseError e);

class Parser;

// Receives parse events. Callbacks run inside Parser::feed.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void on_message_begin(Parser&) {}
  // Headers complete. Return 0 to proceed, 1 when the message has no body (HEAD responses),
  // -1 to fail (ParseError::kSinkError).
  virtual int on_head(Parser& p) = 0;
  // Body bytes (de-chunked). `data` points into the buffer given to feed(). Return -1 to fail.
  virtual int on_body(Parser& p, const char* data, size_t len) = 0;
  // End of one message. Return true to pause the parser here (feed() returns kPaused with the
  // consumed count), false to continue with the next pipelined message.
  virtual bool on_message_end(Parser& p) = 0;
};

class Parser {
 public:
  enum class Status { kOk, kPaused, kUpgrade, kError };
  struct Result {
    Status status;
    size_t consumed;  // bytes of the input used (all of them unless paused/upgraded/error)
  };

  Parser(llhttp_type_t type, Sink& sink, uint32_t max_head_bytes, uint32_t max_headers);
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  // Parses `len` bytes. After kPaused, call resume() before feeding the rest. After kUpgrade the
  // remaining bytes (from `consumed`) belong to the upgraded protocol. After kError every later
  // feed() fails too, until reset().
  //
  // A request head is also checked byte by byte against the RFC 9112 rules that llhttp's strict
  // mode lets through (HTTP/0.9 request lines, extra spaces in the request line, obs-fold, bare
  // LF): the checker runs ahead of llhttp over the same bytes and llhttp is given only the bytes
  // before the first offending one, so the error reported is the one at the earliest byte
  // however the input is split.
  Result feed(const char* data, size_t len);
  // The peer closed: completes a message delimited by EOF. Returns false if a message was cut.
  bool finish();
  void resume() { llhttp_resume(&parser_); }
  // Starts over for a new connection or after an error.
  void reset();

  ParseError error() const { return error_; }
  const char* error_reason() const { return llhttp_get_error_reason(&parser_); }
  bool in_message() const { return in_message_; }
  // Between messages: frees the head storage kept for the next one (it grows back as needed).
  void release_memory();
  bool head_complete() const { return head_complete_; }

  // Valid from on_head until the next message begins.
  std::string_view url() const { return {head_.data(), first_len_}; }     // requests
  std::string_view reason() const { return {head_.data(), first_len_}; }  // responses
  const std::vector<Header>& headers() const { return headers_; }
  std::string_view header(std::string_view name) const;  // first value, or empty
  bool has_header(std::string_view name) const;
  uint8_t method() const { return llhttp_get_method(const_cast<llhttp_t*>(&parser_)); }
  std::string_view method_name() const { return llhttp_method_name(llhttp_method_t(method())); }
  int status_code() const { return llhttp_get_status_code(const_cast<llhttp_t*>(&parser_)); }
  uint8_t http_major() const { return parser_.http_major; }
  uint8_t http_minor() const { return parser_.http_minor; }
  bool keep_alive() const { return llhttp_should_keep_alive(&parser_) != 0; }
  bool chunked() const { return (parser_.flags & F_CHUNKED) != 0; }
  bool has_content_length() const { return (parser_.flags & F_CONTENT_LENGTH) != 0; }
  uint64_t content_length() const { return content_length_; }
  // Requests: the client asked for an upgrade (Upgrade + Connection: upgrade, or CONNECT). A
  // request offering only h2c is no upgrade: RFC 9113 dropped the h2c upgrade, so sluice serves
  // it as plain HTTP/1.1 and neither honours nor forwards it. The parser itself never switches
  // protocols for a request: the bytes after it are parsed as the next request unless the
  // caller (on a 101 answer) takes them as raw tunnel bytes. Responses: a 101 with Upgrade.
  bool upgrade() const { return upgrade_; }
  // Response with neither length nor chunking: body ends when the connection closes.
  bool needs_eof() const { return llhttp_message_needs_eof(&parser_) != 0; }
  uint64_t body_bytes() const { return body_bytes_; }
  // Trailer fields of a chunked message are kept (not only counted) from now on: a gRPC status
  // travels in them. Valid in on_message_end, until the next message begins.
  void keep_trailers(bool keep) { keep_trailers_ = keep; }
  const std::vector<Header>& trailers() const { return trailers_; }

 private:
  static int on_message_begin_cb(llhttp_t* p);
  static int on_first_cb(llhttp_t* p, const char* at, size_t len);
  static int on_field_cb(llhttp_t* p, const char* at, size_t len);
  static int on_value_cb(llhttp_t* p, const char* at, size_t len);
  static int on_headers_complete_cb(llhttp_t* p);
  static int on_body_cb(llhttp_t* p, const char* at, size_t len);
  static int on_chunk_header_cb(llhttp_t* p);
  static int on_message_complete_cb(llhttp_t* p);
  bool append(const char* at, size_t len);
  void finish_headers();
  int skip_trailer(size_t len);
  ParseError check_head();
  ParseError check_transfer_encoding() const;
  const char* scan_head(const char* p, const char* end, ParseError& error);

  // Where the request-head checker is (scan_head). kDone: not in a head (body, responses).
  enum class Scan : uint8_t {
    kStart,          // before the request line: empty lines (CRLF) are skipped
    kStartLf,        // CR of an empty line seen
    kRequestLine,    // counting the single spaces between method, target and version
    kRequestLineLf,  // CR ending the request line seen
    kLineStart,      // first byte of a header (or trailer) line or of the empty line ending them
    kInLine,         // inside a header line (llhttp checks its bytes and its CRLF)
    kEndLf,          // CR of the empty line ending the head seen
    kDone,
  };

  llhttp_t parser_{};
  Sink& sink_;
  const uint32_t max_head_bytes_;
  const uint32_t max_headers_;
  ParseError error_ = ParseError::kNone;
  bool in_message_ = false;
  bool head_complete_ = false;
  bool in_value_ = false;
  bool paused_by_sink_ = false;
  bool upgrade_ = false;
  bool paused_to_scan_ = false;  // paused so feed() checks the next head (or trailer section)
  bool empty_name_ = false;      // a header line with an empty name (": x")
  bool has_transfer_encoding_ = false;
  const bool request_;
  Scan scan_ = Scan::kDone;
  bool seen_header_line_ = false;  // scan_head: a header line has started in this head
  bool prev_space_ = false;        // scan_head: the previous request-line byte was SP
  uint32_t line_spaces_ = 0;       // scan_head: SPs seen in the request line
  uint32_t first_len_ = 0;
  uint64_t trailer_bytes_ = 0;  // trailer fields are counted against the head limit
  bool keep_trailers_ = false;
  bool trailer_in_value_ = false;
  std::string trailer_text_;  // kept trailer fields: name/value bytes (keep_trailers)
  std::vector<Header> trailers_;
  uint64_t content_length_ = 0;
  uint64_t body_bytes_ = 0;
  std::string head_;  // first-line text then name/value bytes; capacity reused across messages
  struct Span {
    uint32_t name_off, name_len, value_off, value_len;
  };
  std::vector<Span> spans_;
  std::vector<Span> trailer_spans_;  // keep_trailers: positions in trailer_text_
  std::vector<Header> headers_;
};

}  // namespace sluice::http
