// The e2e harness: config text, the sluice child process, raw socket and libcurl clients.
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace sluice::e2e {

std::string sluice_binary() {
  if (const char* env = std::getenv("SLUICE_BINARY"); env && *env) return env;
#ifdef SLUICE_BINARY
  return SLUICE_BINARY;
#else
  return "sluice";
#endif
}

std::string loopback(uint16_t port) {
  return "127.0.0.1:" + std::to_string(port);
}

// ---------------------------------------------------------------------------------------------
// Config text

ConfigText& ConfigText::function(const std::string& fn, const std::vector<VersionDef>& versions,
                                 const std::string& function_extra) {
  body += "[functions." + fn + "]\n" + function_extra + "\n";
  for (const auto& v : versions) {
    body += v.number == "$LATEST" ? "[functions." + fn + ".latest]\n"
                                  : "[functions." + fn + ".versions." + v.number + "]\n";
    body += "endpoints = [";
    for (size_t i = 0; i < v.endpoints.size(); ++i) {
      if (i) body += ", ";
      body += v.endpoints[i].starts_with("{") ? v.endpoints[i] : "\"" + v.endpoints[i] + "\"";
    }
    body += "]\n" + v.extra + "\n";
  }
  return *this;
}

ConfigText& ConfigText::alias(const std::string& fn, const std::string& alias,
                              const std::string& traffic, const std::string& extra) {
  body +=
      "[functions." + fn + ".aliases." + alias + "]\ntraffic = " + traffic + "\n" + extra + "\n";
  return *this;
}

ConfigText& ConfigText::route(const std::string& target, const std::string& path_prefix,
                              const std::string& host) {
  body += "[[routes]]\n";
  if (!host.empty()) body += "host = \"" + host + "\"\n";
  body += "path_prefix = \"" + path_prefix + "\"\ntarget = \"" + target + "\"\n\n";
  return *this;
}

std::string ConfigText::str() const {
  std::string out = "# sluice e2e test config\nworkers = " + std::to_string(workers) + "\n\n";
  out += "[listen]\naddress = \"127.0.0.1:0\"\n" + listen_extra + "\n";
  out += "[admin]\naddress = \"127.0.0.1:0\"\n\n";
  out += "[log]\naccess = \"" + access_log + "\"\n\n";
  if (!limits.empty()) out += "[limits]\n" + limits + "\n";
  out += body;
  return out;
}

// ---------------------------------------------------------------------------------------------
// TempDir

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "sluice-e2e-XXXXXX").string();
  if (char* p = ::mkdtemp(tmpl.data())) path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content) const {
  std::string full = path_ + "/" + name;
  std::ofstream(full, std::ios::binary | std::ios::trunc) << content;
  return full;
}

// ---------------------------------------------------------------------------------------------
// Sluice

