// llhttp glue: feeds bytes to a strict llhttp parser, accumulates the message head (request line
// or status line plus headers) under size limits, and reports head/body/end to a Sink. Pure: no
// uv.h.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::http {

// Case-insensitive ASCII comparison of header names.
bool iequals(std::string_view a, std::string_view b);

struct Header {
  std::string_view name;
  std::string_view value;  // trailing whitespace trimmed
};

// What a parser found wrong, mapped by the caller to a status (DESIGN.md §3).
enum class ParseError {
  kNone,
  kMalformed,       // 400 (includes smuggling signs: CL+TE, duplicate CL, bad chunk size)
  kHeadTooLarge,    // 431
  kTooManyHeaders,  // 431
  kSinkError,       // the sink refused (its own reason is recorded by the sink)
};

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
  // remaining bytes (from `consumed`) belong to the upgraded protocol.
  Result feed(const char* data, size_t len);
  // The peer closed: completes a message delimited by EOF. Returns false if a message was cut.
  bool finish();
  void resume() { llhttp_resume(&parser_); }
  // Starts over for a new connection or after an error.
  void reset();

  ParseError error() const { return error_; }
  const char* error_reason() const { return llhttp_get_error_reason(&parser_); }
  bool in_message() const { return in_message_; }
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
  // Requests: the client asked for an upgrade (Upgrade + Connection: upgrade, or CONNECT). The
  // parser itself never switches protocols for a request: the bytes after it are parsed as the
  // next request unless the caller (on a 101 answer) takes them as raw tunnel bytes.
  // Responses: a 101 with Upgrade.
  bool upgrade() const { return upgrade_; }
  // Response with neither length nor chunking: body ends when the connection closes.
  bool needs_eof() const { return llhttp_message_needs_eof(&parser_) != 0; }
  uint64_t body_bytes() const { return body_bytes_; }

 private:
  static int on_message_begin_cb(llhttp_t* p);
  static int on_first_cb(llhttp_t* p, const char* at, size_t len);
  static int on_field_cb(llhttp_t* p, const char* at, size_t len);
  static int on_value_cb(llhttp_t* p, const char* at, size_t len);
  static int on_headers_complete_cb(llhttp_t* p);
  static int on_body_cb(llhttp_t* p, const char* at, size_t len);
  static int on_message_complete_cb(llhttp_t* p);
  bool append(const char* at, size_t len);
  void finish_headers();

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
  uint32_t first_len_ = 0;
  uint64_t content_length_ = 0;
  uint64_t body_bytes_ = 0;
  std::string head_;  // first-line text then name/value bytes; capacity reused across messages
  struct Span {
    uint32_t name_off, name_len, value_off, value_len;
  };
  std::vector<Span> spans_;
  std::vector<Header> headers_;
};

}  // namespace sluice::http
