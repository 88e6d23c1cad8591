// The proxy process: listeners, workers, snapshot publishing, signals (see server.h).
#include "app/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <thread>
#include <utility>

namespace sluice::app {
namespace {

// Resolves a listen address (IP literal or "localhost") to a sockaddr.
bool resolve(const config::SocketAddress& a, sockaddr_storage& out, socklen_t& len) {
  std::string host = a.host;
  if (host == "localhost") host = "127.0.0.1";
  if (host.empty() || host == "*") host = "0.0.0.0";
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (uv_ip4_addr(host.c_str(), a.port, v4) == 0) {
    len = sizeof(sockaddr_in);
    return true;
  }
  if (uv_ip6_addr(host.c_str(), a.port, v6) == 0) {
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

// Starts closing every handle of `loop` (the control loop at start-up failure and at stop).
void close_handles(uv_loop_t* loop) {
  uv_walk(
      loop,
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      nullptr);
}

int open_listener(const sockaddr_storage& addr, socklen_t len) {
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

// Is the address free for us? SO_REUSEPORT lets any process of the same user bind a port our
// workers share, which would silently split the traffic between two instances. A probe socket
// without SO_REUSEPORT cannot bind where anything listens (SO_REUSEADDR only skips TIME_WAIT).
// Returns 0 or an errno.
int probe_free(const sockaddr_storage& addr, socklen_t len) {
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

// Holds an abstract-namespace Unix socket named after the address for the life of the process,
// so that two sluices starting at the same instant cannot both pass probe_free(): the kernel
// lets one bind the name, and releases it when that process dies however it dies. Returns the
// fd, or -errno (EADDRINUSE: another sluice holds it).
int lock_address(const std::string& address) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  const std::string name = "sluice-listen:" + address;
  const size_t n = std::min(name.size(), sizeof un.sun_path - 1);
  std::memcpy(un.sun_path + 1, name.data(), n);  // sun_path[0] == 0: abstract namespace
  socklen_t len = socklen_t(offsetof(sockaddr_un, sun_path) + 1 + n);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&un), len) != 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

uint16_t bound_port(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
}

}  // namespace

Server::Server(std::shared_ptr<const routing::RoutingTable> table) {
  shared_.table.store(std::move(table));
  shared_.generation.store(1);
}

Server::~Server() {
  for (auto& w : workers_) w->join();
  for (int fd : address_locks_) ::close(fd);
}

void Server::publish(std::shared_ptr<const routing::RoutingTable> table) {
  shared_.table.store(std::move(table));
  shared_.generation.fetch_add(1, std::memory_order_release);
}

bool Server::bind_all(uint32_t workers, std::vector<std::vector<int>>& fds) {
  const config::Config& cfg = shared_.table.load()->config();
  fds.assign(workers, {});
  for (const config::ListenSpec& l : cfg.listen) {
    sockaddr_storage addr{};
    socklen_t len = 0;
    if (!resolve(l.address, addr, len)) {
      std::fprintf(stderr, "sluice: cannot listen on %s: not an IP address\n",
                   l.address.text.c_str());
      return false;
    }
    if (l.address.port != 0) {
      std::string key = l.address.host + ":" + std::to_string(l.address.port);
      int lock = lock_address(key);
      int err = lock >= 0 ? probe_free(addr, len) : -lock;
      if (err != 0) {
        if (lock >= 0) ::close(lock);
        if (err == EADDRINUSE)
          std::fprintf(stderr,
                       "sluice: cannot listen on %s: the address is already in use (another "
                       "sluice or another program serves it; stop it first)\n",
                       l.address.text.c_str());
        else
          std::fprintf(stderr, "sluice: cannot listen on %s: %s\n", l.address.text.c_str(),
                       std::strerror(err));
        return false;
      }
      address_locks_.push_back(lock);
    }
    for (uint32_t i = 0; i < workers; ++i) {
      int fd = open_listener(addr, len);
      if (fd < 0) {
        std::fprintf(stderr, "sluice: cannot listen on %s: %s\n", l.address.text.c_str(),
                     std::strerror(-fd));
        return false;
      }
      if (i == 0) {
        // Port 0: every worker shares the port the kernel chose for the first socket.
        uint16_t port = bound_port(fd);
        if (addr.ss_family == AF_INET)
          reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(port);
        else
          reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(port);
        std::string host = l.address.host.empty() ? "0.0.0.0" : l.address.host;
        if (host.find(':') != std::string::npos) host = "[" + host + "]";
        bound_.push_back(host + ":" + std::to_string(port));
      }
      fds[i].push_back(fd);
    }
  }
  return true;
}

int Server::run() {
  ::signal(SIGPIPE, SIG_IGN);
  const config::Config& cfg = shared_.table.load()->config();
  uint32_t n = cfg.workers ? cfg.workers : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::vector<int>> fds;
  if (!bind_all(n, fds)) {
    for (auto& list : fds)
      for (int fd : list) ::close(fd);
    return 1;
  }
  uv_loop_init(&loop_);
  control_ctx_.loop = &loop_;
  loop_.data = &control_ctx_;
  uv_signal_init(&loop_, &sigterm_);
  uv_signal_init(&loop_, &sigint_);
  uv_signal_init(&loop_, &sighup_);
  uv_signal_init(&loop_, &sigusr1_);
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sighup_, &sigusr1_}) s->data = this;
  uv_signal_start(&sigterm_, &Server::on_signal, SIGTERM);
  uv_signal_start(&sigint_, &Server::on_signal, SIGINT);
  uv_signal_start(&sighup_, &Server::on_signal, SIGHUP);
  uv_signal_start(&sigusr1_, &Server::on_signal, SIGUSR1);

