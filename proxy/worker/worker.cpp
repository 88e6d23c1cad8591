// Worker thread: loop, listeners, snapshot refresh, pools, graceful stop (see worker.h).
#include "worker/worker.h"

#include <cstdio>
#include <random>

#include "worker/client_conn.h"

namespace sluice::worker {

ClientCounts::Shard& ClientCounts::shard(const std::string& ip) {
  return shards_[std::hash<std::string>{}(ip) % kShards];
}

bool ClientCounts::acquire(const std::string& ip, uint32_t limit) {
  Shard& s = shard(ip);
  std::lock_guard<std::mutex> lock(s.mu);
  uint32_t& n = s.counts[ip];
  if (n >= limit) return false;
  ++n;
  return true;
}

void ClientCounts::release(const std::string& ip) {
  Shard& s = shard(ip);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.counts.find(ip);
  if (it == s.counts.end()) return;
  if (--it->second == 0) s.counts.erase(it);
}

uint32_t ClientCounts::count(const std::string& ip) {
  Shard& s = shard(ip);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.counts.find(ip);
  return it == s.counts.end() ? 0 : it->second;
}

std::atomic<int32_t>* Shared::concurrency_counter(const std::string& label) {
  std::lock_guard<std::mutex> lock(concurrency_mutex);
  auto& slot = concurrency[label];
  if (!slot) slot = std::make_unique<std::atomic<int32_t>>(0);
  return slot.get();
}

bool Shared::prepare(uint32_t workers, const config::Config& cfg, std::string* error) {
  stats = std::make_unique<observe::Registry>(workers);
  access_log = observe::AccessLog::open(cfg.log.access, workers, error);
  return access_log != nullptr;
}

Worker::Worker(Shared& shared, uint32_t index, std::vector<int> listen_fds)
    : shared_(shared), index_(index), listen_fds_(std::move(listen_fds)) {}

Worker::~Worker() {
  join();
}

void Worker::start() {
  std::shared_ptr<const routing::RoutingTable> table = shared_.table.load();
  for (const config::ListenSpec& l : table->config().listen)
    listen_addresses_.push_back(l.address.text);
  // The loop is set up here, on the caller's thread, so start() can report failures.
  uv_loop_init(&loop_);
  loop_.data = &ctx_;
  ctx_.loop = &loop_;
  std::random_device rd;
  rng_ = routing::Rng((uint64_t(rd()) << 32) ^ rd() ^ (uint64_t(index_) << 56));
  ctx_.init_deferred();
  uv_async_init(&loop_, &async_, &Worker::on_async);
  async_.data = this;
  uv_timer_init(&loop_, &drain_timer_);
  drain_timer_.data = this;
  uv_timer_init(&loop_, &log_timer_);
  log_timer_.data = this;
  if (shared_.stats) stats_ = &shared_.stats->worker(index_);
  if (shared_.access_log && shared_.access_log->enabled()) {
    access_log_ = &shared_.access_log->worker(index_);
    uv_timer_start(&log_timer_, &Worker::on_log_timer, 200, 200);
  }
  for (size_t i = 0; i < listen_fds_.size(); ++i) {
    auto l = std::make_unique<net::Listener>(
        ctx_, i, [this](net::Listener& from, int status) { on_connection(from, status); });
    int rc = l->open_fd(listen_fds_[i], 4096);
    if (rc != 0)
      std::fprintf(stderr, "sluice: worker %u: listen failed: %s\n", index_, uv_strerror(rc));
    listeners_.push_back(std::move(l));
  }
  refresh_snapshot();
  thread_ = std::thread([this] { run(); });
}

void Worker::run() {
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Everything is closed; free what is left.
  for (auto& s : snapshots_) s.reset();
  snapshots_.clear();
  current_ = nullptr;
  pools_.clear();
  int rc = uv_loop_close(&loop_);
  if (rc != 0) std::fprintf(stderr, "sluice: worker %u: loop not clean at exit\n", index_);
}

void Worker::on_log_timer(uv_timer_t* t) {
  auto* self = static_cast<Worker*>(t->data);
  if (self->access_log_) self->access_log_->flush();
}

observe::Series* Worker::series(Snapshot& snap, const routing::Alias* alias,
                                const routing::Version* version) {
  if (!stats_) return nullptr;
  if (!alias) {
    observe::Series*& s = snap.pinned_series[version->id];
    if (!s) s = stats_->series(version->function, "", version->number);
    return s;
  }
  auto& list = snap.alias_series[alias->id];
  for (auto& [v, s] : list)
    if (v == version) return s;
  observe::Series* s = stats_->series(alias->function, alias->name, version->number);
  list.emplace_back(version, s);
  return s;
}

void Worker::request_stop(uint32_t drain_ms) {
  drain_ms_.store(drain_ms);
  stop_requested_.store(true);
  uv_async_send(&async_);
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::on_async(uv_async_t* a) {
  auto* self = static_cast<Worker*>(a->data);
  if (self->stop_requested_.load() && !self->stopping_) self->begin_stop();
}

void Worker::begin_stop() {
  stopping_ = true;
  for (auto& l : listeners_) l->close();
  std::vector<ClientConn*> all;
  all.reserve(conns_.size());
  for (auto& [c, owned] : conns_) all.push_back(c);
  for (ClientConn* c : all) c->drain();
  uv_timer_start(&drain_timer_, &Worker::on_drain_timer, drain_ms_.load(), 0);
  maybe_finish_stop();
}

void Worker::on_drain_timer(uv_timer_t* t) {
  auto* self = static_cast<Worker*>(t->data);
  std::vector<ClientConn*> all;
  for (auto& [c, owned] : self->conns_) all.push_back(c);
  for (ClientConn* c : all) c->close();
}

void Worker::maybe_finish_stop() {
  if (!stopping_ || !conns_.empty()) return;
  for (auto& [addr, pool] : pools_) pool->close_all();
  ctx_.close_deferred();
  if (!uv_is_closing(as_handle(&async_))) uv_close(as_handle(&async_), nullptr);
  if (!uv_is_closing(as_handle(&drain_timer_))) uv_close(as_handle(&drain_timer_), nullptr);
  if (!uv_is_closing(as_handle(&log_timer_))) uv_close(as_handle(&log_timer_), nullptr);
  if (access_log_) access_log_->flush();
}

void Worker::on_connection(net::Listener& from, int status) {
  Worker* self = this;
  if (status < 0 || self->stopping_) return;
  // A reload's [limits] apply to new connections even before a request picks up the snapshot.
  if (self->shared_.generation.load(std::memory_order_acquire) != self->generation_)
    self->refresh_snapshot();
  auto owned = std::make_unique<ClientConn>(*self);
  ClientConn* c = owned.get();
  self->conns_.emplace(c, std::move(owned));
  const uint32_t open = self->shared_.connections.fetch_add(1, std::memory_order_relaxed);
  c->set_counter(&self->shared_.connections);
  Snapshot* snap = self->acquire_snapshot();
  const bool accepted = c->accept(from, self->trusted_proxies(*snap, from.index()),
                                  self->tls_context(from.index()), self->h2c(*snap, from.index()));
  self->release_snapshot(snap);
  if (!accepted) {
    if (!c->has_handles()) self->erase(c);  // nothing to close: free it now
    return;                                 // else it closes itself
  }
  // Over a limit, the newcomer takes the place of the oldest connection still waiting for a
  // head (an idle keep-alive or a slow head: the ones that have sent the least), so a flood of
  // slow connections cannot keep every new client out. Newcomers are refused only when nothing
  // can be shed.
  const std::string& ip = c->client_ip();
  const uint32_t per_client = self->limits_.max_connections_per_client;
  if (!self->shared_.per_client.acquire(ip, per_client) &&
      !(self->shed(&ip, c) && self->shared_.per_client.acquire(ip, per_client))) {
    c->close();
    return;
  }
  c->set_client_counts(&self->shared_.per_client);
  if (open >= self->limits_.max_connections && !self->shed(nullptr, c)) c->close();
}

bool Worker::shed(const std::string* ip, ClientConn* keep) {
  // A connection whose bytes wait unread in the kernel is not silent: the loop accepted a burst
  // of newcomers before reading it (a storm of reconnecting slow clients would otherwise push out
  // a legitimate client whose head already arrived). One FIONREAD per candidate, only here.
  for (ClientConn* c = wait_head_; c; c = c->wait_next_) {
    if (c == keep || (ip && c->client_ip() != *ip) || c->has_unread_input()) continue;
    c->close();  // leaves the list and releases its counts at once
    return true;
  }
  return false;
}

void Worker::wait_list_push(ClientConn* c, bool front) {
  c->in_wait_list_ = true;
  if (front) {
    c->wait_prev_ = nullptr;
    c->wait_next_ = wait_head_;
    (wait_head_ ? wait_head_->wait_prev_ : wait_tail_) = c;
    wait_head_ = c;
    return;
  }
  c->wait_next_ = nullptr;
  c->wait_prev_ = wait_tail_;
  (wait_tail_ ? wait_tail_->wait_next_ : wait_head_) = c;
  wait_tail_ = c;
}

void Worker::wait_list_remove(ClientConn* c) {
  if (!c->in_wait_list_) return;
  c->in_wait_list_ = false;
  (c->wait_prev_ ? c->wait_prev_->wait_next_ : wait_head_) = c->wait_next_;
  (c->wait_next_ ? c->wait_next_->wait_prev_ : wait_tail_) = c->wait_prev_;
  c->wait_prev_ = c->wait_next_ = nullptr;
}

std::shared_ptr<const net::ServerContext> Worker::tls_context(size_t listener) const {
  if (listener >= listen_addresses_.size()) return nullptr;
  const std::shared_ptr<const net::TlsContexts> tls = shared_.tls.load(std::memory_order_acquire);
  if (!tls) return nullptr;
  const std::shared_ptr<const net::ServerContext>* ctx = tls->listener(listen_addresses_[listener]);
  return ctx ? *ctx : nullptr;
}

const std::vector<http::Cidr>& Worker::trusted_proxies(const Snapshot& snap,
                                                       size_t listener) const {
  static const std::vector<http::Cidr> kNobody;
  if (listener < listen_addresses_.size())
    for (const config::ListenSpec& l : snap.table->config().listen)
      if (l.address.text == listen_addresses_[listener]) return l.trusted_proxies;
  return kNobody;
}

bool Worker::h2c(const Snapshot& snap, size_t listener) const {
  if (listener < listen_addresses_.size())
    for (const config::ListenSpec& l : snap.table->config().listen)
      if (l.address.text == listen_addresses_[listener]) return l.h2c;
  return false;
}

ClientConn* Worker::open_stream_conn() {
  std::unique_ptr<ClientConn> owned;
  if (!spare_stream_conns_.empty()) {
    owned = std::move(spare_stream_conns_.back());
    spare_stream_conns_.pop_back();
  } else {
    owned = std::make_unique<ClientConn>(*this);
  }
  ClientConn* c = owned.get();
  conns_.emplace(c, std::move(owned));
  return c;
}

void Worker::erase(ClientConn* c) {
  auto it = conns_.find(c);
  if (it == conns_.end()) return;
  if (c->recyclable() && !stopping_ && spare_stream_conns_.size() < kMaxSpareStreamConns) {
    c->recycle();
    spare_stream_conns_.push_back(std::move(it->second));
  }
  conns_.erase(it);
  maybe_finish_stop();
}

Snapshot* Worker::acquire_snapshot() {
  if (shared_.generation.load(std::memory_order_acquire) != generation_) refresh_snapshot();
  ++current_->users;
  return current_;
}

void Worker::release_snapshot(Snapshot* s) {
  if (--s->users == 0 && s != current_) {
    for (auto it = snapshots_.begin(); it != snapshots_.end(); ++it)
      if (it->get() == s) {
        snapshots_.erase(it);
        break;
      }
  }
}

void Worker::refresh_snapshot() {
  generation_ = shared_.generation.load(std::memory_order_acquire);
  auto snap = std::make_unique<Snapshot>();
  snap->table = shared_.table.load();
  const routing::RoutingTable& table = *snap->table;
  // A reload's [limits] and [upstream] apply from here on: to new connections and waits, and to
  // every pool as its connections come back.
  const config::LimitsSpec& limits = table.config().limits;
  if (limits.max_header_bytes != limits_.max_header_bytes ||
      limits.max_headers != limits_.max_headers)
    spare_stream_conns_.clear();  // their parsers were built with the old limits
  limits_ = limits;
  for (auto& [key, pool] : pools_)
    pool->configure(table.config().upstream.keepalive, table.config().upstream.idle_timeout_ms);
  snap->picks = std::make_unique<routing::PickState>(table);
  const std::shared_ptr<const net::TlsContexts> tls = shared_.tls.load(std::memory_order_acquire);
  snap->pools.resize(table.versions().size());
  snap->health.resize(table.versions().size());
  snap->concurrency.resize(table.versions().size(), nullptr);
  snap->alias_series.resize(table.aliases().size());
  snap->pinned_series.resize(table.versions().size(), nullptr);
  for (const auto& v : table.versions()) {
    for (const routing::Endpoint& ep : v->endpoints) {
      snap->pools[v->id].push_back(pool_for(ep, *v, tls.get(), table.config().upstream));
      snap->health[v->id].push_back(&shared_.health.get(v->label, ep.resolved));
    }
    if (v->max_concurrency) snap->concurrency[v->id] = shared_.concurrency_counter(v->label);
  }
  // An endpoint an operator drained (or put in maint) keeps no idle connection: nothing will
  // take one, and the instance behind it is about to go. A pool may serve several versions.
  std::unordered_map<upstream::Pool*, bool> ready;
  for (const auto& v : table.versions())
    for (size_t i = 0; i < v->endpoints.size(); ++i)
      ready[snap->pools[v->id][i]] |=
          snap->health[v->id][i]->admin_state() == routing::AdminState::kReady;
  for (auto& [pool, any_ready] : ready)
    if (!any_ready) pool->close_idle();
  if (current_ && current_->users == 0) {
    for (auto it = snapshots_.begin(); it != snapshots_.end(); ++it)
      if (it->get() == current_) {
        snapshots_.erase(it);
        break;
      }
  }
  current_ = snap.get();
  snapshots_.push_back(std::move(snap));
}

upstream::Pool* Worker::pool_for(const routing::Endpoint& ep, const routing::Version& version,
                                 const net::TlsContexts* tls, const config::UpstreamPoolSpec& up) {
  // By resolved address (a name that re-resolves gets a new pool); a TLS version's connections
  // are pooled apart, per client context and name checked, never shared with plaintext ones.
  std::string key = ep.resolved;
  std::shared_ptr<const net::ClientContext> context;
  std::string server_name;
  if (version.tls) {
    const auto* found = tls ? tls->upstream(version.tls->identity()) : nullptr;
    if (found) context = *found;
    server_name = version.tls_server_name(ep);
    key += "|tls|" + server_name + "|" + (context ? std::to_string(context->id()) : "none");
  }
  if (version.protocol != config::Protocol::kHttp1) key += "|h2";
  auto& slot = pools_[key];
  if (!slot) {
    slot = std::make_unique<upstream::Pool>(ctx_, ep, up.keepalive, up.idle_timeout_ms);
    if (version.tls) slot->use_tls(std::move(context), std::move(server_name), &tls_sessions_);
    if (version.protocol != config::Protocol::kHttp1) slot->use_h2();
  }
  return slot.get();
}

}  // namespace sluice::worker
