// HTTP/1.1 wire helpers for the e2e tests: response parsing, chunked decoding, body patterns.
#include "wire.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace sluice::e2e {

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return std::string(s.substr(b, e - b));
}

std::string Headers::get(std::string_view name) const {
  std::string n = to_lower(name);
  for (const auto& [k, v] : items)
    if (k == n) return v;
  return "";
}

bool Headers::has(std::string_view name) const {
  return count(name) > 0;
}

size_t Headers::count(std::string_view name) const {
  std::string n = to_lower(name);
  size_t c = 0;
  for (const auto& [k, v] : items) c += (k == n);
  return c;
}

bool parse_response_head(std::string_view head, Response& out) {
  out = Response{};
  size_t eol = head.find("\r\n");
  if (eol == std::string_view::npos) return false;
  std::string_view line = head.substr(0, eol);
  if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || line[8] != ' ') return false;
  out.version = std::string(line.substr(0, 8));
  int status = 0;
  auto [p, ec] = std::from_chars(line.data() + 9, line.data() + 12, status);
  if (ec != std::errc() || p != line.data() + 12 || status < 100 || status > 999) return false;
  if (line.size() > 12 && line[12] != ' ') return false;
  out.status = status;
  out.reason = line.size() > 13 ? std::string(line.substr(13)) : "";
  size_t pos = eol + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos) return false;
    if (end == pos) break;  // blank line
    std::string_view h = head.substr(pos, end - pos);
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    out.headers.items.emplace_back(to_lower(h.substr(0, colon)), trim(h.substr(colon + 1)));
    pos = end + 2;
  }
  return true;
}

size_t ChunkedDecoder::feed(std::string_view in,
                            const std::function<void(std::string_view)>& on_data) {
  size_t i = 0;
  while (i < in.size() && state_ != State::kDone && state_ != State::kError) {
    char c = in[i];
    switch (state_) {
      case State::kSize: {
        int v = -1;
        if (c >= '0' && c <= '9')
          v = c - '0';
        else if (c >= 'a' && c <= 'f')
          v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
          v = c - 'A' + 10;
        if (v >= 0) {
          if (++digits_ > 15) {
            state_ = State::kError;
            break;
          }
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(v);
          ++i;
        } else if (digits_ > 0 && (c == ';' || c == ' ' || c == '\t')) {
          state_ = State::kExt;
          ++i;
        } else if (digits_ > 0 && c == '\r') {
          state_ = State::kSizeLf;
          ++i;
        } else {
          state_ = State::kError;
        }
        break;
      }
      case State::kExt:
        if (c == '\r')
          state_ = State::kSizeLf;
        else if (c == '\n')
          state_ = State::kError;
        ++i;
        break;
      case State::kSizeLf:
        if (c != '\n') {
          state_ = State::kError;
          break;
        }
        ++i;
        digits_ = 0;
        state_ = remaining_ == 0 ? State::kTrailerStart : State::kData;
        break;
      case State::kData: {
        size_t n = static_cast<size_t>(
            std::min<uint64_t>(remaining_, static_cast<uint64_t>(in.size() - i)));
        on_data(in.substr(i, n));
        i += n;
        remaining_ -= n;
        if (remaining_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
        state_ = c == '\r' ? State::kDataLf : State::kError;
        ++i;
        break;
      case State::kDataLf:
        state_ = c == '\n' ? State::kSize : State::kError;
        ++i;
        break;
      case State::kTrailerStart:
        state_ = c == '\r' ? State::kEndLf : State::kTrailer;
        ++i;
        break;
      case State::kTrailer:
        if (c == '\r') state_ = State::kTrailerLf;
        ++i;
        break;
      case State::kTrailerLf:
        state_ = c == '\n' ? State::kTrailerStart : State::kError;
        ++i;
        break;
      case State::kEndLf:
        state_ = c == '\n' ? State::kDone : State::kError;
        ++i;
        break;
      case State::kDone:
      case State::kError:
        break;
    }
  }
  return i;
}

long parse_response(std::string_view buf, bool head_request, bool eof, Response& out) {
  size_t head_end = buf.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return eof ? -1 : 0;
  size_t head_len = head_end + 4;
  if (!parse_response_head(buf.substr(0, head_len), out)) return -1;
  std::string_view rest = buf.substr(head_len);
  if (head_request || out.status < 200 || out.status == 204 || out.status == 304)
    return static_cast<long>(head_len);
  if (to_lower(out.header("transfer-encoding")).find("chunked") != std::string::npos) {
    out.chunked = true;
    ChunkedDecoder dec;
    std::string body;
    size_t used = dec.feed(rest, [&](std::string_view d) { body.append(d); });
    if (dec.error()) return -1;
    if (!dec.done()) return eof ? -1 : 0;
    out.body = std::move(body);
    return static_cast<long>(head_len + used);
  }
  if (out.headers.has("content-length")) {
    uint64_t n = 0;
    std::string v = out.header("content-length");
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size()) return -1;
    if (rest.size() < n) return eof ? -1 : 0;
    out.body = std::string(rest.substr(0, n));
    return static_cast<long>(head_len + n);
  }
  if (!eof) return 0;  // close-delimited
  out.body = std::string(rest);
  return static_cast<long>(buf.size());
}

void fill_pattern(uint64_t offset, char* out, size_t n) {
  for (size_t k = 0; k < n; ++k) out[k] = pattern_byte(offset + k);
}

uint64_t pattern_hash(uint64_t n) {
  Fnv fnv;
  char block[65536];
  for (uint64_t off = 0; off < n; off += sizeof block) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(sizeof block, n - off));
    fill_pattern(off, block, len);
    fnv.add(std::string_view(block, len));
  }
  return fnv.hash;
}

}  // namespace sluice::e2e