  // Start-up failure after the loop exists: close every fd and control-loop handle, exit 1.
  auto abort_start = [&]() {
    for (auto& list : fds)
      for (int fd : list) ::close(fd);
    stopping_ = true;
    if (on_stop_) on_stop_();
    close_handles(&loop_);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    if (shared_.access_log) shared_.access_log->stop();
    return 1;
  };
  std::string error;
  if (!shared_.prepare(n, cfg, &error)) {
    std::fprintf(stderr, "sluice: access log: %s\n", error.c_str());
    return abort_start();
  }
  // After prepare(): on_start_ may read stats().
  if (on_start_ && !on_start_(*this)) return abort_start();
  for (uint32_t i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<worker::Worker>(shared_, i, fds[i]));
    workers_.back()->start();
  }
  for (const std::string& b : bound_) std::fprintf(stderr, "sluice: listening on %s\n", b.c_str());
  std::fflush(stderr);
  if (on_ready_) on_ready_(*this);
  uv_run(&loop_, UV_RUN_DEFAULT);
  for (auto& w : workers_) w->join();
  if (shared_.access_log) shared_.access_log->stop();  // after the workers: their last lines
  uv_loop_close(&loop_);
  std::fprintf(stderr, "sluice: stopped\n");
  return 0;
}

void Server::stop() {
  if (std::exchange(stopping_, true)) return;
  const uint32_t drain_ms = shared_.table.load()->config().limits.drain_timeout_ms;
  for (auto& w : workers_) w->request_stop(drain_ms);
  if (on_stop_) on_stop_();
  // Close the control loop's handles; uv_run returns once the workers' stop is under way and
  // run() joins them.
  close_handles(&loop_);
}

void Server::on_signal(uv_signal_t* s, int signum) {
  auto* self = static_cast<Server*>(s->data);
  if (signum == SIGUSR1) {  // log rotation: reopen the access log file
    if (self->shared_.access_log) self->shared_.access_log->reopen();
    return;
  }
  if (signum == SIGHUP) {
    if (self->reloader_) self->reloader_();
    return;
  }
  std::fprintf(stderr, "sluice: stopping (draining requests in flight)\n");
  self->stop();
}

}  // namespace sluice::app
