// The e2e harness: writes a test config, spawns the real sluice binary and stops it by PID,
// reads its peak RSS, and talks to it through raw sockets (for exact bytes and malformed input)
// and libcurl (a real client, with keep-alive reuse).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "wire.h"

typedef void CURL;

namespace sluice::e2e {

#ifdef SLUICE_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// Path of the sluice binary: $SLUICE_BINARY if set, else the compile-time SLUICE_BINARY.
std::string sluice_binary();

// ---------------------------------------------------------------------------------------------
// Config text

// One version of a function in a test config. `number` is "1", "2", ... or "$LATEST".
struct VersionDef {
  std::string number;
  std::vector<std::string> endpoints;  // "127.0.0.1:PORT" or raw TOML inline tables
  std::string extra;                   // extra TOML lines inside the version table
};

// A sluice config for tests: listener on 127.0.0.1:0, admin on 127.0.0.1:0, access log off.
struct ConfigText {
  int workers = 2;
  std::string limits;  // lines inside [limits], e.g. "header_timeout = \"500ms\"\n"
  std::string body;    // functions, aliases and [[routes]], appended verbatim
  std::string access_log = "off";
  std::string listen_extra;  // lines inside [listen], e.g. "tls = { cert = ..., key = ... }\n"

  ConfigText& function(const std::string& fn, const std::vector<VersionDef>& versions,
                       const std::string& function_extra = "");
  ConfigText& alias(const std::string& fn, const std::string& alias, const std::string& traffic,
                    const std::string& extra = "");
  ConfigText& route(const std::string& target, const std::string& path_prefix = "/",
                    const std::string& host = "");
  std::string str() const;
};

// "127.0.0.1:PORT"
std::string loopback(uint16_t port);

// ---------------------------------------------------------------------------------------------
// The sluice process

// A private temporary directory (mkdtemp), removed with its files on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // Writes `content` to path()/name and returns the full path.
  std::string write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

struct SluiceOptions {
  size_t listeners = 1;  // "listening on" lines to wait for
  // Arguments after the binary; "{config}" is replaced by the config path. Default: run -c.
  std::vector<std::string> args = {"run", "-c", "{config}"};
  int start_timeout_ms = 15000;
  // Files written next to the config before sluice starts (name, content), e.g. certificates
  // the config names by relative path.
  std::vector<std::pair<std::string, std::string>> files;
};

// A running sluice child process. Spawned with fork/exec, stderr to a pipe (drained by a
// thread), stdout to a file in its temp dir. Killed with SIGKILL if still running when destroyed.
class Sluice {
 public:
  Sluice(const std::string& config_toml, SluiceOptions options = {});
  ~Sluice();
  Sluice(const Sluice&) = delete;
  Sluice& operator=(const Sluice&) = delete;

  // True once every expected listener printed its line; otherwise error() says why.
  bool started() const { return started_; }
  const std::string& error() const { return error_; }
  pid_t pid() const { return pid_; }
  uint16_t port(size_t i = 0) const { return i < ports_.size() ? ports_[i] : 0; }
  const std::vector<uint16_t>& ports() const { return ports_; }
  std::string url(const std::string& path) const;
  const TempDir& dir() const { return dir_; }
  std::string config_path() const { return config_path_; }

  bool signal(int sig) const;
  // Waits for the child to exit; its status as exit code, or 128+signal. nullopt on timeout.
  std::optional<int> wait_exit(int timeout_ms);
  // SIGTERM, wait up to `timeout_ms`, then SIGKILL. Returns the exit status (0 = clean).
  int stop(int timeout_ms = 15000);
  bool running() const { return pid_ > 0 && !exit_status_; }

  // Peak resident set size (VmHWM) in KiB from /proc/PID/status; -1 if unavailable.
  long vm_hwm_kib() const;
  // A field of /proc/PID/status as a number ("Threads", "VmRSS"); -1 if unavailable.
  long proc_status_field(const std::string& field) const;
  std::string stderr_text() const;
  std::string stdout_text() const;
  // The first sanitizer report (ThreadSanitizer, AddressSanitizer, LeakSanitizer, UBSan) sluice
  // printed, from its first line; "" if none. The destructor fails the running test if there
  // is one, whatever the test checked.
  std::string sanitizer_report() const;

