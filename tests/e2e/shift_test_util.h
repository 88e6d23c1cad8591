// Helpers for the progressive-shift e2e tests: a steerable upstream, a bounded load, the test
// config, and readers for the shift's progress and the audit log.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "admin_test_util.h"
#include "e2e.h"

namespace sluice::e2e::shift_test {

using admin::api;
using admin::ApiReply;
using nlohmann::json;

// A thread-per-connection keep-alive HTTP/1.1 server on 127.0.0.1:0 whose behaviour the test
// steers: every `fail_every`-th request answers 500, each answer waits `delay_ms`, and `status`
// is the normal status. Answers name the server in x-upstream and record request bodies.
class ScriptedUpstream {
 public:
  explicit ScriptedUpstream(std::string name) : name_(std::move(name)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 128) != 0)
      return;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~ScriptedUpstream() { stop(); }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  size_t requests() const { return requests_.load(); }
  std::vector<std::string> bodies() const {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }
  // Stops accepting and closes every connection: afterwards connects are refused.
  void stop() {
    if (stopping_.exchange(true)) return;
    ::shutdown(listen_fd_, SHUT_RDWR);
    if (acceptor_.joinable()) acceptor_.join();
    ::close(listen_fd_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (std::thread& t : threads_) t.join();
  }

  // Answer bodies from now on (empty: "hello from NAME\n").
  void set_body(std::string body) {
    std::lock_guard<std::mutex> lock(mu_);
    body_ = std::move(body);
  }

  std::atomic<int> fail_every{0};
  std::atomic<int> delay_ms{0};
  std::atomic<int> status{200};

 private:
  void accept_loop() {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) {
        ::close(fd);
        break;
      }
      fds_.push_back(fd);
      threads_.emplace_back([this, fd] { serve(fd); });
    }
  }

  void serve(int fd) {
    std::string buf;
    char tmp[16384];
    for (;;) {
      size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0) return;  // the fd is closed by stop() or left to the peer
        buf.append(tmp, static_cast<size_t>(n));
      }
      std::string head = to_lower(buf.substr(0, end));
      buf.erase(0, end + 4);
      size_t body_len = 0;
      size_t cl = head.find("content-length:");
      if (cl != std::string::npos) body_len = std::stoul(head.substr(cl + 15));
      while (buf.size() < body_len) {
        ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0) return;
        buf.append(tmp, static_cast<size_t>(n));
      }
      std::string body = buf.substr(0, body_len);
      buf.erase(0, body_len);
      size_t n = ++requests_;
      if (!body.empty()) {
        std::lock_guard<std::mutex> lock(mu_);
        bodies_.push_back(body);
      }
      if (int d = delay_ms.load(); d > 0) ::poll(nullptr, 0, d);
      int every = fail_every.load();
      int code = every > 0 && n % static_cast<size_t>(every) == 0 ? 500 : status.load();
      std::string text = "hello from " + name_ + "\n";
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!body_.empty()) text = body_;
      }
      std::string resp = "HTTP/1.1 " + std::to_string(code) + " X\r\nx-upstream: " + name_ +
                         "\r\ncontent-length: " + std::to_string(text.size()) + "\r\n\r\n" + text;
      if (::send(fd, resp.data(), resp.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(resp.size()))
        return;
    }
  }

  std::string name_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> requests_{0};
  mutable std::mutex mu_;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
  std::vector<std::string> bodies_;
  std::string body_;
  std::thread acceptor_;
};

// Client threads sending GET / as fast as they can (bounded to 60 s), counting who answered.
class Load {
 public:
  Load(const Sluice& s, int threads = 2) {
    std::string url = s.url("/");
    for (int i = 0; i < threads; ++i)
      threads_.emplace_back([this, url] {
        CurlClient curl;
        auto start = std::chrono::steady_clock::now();
        while (!stop_ && elapsed_ms(start) < 60000) {
          HttpResult r = curl.get(url);
          std::lock_guard<std::mutex> lock(mu_);
          ++hits_[r.status == 200 ? r.header("x-upstream") : "status-" + std::to_string(r.status)];
        }
      });
  }
  ~Load() { stop(); }
  void stop() {
    stop_ = true;
    for (std::thread& t : threads_)
      if (t.joinable()) t.join();
  }
  std::map<std::string, int> hits() {
    std::lock_guard<std::mutex> lock(mu_);
    return hits_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::map<std::string, int> hits_;
  std::vector<std::thread> threads_;
};

// "shop" with version 1 (stable) and 2 (candidate) (and `more_versions`, TOML tables), alias
// live = `traffic`, admin on port 0.
inline std::string shift_config(const std::string& v1, const std::string& v2,
                                const std::string& state_dir = "",
                                const std::string& traffic = "{ \"1\" = 100 }",
                                const std::string& more_versions = "",
                                const std::string& v2_extra = "") {
  std::string out = "workers = 2\n[listen]\naddress = \"127.0.0.1:0\"\n";
  out += "[admin]\naddress = \"127.0.0.1:0\"\n";
  if (!state_dir.empty()) out += "[state]\ndir = \"" + state_dir + "\"\n";
  out += "[log]\naccess = \"off\"\n";
  out += "[functions.shop.versions.1]\nendpoints = [\"" + v1 + "\"]\n";
  out += "[functions.shop.versions.2]\nendpoints = [\"" + v2 + "\"]\n" + v2_extra;
  out += more_versions;
  out += "[functions.shop.aliases.live]\ntraffic = " + traffic + "\n";
  out += "[[routes]]\ntarget = \"shop:live\"\n";
  return out;
}

inline const char* kShiftPath = "/admin/functions/shop/aliases/live/shift";

// Polls GET .../shift until the shift is no longer running; its last body.
inline json wait_finished(CurlClient& curl, uint16_t port, int timeout_ms) {
  json last;
  poll_until(
      [&] {
        ApiReply r = api(curl, port, "GET", kShiftPath);
        // A reply that is not a JSON object (the request failed on a loaded machine): poll on,
        // keeping the last object seen.
        if (!r.body.is_object()) return false;
        last = r.body;
        const std::string state = last.value("state", "");
        return r.status == 200 && state != "running" && state != "pre_traffic";
      },
      timeout_ms);
  return last;
}

inline std::vector<json> audit_lines(const std::string& dir) {
  std::vector<json> out;
  std::ifstream in(dir + "/audit.jsonl");
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line, nullptr, false));
  return out;
}

inline std::vector<std::string> shift_events(const std::string& dir) {
  std::vector<std::string> out;
  for (const json& j : audit_lines(dir))
    if (j.is_object() && j.contains("event")) out.push_back(j["event"].get<std::string>());
  return out;
}

}  // namespace sluice::e2e::shift_test
