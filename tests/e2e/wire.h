// HTTP/1.1 wire helpers shared by the e2e client side and the test upstream: an independent
// (not llhttp) response parser, a streaming chunked decoder, and the byte pattern + hash used to
// check that large bodies arrive intact.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::e2e {

std::string to_lower(std::string_view s);
std::string trim(std::string_view s);

// Header list with lower-cased names, in arrival order.
struct Headers {
  std::vector<std::pair<std::string, std::string>> items;
  // First value of `name` (any case), "" if absent.
  std::string get(std::string_view name) const;
  bool has(std::string_view name) const;
  size_t count(std::string_view name) const;
};

// One response as a client received it.
struct Response {
  std::string version;  // "HTTP/1.1"
  int status = 0;
  std::string reason;
  Headers headers;
  std::string body;  // decoded (chunked framing removed)
  bool chunked = false;
  std::string header(std::string_view name) const { return headers.get(name); }
};

// Parses "HTTP/1.1 200 OK\r\nname: value\r\n...\r\n\r\n" (the head only, including the blank
// line). Returns false if it is not a valid response head.
bool parse_response_head(std::string_view head, Response& out);

// Incremental decoder for a chunked body (size lines, data, trailer section).
class ChunkedDecoder {
 public:
  // Consumes bytes of `in` that belong to the chunked body; payload goes to `on_data`.
  // Returns the number of bytes consumed (less than in.size() only once done() or error()).
  size_t feed(std::string_view in, const std::function<void(std::string_view)>& on_data);
  bool done() const { return state_ == State::kDone; }
  bool error() const { return state_ == State::kError; }

 private:
  enum class State {
    kSize,
    kExt,
    kSizeLf,
    kData,
    kDataCr,
    kDataLf,
    kTrailerStart,
    kTrailer,
    kTrailerLf,
    kEndLf,
    kDone,
    kError
  };
  State state_ = State::kSize;
  uint64_t remaining_ = 0;
  int digits_ = 0;
};

// Parses one complete response from the front of `buf`. `head_request`: the request was HEAD
// (no body follows). `eof`: the peer closed, so a close-delimited body is complete.
// Returns bytes consumed (> 0), 0 if more bytes are needed, -1 if malformed.
long parse_response(std::string_view buf, bool head_request, bool eof, Response& out);

// The deterministic byte at offset `i` of a generated body: position-dependent at several
// scales, so a dropped, duplicated or reordered block changes the hash.
inline char pattern_byte(uint64_t i) {
  return static_cast<char>((i * 31) ^ (i >> 8) ^ (i >> 17) ^ (i >> 29));
}
// Fills `out` with pattern bytes for offsets [offset, offset + out.size()).
void fill_pattern(uint64_t offset, char* out, size_t n);

// FNV-1a 64 over a byte stream.
struct Fnv {
  uint64_t hash = 14695981039346656037ull;
  uint64_t bytes = 0;
  void add(std::string_view data) {
    for (unsigned char c : data) hash = (hash ^ c) * 1099511628211ull;
    bytes += data.size();
  }
};
// The FNV-1a of the first `n` pattern bytes.
uint64_t pattern_hash(uint64_t n);

}  // namespace sluice::e2e
