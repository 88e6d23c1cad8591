// A scripted stand-in for etcd's JSON gateway on 127.0.0.1:0, and a libuv loop driver, for the
// etcd client's unit tests: a thread per connection reads HTTP/1.1 requests and the test's
// handler answers each with raw bytes (split, delayed or malformed as the test wants).
#pragma once

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "net/loop_context.h"

namespace sluice::control::test {

struct FakeRequest {
  std::string path;
  std::string head;  // request line and headers
  std::string body;
  int connection = 0;  // 0, 1, ... in accept order
};

class FakeGateway {
 public:
  // Answers one request on `fd`; false closes the connection afterwards. Runs on the
  // connection's thread.
  using Handler = std::function<bool(const FakeRequest&, int fd)>;

  explicit FakeGateway(Handler handler) : handler_(std::move(handler)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    REQUIRE(::listen(listen_fd_, 64) == 0);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~FakeGateway() {
    stop_ = true;
    cv_.notify_all();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : fds_)
        if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    }
    acceptor_.join();
    for (std::thread& t : threads_) t.join();
    ::close(listen_fd_);
  }
  FakeGateway(const FakeGateway&) = delete;
  FakeGateway& operator=(const FakeGateway&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int connections() const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(fds_.size());
  }
  std::vector<FakeRequest> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  // For handlers: waits until the gateway stops or `ms` pass; true if it is stopping.
  bool wait_stop(int ms) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stop_.load(); });
  }

  static void send(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }
  // A complete 200 answer with a Content-Length body.
  static std::string ok(std::string_view json, int status = 200) {
    return "HTTP/1.1 " + std::to_string(status) +
           " X\r\nContent-Type: application/json\r\nContent-Length: " +
           std::to_string(json.size()) + "\r\n\r\n" + std::string(json);
  }
  static std::string chunked_head() {
    return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: "
           "chunked\r\n\r\n";
  }
  static std::string chunk(std::string_view data) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return size + std::string(data) + "\r\n";
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      int index = static_cast<int>(fds_.size());
      fds_.push_back(fd);
      threads_.emplace_back([this, fd, index] { serve(fd, index); });
    }
  }

  void serve(int fd, int index) {
    std::string buf;
    char tmp[4096];
    for (;;) {
      size_t head_end;
      while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0 || stop_) return close_fd(index);
        buf.append(tmp, static_cast<size_t>(n));
      }
      FakeRequest r;
      r.connection = index;
      r.head = buf.substr(0, head_end + 2);
      size_t sp = r.head.find(' ');
      r.path = r.head.substr(sp + 1, r.head.find(' ', sp + 1) - sp - 1);
      size_t length = 0;
      if (size_t at = r.head.find("Content-Length: "); at != std::string::npos)
        length = std::strtoul(r.head.c_str() + at + 16, nullptr, 10);
      buf.erase(0, head_end + 4);
      while (buf.size() < length) {
        ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0 || stop_) return close_fd(index);
        buf.append(tmp, static_cast<size_t>(n));
      }
      r.body = buf.substr(0, length);
      buf.erase(0, length);
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(r);
      }
      if (!handler_(r, fd)) return close_fd(index);
    }
  }

  void close_fd(int index) {
    std::lock_guard<std::mutex> lock(mu_);
    ::close(fds_[index]);
    fds_[index] = -1;  // counted still: connections() is how many were accepted
  }

  Handler handler_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<FakeRequest> requests_;
  std::vector<int> fds_;  // per accepted connection; -1 once closed
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// A loop for one test; its destructor checks that every handle was closed.
class TestLoop {
 public:
  TestLoop() {
    uv_loop_init(&loop_);
    ctx_.loop = &loop_;
    loop_.data = &ctx_;  // as on the control loop: the client's streams read into its buffer
    uv_timer_init(&loop_, &wake_);
  }
  ~TestLoop() {
    uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop_) == 0);
  }
  uv_loop_t* get() { return &loop_; }
  // Runs the loop until `done` holds (checked at least every 5 ms) or `timeout_ms` passes.
  bool run_until(const std::function<bool()>& done, int timeout_ms) {
    auto start = std::chrono::steady_clock::now();
    uv_timer_start(
        &wake_, [](uv_timer_t*) {}, 5, 5);
    bool ok = done();
    while (!ok &&
           std::chrono::steady_clock::now() - start < std::chrono::milliseconds(timeout_ms)) {
      uv_run(&loop_, UV_RUN_ONCE);
      ok = done();
    }
    uv_timer_stop(&wake_);
    return ok;
  }
  void run_for(int ms) {
    run_until([] { return false; }, ms);
  }

 private:
  uv_loop_t loop_;
  net::LoopContext ctx_;
  uv_timer_t wake_;
};

}  // namespace sluice::control::test