 private:
  void drain_stderr(int fd);

  TempDir dir_;
  std::string config_path_;
  pid_t pid_ = -1;
  bool started_ = false;
  std::string error_;
  std::vector<uint16_t> ports_;
  std::optional<int> exit_status_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string stderr_;
  std::string sanitizer_report_;
  bool stderr_eof_ = false;
  std::thread stderr_thread_;
};

// Number of sockets in LISTEN state on 127.0.0.1:port (from /proc/net/tcp).
int count_listen_sockets(uint16_t port);

// ---------------------------------------------------------------------------------------------
// Raw socket client

class RawClient {
 public:
  // Connects to 127.0.0.1:port (blocking, TCP_NODELAY). connected() says whether it worked.
  explicit RawClient(uint16_t port);
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Sends all of `bytes`; false if the peer closed or reset.
  bool send(std::string_view bytes);
  void shutdown_write();
  void close();

  // Reads until one complete response is buffered (or EOF / timeout) and returns it.
  // `head_request`: the request it answers was HEAD.
  std::optional<Response> read_response(int timeout_ms = 10000, bool head_request = false);
  // Reads until a response head is buffered; leaves the body bytes in buffer().
  std::optional<Response> read_head(int timeout_ms = 10000);
  // Reads and hashes exactly `n` body bytes (buffer() first). Returns false on EOF/timeout.
  bool read_body_bytes(uint64_t n, Fnv& into, int timeout_ms);
  // Reads until the peer closes (true) or the timeout passes (false). Data goes to buffer().
  bool wait_closed(int timeout_ms);
  // Reads whatever arrives until `n` bytes are buffered; false on EOF/timeout.
  bool read_at_least(size_t n, int timeout_ms);
  // True if the peer has closed (EOF or reset seen).
  bool peer_closed() const { return eof_; }
  std::string& buffer() { return buf_; }

 private:
  // One poll+recv; false on timeout. Sets eof_ on EOF / reset.
  bool read_some(int timeout_ms);

  int fd_ = -1;
  bool eof_ = false;
  std::string buf_;
};

// Runs a shell command; its stdout (stderr too when `with_stderr`, else discarded).
std::string shell_output(const std::string& cmd, bool with_stderr = false);

// Milliseconds since `start`.
inline long elapsed_ms(std::chrono::steady_clock::time_point start) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count());
}

// ---------------------------------------------------------------------------------------------
// libcurl client

struct HttpResult {
  long status = 0;  // 0 if the transfer failed
  std::string error;
  Headers headers;  // of the final response
  std::string body;
  long new_connections = 0;  // CURLINFO_NUM_CONNECTS for this transfer
  uint64_t body_bytes = 0;   // bytes received (also counted when the body is not kept)
  uint64_t body_hash = 0;    // FNV-1a of the body when hashing was asked for
  std::string header(std::string_view name) const { return headers.get(name); }
};

// One libcurl easy handle, reused across calls so keep-alive connections are reused.
class CurlClient {
 public:
  CurlClient();
  ~CurlClient();
  CurlClient(const CurlClient&) = delete;
  CurlClient& operator=(const CurlClient&) = delete;

  HttpResult get(const std::string& url, const std::vector<std::string>& headers = {});
  HttpResult request(const std::string& method, const std::string& url,
                     const std::vector<std::string>& headers = {}, const std::string& body = "");
  // POSTs `bytes` generated pattern bytes, content-length framed or chunked.
  HttpResult upload(const std::string& url, uint64_t bytes, bool chunked, long timeout_ms);
  // GETs `url`, hashing the body instead of keeping it.
  HttpResult download(const std::string& url, long timeout_ms);

 private:
  HttpResult perform(bool keep_body, bool hash_body);

  CURL* easy_;
};

}  // namespace sluice::e2e
