// One worker thread: its own libuv loop, its own SO_REUSEPORT listening sockets, its client
// connections and upstream pools. Reads the routing snapshot published by the Server.
#pragma once

#include <uv.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "net/listener.h"
#include "net/loop_context.h"
#include "net/tls_context.h"
#include "observe/access_log.h"
#include "observe/stats.h"
#include "routing/health.h"
#include "routing/table.h"
#include "upstream/connection.h"

namespace sluice::worker {

// The transport this layer builds on (net/).
using net::as_handle;
using net::as_stream;
using net::kHighWaterBytes;
using net::LoopContext;
using net::Outbox;
using net::WriteOp;

class ClientConn;

// Open client connections per client address, process-wide (a client's connections land on any
// worker). Touched on accept and close only, never per request; sharded so workers accepting at
// once rarely share a lock.
class ClientCounts {
 public:
  // Counts one more connection from `ip` unless it already has `limit`. False: over the limit.
  bool acquire(const std::string& ip, uint32_t limit);
  void release(const std::string& ip);
  uint32_t count(const std::string& ip);

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, uint32_t> counts;
  };
  Shard& shard(const std::string& ip);
  std::array<Shard, kShards> shards_;
};

// Process-wide state the workers read. Owned by the Server; outlives every worker.
struct Shared {
  std::atomic<std::shared_ptr<const routing::RoutingTable>> table;
  std::atomic<uint64_t> generation{0};  // bumped after each publish of `table`
  std::atomic<uint32_t> connections{0};
  ClientCounts per_client;  // open connections per client address, for max_connections_per_client
  // Endpoint health (operator state, active checks, passive ejection), shared with the control
  // loop's health checker and the admin API.
  routing::HealthRegistry health;
  // The listeners' and upstreams' TLS contexts (control/tls), replaced by reloads.
  std::atomic<std::shared_ptr<const net::TlsContexts>> tls;
  // Per-version in-flight counters for max_concurrency, keyed by version label; created under
  // the mutex by the Server when it publishes a table, never removed.
  std::mutex concurrency_mutex;
  std::unordered_map<std::string, std::unique_ptr<std::atomic<int32_t>>> concurrency;
  std::atomic<int32_t>* concurrency_counter(const std::string& label);

  // Per-worker request figures (merged on read) and the access log. Created by prepare() before
  // any worker starts; live until the process ends.
  std::unique_ptr<observe::Registry> stats;
  std::unique_ptr<observe::AccessLog> access_log;
  // Creates `stats` and `access_log` for `workers` workers. False (with *error) if the access
  // log cannot be opened.
  bool prepare(uint32_t workers, const config::Config& cfg, std::string* error);
};

// A worker's view of one routing table: the table plus worker-local selection state and
// pool lookup. Kept alive while any request still uses it (`users`).
struct Snapshot {
  std::shared_ptr<const routing::RoutingTable> table;
  std::unique_ptr<routing::PickState> picks;
  std::vector<std::vector<upstream::Pool*>> pools;            // [version id][endpoint index]
  std::vector<std::atomic<int32_t>*> concurrency;             // [version id], null = unlimited
  std::vector<std::vector<routing::EndpointHealth*>> health;  // [version id][endpoint index]
  // Figures series, found on first use: per alias, (version, series) pairs (few: scanned);
  // per version for routes that pin it.
  std::vector<std::vector<std::pair<const routing::Version*, observe::Series*>>> alias_series;
  std::vector<observe::Series*> pinned_series;
  uint32_t users = 0;
};

class Worker {
 public:
  Worker(Shared& shared, uint32_t index, std::vector<int> listen_fds);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();  // runs the loop on a new thread
  // Thread-safe: stop accepting, let requests in flight finish for up to drain_ms, then end.
  void request_stop(uint32_t drain_ms);
  void join();

