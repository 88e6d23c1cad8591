// Access log: JSON line formatting into per-worker buffers, and the writer thread.
#include "observe/access_log.h"

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

namespace sluice::observe {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// Printable ASCII other than '"' and '\\': copied into JSON strings as is.
constexpr std::array<bool, 256> kPlain = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x7f; ++c) plain[c] = c != '"' && c != '\\';
  return plain;
}();

// Length of the valid UTF-8 sequence starting at s[i] (a byte >= 0x80), or 0 if invalid.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = at(i);
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF)
    len = 2;
  else if (c == 0xE0)
    len = 3, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC)
    len = 3;
  else if (c == 0xED)
    len = 3, hi = 0x9F;
  else if (c >= 0xEE && c <= 0xEF)
    len = 3;
  else if (c == 0xF0)
    len = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3)
    len = 4;
  else if (c == 0xF4)
    len = 4, hi = 0x8F;
  else
    return 0;
  if (i + len > s.size()) return 0;
  if (at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (size_t k = 2; k < len; ++k)
    if (at(i + k) < 0x80 || at(i + k) > 0xBF) return 0;
  return len;
}

// A JSON string; invalid UTF-8 bytes become U+FFFD so every line stays valid JSON.
void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    // Copy the run of bytes that need no escaping in one append.
    size_t run = i;
    while (run < s.size() && kPlain[static_cast<unsigned char>(s[run])]) ++run;
    if (run != i) {
      out.append(s.data() + i, run - i);
      i = run;
      if (i == s.size()) break;
    }
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t len = utf8_sequence_length(s, i);
      if (len == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(s.data() + i, len);
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
          out.append(esc, sizeof esc);
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

template <typename Int>
void append_int(std::string& out, Int v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, ec == std::errc() ? end : buf);
}

// Microseconds as milliseconds with three decimals: 12345 -> 12.345.
void append_ms(std::string& out, uint64_t us) {
  append_int(out, us / 1000);
  uint64_t frac = us % 1000;
  char buf[4] = {'.', static_cast<char>('0' + frac / 100), static_cast<char>('0' + frac / 10 % 10),
                 static_cast<char>('0' + frac % 10)};
  out.append(buf, sizeof buf);
}

}  // namespace

AccessLogBuffer::AccessLogBuffer(AccessLog* log) : log_(log) {
  if (log_ != nullptr) buffer_.reserve(kFlushBytes + 4096);
}

void AccessLogBuffer::append_time(uint64_t unix_ms) {
  uint64_t second = unix_ms / 1000;
  if (second != cached_second_) {
    std::time_t t = static_cast<std::time_t>(second);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(second_text_, sizeof second_text_, "%Y-%m-%dT%H:%M:%S", &tm);
    cached_second_ = second;
  }
  buffer_ += '"';
  buffer_ += second_text_;
  uint64_t ms = unix_ms % 1000;
  char frac[6] = {'.',
                  static_cast<char>('0' + ms / 100),
                  static_cast<char>('0' + ms / 10 % 10),
                  static_cast<char>('0' + ms % 10),
                  'Z',
                  '"'};
  buffer_.append(frac, sizeof frac);
}

void AccessLogBuffer::append(const AccessRecord& r) {
  if (log_ == nullptr) return;
  std::string& b = buffer_;
  b += "{\"time\":";
  append_time(r.unix_ms);
  b += ",\"client\":";
  append_json_string(b, r.client);
  b += ",\"method\":";
  append_json_string(b, r.method);
  b += ",\"path\":";
  append_json_string(b, r.path);
  b += ",\"status\":";
  append_int(b, r.status);
  b += ",\"bytes\":";
  append_int(b, r.bytes);
  b += ",\"duration_ms\":";
  append_ms(b, r.duration_us);
  b += ",\"upstream_ms\":";
  if (r.upstream_us == UINT64_MAX)
    b += "null";
  else
    append_ms(b, r.upstream_us);
  b += ",\"function\":";
  append_json_string(b, r.function);
  b += ",\"alias\":";
  append_json_string(b, r.alias);
  b += ",\"version\":";
  append_json_string(b, r.version);
  b += ",\"endpoint\":";
  append_json_string(b, r.endpoint);
  b += ",\"request_id\":";
  append_json_string(b, r.request_id);
  b += r.retried ? ",\"retried\":true}\n" : ",\"retried\":false}\n";
  ++lines_;
  if (b.size() >= kFlushBytes) flush();
}

void AccessLogBuffer::flush() {
  if (log_ == nullptr || buffer_.empty()) return;
  log_->hand_off(buffer_, lines_);
  lines_ = 0;
}

