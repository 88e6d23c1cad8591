// A real etcd cluster on loopback for tests (see etcd_cluster.h).
#include "etcd_cluster.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace sluice::e2e {
namespace {

using nlohmann::json;

long ms_since(std::chrono::steady_clock::time_point start) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count());
}

void sleep_ms(int ms) {
  ::poll(nullptr, 0, ms);
}

// Deliberately separate from the client's codec: the harness is the tests' oracle.
std::string b64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v =
        (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (in.size() - i == 1) {
    unsigned v = (unsigned char)in[i] << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (in.size() - i == 2) {
    unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

int64_t as_int(const json& j) {
  if (j.is_string()) return std::strtoll(j.get<std::string>().c_str(), nullptr, 10);
  if (j.is_number()) return j.get<int64_t>();
  return 0;
}

uint64_t as_uint(const json& j) {
  if (j.is_string()) return std::strtoull(j.get<std::string>().c_str(), nullptr, 10);
  if (j.is_number()) return j.get<uint64_t>();
  return 0;
}

size_t on_curl_data(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// `count` distinct free loopback ports: all bound at once (so they differ), then released.
// Another process may take one before etcd binds it; start_all() retries on that.
std::vector<uint16_t> free_ports(size_t count) {
  std::vector<int> fds;
  std::vector<uint16_t> ports;
  for (size_t i = 0; i < count; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (fd >= 0) ::close(fd);
      break;
    }
    fds.push_back(fd);
    ports.push_back(ntohs(a.sin_port));
  }
  for (int fd : fds) ::close(fd);
  return ports;
}

std::string temp_base() {
  // tmpfs when there is one: etcd fsyncs every commit, and the tests should not wait on a disk.
  struct stat st {};
  if (::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/dev/shm", W_OK) == 0)
    return "/dev/shm";
  return std::filesystem::temp_directory_path().string();
}

}  // namespace

std::string etcd_binary() {
  if (const char* env = std::getenv("SLUICE_ETCD"); env && *env)
    return ::access(env, X_OK) == 0 ? env : "";
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string d;
  while (std::getline(dirs, d, ':')) {
    std::string candidate = (d.empty() ? "." : d) + "/etcd";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

EtcdCluster::EtcdCluster(EtcdClusterOptions options) : options_(options) {
  binary_ = etcd_binary();
  if (binary_.empty()) {
    error_ = "etcd is not installed";
    return;
  }
  std::string tmpl = temp_base() + "/sluice-etcd-XXXXXX";
  if (char* p = ::mkdtemp(tmpl.data())) dir_ = p;
  if (dir_.empty()) {
    error_ = "mkdtemp failed";
    return;
  }
  token_ = "sluice-test-" + std::to_string(::getpid()) + "-" + dir_.substr(dir_.size() - 6);
  std::string why;
  for (int attempt = 0; attempt < 3 && !started_; ++attempt) {
    started_ = start_all(&why);
    if (!started_) reap_all();
  }
  if (!started_) error_ = why;
}

EtcdCluster::~EtcdCluster() {
  reap_all();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

bool EtcdCluster::start_all(std::string* why) {
  std::vector<uint16_t> ports = free_ports(options_.members * 2);
  if (ports.size() != options_.members * 2) {
    *why = "no free loopback ports";
    return false;
  }
  // A fresh data dir per attempt: a half-started cluster leaves state behind.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec))
    std::filesystem::remove_all(entry.path(), ec);
  members_.assign(options_.members, {});
  for (size_t i = 0; i < members_.size(); ++i) {
    members_[i].name = "m" + std::to_string(i);
    members_[i].client_port = ports[2 * i];
    members_[i].peer_port = ports[2 * i + 1];
  }
  for (size_t i = 0; i < members_.size(); ++i)
    if (!spawn(i)) {
      *why = "cannot start etcd member " + std::to_string(i);
      return false;
    }
  auto start = std::chrono::steady_clock::now();
  while (ms_since(start) < options_.start_timeout_ms) {
    size_t ok = 0;
    for (size_t i = 0; i < members_.size(); ++i) {
      if (!running(i)) {
        *why = "etcd member " + members_[i].name + " exited while starting:\n" + log_tail(i);
        return false;
      }
      ok += healthy(i);
    }
    if (ok == members_.size()) break;
    sleep_ms(50);
  }
  if (ms_since(start) >= options_.start_timeout_ms) {
    *why = "etcd members not healthy after " + std::to_string(options_.start_timeout_ms) +
           " ms:\n" + log_tail(0);
    return false;
  }
  for (size_t i = 0; i < members_.size(); ++i)
    if (auto s = post(i, "/v3/maintenance/status", "{}")) {
      json j = json::parse(*s, nullptr, false);
      if (j.is_object() && j.contains("header") && j["header"].is_object())
        members_[i].member_id = as_uint(j["header"].value("member_id", json("0")));
    }
  return true;
}

bool EtcdCluster::spawn(size_t i) {
  Member& m = members_[i];
  std::string cluster;
  for (const Member& o : members_)
    cluster +=
        (cluster.empty() ? "" : ",") + o.name + "=http://127.0.0.1:" + std::to_string(o.peer_port);
  const std::string client = client_url(i);
  const std::string peer = "http://127.0.0.1:" + std::to_string(m.peer_port);
  std::vector<std::string> args = {binary_,
                                   "--name",
                                   m.name,
                                   "--data-dir",
                                   dir_ + "/" + m.name,
                                   "--listen-client-urls",
                                   client,
                                   "--advertise-client-urls",
                                   client,
                                   "--listen-peer-urls",
                                   peer,
                                   "--initial-advertise-peer-urls",
                                   peer,
                                   "--initial-cluster",
                                   cluster,
                                   "--initial-cluster-state",
                                   "new",
                                   "--initial-cluster-token",
                                   token_,
                                   "--heartbeat-interval",
                                   std::to_string(options_.heartbeat_ms),
                                   "--election-timeout",
                                   std::to_string(options_.election_ms),
                                   "--logger",
                                   "zap",
                                   "--log-outputs",
                                   dir_ + "/" + m.name + ".log"};
  if (!options_.tls_cert.empty()) {
    for (const std::string& a : {std::string("--cert-file"), options_.tls_cert,
                                 std::string("--key-file"), options_.tls_key})
      args.push_back(a);
    if (!options_.client_ca.empty())
      for (const std::string& a : {std::string("--client-cert-auth"),
                                   std::string("--trusted-ca-file"), options_.client_ca})
        args.push_back(a);
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string out = dir_ + "/" + m.name + ".out";
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    // The child: die with the test process, write output to a file, keep no inherited fd.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    for (int f = 3; f < 1024; ++f) ::close(f);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  m.pid = pid;
  return true;
}

bool EtcdCluster::running(size_t i) {
  Member& m = members_[i];
  if (m.pid <= 0) return false;
  int status = 0;
  if (::waitpid(m.pid, &status, WNOHANG) == m.pid) {
    m.pid = -1;
    return false;
  }
  return true;
}

bool EtcdCluster::kill(size_t i, int sig, int timeout_ms) {
  Member& m = members_[i];
  if (m.pid <= 0) return false;
  ::kill(m.pid, sig);
  auto start = std::chrono::steady_clock::now();
  int status = 0;
  while (::waitpid(m.pid, &status, WNOHANG) == 0) {
    if (ms_since(start) > timeout_ms) {
      ::kill(m.pid, SIGKILL);
      ::waitpid(m.pid, &status, 0);
      break;
    }
    sleep_ms(5);
  }
  m.pid = -1;
  return true;
}

bool EtcdCluster::restart(size_t i) {
  if (running(i)) return false;
  return spawn(i);
}

void EtcdCluster::reap_all() {
  for (Member& m : members_)
    if (m.pid > 0) {
      ::kill(m.pid, SIGKILL);
      int status = 0;
      ::waitpid(m.pid, &status, 0);
      m.pid = -1;
    }
}

std::string EtcdCluster::client_url(size_t i) const {
  return (options_.tls_cert.empty() ? "http://127.0.0.1:" : "https://127.0.0.1:") +
         std::to_string(members_[i].client_port);
}

std::vector<std::string> EtcdCluster::client_urls() const {
  std::vector<std::string> urls;
  for (size_t i = 0; i < members_.size(); ++i) urls.push_back(client_url(i));
  return urls;
}

std::optional<std::string> EtcdCluster::post(size_t i, const std::string& path,
                                             const std::string& body, long timeout_ms,
                                             const std::string& token) {
  CURL* easy = curl_easy_init();
  if (!easy) return std::nullopt;
  if (!options_.ca.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, options_.ca.c_str());
  if (!options_.client_cert.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLCERT, options_.client_cert.c_str());
    curl_easy_setopt(easy, CURLOPT_SSLKEY, options_.client_key.c_str());
  }
  struct curl_slist* headers = nullptr;
  if (!token.empty()) {
    headers = curl_slist_append(headers, ("Authorization: " + token).c_str());
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  }
  std::string url = client_url(i) + path, answer;
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROXY, "");
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
  if (path != "/health") {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_curl_data);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &answer);
  CURLcode rc = curl_easy_perform(easy);
  long status = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(easy);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK || status != 200) return std::nullopt;
  return answer;
}

bool EtcdCluster::healthy(size_t i) {
  if (!running(i)) return false;
  std::optional<std::string> answer = post(i, "/health", "", 2000);
  return answer && answer->find("\"health\":\"true\"") != std::string::npos;
}

bool EtcdCluster::wait_healthy(size_t i, int timeout_ms) {
  auto start = std::chrono::steady_clock::now();
  while (!healthy(i)) {
    if (ms_since(start) >= timeout_ms || !running(i)) return false;
    sleep_ms(50);
  }
  return true;
}

bool EtcdCluster::wait_all_healthy(int timeout_ms) {
  auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < members_.size(); ++i)
    if (!wait_healthy(i, std::max(0, timeout_ms - static_cast<int>(ms_since(start))))) return false;
  return true;
}

std::optional<size_t> EtcdCluster::first_running_healthy() {
  for (size_t i = 0; i < members_.size(); ++i)
    if (healthy(i)) return i;
  return std::nullopt;
}

std::optional<int64_t> EtcdCluster::put(const std::string& key, const std::string& value) {
  std::optional<size_t> m = first_running_healthy();
  if (!m) return std::nullopt;
  json body = {{"key", b64(key)}, {"value", b64(value)}};
  std::optional<std::string> answer = post(*m, "/v3/kv/put", body.dump());
  if (!answer) return std::nullopt;
  json j = json::parse(*answer, nullptr, false);
  if (!j.is_object() || !j.contains("header") || !j["header"].is_object()) return std::nullopt;
  return as_int(j["header"].value("revision", json("0")));
}

std::optional<int64_t> EtcdCluster::revision() {
  std::optional<size_t> m = first_running_healthy();
  if (!m) return std::nullopt;
  // A range over one unlikely key: the header carries the store's revision.
  std::optional<std::string> answer = post(*m, "/v3/kv/range", R"({"key":"AA=="})");
  if (!answer) return std::nullopt;
  json j = json::parse(*answer, nullptr, false);
  if (!j.is_object() || !j.contains("header") || !j["header"].is_object()) return std::nullopt;
  return as_int(j["header"].value("revision", json("0")));
}

bool EtcdCluster::compact(int64_t revision) {
  std::optional<size_t> m = first_running_healthy();
  if (!m) return false;
  json body = {{"revision", std::to_string(revision)}, {"physical", true}};
  return post(*m, "/v3/kv/compaction", body.dump()).has_value();
}

std::optional<size_t> EtcdCluster::leader() {
  for (size_t i = 0; i < members_.size(); ++i) {
    if (!running(i)) continue;
    std::optional<std::string> answer = post(i, "/v3/maintenance/status", "{}", 2000);
    if (!answer) continue;
    json j = json::parse(*answer, nullptr, false);
    if (!j.is_object() || !j.contains("leader")) continue;
    uint64_t id = as_uint(j["leader"]);
    for (size_t k = 0; k < members_.size(); ++k)
      if (members_[k].member_id == id && id != 0) return k;
  }
  return std::nullopt;
}

std::string EtcdCluster::log_tail(size_t i, size_t bytes) const {
  std::string text;
  for (const char* suffix : {".log", ".out"}) {
    std::ifstream in(dir_ + "/" + members_[i].name + suffix, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    text += ss.str();
  }
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

}  // namespace sluice::e2e
