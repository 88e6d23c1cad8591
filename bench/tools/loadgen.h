// Pure logic of bench/tools/loadgen.cpp (no sockets): the log-linear latency histogram and the
// incremental HTTP/1.1 response framer, kept here so loadgen_test.cpp can test them alone.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace loadgen {

// HDR-style log-linear histogram of nanosecond values: exact below 256 ns, then 128 linear
// sub-buckets per power of two, so any recorded value is off by less than 1/128 (0.8%). Covers
// up to 2^40 ns (about 18 minutes); larger values are clamped into the last bucket.
class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;  // 128
  static constexpr int kMaxBits = 40;
  static constexpr size_t kBuckets = (kMaxBits - kSubBits + 1) * kSub;  // last: 2^40 - 1

  static size_t index_of(uint64_t v_ns) {
    if (v_ns >= (uint64_t{1} << kMaxBits)) v_ns = (uint64_t{1} << kMaxBits) - 1;
    if (v_ns < 2 * kSub) return static_cast<size_t>(v_ns);
    const int msb = 63 - std::countl_zero(v_ns);
    const int shift = msb - kSubBits;  // >= 1 here
    return static_cast<size_t>(shift) * kSub + static_cast<size_t>(v_ns >> shift);
  }
  // Smallest value that lands in bucket `index`, and the bucket's width.
  static uint64_t lowest_of(size_t index) {
    if (index < 2 * kSub) return index;
    const uint64_t shift = index / kSub - 1;
    return (index - shift * kSub) << shift;
  }
  static uint64_t width_of(size_t index) {
    return index < 2 * kSub ? 1 : uint64_t{1} << (index / kSub - 1);
  }

  void record(uint64_t v_ns) {
    ++counts_[index_of(v_ns)];
    ++total_;
    max_ = std::max(max_, v_ns);
  }
  void merge(const Histogram& other) {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_ = std::max(max_, other.max_);
  }
  uint64_t total() const { return total_; }
  uint64_t max() const { return max_; }

  // The value at quantile q (0..1): the highest value of the bucket holding the ceil(q*total)-th
  // smallest record (so a reported p99 is never below the true one), capped at the true max.
  uint64_t quantile(double q) const {
    if (total_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total_) + 0.999999);
    rank = std::clamp<uint64_t>(rank, 1, total_);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(max_, lowest_of(i) + width_of(i) - 1);
    }
    return max_;
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  uint64_t max_ = 0;
};

// Frames HTTP/1.1 responses in a byte stream: give it the bytes received so far (from the start
// of a response) and it says whether a whole response is there and how long it is. Handles
// Content-Length, chunked bodies and bodiless statuses (1xx, 204, 304). Responses without a
// length (read until close) are reported as `kUnframed`: a benchmark peer never sends those.
struct Framed {
  enum Status { kNeedMore, kDone, kBad, kUnframed } status = kNeedMore;
  size_t length = 0;   // bytes of the whole response when kDone
  int code = 0;        // HTTP status code when kDone
  bool close = false;  // the server closes after this response ("Connection: close", or
                       // HTTP/1.0 without "Connection: keep-alive")
};

namespace detail {
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}
inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
inline bool contains_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}
}  // namespace detail

inline Framed frame_response(std::string_view buf) {
  using detail::iequals;
  Framed out;
  const size_t head_end = buf.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    if (buf.size() > 65536) out.status = Framed::kBad;
    return out;
  }
  const std::string_view head = buf.substr(0, head_end);
  const size_t line_end = head.find("\r\n");
  const std::string_view status_line = head.substr(0, line_end);
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || status_line[8] != ' ') {
    out.status = Framed::kBad;
    return out;
  }
  int code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (status_line[i] < '0' || status_line[i] > '9') {
      out.status = Framed::kBad;
      return out;
    }
    code = code * 10 + (status_line[i] - '0');
  }
  out.code = code;
  bool chunked = false, have_length = false, keep_alive = false;
  uint64_t content_length = 0;
  std::string_view rest =
      line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);
  while (!rest.empty()) {
    const size_t eol = rest.find("\r\n");
    const std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 2);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = detail::trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      have_length = true;
      content_length = 0;
      for (char c : value) {
        if (c < '0' || c > '9' || content_length > (uint64_t{1} << 40)) {
          out.status = Framed::kBad;
          return out;
        }
        content_length = content_length * 10 + static_cast<uint64_t>(c - '0');
      }
    } else if (iequals(name, "transfer-encoding")) {
      chunked = detail::contains_token(value, "chunked");
    } else if (iequals(name, "connection")) {
      out.close = detail::contains_token(value, "close");
      keep_alive = detail::contains_token(value, "keep-alive");
    }
  }
  if (status_line[7] == '0' && !keep_alive) out.close = true;
  size_t pos = head_end + 4;
  if (code < 200 || code == 204 || code == 304) {
    out.status = Framed::kDone;
    out.length = pos;
    return out;
  }
  if (chunked) {
    for (;;) {  // chunk-size [;ext] CRLF data CRLF ... 0 CRLF [trailers] CRLF
      const size_t eol = buf.find("\r\n", pos);
      if (eol == std::string_view::npos) return out;
      uint64_t size = 0;
      size_t i = pos;
      for (; i < eol; ++i) {
        const char c = buf[i];
        int d;
        if (c >= '0' && c <= '9')
          d = c - '0';
        else if (c >= 'a' && c <= 'f')
          d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
          d = c - 'A' + 10;
        else
          break;
        if (size > (uint64_t{1} << 40)) {
          out.status = Framed::kBad;
          return out;
        }
        size = size * 16 + static_cast<uint64_t>(d);
      }
      if (i == pos) {
        out.status = Framed::kBad;
        return out;
      }
      pos = eol + 2;
      if (size == 0) {  // trailers end with an empty line
        for (;;) {
          const size_t t = buf.find("\r\n", pos);
          if (t == std::string_view::npos) return out;
          const bool empty = t == pos;
          pos = t + 2;
          if (empty) break;
        }
        out.status = Framed::kDone;
        out.length = pos;
        return out;
      }
      if (buf.size() < pos + size + 2) return out;
      if (buf.substr(pos + size, 2) != "\r\n") {
        out.status = Framed::kBad;
        return out;
      }
      pos += size + 2;
    }
  }
  if (!have_length) {
    out.status = Framed::kUnframed;
    return out;
  }
  if (buf.size() < pos + content_length) return out;
  out.status = Framed::kDone;
  out.length = pos + content_length;
  return out;
}

}  // namespace loadgen