Sluice::Sluice(const std::string& config_toml, SluiceOptions options) {
  for (const auto& [name, content] : options.files) dir_.write(name, content);
  config_path_ = dir_.write("sluice.toml", config_toml);
  std::vector<std::string> args = {sluice_binary()};
  for (auto a : options.args) {
    if (size_t p = a.find("{config}"); p != std::string::npos) a.replace(p, 8, config_path_);
    args.push_back(a);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    error_ = "pipe2 failed";
    return;
  }
  std::string out_path = dir_.path() + "/stdout.log";
  int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_ = ::fork();
  if (pid_ == 0) {
    // Child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(null_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_pipe[1], 2);
    ::close_range(3, ~0U, 0);  // no test sockets leak into sluice
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(err_pipe[1]);
  ::close(out_fd);
  ::close(null_fd);
  if (pid_ < 0) {
    ::close(err_pipe[0]);
    error_ = "fork failed";
    return;
  }
  int read_fd = err_pipe[0];
  stderr_thread_ = std::thread([this, read_fd] { drain_stderr(read_fd); });

  static const std::string kMarker = "sluice: listening on ";
  std::unique_lock lock(mu_);
  auto count_lines = [&] {
    size_t n = 0;
    for (size_t p = stderr_.find(kMarker); p != std::string::npos;
         p = stderr_.find(kMarker, p + 1)) {
      if (stderr_.find('\n', p) != std::string::npos) ++n;
    }
    return n;
  };
  bool ok = cv_.wait_for(lock, std::chrono::milliseconds(options.start_timeout_ms),
                         [&] { return stderr_eof_ || count_lines() >= options.listeners; });
  if (!ok || count_lines() < options.listeners) {
    error_ = std::string(stderr_eof_ ? "sluice exited" : "timed out") +
             " before printing its listeners; stderr:\n" + stderr_;
    return;
  }
  for (size_t p = stderr_.find(kMarker); p != std::string::npos; p = stderr_.find(kMarker, p + 1)) {
    size_t eol = stderr_.find('\n', p);
    std::string addr = trim(stderr_.substr(p + kMarker.size(), eol - p - kMarker.size()));
    if (!addr.empty() && addr.back() == '\r') addr.pop_back();
    size_t colon = addr.rfind(':');
    if (colon == std::string::npos) continue;
    ports_.push_back(static_cast<uint16_t>(std::atoi(addr.c_str() + colon + 1)));
  }
  started_ = !ports_.empty() && ports_[0] != 0;
  if (!started_) error_ = "could not parse a port from stderr:\n" + stderr_;
}

Sluice::~Sluice() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  if (stderr_thread_.joinable()) stderr_thread_.join();
  // A sanitizer report fails the test even if everything it checked passed (under
  // halt_on_error=1 sluice also stopped at the report, so later checks may fail first).
  if (!sanitizer_report_.empty())
    FAIL_CHECK("the sluice child (pid " << pid_ << ") printed a sanitizer report:\n"
                                        << sanitizer_report_);
}

std::string Sluice::sanitizer_report() const {
  std::lock_guard lock(mu_);
  return sanitizer_report_;
}

void Sluice::drain_stderr(int fd) {
  static const char* const kMarkers[] = {"WARNING: ThreadSanitizer:", "ERROR: AddressSanitizer:",
                                         "ERROR: LeakSanitizer:", ": runtime error: "};
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    std::lock_guard lock(mu_);
    if (n <= 0) {
      stderr_eof_ = true;
      cv_.notify_all();
      break;
    }
    // Look for a report in the new bytes (and a marker's length before them, for one split
    // across reads), before old output may be trimmed below. Keep up to 16 KiB of it.
    const size_t scan_from = stderr_.size() > 64 ? stderr_.size() - 64 : 0;
    stderr_.append(buf, static_cast<size_t>(n));
    if (sanitizer_report_.empty()) {
      for (const char* marker : kMarkers) {
        size_t at = stderr_.find(marker, scan_from);
        if (at == std::string::npos) continue;
        size_t line = stderr_.rfind('\n', at);
        sanitizer_report_ = stderr_.substr(line == std::string::npos ? 0 : line + 1, 16384);
        break;
      }
    } else if (sanitizer_report_.size() < 16384) {
      sanitizer_report_.append(buf,
                               std::min(static_cast<size_t>(n), 16384 - sanitizer_report_.size()));
    }
    if (stderr_.size() > (8u << 20)) stderr_.erase(0, stderr_.size() - (4u << 20));
    cv_.notify_all();
  }
  ::close(fd);
}

std::string Sluice::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port()) + path;
}

bool Sluice::signal(int sig) const {
  return running() && ::kill(pid_, sig) == 0;
}

std::optional<int> Sluice::wait_exit(int timeout_ms) {
  if (exit_status_) return exit_status_;
  if (pid_ <= 0) return std::nullopt;
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_status_;
    }
    if (elapsed_ms(start) >= timeout_ms) return std::nullopt;
    ::poll(nullptr, 0, 5);  // bounded polling for the child's exit
  }
}

int Sluice::stop(int timeout_ms) {
  if (!exit_status_ && pid_ > 0) {
    ::kill(pid_, SIGTERM);
    if (!wait_exit(timeout_ms)) {
      ::kill(pid_, SIGKILL);
      wait_exit(10000);
    }
  }
  if (stderr_thread_.joinable()) stderr_thread_.join();
  return exit_status_.value_or(-1);
}