std::unique_ptr<AccessLog> AccessLog::open(std::string_view target, size_t workers,
                                           std::string* error) {
  if (target == "off") return std::unique_ptr<AccessLog>(new AccessLog("", -1, workers));
  if (target == "stdout")
    return std::unique_ptr<AccessLog>(new AccessLog("", STDOUT_FILENO, workers));
  std::string path(target);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (error != nullptr) *error = "cannot open access log " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  return std::unique_ptr<AccessLog>(new AccessLog(std::move(path), fd, workers));
}

AccessLog::AccessLog(std::string path, int fd, size_t workers)
    : enabled_(fd >= 0), path_(std::move(path)), fd_(fd) {
  buffers_.reserve(workers);
  for (size_t i = 0; i < workers; ++i)
    buffers_.push_back(
        std::unique_ptr<AccessLogBuffer>(new AccessLogBuffer(enabled_ ? this : nullptr)));
  if (enabled_) writer_ = std::thread([this] { run(); });
}

AccessLog::~AccessLog() {
  stop();
}

uint64_t AccessLog::wall_clock_ms() {
  using namespace std::chrono;
  return static_cast<uint64_t>(
      duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

void AccessLog::hand_off(std::string& buffer, uint64_t lines) {
  std::lock_guard lock(mu_);
  if (queued_bytes_ + buffer.size() > kMaxQueuedBytes || stopped_) {
    dropped_lines_ += lines;
    buffer.clear();
    return;
  }
  queued_bytes_ += buffer.size();
  queue_.push_back(Pending{std::move(buffer), lines});
  ++handed_seq_;
  if (!free_.empty()) {
    buffer = std::move(free_.back());
    free_.pop_back();
  } else {
    buffer = std::string();
    buffer.reserve(AccessLogBuffer::kFlushBytes + 4096);
  }
  wake_.notify_one();
}

void AccessLog::reopen() {
  if (!enabled_ || path_.empty()) return;
  std::lock_guard lock(mu_);
  ++reopen_asked_;
  wake_.notify_one();
}

void AccessLog::sync() {
  if (!enabled_) return;
  std::unique_lock lock(mu_);
  uint64_t want_written = handed_seq_;
  uint64_t want_reopened = reopen_asked_;
  done_.wait(lock, [&] {
    return stopped_ || (written_seq_ >= want_written && reopen_done_ >= want_reopened);
  });
}

void AccessLog::stop() {
  if (!enabled_) return;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
  }
  for (auto& b : buffers_) b->flush();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    wake_.notify_one();
  }
  if (writer_.joinable()) writer_.join();
  if (fd_ > STDERR_FILENO) ::close(fd_);
  fd_ = -1;
}

void AccessLog::run() {
  std::vector<Pending> batch;
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return !queue_.empty() || reopen_asked_ != reopen_done_ || stopping_; });
    batch.swap(queue_);
    uint64_t reopen_target = reopen_asked_;
    lock.unlock();

    // Buffers handed off before the reopen request go to the old file, the rest to the new one.
    for (Pending& p : batch) write_all(p.bytes);
    bool reopen = reopen_target != reopen_done_;
    if (reopen) do_reopen();

    lock.lock();
    for (Pending& p : batch) {
      queued_bytes_ -= p.bytes.size();
      p.bytes.clear();
      if (free_.size() < 8) free_.push_back(std::move(p.bytes));
    }
    written_seq_ += batch.size();
    batch.clear();
    reopen_done_ = reopen_target;
    done_.notify_all();
    if (stopping_ && queue_.empty()) break;
  }
  stopped_ = true;
  done_.notify_all();
}

void AccessLog::write_all(const std::string& bytes) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n > 0) {
      p += n;
      left -= static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{fd_, POLLOUT, 0};
      ::poll(&pfd, 1, 1000);  // stdout may be non-blocking (a pipe shared with libuv)
    } else {
      std::lock_guard lock(mu_);
      ++write_errors_;
      last_error_ = std::string("access log write failed: ") + std::strerror(n < 0 ? errno : EIO);
      return;
    }
  }
}

void AccessLog::do_reopen() {
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {  // keep writing to the old file rather than lose lines
    std::lock_guard lock(mu_);
    ++write_errors_;
    last_error_ = "cannot reopen access log " + path_ + ": " + std::strerror(errno);
    return;
  }
  ::close(fd_);
  fd_ = fd;
}

uint64_t AccessLog::dropped_lines() const {
  std::lock_guard lock(mu_);
  return dropped_lines_;
}

uint64_t AccessLog::write_errors() const {
  std::lock_guard lock(mu_);
  return write_errors_;
}

std::string AccessLog::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

}  // namespace sluice::observe
