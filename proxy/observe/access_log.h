// JSON-lines access log: per-worker buffers handed to one writer thread, reopenable for rotation.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace sluice::observe {

// One finished request. The views need only live for the append() call.
struct AccessRecord {
  uint64_t unix_ms = 0;     // wall clock, ms since the Unix epoch (AccessLog::wall_clock_ms())
  std::string_view client;  // "ip:port" of the downstream peer
  std::string_view method;
  std::string_view path;
  int status = 0;
  uint64_t bytes = 0;  // response bytes sent to the client
  uint64_t duration_us = 0;
  uint64_t upstream_us = UINT64_MAX;  // UINT64_MAX (== observe::kNoUpstream): logged as null
  std::string_view function;
  std::string_view alias;
  std::string_view version;
  std::string_view endpoint;  // "host:port" of the upstream that answered, or empty
  std::string_view request_id;
  bool retried = false;
};

class AccessLog;

// One worker's line buffer. Only its worker's thread may call append()/flush() (and stop() after
// the workers have stopped). Lines are formatted straight into a recycled buffer: no allocation
// in steady state (except for lines longer than any seen before).
class AccessLogBuffer {
 public:
  AccessLogBuffer(const AccessLogBuffer&) = delete;
  AccessLogBuffer& operator=(const AccessLogBuffer&) = delete;

  // False when the log is "off": skip building the record altogether.
  bool enabled() const { return log_ != nullptr; }
  // Formats one line: {"time":"2026-11-27T02:05:10.123Z","client":...,"retried":false}\n
  // Hands the buffer to the writer thread once it holds kFlushBytes or more.
  void append(const AccessRecord& record);
  // Hands whatever is buffered to the writer (call every 100-250 ms from a worker timer).
  void flush();

  static constexpr size_t kFlushBytes = 64 * 1024;

 private:
  friend class AccessLog;
  explicit AccessLogBuffer(AccessLog* log);
  void append_time(uint64_t unix_ms);

  AccessLog* log_;  // nullptr when off; the AccessLog owns this buffer, so it outlives it
  std::string buffer_;
  uint64_t lines_ = 0;  // lines in buffer_
  uint64_t cached_second_ = UINT64_MAX;
  char second_text_[24] = {};  // "YYYY-MM-DDTHH:MM:SS" of cached_second_
};

// The shared side: the output file descriptor and the writer thread (none when off).
// Whole buffers are written with write(2) between reopens, so a line is never split across
// files; reopen() takes effect between two buffers. If the writer falls more than
// kMaxQueuedBytes behind (a stalled disk or pipe), new buffers are dropped and counted.
class AccessLog {
 public:
  // target: "off", "stdout", or a file path (opened O_WRONLY|O_CREAT|O_APPEND, 0644).
  // Returns nullptr and sets *error if the file cannot be opened.
  static std::unique_ptr<AccessLog> open(std::string_view target, size_t workers,
                                         std::string* error);
  ~AccessLog();  // stop()
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  bool enabled() const { return enabled_; }
  // The buffer worker `index` appends to; lives as long as this AccessLog.
  AccessLogBuffer& worker(size_t index) { return *buffers_.at(index); }

  // Asks the writer thread to reopen the path (after a rotation: call from the SIGUSR1 handler
  // on the control loop, not from a raw signal handler). Returns at once. No-op for stdout/off.
  void reopen();
  // Waits until every buffer handed off before the call is written and any reopen asked before
  // it is done. For tests and shutdown.
  void sync();
  // Flushes every worker buffer (the workers must have stopped), writes everything, joins the
  // writer thread. Safe to call twice.
  void stop();

  uint64_t dropped_lines() const;
  uint64_t write_errors() const;
  std::string last_error() const;

  static uint64_t wall_clock_ms();
  static constexpr size_t kMaxQueuedBytes = 64 * 1024 * 1024;

 private:
  friend class AccessLogBuffer;
  struct Pending {
    std::string bytes;
    uint64_t lines = 0;
  };

  AccessLog(std::string path, int fd, size_t workers);
  // Moves `buffer`'s bytes to the writer queue and leaves a recycled empty buffer in its place.
  void hand_off(std::string& buffer, uint64_t lines);
  void run();
  void write_all(const std::string& bytes);
  void do_reopen();

  const bool enabled_;
  const std::string path_;  // empty for stdout
  int fd_;                  // only the writer thread touches it after open()
  std::vector<std::unique_ptr<AccessLogBuffer>> buffers_;

  mutable std::mutex mu_;
  std::condition_variable wake_;  // writer: work to do
  std::condition_variable done_;  // sync(): progress made
  std::vector<Pending> queue_;
  std::vector<std::string> free_;  // empty buffers with capacity, for reuse
  size_t queued_bytes_ = 0;
  uint64_t handed_seq_ = 0;   // buffers queued so far
  uint64_t written_seq_ = 0;  // buffers written (or failed) so far
  uint64_t reopen_asked_ = 0;
  uint64_t reopen_done_ = 0;
  bool stopping_ = false;
  bool stopped_ = false;
  uint64_t dropped_lines_ = 0;
  uint64_t write_errors_ = 0;
  std::string last_error_;
  std::thread writer_;
};

}  // namespace sluice::observe