long Sluice::proc_status_field(const std::string& field) const {
  if (!running()) return -1;
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
  }
  return -1;
}

long Sluice::vm_hwm_kib() const {
  return proc_status_field("VmHWM");
}

std::string Sluice::stderr_text() const {
  std::lock_guard lock(mu_);
  return stderr_;
}

std::string Sluice::stdout_text() const {
  std::ifstream in(dir_.path() + "/stdout.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int count_listen_sockets(uint16_t port) {
  int n = 0;
  for (const char* file : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(file);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string sl, local, remote, state;
      fields >> sl >> local >> remote >> state;
      size_t colon = local.rfind(':');
      if (colon == std::string::npos) continue;
      unsigned long p = std::strtoul(local.c_str() + colon + 1, nullptr, 16);
      if (p == port && state == "0A") ++n;
    }
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// RawClient

RawClient::RawClient(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fd_ = fd;
}

RawClient::~RawClient() {
  close();
}

void RawClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool RawClient::send(std::string_view bytes) {
  if (fd_ < 0) return false;
  while (!bytes.empty()) {
    pollfd p{fd_, POLLOUT, 0};
    if (::poll(&p, 1, 10000) <= 0) return false;
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void RawClient::shutdown_write() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

bool RawClient::read_some(int timeout_ms) {
  if (fd_ < 0 || eof_) return false;
  pollfd p{fd_, POLLIN, 0};
  int rc = ::poll(&p, 1, std::max(timeout_ms, 0));
  if (rc <= 0) return false;
  char tmp[65536];
  ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
  if (n > 0) {
    buf_.append(tmp, static_cast<size_t>(n));
  } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
    eof_ = true;
  }
  return true;
}

std::optional<Response> RawClient::read_response(int timeout_ms, bool head_request) {
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    Response r;
    long used = parse_response(buf_, head_request, eof_, r);
    if (used > 0) {
      buf_.erase(0, static_cast<size_t>(used));
      return r;
    }
    if (used < 0 || eof_) return std::nullopt;
    if (!read_some(timeout_ms - static_cast<int>(elapsed_ms(start)))) return std::nullopt;
  }
}

std::optional<Response> RawClient::read_head(int timeout_ms) {
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    size_t end = buf_.find("\r\n\r\n");
    if (end != std::string::npos) {
      Response r;
      if (!parse_response_head(std::string_view(buf_).substr(0, end + 4), r)) return std::nullopt;
      buf_.erase(0, end + 4);
      return r;
    }
    if (eof_) return std::nullopt;
    if (!read_some(timeout_ms - static_cast<int>(elapsed_ms(start)))) return std::nullopt;
  }
}

bool RawClient::read_body_bytes(uint64_t n, Fnv& into, int timeout_ms) {
  size_t from_buf = static_cast<size_t>(std::min<uint64_t>(n, buf_.size()));
  into.add(std::string_view(buf_).substr(0, from_buf));
  buf_.erase(0, from_buf);
  n -= from_buf;
  char tmp[65536];
  while (n > 0) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;  // no byte within timeout_ms
    ssize_t got = ::recv(fd_, tmp, static_cast<size_t>(std::min<uint64_t>(n, sizeof tmp)), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      eof_ = true;
      return false;
    }
    into.add(std::string_view(tmp, static_cast<size_t>(got)));
    n -= static_cast<uint64_t>(got);
  }
  return true;
}

bool RawClient::wait_closed(int timeout_ms) {
  auto start = std::chrono::steady_clock::now();
  while (!eof_) {
    long left = timeout_ms - elapsed_ms(start);
    if (left <= 0 || !read_some(static_cast<int>(left))) return eof_;
  }
  return true;
}