  // Loop-thread API for connections.
  LoopContext& context() { return ctx_; }
  routing::Rng& rng() { return rng_; }  // this worker's PRNG (selection, ids, sticky cookies)
  Snapshot* acquire_snapshot();         // the current one; caller must release_snapshot()
  void release_snapshot(Snapshot* s);
  void erase(ClientConn* c);  // last use of c
  // A connection object for one HTTP/2 stream (ClientConn::accept_stream), owned like the others
  // (a graceful stop waits for it) but counted in no connection limit: its connection is.
  ClientConn* open_stream_conn();
  // The [limits] of the newest routing snapshot this worker has seen (reloads apply them to new
  // connections and new waits).
  const config::LimitsSpec& limits() const { return limits_; }
  // The waiting-connection list (see ClientConn::wait_prev_): joined at the back at accept and at
  // the end of each response, at the front (shed first) when a connection starts lingering; left
  // when a head completes or the connection closes.
  void wait_list_push(ClientConn* c, bool front = false);
  void wait_list_remove(ClientConn* c);
  // The figures series for a request served by `version` through `alias` (nullptr: pinned).
  observe::Series* series(Snapshot& snap, const routing::Alias* alias,
                          const routing::Version* version);
  observe::AccessLogBuffer* access_log() { return access_log_; }
  bool stopping() const { return stopping_; }
  uint32_t index() const { return index_; }

 private:
  void run();
  void refresh_snapshot();
  void begin_stop();
  void maybe_finish_stop();
  upstream::Pool* pool_for(const routing::Endpoint& ep, const routing::Version& version,
                           const net::TlsContexts* tls, const config::UpstreamPoolSpec& up);
  // Makes room for one more connection by closing this worker's oldest waiting connection -- of
  // client `ip` only, when given. False if there is none to close.
  bool shed(const std::string* ip, ClientConn* keep);
  // The trusted_proxies of listener number `listener`, from the current config so that a reload
  // applies to the next connection; none if that listener's address is no longer configured.
  const std::vector<http::Cidr>& trusted_proxies(const Snapshot& snap, size_t listener) const;
  // Whether listener number `listener` takes HTTP/2 with prior knowledge (listen.h2c).
  bool h2c(const Snapshot& snap, size_t listener) const;
  // The TLS context for new connections of listener number `listener`; null = plaintext.
  std::shared_ptr<const net::ServerContext> tls_context(size_t listener) const;
  void on_connection(net::Listener& from, int status);
  static void on_async(uv_async_t* a);
  static void on_drain_timer(uv_timer_t* t);
  static void on_log_timer(uv_timer_t* t);

  Shared& shared_;
  const uint32_t index_;
  std::vector<int> listen_fds_;
  uv_loop_t loop_{};
  LoopContext ctx_;
  routing::Rng rng_{1};
  std::vector<std::unique_ptr<net::Listener>> listeners_;
  std::vector<std::string> listen_addresses_;  // listeners_[i] serves this [listen] address
  uv_async_t async_{};
  uv_timer_t drain_timer_{};
  uv_timer_t log_timer_{};                 // flushes the access log buffer a few times a second
  observe::WorkerStats* stats_ = nullptr;  // owned by shared_.stats
  observe::AccessLogBuffer* access_log_ = nullptr;  // owned by shared_.access_log; null if off
  std::thread thread_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<uint32_t> drain_ms_{30000};
  bool stopping_ = false;
  config::LimitsSpec limits_;
  uint64_t generation_ = ~uint64_t(0);
  Snapshot* current_ = nullptr;
  std::vector<std::unique_ptr<Snapshot>> snapshots_;  // current plus any still in use
  // Upstream TLS sessions to resume, this worker's; declared first so it outlives the pools.
  net::ClientSessionCache tls_sessions_;
  std::unordered_map<std::string, std::unique_ptr<upstream::Pool>> pools_;  // by address (+ TLS)
  std::unordered_map<ClientConn*, std::unique_ptr<ClientConn>> conns_;
  // Stream connections whose stream ended, reset for the next stream (ClientConn::recycle): a
  // stream then costs no allocation of its engine or of the buffers it grew. Built with the
  // current [limits]; a reload that changes them empties it.
  std::vector<std::unique_ptr<ClientConn>> spare_stream_conns_;
  static constexpr size_t kMaxSpareStreamConns = 256;
  ClientConn* wait_head_ = nullptr;  // oldest waiting connection
  ClientConn* wait_tail_ = nullptr;
};

}  // namespace sluice::worker
