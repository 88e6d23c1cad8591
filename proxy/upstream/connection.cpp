// Upstream connections and per-endpoint idle pools (see connection.h).
#include "upstream/connection.h"

#include <algorithm>
#include <cstdio>
#include <utility>

namespace sluice::upstream {

using net::as_handle;

namespace {
// Response heads from upstreams we chose are bounded generously; the client limits do not apply.
constexpr uint32_t kMaxResponseHeadBytes = 64 * 1024;
constexpr uint32_t kMaxResponseHeaders = 256;
}  // namespace

Connection::Connection(Pool& pool)
    : pool_(pool),
      tcp_(pool.context(), *this),
      parser_(HTTP_RESPONSE, *this, kMaxResponseHeadBytes, kMaxResponseHeaders) {
  parser_.keep_trailers(true);  // relayed to the client (a gRPC status travels in them)
}

const routing::Endpoint& Connection::endpoint() const {
  return pool_.endpoint();
}

uint64_t Connection::now_ms() const {
  return uv_now(pool_.context().loop);
}

Connection* Connection::open(Pool& pool, uint32_t connect_timeout_ms) {
  auto owned = std::unique_ptr<Connection>(new Connection(pool));
  Connection* c = owned.get();
  pool.all_.emplace(c, std::move(owned));
  if (uv_timer_init(pool.context().loop, &c->timer_) != 0) {
    pool.erase(c);
    return nullptr;
  }
  c->timer_.data = c;
  ++c->open_handles_;
  if (pool.h2()) {
    c->h2_ = pool.h2_channel(*c);
    if (!c->h2_) {
      c->close();
      return nullptr;
    }
    c->io_ = c->h2_.get();
    ++c->open_handles_;               // the channel reports on_stream_closed like a socket
    c->connected_ = c->h2_->ready();  // a session already up: no connect to wait for
    c->connect_timeout_ms_ = connect_timeout_ms;
    c->since_ms_ = c->progress_ms_ = c->now_ms();
    c->schedule();
    return c;
  }
  const routing::Endpoint& ep = pool.endpoint();
  int rc = c->tcp_.connect(reinterpret_cast<const sockaddr*>(&ep.sockaddr));
  if (c->tcp_.open()) ++c->open_handles_;
  if (rc != 0) {
    c->close();
    return nullptr;
  }
  if (pool.tls_required()) {
    // TLS over the TCP stream; "connected" is reported once the handshake is done, so the
    // connect timeout bounds both, and a failed handshake fails like a connect (nothing sent).
    std::unique_ptr<net::TlsEngine> engine;
    if (pool.tls_)
      engine = net::TlsEngine::client(pool.tls_, pool.server_name_, pool.sessions_,
                                      pool.session_key_, &net::thread_tls_buffers());
    if (!engine) {
      c->close();
      return nullptr;
    }
    c->tls_ = std::make_unique<net::TlsStream>(c->tcp_, *c, std::move(engine));
    c->io_ = c->tls_.get();
  }
  c->connect_timeout_ms_ = connect_timeout_ms;
  c->since_ms_ = c->now_ms();
  c->schedule();
  return c;
}

void Connection::lend(Borrower* b, uint32_t response_timeout_ms, bool head_request) {
  borrower_ = b;
  pool_.lent();
  response_timeout_ms_ = response_timeout_ms;
  head_request_ = head_request;
  parser_.reset();
  request_sent_ = awaiting_response_ = false;
  response_started_ = response_done_ = false;
  broken_ = false;
  progress_ms_ = now_ms();
  if (connected_ && !io_->reading()) start_reading();
  schedule();
}

void Connection::end_of_request() {
  request_sent_ = true;
  if (!response_started_) awaiting_response_ = true;
  since_ms_ = now_ms();
  schedule();
}

void Connection::release(bool reusable) {
  if (borrower_) {
    borrower_ = nullptr;
    pool_.returned();
  }
  if (closing_) return;
  if (reusable && connected_ && response_done_ && !broken_ && !tunnel_ && parser_.keep_alive() &&
      io_->queued_bytes() == 0 && out_.empty()) {
    go_idle();
  } else {
    close();
  }
}

void Connection::go_idle() {
  reused_ = true;
  awaiting_response_ = false;
  if (paused_ || !io_->reading()) {
    paused_ = false;
    start_reading();
  }
  pool_.add_idle(this);
}

void Connection::close() {
  if (std::exchange(closing_, true)) return;
  if (borrower_) {
    borrower_ = nullptr;
    pool_.returned();
  }
  pool_.remove_idle(this);
  io_->close();
  if (timer_.data && !uv_is_closing(as_handle(&timer_)))
    uv_close(as_handle(&timer_),
             [](uv_handle_t* h) { static_cast<Connection*>(h->data)->on_stream_closed(); });
}

void Connection::on_stream_closed() {
  if (--open_handles_ == 0) pool_.erase(this);  // last use of this
}

void Connection::fail(Failure kind) {
  Borrower* b = borrower_;
  const bool started = response_started_;
  const bool exchange_over = response_done_ && !tunnel_;
  close();
  if (!b) return;
  // A connection that breaks after a complete response (an upstream that answered an upload
  // early and closed) failed nobody.
  if (exchange_over) {
    b->on_upstream_eof();
    return;
  }
  // Nothing was sent when the connection never came up: its queued bytes can go elsewhere.
  std::string unsent;
  if (!connected_) {
    out_.drain_into(pre_connect_);
    unsent.swap(pre_connect_);
  }
  b->on_upstream_failed(kind, started, reused_, connected_ ? nullptr : &unsent);
}

size_t Connection::queued_bytes() const {
  return io_->queued_bytes() + pre_connect_.size();
}

uint64_t Connection::deadline() const {
  if (closing_) return kNever;
  if (!connected_) return since_ms_ + connect_timeout_ms_;
  if (!borrower_) return since_ms_ + pool_.idle_timeout_ms_;  // idle in the pool
  if (tunnel_) return kNever;  // the borrower times the tunnel in both directions
  uint64_t d = kNever;
  // Our writes to it make no progress: the upstream stopped reading.
  if (io_->queued_bytes() > 0) d = progress_ms_ + response_timeout_ms_;
  if (awaiting_response_ && io_->queued_bytes() == 0)
    d = std::min(d, std::max(since_ms_, progress_ms_) + response_timeout_ms_);
  // Silence between response reads, unless we stopped reading (the client is slow, not it).
  if (response_started_ && !response_done_ && !paused_)
    d = std::min(d, progress_ms_ + response_timeout_ms_);
  return d;
}

void Connection::schedule() {
  const uint64_t d = deadline();
  if (d == kNever || (armed_due_ms_ && armed_due_ms_ <= d)) return;
  const uint64_t now = now_ms();
  uv_timer_start(&timer_, &Connection::on_timer, d > now ? d - now : 0, 0);
  armed_due_ms_ = d;
}

void Connection::on_timer(uv_timer_t* t) {
  auto* self = static_cast<Connection*>(t->data);
  self->armed_due_ms_ = 0;
  if (self->closing_) return;
  if (self->deadline() > self->now_ms()) {
    self->schedule();  // progress moved the deadline since the timer was armed
    return;
  }
  if (!self->connected_) {
    // Connected over TCP but no TLS handshake in time: the endpoint does not speak TLS to us.
    self->fail(self->tls_ && self->tls_->tcp_connected() ? Failure::kTls
                                                         : Failure::kConnectTimeout);
  } else if (self->borrower_) {
    self->fail(Failure::kTimeout);
  } else {
    self->close();  // idle too long
  }
}

void Connection::flush() {
  if (closing_) {
    out_.clear();
    return;
  }
  if (!connected_) {
    out_.drain_into(pre_connect_);
    return;
  }
  if (write_failed_) {
    out_.clear();
    return;
  }
  if (!out_.empty()) {
    const size_t queued = io_->queued_bytes();
    int rc = io_->write(out_);
    if (rc < 0) {
      write_failed();
      return;
    }
    if (queued == 0) progress_ms_ = now_ms();  // the kernel took bytes (or queued the first)
  }
  schedule();
}

void Connection::write_failed() {
  // The upstream stopped taking the request (it closed or reset). Its answer may already be in
  // our receive buffer -- an upload refused early, say -- so the read side decides: a complete
  // response is delivered; EOF or a reset without one fails the request. The rest of the request
  // is dropped, and the wait for the answer starts now.
  write_failed_ = true;
  broken_ = true;
  out_.clear();
  if (!response_started_) {
    awaiting_response_ = true;
    since_ms_ = now_ms();
  }
  if (!io_->reading() && !paused_) start_reading();
  schedule();
}

void Connection::on_stream_connected(int status) {
  if (closing_) return;
  if (status < 0) {
    // A TCP connection that came up and a TLS handshake that did not (verification, protocol --
    // e.g. a plaintext endpoint --, an alert, or a reset in the middle) is a TLS failure; a
    // refused TCP connection stays a connect failure.
    const bool tls_failed =
        (tls_ && (status == UV_EPROTO || tls_->tcp_connected())) || (h2_ && status == UV_EPROTO);
    fail(tls_failed ? Failure::kTls : Failure::kConnect);
    return;
  }
  connected_ = true;
  progress_ms_ = since_ms_ = now_ms();
  start_reading();
  if (!pre_connect_.empty()) {
    out_.copy(pre_connect_);  // gathered while connecting; the Outbox copies it again
    pre_connect_.clear();
    if (io_->write(out_) < 0) {
      fail(Failure::kConnect);
      return;
    }
  }
  if (!borrower_) {
    close();  // the request went away while we were connecting
    return;
  }
  schedule();
}

void Connection::start_reading() {
  io_->start_reading();
}

void Connection::pause_reading() {
  if (io_->reading()) {
    io_->stop_reading();
    paused_ = true;
  }
}

void Connection::resume_reading() {
  if (paused_ && !closing_) {
    paused_ = false;
    progress_ms_ = now_ms();  // the silence we were not listening to is not the upstream's
    start_reading();
    schedule();
  }
}

void Connection::start_tunnel() {
  tunnel_ = true;
}

void Connection::on_stream_written(int status) {
  if (closing_) return;
  if (status < 0) {
    if (tunnel_)
      fail(Failure::kReset);
    else
      write_failed();
    return;
  }
  progress_ms_ = now_ms();
  if (io_->queued_bytes() == 0) schedule();  // the response wait may start now
  if (borrower_ && io_->queued_bytes() < net::kHighWaterBytes) borrower_->on_upstream_drained();
}

void Connection::on_stream_end(int status) {
  if (closing_) return;
  if (borrower_ && !response_started_ && tls_ && tls_->failure() != net::TlsFailure::kNone &&
      tls_->failure() != net::TlsFailure::kTruncated) {
    // TLS 1.3 ends the client's handshake before the server has judged its certificate: an
    // upstream that refuses it says so with an alert after our request went out.
    fail(Failure::kTls);
    return;
  }
  if (borrower_ && tunnel_) {
    Borrower* b = borrower_;
    if (status == UV_EOF) {
      close();
      b->on_upstream_eof();
    } else {
      fail(Failure::kReset);
    }
  } else if (borrower_ && response_started_ && !response_done_ && parser_.in_message()) {
    // A body delimited by EOF ends here; anything else was cut short.
    Borrower* b = borrower_;
    broken_ = true;
    if (parser_.finish() && response_done_) {
      b->on_upstream_flush();
      if (borrower_) release(false);
    } else {
      fail(Failure::kReset);
    }
  } else if (borrower_ && !response_done_) {
    fail(Failure::kReset);
  } else {
    // Idle, or lent with its exchange over (the borrower has not released it yet).
    Borrower* b = borrower_;
    close();
    if (b) b->on_upstream_eof();
  }
}

void Connection::on_stream_data(const char* data, size_t len) {
  if (closing_) return;
  if (!borrower_) {
    close();  // bytes on an idle connection: not a state we can reuse
    return;
  }
  Borrower* b = borrower_;
  progress_ms_ = now_ms();
  if (awaiting_response_ || !response_started_) {
    awaiting_response_ = false;
    response_started_ = true;
  }
  if (tunnel_) {
    b->on_upstream_raw(data, len);
    if (borrower_ == b) b->on_upstream_flush();
    return;
  }
  http::Parser::Result r = parser_.feed(data, len);
  if (r.status == http::Parser::Status::kError) {
    if (borrower_ == b) fail(Failure::kBadResponse);
    return;
  }
  if (r.consumed < len) {
    if (tunnel_ && borrower_ == b) {
      b->on_upstream_raw(data + r.consumed, len - r.consumed);
      if (borrower_ == b) b->on_upstream_flush();
      return;
    }
    broken_ = true;  // bytes after the response: never reuse
  }
  if (borrower_ == b) b->on_upstream_flush();
}

int Connection::on_head(http::Parser& p) {
  if (!borrower_) return -1;
  int rc = borrower_->on_upstream_head(p);
  if (rc < 0) return -1;
  // No body whatever the framing headers say: HEAD responses, 204 and 304 (RFC 9112 §6.3).
  const int status = p.status_code();
  if ((head_request_ && status >= 200) || status == 204 || status == 304) return 1;
  return rc;
}

int Connection::on_body(http::Parser&, const char* data, size_t len) {
  if (!borrower_) return -1;
  return borrower_->on_upstream_body(data, len);
}

bool Connection::on_message_end(http::Parser& p) {
  const int status = p.status_code();
  if (status >= 100 && status < 200 && status != 101) {
    if (borrower_) borrower_->on_upstream_end(p);
    return false;  // interim response: the final one follows
  }
  response_done_ = true;
  if (!p.keep_alive()) broken_ = true;
  if (borrower_) borrower_->on_upstream_end(p);
  return true;
}

Pool::~Pool() = default;

std::unique_ptr<H2Channel> Pool::h2_channel(net::StreamEvents& owner) {
  H2Client* client = nullptr;
  for (auto& c : h2_clients_)
    if (c->has_room()) {
      client = c.get();
      break;
    }
  if (!client) {
    auto fresh = std::make_unique<H2Client>(*this);
    if (!fresh->open()) {
      // A socket that exists is closing (erase_h2 frees it then); none: freed now.
      if (fresh->closed()) h2_clients_.push_back(std::move(fresh));
      return nullptr;
    }
    client = fresh.get();
    h2_clients_.push_back(std::move(fresh));
  }
  auto channel = std::make_unique<H2Channel>(*client, owner);
  client->attach(channel.get());
  return channel;
}

void Pool::erase_h2(H2Client* c) {
  for (auto it = h2_clients_.begin(); it != h2_clients_.end(); ++it)
    if (it->get() == c) {
      h2_clients_.erase(it);
      return;
    }
}

void Pool::close_idle() {
  while (!idle_.empty()) idle_.front()->close();  // close() unlists it
}

void Pool::configure(uint32_t max_idle, uint32_t idle_timeout_ms) {
  max_idle_ = max_idle;
  idle_timeout_ms_ = idle_timeout_ms;
  while (idle_.size() > max_idle_) idle_.front()->close();  // oldest first; close() unlists it
}

void Pool::lent() {
  ++busy_;
  if (busy_ > peak_) {
    roll_window();  // first, so a new peak lands in the current window
    peak_ = std::max(peak_, busy_);
  }
}

void Pool::returned() {
  if (busy_) --busy_;
}

void Pool::roll_window() {
  const uint64_t now = uv_now(ctx_.loop);
  if (now - window_start_ms_ >= kPeakWindowMs) {
    // A window with no lending at all leaves no trace: two quiet windows forget the peak.
    prev_peak_ = now - window_start_ms_ >= 2 * kPeakWindowMs ? 0 : peak_;
    peak_ = busy_;
    window_start_ms_ = now;
  }
}

uint32_t Pool::recent_peak() const {
  return std::max(peak_, prev_peak_);
}

Connection* Pool::take_idle() {
  while (!idle_.empty()) {
    Connection* c = idle_.back();
    idle_.pop_back();
    if (!c->closing_) return c;
  }
  return nullptr;
}

void Pool::add_idle(Connection* c) {
  // Kept while idle + lent stays within what the recent peak needed, and idle within the cap.
  roll_window();
  if (idle_.size() >= max_idle_ || idle_.size() + busy_ >= recent_peak()) {
    c->close();
    return;
  }
  idle_.push_back(c);
  c->since_ms_ = uv_now(ctx_.loop);
  c->schedule();
}

void Pool::remove_idle(Connection* c) {
  auto it = std::find(idle_.begin(), idle_.end(), c);
  if (it != idle_.end()) idle_.erase(it);
}

void Pool::erase(Connection* c) {
  all_.erase(c);
}

void Pool::close_all() {
  std::vector<Connection*> all;
  all.reserve(all_.size());
  for (auto& [c, owned] : all_) all.push_back(c);
  for (Connection* c : all) c->close();
  std::vector<H2Client*> sessions;
  for (auto& c : h2_clients_) sessions.push_back(c.get());
  for (H2Client* c : sessions) c->close();
}

}  // namespace sluice::upstream