bool RawClient::read_at_least(size_t n, int timeout_ms) {
  auto start = std::chrono::steady_clock::now();
  while (buf_.size() < n) {
    long left = timeout_ms - elapsed_ms(start);
    if (eof_ || left <= 0 || !read_some(static_cast<int>(left))) return buf_.size() >= n;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// CurlClient

namespace {

struct Transfer {
  HttpResult* result;
  bool keep_body;
  bool hash_body;
  Fnv fnv;
  uint64_t upload_left = 0;
  uint64_t upload_offset = 0;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    t->result->headers.items.clear();
  } else if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    std::string value = trim(line.substr(colon + 1));
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
    t->result->headers.items.emplace_back(to_lower(line.substr(0, colon)), trim(value));
  }
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view chunk(data, size * n);
  t->result->body_bytes += chunk.size();
  if (t->keep_body) t->result->body.append(chunk);
  if (t->hash_body) t->fnv.add(chunk);
  return size * n;
}

size_t on_read(char* out, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = static_cast<size_t>(std::min<uint64_t>(size * n, t->upload_left));
  fill_pattern(t->upload_offset, out, len);
  t->upload_offset += len;
  t->upload_left -= len;
  return len;
}

}  // namespace

CurlClient::CurlClient() : easy_(curl_easy_init()) {}

CurlClient::~CurlClient() {
  curl_easy_cleanup(easy_);
}

static void base_options(CURL* easy, const std::string& url, long timeout_ms) {
  curl_easy_reset(easy);  // keeps live connections
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROXY, "");
  curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
}

HttpResult CurlClient::get(const std::string& url, const std::vector<std::string>& headers) {
  return request("GET", url, headers);
}

HttpResult CurlClient::request(const std::string& method, const std::string& url,
                               const std::vector<std::string>& headers, const std::string& body) {
  base_options(easy_, url, 20000);
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  if (list) curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, list);
  if (method == "HEAD") {
    curl_easy_setopt(easy_, CURLOPT_NOBODY, 1L);
  } else if (method != "GET" || !body.empty()) {
    if (method != "POST") curl_easy_setopt(easy_, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  HttpResult r = perform(true, false);
  curl_slist_free_all(list);
  return r;
}

HttpResult CurlClient::upload(const std::string& url, uint64_t bytes, bool chunked,
                              long timeout_ms) {
  base_options(easy_, url, timeout_ms);
  curl_easy_setopt(easy_, CURLOPT_POST, 1L);
  curl_slist* list = nullptr;
  if (chunked) {
    list = curl_slist_append(list, "Transfer-Encoding: chunked");
    curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, list);
  } else {
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(bytes));
  }
  HttpResult result;
  Transfer t{&result, true, false, {}, bytes, 0};
  curl_easy_setopt(easy_, CURLOPT_READFUNCTION, on_read);
  curl_easy_setopt(easy_, CURLOPT_READDATA, &t);
  curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy_, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy_, CURLOPT_WRITEDATA, &t);
  CURLcode rc = curl_easy_perform(easy_);
  if (rc != CURLE_OK) result.error = curl_easy_strerror(rc);
  curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &result.status);
  curl_easy_getinfo(easy_, CURLINFO_NUM_CONNECTS, &result.new_connections);
  curl_slist_free_all(list);
  return result;
}

HttpResult CurlClient::download(const std::string& url, long timeout_ms) {
  base_options(easy_, url, timeout_ms);
  return perform(false, true);
}

HttpResult CurlClient::perform(bool keep_body, bool hash_body) {
  HttpResult result;
  Transfer t{&result, keep_body, hash_body, {}, 0, 0};
  curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy_, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy_, CURLOPT_WRITEDATA, &t);
  CURLcode rc = curl_easy_perform(easy_);
  if (rc != CURLE_OK) result.error = curl_easy_strerror(rc);
  curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &result.status);
  curl_easy_getinfo(easy_, CURLINFO_NUM_CONNECTS, &result.new_connections);
  if (hash_body) result.body_hash = t.fnv.hash;
  return result;
}

std::string shell_output(const std::string& cmd, bool with_stderr) {
  std::string out;
  FILE* p = ::popen((cmd + (with_stderr ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

}  // namespace sluice::e2e
