// The proxy process: binds listeners (one SO_REUSEPORT socket per worker), starts the workers,
// publishes routing snapshots, and runs the control loop (signals) until a graceful stop.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "routing/table.h"
#include "worker/worker.h"

namespace sluice::app {

class Server {
 public:
  // Called on the control loop on SIGHUP; reloads the config file and publish()es it if valid.
  using Reloader = std::function<void()>;

  explicit Server(std::shared_ptr<const routing::RoutingTable> table);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void set_reloader(Reloader r) { reloader_ = std::move(r); }
  // Called on the control loop once all listeners accept (e.g. to start demo helpers).
  void set_on_ready(std::function<void(Server&)> f) { on_ready_ = std::move(f); }
  // Called on the control loop after the listeners are bound and before the workers start and
  // the `listening on` lines are printed (e.g. to open the admin listener and the file watch).
  // Returning false aborts run() with exit code 1.
  void set_on_start(std::function<bool(Server&)> f) { on_start_ = std::move(f); }
  // Called on the control loop when a graceful stop begins, before the remaining control-loop
  // handles are closed: close your own handles there (with their own close callbacks).
  void set_on_stop(std::function<void()> f) { on_stop_ = std::move(f); }

  // Binds, starts workers, serves until SIGTERM/SIGINT and a drain. Returns the exit code.
  int run();
  // Thread-safe: makes `table` the snapshot every next request sees.
  void publish(std::shared_ptr<const routing::RoutingTable> table);
  // New connections of TLS listeners use these contexts from now on.
  void publish_tls(std::shared_ptr<const net::TlsContexts> tls) {
    shared_.tls.store(std::move(tls), std::memory_order_release);
    shared_.generation.fetch_add(1, std::memory_order_release);  // workers rebuild their pools
  }
  std::shared_ptr<const routing::RoutingTable> table() const { return shared_.table.load(); }
  uv_loop_t* control_loop() { return &loop_; }
  net::LoopContext& control_context() { return control_ctx_; }
  // The bound listener addresses ("127.0.0.1:8080"), known after binding.
  const std::vector<std::string>& bound() const { return bound_; }
  // Per-version figures of every worker (merged on read) and the access log; set once run()
  // has started the workers.
  const observe::Registry* stats() const { return shared_.stats.get(); }
  observe::AccessLog* access_log() { return shared_.access_log.get(); }
  // Endpoint health every worker reads (the checker and the admin API write it).
  routing::HealthRegistry& health() { return shared_.health; }
  // Starts a graceful stop (as SIGTERM does). Control-loop thread only.
  void stop();

 private:
  bool bind_all(uint32_t workers, std::vector<std::vector<int>>& fds_per_worker);
  static void on_signal(uv_signal_t* s, int signum);

  worker::Shared shared_;
  Reloader reloader_;
  std::function<void(Server&)> on_ready_;
  std::function<bool(Server&)> on_start_;
  std::function<void()> on_stop_;
  uv_loop_t loop_{};
  net::LoopContext control_ctx_;  // loop_.data: lets control-loop streams use LoopContext::on_alloc
  uv_signal_t sigterm_{}, sigint_{}, sighup_{}, sigusr1_{};
  std::vector<std::unique_ptr<worker::Worker>> workers_;
  std::vector<std::string> bound_;
  std::vector<int> address_locks_;  // one per listen address, held until the process ends
  bool stopping_ = false;
};

}  // namespace sluice::app
