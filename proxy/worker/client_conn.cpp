// A client connection: parse, route, pick, forward, stream back (see client_conn.h).
#include "worker/client_conn.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "http/grpc.h"
#include "http/rewrite.h"
#include "worker/route.h"
#include "worker/worker.h"

namespace sluice::worker {
namespace {

constexpr size_t kMaxPendingBytes = 256 * 1024;  // pipelined bytes held while a request runs
// Lingering close (after a response that leaves the client's request unread): how long and how
// much we keep reading and discarding before closing anyway. nginx: lingering_time 30 s,
// lingering_timeout 5 s.
constexpr uint64_t kLingerTotalMs = 30000;
constexpr uint64_t kLingerSilenceMs = 5000;
constexpr uint64_t kLingerMaxBytes = uint64_t{1} << 30;

void write_hex(char* out, uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i, v >>= 4) out[i] = kDigits[v & 0xf];
}

}  // namespace

ClientConn::ClientConn(Worker& worker)
    : worker_(worker),
      tcp_(worker.context(), *this),
      parser_(HTTP_REQUEST, *this, worker.limits().max_header_bytes, worker.limits().max_headers) {}

ClientConn::~ClientConn() {
  leave_counts();
}

void ClientConn::leave_counts() {
  if (conn_counter_) conn_counter_->fetch_sub(1, std::memory_order_relaxed);
  if (client_counts_) client_counts_->release(client_ip_);
  conn_counter_ = nullptr;
  client_counts_ = nullptr;
}

uint64_t ClientConn::now_ms() const {
  return uv_now(worker_.context().loop);
}

bool ClientConn::accept(net::Listener& listener, const std::vector<http::Cidr>& trusted_proxies,
                        std::shared_ptr<const net::ServerContext> tls, bool h2c) {
  if (uv_timer_init(worker_.context().loop, &timer_) != 0) return false;
  timer_.data = this;
  ++open_handles_;
  const int rc = listener.accept(tcp_);
  if (tcp_.open()) ++open_handles_;
  if (rc != 0) {
    close();
    return false;
  }
  sockaddr_storage peer{};
  if (tcp_.peer(&client_ip_, &peer))
    trusted_peer_ = http::contains(trusted_proxies, reinterpret_cast<const sockaddr*>(&peer));
  if (tls) {
    std::unique_ptr<net::TlsEngine> engine =
        net::TlsEngine::server(std::move(tls), &net::thread_tls_buffers());
    if (!engine) {
      close();
      return false;
    }
    tls_ = std::make_unique<net::TlsStream>(tcp_, *this, std::move(engine));
    io_ = tls_.get();
    secure_ = true;
  } else {
    h2c_ = h2c;
  }
  accepted_ms_ = wait_since_ms_ = in_progress_ms_ = out_progress_ms_ = now_ms();
  set_waiting(true);
  start_reading();
  schedule();
  return true;
}

bool ClientConn::accept_stream(net::Stream& io, const std::string& client_ip, bool trusted,
                               bool secure) {
  if (uv_timer_init(worker_.context().loop, &timer_) != 0) return false;
  timer_.data = this;
  ++open_handles_;
  io_ = &io;
  ++open_handles_;  // the stream reports on_stream_closed like a socket
  stream_conn_ = true;
  skip_linger_ = true;  // nothing to linger on: the stream ends with END_STREAM or a reset
  secure_ = secure;
  client_ip_ = client_ip;
  trusted_peer_ = trusted;
  accepted_ms_ = wait_since_ms_ = in_progress_ms_ = out_progress_ms_ = now_ms();
  start_reading();
  schedule();
  return true;
}

bool ClientConn::wants_h2(const char* data, size_t len) const {
  if (tls_) return tls_->engine().alpn() == "h2";
  if (!h2c_ || len < 3) return false;
  // RFC 9113 §3.4: a client with prior knowledge starts with the connection preface.
  static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  const size_t n = std::min(len, kPreface.size());
  return std::string_view(data, n) == kPreface.substr(0, n);
}

void ClientConn::recycle() {
  // Every field as a new ClientConn has it (see client_conn.h), buffers cleared, not freed --
  // unless one grew large serving its stream.
  auto clear = [](std::string& s) {
    if (s.capacity() > 16 * 1024)
      std::string().swap(s);
    else
      s.clear();
  };
  io_ = &tcp_;
  timer_ = uv_timer_t{};
  parser_.reset();
  out_.clear();
  out_.release_memory();
  open_handles_ = 0;
  closing_ = peer_eof_ = close_after_response_ = close_when_flushed_ = lingering_ = false;
  draining_ = tunnel_ = served_one_ = skip_linger_ = false;
  accepted_ms_ = wait_since_ms_ = head_deadline_ms_ = in_progress_ms_ = out_progress_ms_ = 0;
  tunnel_activity_ms_ = linger_start_ms_ = linger_bytes_ = armed_due_ms_ = 0;
  client_ip_.clear();
  for (std::string* s : {&pending_in_, &work_, &chunk_header_, &upstream_head_, &response_head_,
                         &set_cookie_, &abs_target_})
    clear(*s);
  conn_counter_ = nullptr;
  client_counts_ = nullptr;
  trusted_peer_ = idle_trimmed_ = secure_ = h2c_ = stream_conn_ = false;
  h2_.reset();
  ctx_ = {};
  up_ = nullptr;
  wait_prev_ = wait_next_ = nullptr;
  in_wait_list_ = false;
}

void ClientConn::start_h2(const char* data, size_t len) {
  h2_ = std::make_unique<H2Session>(worker_, *this, *io_, secure_);
  if (!h2_->start()) {
    close();
    return;
  }
  idle_trimmed_ = true;  // nothing of the HTTP/1.1 machinery is used from here on
  parser_.release_memory();
  h2_->on_data(data, len);
}

void ClientConn::close() {
  if (std::exchange(closing_, true)) return;
  if (h2_) h2_->abort();  // every stream's engine stops with the connection
  set_waiting(false);
  leave_counts();  // now, not when the handles are gone: shedding makes room synchronously
  release_upstream(false);
  end_request_bookkeeping();
  io_->close();
  if (timer_.data && !uv_is_closing(as_handle(&timer_)))
    uv_close(as_handle(&timer_),
             [](uv_handle_t* h) { static_cast<ClientConn*>(h->data)->handle_closed(); });
}

void ClientConn::on_stream_closed() {
  handle_closed();
}

void ClientConn::handle_closed() {
  if (--open_handles_ == 0) worker_.erase(this);  // last use of this
}

void ClientConn::drain() {
  draining_ = true;
  if (h2_) {
    h2_->drain();  // GOAWAY: the streams in flight finish, then the connection closes
    return;
  }
  if (!ctx_.active || lingering_)
    close();
  else
    close_after_response_ = true;
}

void ClientConn::set_waiting(bool waiting) {
  if (waiting == in_wait_list_) return;
  if (waiting)
    worker_.wait_list_push(this);
  else
    worker_.wait_list_remove(this);
}

// ---- reading and the driver loop ----

void ClientConn::start_reading() {
  if (io_->reading() || closing_) return;
  io_->start_reading();
  in_progress_ms_ = now_ms();  // time spent not reading is not the client's silence
}

void ClientConn::stop_reading() {
  io_->stop_reading();
}

bool ClientConn::output_backlogged() const {
  return io_->queued_bytes() > kHighWaterBytes;
}

void ClientConn::update_reading() {
  if (closing_ || h2_) return;  // an HTTP/2 session reads as its own rules say
  bool want = !close_when_flushed_ && !peer_eof_;
  if (lingering_) {
    want = true;
  } else if (want && tunnel_) {
    want = up_ && up_->queued_bytes() < kHighWaterBytes;
  } else if (want && ctx_.active) {
    if (ctx_.request_done)
      want = pending_in_.size() < kMaxPendingBytes;
    else
      want = ctx_.local_response || !up_ || up_->queued_bytes() < kHighWaterBytes;
  } else if (want) {
    // Between requests: a client that does not read the answers we make for it (404s for
    // pipelined junk, say) gets no more of its requests read until it does.
    want = !output_backlogged();
  }
  if (want)
    start_reading();
  else
    stop_reading();
}

void ClientConn::on_stream_end(int) {
  if (closing_) return;
  if (h2_) {
    close();  // the client left: its streams end with it
    return;
  }
  peer_eof_ = true;
  if (lingering_) {
    close();  // the client finished sending: the lingering close is complete
    return;
  }
  if (tunnel_) {
    close_when_flushed();
  } else if (ctx_.active && ctx_.request_done && !ctx_.response_done) {
    // Half-close after a complete request: answer it, then close.
    close_after_response_ = true;
  } else if (close_when_flushed_) {
    // Still writing what we owe it; the close follows the flush.
  } else {
    close();
    return;
  }
  drive(nullptr, 0);
}

void ClientConn::on_stream_data(const char* data, size_t len) {
  if (closing_) return;
  in_progress_ms_ = now_ms();
  if (lingering_) {
    linger_bytes_ += len;
    if (linger_bytes_ > kLingerMaxBytes) close();
    return;  // discarded
  }
  if (h2_) {
    h2_->on_data(data, len);
    return;
  }
  if (!served_one_ && !ctx_.active && pending_in_.empty() && len > 0 && wants_h2(data, len)) {
    start_h2(data, len);
    return;
  }
  if (tunnel_) tunnel_activity_ms_ = in_progress_ms_;
  idle_trimmed_ = false;
  drive(data, len);
}

void ClientConn::drive(const char* data, size_t len) {
  const char* p = data;
  size_t n = len;
  for (;;) {
    if (closing_) return;
    if (!n && !ctx_.active && !pending_in_.empty() && !tunnel_ && !close_when_flushed_ &&
        !output_backlogged()) {
      // The next pipelined request, held while the previous one ran or while the client was
      // not reading our answers.
      work_.swap(pending_in_);
      pending_in_.clear();
      p = work_.data();
      n = work_.size();
    }
    if (n) {
      if (tunnel_) {
        if (up_) up_->out().borrow(p, n);
      } else if (close_when_flushed_ || (ctx_.active && ctx_.request_done)) {
        if (!close_when_flushed_) pending_in_.append(p, n);
      } else {
        http::Parser::Result r = parser_.feed(p, n);
        if (r.status == http::Parser::Status::kError) {
          on_parse_error();
        } else if (r.consumed < n) {
          pending_in_.append(p + r.consumed, n - r.consumed);
        }
      }
      n = 0;
    }
    flush_upstream();
    flush_client();
    if (closing_) return;
    if (!close_when_flushed_ && ctx_.response_done && !ctx_.request_done && close_after_response_ &&
        !tunnel_) {
      // Answered before the request ended (an upload refused early, a local error): the rest of
      // the request cannot be served on this connection.
      close_when_flushed();
    }
    if (close_when_flushed_) {
      finish_if_flushed();
      if (!closing_) schedule();
      return;
    }
    if (!tunnel_ && ctx_.active && ctx_.request_done && ctx_.response_done) {
      // The exchange is complete: keep-alive or close.
      if (!complete_request()) return;
      continue;
    }
    if (!n && !ctx_.active && !pending_in_.empty() && !tunnel_ && !output_backlogged()) continue;
    break;
  }
  update_reading();
  schedule();
}

void ClientConn::on_parse_error() {
  if (parser_.error() == http::ParseError::kSinkError) return;  // already answered
  release_upstream(false);
  if (ctx_.response_started) {
    close();
    return;
  }
  const http::ErrorAnswer answer = http::error_answer(parser_.error());
  respond_error(answer.status, answer.reason, true);
}

bool ClientConn::complete_request() {
  release_upstream(true);
  end_request_bookkeeping();
  served_one_ = true;
  if (close_after_response_ || peer_eof_ || draining_) {
    close_when_flushed();
    finish_if_flushed();
    return false;
  }
  ctx_ = {};
  parser_.resume();
  wait_since_ms_ = now_ms();
  set_waiting(true);
  return true;
}

void ClientConn::end_request_bookkeeping() {
  if (ctx_.active && !ctx_.accounted) {
    ctx_.accounted = true;
    record_request();
  }
  if (ctx_.concurrency) {
    ctx_.concurrency->fetch_sub(1, std::memory_order_relaxed);
    ctx_.concurrency = nullptr;
  }
  if (ctx_.snapshot) {
    worker_.release_snapshot(ctx_.snapshot);
    ctx_.snapshot = nullptr;
  }
}

void ClientConn::record_request() {
  observe::AccessLogBuffer* log = worker_.access_log();
  if (!ctx_.series && !log) return;
  const uint64_t now_ns = uv_hrtime();
  const uint64_t duration_us = (now_ns - ctx_.start_ns) / 1000;  // for the series
  const uint64_t upstream_us =
      ctx_.upstream_start_ns
          ? ((ctx_.upstream_end_ns ? ctx_.upstream_end_ns : now_ns) - ctx_.upstream_start_ns) / 1000
          : observe::kNoUpstream;
  const int status = ctx_.status ? ctx_.status : 499;  // 499: the client left before an answer
  if (ctx_.series) {
    // A gRPC client whose own deadline passed gave up, as one that left: a 499 of the version.
    ctx_.series->end(ctx_.deadline_passed ? 499 : status, duration_us, upstream_us, ctx_.failure,
                     ctx_.attempts > 1 ? ctx_.attempts - 1u : 0u, now_ms());
    ctx_.series = nullptr;
  }
  if (log && parser_.head_complete())
    log->append(access_record(ctx_, parser_, client_ip_, status, now_ns, upstream_us));
}

void ClientConn::generate_request_id() {
  routing::Rng& rng = worker_.rng();
  write_hex(ctx_.request_id, rng.next());
  write_hex(ctx_.request_id + 16, rng.next());
  ctx_.request_id_len = 32;
}

// ---- deadlines: one lazy timer per connection ----

uint64_t ClientConn::deadline() const {
  if (closing_) return kNever;
  if (lingering_)
    return std::min(linger_start_ms_ + kLingerTotalMs, in_progress_ms_ + kLingerSilenceMs);
  const config::LimitsSpec& limits = worker_.limits();
  uint64_t d = kNever;
  // The client stopped taking what we send it.
  if (io_->queued_bytes() > 0) d = out_progress_ms_ + limits.send_timeout_ms;
  if (h2_) return std::min(d, h2_->deadline());
  if (tunnel_) return std::min(d, tunnel_activity_ms_ + limits.tunnel_idle_timeout_ms);
  if (close_when_flushed_) return d;
  if (!ctx_.active) {
    // A TLS client must finish its handshake handshake_timeout after the accept; a keep-alive
    // connection idle for a second gives back the memory it only needs while serving.
    if (tls_ && !tls_->handshake_done())
      d = std::min(d, accepted_ms_ + limits.handshake_timeout_ms);
    else if (!idle_trimmed_ && served_one_)
      d = std::min(d, wait_since_ms_ + kIdleTrimAfterMs);
    // Waiting for a request: the first one's head is due header_timeout after the accept; a
    // keep-alive connection may stay idle for idle_timeout.
    return std::min(d, served_one_ ? wait_since_ms_ + limits.idle_timeout_ms
                                   : accepted_ms_ + limits.header_timeout_ms);
  }
  if (!parser_.head_complete()) return std::min(d, head_deadline_ms_);
  // Silence while we read the request body. Not while we stopped reading because the upstream
  // is slow to take it: that wait is not the client's.
  if (!ctx_.request_done && io_->reading())
    d = std::min(d, in_progress_ms_ + limits.body_timeout_ms);
  return d;
}

void ClientConn::trim_idle() {
  idle_trimmed_ = true;
  if (h2_) return;
  if (parser_.in_message() || !pending_in_.empty() || !out_.empty()) return;  // not idle
  // Capacity kept for the next request: cheap while requests follow each other, a few KiB per
  // connection that only waits. It grows back on the next request.
  parser_.release_memory();
  out_.release_memory();
  for (std::string* s : {&pending_in_, &work_, &chunk_header_, &upstream_head_, &response_head_,
                         &set_cookie_, &abs_target_})
    std::string().swap(*s);
  if (tls_) tls_->trim();
}

void ClientConn::schedule() {
  const uint64_t d = deadline();
  if (d == kNever || (armed_due_ms_ && armed_due_ms_ <= d)) return;
  const uint64_t now = now_ms();
  uv_timer_start(&timer_, &ClientConn::on_timer, d > now ? d - now : 0, 0);
  armed_due_ms_ = d;
}

void ClientConn::on_timer(uv_timer_t* t) {
  auto* self = static_cast<ClientConn*>(t->data);
  self->armed_due_ms_ = 0;
  if (self->closing_) return;
  if (self->deadline() > self->now_ms()) {
    self->schedule();  // progress moved the deadline since the timer was armed
    return;
  }
  self->on_deadline();
}

void ClientConn::on_deadline() {
  const config::LimitsSpec& limits = worker_.limits();
  const uint64_t now = now_ms();
  if (lingering_ || tunnel_ || close_when_flushed_ ||
      (io_->queued_bytes() > 0 && now >= out_progress_ms_ + limits.send_timeout_ms)) {
    // Lingering over, tunnel idle, or a client that stopped reading: nothing more can be sent.
    // None of these is the version's fault: no failure is recorded.
    close();
    return;
  }
  if (h2_) {
    h2_->on_deadline();
    if (!closing_) schedule();
    return;
  }
  if (!ctx_.active) {
    if (!idle_trimmed_ && served_one_ && (!tls_ || tls_->handshake_done()) &&
        now < wait_since_ms_ + limits.idle_timeout_ms) {
      trim_idle();
      schedule();
      return;
    }
    close();  // idle keep-alive, a new connection that sent nothing, or a stalled handshake
    return;
  }
  if (!parser_.head_complete()) {
    // The head did not arrive in time: 408 where a response can still be sent. No lingering:
    // a client this slow (or this hostile) gets no more of our time.
    skip_linger_ = true;
    respond_error(408, "header-timeout", true);
    drive(nullptr, 0);
    return;
  }
  // The client went silent while sending its body: its fault, not the version's. The upstream
  // exchange is abandoned without a failure.
  release_upstream(false);
  respond_error(408, "body-timeout", true);
  drive(nullptr, 0);
}

// ---- writing ----

void ClientConn::flush_client() {
  if (out_.empty() || closing_) return;
  if (ctx_.response_started) ctx_.response_flushed = true;
  if (io_->queued_bytes() == 0) out_progress_ms_ = now_ms();
  if (io_->write(out_) < 0) close();
}

void ClientConn::flush_upstream() {
  if (up_) up_->flush();
}

void ClientConn::on_stream_written(int status) {
  if (closing_) return;
  if (status < 0) {
    close();
    return;
  }
  out_progress_ms_ = now_ms();
  if (h2_) {
    h2_->on_written();
    return;
  }
  if (close_when_flushed_) {
    finish_if_flushed();
    return;
  }
  if (output_backlogged()) return;
  if (up_) up_->resume_reading();
  if (!ctx_.active && !pending_in_.empty())
    drive(nullptr, 0);  // pipelined requests held while the client was not reading
  else if (!io_->reading())
    update_reading();
}

void ClientConn::close_when_flushed() {
  close_when_flushed_ = true;
  set_waiting(false);
  stop_reading();
}

void ClientConn::finish_if_flushed() {
  if (closing_ || lingering_ || !out_.empty() || io_->queued_bytes() != 0) return;
  // The client may still be sending: a request body we did not read, pipelined requests, bytes
  // after a malformed head. Closing with unread input makes the kernel send a reset, which can
  // destroy the response before the client reads it.
  const bool unread = (ctx_.active && !ctx_.request_done) || !pending_in_.empty() ||
                      parser_.error() != http::ParseError::kNone;
  if (peer_eof_ || tunnel_ || skip_linger_ || !unread)
    close();
  else
    linger();
}

void ClientConn::linger() {
  lingering_ = true;
  release_upstream(false);
  end_request_bookkeeping();
  pending_in_.clear();
  linger_start_ms_ = in_progress_ms_ = now_ms();
  worker_.wait_list_push(this, /*front=*/true);  // the first to go when room is needed
  if (io_->shutdown() != 0) {  // a failure later arrives as on_stream_written(< 0)
    close();
    return;
  }
  start_reading();
  schedule();
}

void ClientConn::respond_error(int status, const char* reason, bool close_after) {
  if (ctx_.response_started) {
    close();
    return;
  }
  const bool close_now = close_after || !ctx_.keep_alive || draining_;
  http::build_error_response(status, reason, close_now, response_head_);
  out_.copy(response_head_);
  ctx_.status = status;
  ctx_.bytes_out += response_head_.size();
  ctx_.response_started = true;
  ctx_.response_done = true;
  if (close_now) {
    close_after_response_ = true;
    if (close_after) close_when_flushed();
  }
}

// ---- the client's request (http::Sink) ----

void ClientConn::on_message_begin(http::Parser&) {
  ctx_.active = true;
  ctx_.start_ns = uv_hrtime();
  // A new connection's first head is due header_timeout after the accept, however late its first
  // byte; a later head on a keep-alive connection, header_timeout after its first byte.
  head_deadline_ms_ = (served_one_ ? now_ms() : accepted_ms_) + worker_.limits().header_timeout_ms;
}

int ClientConn::local_error(int status, const char* reason) {
  if (ctx_.has_body || ctx_.upgrade_requested) {
    respond_error(status, reason, true);
    return -1;
  }
  ctx_.local_response = true;
  respond_error(status, reason, false);
  return 0;
}

int ClientConn::on_head(http::Parser& p) {
  set_waiting(false);
  ctx_.http10 = p.http_major() == 1 && p.http_minor() == 0;
  ctx_.keep_alive = p.keep_alive();
  if (!ctx_.keep_alive || draining_) close_after_response_ = true;
  ctx_.head_request = p.method() == HTTP_HEAD;
  ctx_.chunked = p.chunked();
  ctx_.has_body = ctx_.chunked || p.content_length() > 0;
  ctx_.upgrade_requested = p.upgrade();
  if (p.header("x-request-id").empty()) generate_request_id();
  set_cookie_.clear();
  abs_target_.clear();

  if (p.method() == HTTP_CONNECT) {
    // A reverse proxy has no tunnels to offer (RFC 9110 §9.3.6).
    respond_error(405, "connect-not-supported", true);
    return -1;
  }
  // RFC 9112 §3.2: a request without Host (HTTP/1.1) or with more than one is malformed.
  int hosts = 0;
  for (const http::Header& h : p.headers()) hosts += http::iequals(h.name, "host");
  if ((!ctx_.http10 && hosts == 0) || hosts > 1) {
    respond_error(400, hosts ? "duplicate-host" : "missing-host", true);
    return -1;
  }
  const uint64_t max_body = worker_.limits().max_body_size;
  if (max_body && p.has_content_length() && p.content_length() > max_body) {
    respond_error(413, "body-too-large", true);
    return -1;
  }
  return start_upstream(p);
}

int ClientConn::start_upstream(http::Parser& p) {
  ctx_.snapshot = worker_.acquire_snapshot();
  Snapshot& snap = *ctx_.snapshot;
  const Target target = target_of(p, abs_target_);
  const HealthView health{&snap.health, now_ms()};
  const RouteChoice choice =
      choose_version(*snap.table, *snap.picks, p, target, worker_.rng(), health);
  ctx_.choice = choice;
  ctx_.function = choice.function;
  switch (choice.result) {
    case RouteChoice::Result::kNoRoute:
      return local_error(404, "no-route");
    case RouteChoice::Result::kUnknownVersion:
      return local_error(404, "unknown-version");
    case RouteChoice::Result::kNoVersion:
      // No version of the alias can serve: charged to the version the alias picked, so that a
      // dead version's error rate shows.
      if (choice.version) {
        ctx_.version = choice.version;
        ctx_.alias = choice.alias;
        ctx_.series = worker_.series(snap, ctx_.alias, choice.version);
        if (ctx_.series) ctx_.series->begin();
      }
      return local_error(503, "no-healthy-version");
    case RouteChoice::Result::kOk:
      break;
  }
  if (choice.issued_cookie)
    sticky_cookie(choice.alias->sticky.name, choice.issued_cookie, set_cookie_);
  const routing::Version* version = choice.version;
  ctx_.version = version;
  ctx_.alias = choice.alias;
  ctx_.series = worker_.series(snap, ctx_.alias, version);
  if (ctx_.series) ctx_.series->begin();

  std::atomic<int32_t>* limit = snap.concurrency[version->id];
  if (limit) {
    if (limit->fetch_add(1, std::memory_order_relaxed) >= int32_t(version->max_concurrency)) {
      limit->fetch_sub(1, std::memory_order_relaxed);
      if (ctx_.series) ctx_.series->throttled(now_ms());
      return local_error(429, "throttled");
    }
    ctx_.concurrency = limit;
  }

  ctx_.endpoint = &version->endpoints[choice.endpoint];
  ctx_.pool = snap.pools[version->id][choice.endpoint];

  http::UpstreamRequestInfo info;
  info.client_ip = client_ip_;
  info.request_id = ctx_.generated_id();
  info.fallback_host = ctx_.endpoint->address;
  info.trusted_peer = trusted_peer_;
  info.tls = secure_;
  info.chunked_body = ctx_.chunked;
  info.upgrade = ctx_.upgrade_requested;
  info.target = target.origin;  // empty unless absolute-form
  info.host = target.authority;
  http::build_upstream_request(p, info, upstream_head_);

  if (!connect_upstream(false)) return local_error(502, "connect-failed");
  up_->out().borrow(upstream_head_);
  return 0;
}

void ClientConn::note_grpc_status(std::string_view value) {
  const int code = http::grpc_status(value);
  if (code > 0 && ctx_.function && ((ctx_.function->grpc_errors >> code) & 1u))
    ctx_.failure = observe::FailureKind::kGrpcError;
}

bool ClientConn::connect_upstream(bool fresh) {
  up_ = fresh ? nullptr : ctx_.pool->take_idle();
  if (!up_) up_ = upstream::Connection::open(*ctx_.pool, ctx_.version->connect_timeout_ms);
  if (!up_) return false;
  uint32_t response_timeout_ms = ctx_.version->response_timeout_ms;
  // A gRPC client's deadline, when shorter, is the wait for the upstream's answer.
  if (const std::string_view t = parser_.header("grpc-timeout"); !t.empty())
    if (const std::optional<uint64_t> ms = http::grpc_timeout_ms(t);
        ms && *ms < response_timeout_ms) {
      response_timeout_ms = uint32_t(std::max<uint64_t>(*ms, 1));
      ctx_.client_deadline = true;
    }
  up_->lend(this, response_timeout_ms, ctx_.head_request);
  ++ctx_.attempts;
  if (!ctx_.upstream_start_ns) ctx_.upstream_start_ns = uv_hrtime();
  return true;
}

void ClientConn::note_outcome(routing::Outcome outcome) {
  if (!ctx_.snapshot || !ctx_.version || !ctx_.endpoint) return;
  const std::vector<routing::EndpointHealth*>& eps = ctx_.snapshot->health[ctx_.version->id];
  const size_t i = size_t(ctx_.endpoint - ctx_.version->endpoints.data());
  routing::record_outcome(*eps[i], eps.data(), eps.size(), ctx_.version->outlier, outcome,
                          now_ms());
}

bool ClientConn::retry_elsewhere(upstream::Failure kind, bool stale, std::string* unsent) {
  const bool nothing_sent = unsent != nullptr;
  if (!ctx_.pool || !may_replay(ctx_, parser_.method(), kind, nothing_sent) ||
      !retry_budget_left(ctx_, *ctx_.version, uv_hrtime()))
    return false;
  Snapshot& snap = *ctx_.snapshot;
  const HealthView health{&snap.health, now_ms()};
  const size_t failed = size_t(ctx_.endpoint - ctx_.version->endpoints.data());
  const routing::Version* version = ctx_.version;
  size_t next = failed;
  bool fresh = true;
  if (!stale || ctx_.stale_retried) {
    // Another endpoint of the same version; else (nothing sent, or safe to replay) another
    // version of the alias.
    fresh = false;
    if (failed < 64) ctx_.tried |= uint64_t{1} << failed;
    next = choose_endpoint(*ctx_.version, *snap.picks, health, ctx_.tried);
    if (next == routing::kNoPick) {
      RouteChoice moved = ctx_.choice;
      moved.version = ctx_.version;
      if (!fail_over(moved, *snap.picks, health)) return false;
      version = moved.version;
      next = moved.endpoint;
    }
  }
  ctx_.stale_retried = ctx_.stale_retried || stale;
  if (version != ctx_.version) {
    // The request moves to another version: its figures and its concurrency slot move with it.
    std::atomic<int32_t>* limit = snap.concurrency[version->id];
    if (limit &&
        limit->fetch_add(1, std::memory_order_relaxed) >= int32_t(version->max_concurrency)) {
      limit->fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    if (ctx_.concurrency) ctx_.concurrency->fetch_sub(1, std::memory_order_relaxed);
    ctx_.concurrency = limit;
    if (ctx_.series) ctx_.series->hand_over();
    ctx_.series = worker_.series(snap, ctx_.alias, version);
    if (ctx_.series) ctx_.series->begin();
    ctx_.version = version;
    ctx_.tried = 0;
  }
  ctx_.endpoint = &version->endpoints[next];
  ctx_.pool = snap.pools[version->id][next];
  ctx_.retried = true;
  if (!connect_upstream(fresh)) return false;
  if (nothing_sent)
    up_->out().copy(*unsent);  // the head and the body so far, as queued for the failed one
  else
    up_->out().borrow(upstream_head_);
  if (ctx_.request_done) up_->end_of_request();
  return true;
}

int ClientConn::on_body(http::Parser&, const char* data, size_t len) {
  if (ctx_.local_response) return 0;
  ctx_.body_bytes_in += len;
  const uint64_t max_body = worker_.limits().max_body_size;
  if (max_body && ctx_.body_bytes_in > max_body) {
    release_upstream(false);
    respond_error(413, "body-too-large", true);
    return -1;
  }
  if (!up_) return 0;  // the upstream failed; the error response is already queued
  ctx_.body_sent = true;
  Outbox& out = up_->out();
  if (ctx_.chunked) {
    chunk_header_.clear();
    http::append_chunk_header(len, chunk_header_);
    out.copy(chunk_header_);
    out.borrow(data, len);
    out.copy("\r\n");
  } else {
    out.borrow(data, len);
  }
  return 0;
}

bool ClientConn::on_message_end(http::Parser&) {
  ctx_.request_done = true;
  if (up_ && !ctx_.local_response) {
    if (ctx_.chunked) up_->out().copy("0\r\n\r\n");
    up_->end_of_request();
  }
  return true;  // pause: the next pipelined request waits for this response
}

// ---- the upstream's response (upstream::Borrower) ----

int ClientConn::on_upstream_head(http::Parser& resp) {
  const int status = resp.status_code();
  http::ClientResponseInfo info;
  info.http10_client = ctx_.http10;
  if (status >= 100 && status < 200 && status != 101) {
    if (ctx_.http10) return 0;  // HTTP/1.0 clients get no interim responses
    http::build_client_response(resp, info, response_head_);
    out_.copy(response_head_);
    return 0;
  }
  if (status == 101 && !ctx_.upgrade_requested) return -1;
  note_outcome(status >= 500 ? routing::Outcome::k5xx : routing::Outcome::kSuccess);
  note_grpc_status(resp.header("grpc-status"));  // a trailers-only gRPC answer
  const bool no_body = ctx_.head_request || status == 204 || status == 304 || status == 101;
  const bool eof_body = !no_body && !resp.chunked() && !resp.has_content_length();
  ctx_.chunk_response = !no_body && !ctx_.http10 && (resp.chunked() || eof_body);
  if (ctx_.http10 && (resp.chunked() || eof_body)) close_after_response_ = true;
  // A final answer before the request ended: the rest of the request is not forwarded, so this
  // connection cannot carry another request after it (the client is told so).
  if (!ctx_.request_done && status != 101) close_after_response_ = true;
  info.keep_alive = !close_after_response_;
  info.chunked = ctx_.chunk_response;
  info.upgrade = status == 101;
  info.version_header = ctx_.function->version_header;
  info.version_label = ctx_.version->label;
  info.set_cookie = set_cookie_;
  http::build_client_response(resp, info, response_head_);
  out_.borrow(response_head_);
  ctx_.response_started = true;
  ctx_.status = status;
  ctx_.bytes_out += response_head_.size();
  return 0;
}

int ClientConn::on_upstream_body(const char* data, size_t len) {
  ctx_.bytes_out += len;
  if (ctx_.chunk_response) {
    chunk_header_.clear();
    http::append_chunk_header(len, chunk_header_);
    out_.copy(chunk_header_);
    out_.borrow(data, len);
    out_.copy("\r\n");
  } else {
    out_.borrow(data, len);
  }
  return 0;
}

bool ClientConn::on_upstream_end(http::Parser& resp) {
  const int status = resp.status_code();
  if (status >= 100 && status < 200 && status != 101) return false;
  if (ctx_.chunk_response) {
    // The upstream's trailer fields follow the last chunk (gRPC's status is one), except those
    // that frame or route a message.
    chunk_header_.assign("0\r\n");
    for (const http::Header& t : resp.trailers()) {
      if (http::is_hop_by_hop(t.name) || http::iequals(t.name, "content-length") ||
          http::iequals(t.name, "transfer-encoding") || http::iequals(t.name, "host"))
        continue;
      chunk_header_.append(t.name).append(": ").append(t.value).append("\r\n");
    }
    chunk_header_.append("\r\n");
    out_.copy(chunk_header_);
  }
  for (const http::Header& t : resp.trailers())
    if (http::iequals(t.name, "grpc-status")) note_grpc_status(t.value);
  ctx_.response_done = true;
  ctx_.upstream_end_ns = uv_hrtime();
  if (status == 101) {
    tunnel_ = true;
    set_waiting(false);
    tunnel_activity_ms_ = now_ms();
    up_->start_tunnel();
    if (!pending_in_.empty()) {
      up_->out().copy(pending_in_);
      pending_in_.clear();
    }
  } else if (!ctx_.request_done) {
    // Stop forwarding the rest of the body; drive() closes once the response is out.
    ctx_.local_response = true;
  }
  return true;
}

void ClientConn::on_upstream_raw(const char* data, size_t len) {
  tunnel_activity_ms_ = now_ms();
  out_.borrow(data, len);
}

void ClientConn::on_upstream_flush() {
  drive(nullptr, 0);
  if (!closing_ && up_ && output_backlogged()) up_->pause_reading();
}

void ClientConn::on_upstream_drained() {
  update_reading();
}

void ClientConn::on_upstream_eof() {
  up_ = nullptr;
  if (closing_ || !tunnel_) return;  // a finished exchange: nothing changes for the client
  // The upstream ended the tunnel (a WebSocket closing normally): deliver what it sent, then
  // close. Not a failure.
  close_when_flushed();
  drive(nullptr, 0);
}

namespace {
observe::FailureKind failure_kind(upstream::Failure kind) {
  switch (kind) {
    case upstream::Failure::kConnect:
      return observe::FailureKind::kConnectFailed;
    case upstream::Failure::kConnectTimeout:
    case upstream::Failure::kTimeout:
      return observe::FailureKind::kTimeout;
    case upstream::Failure::kReset:
      return observe::FailureKind::kReset;
    case upstream::Failure::kBadResponse:
      return observe::FailureKind::kBadResponse;
    case upstream::Failure::kTls:
      return observe::FailureKind::kTls;
  }
  return observe::FailureKind::kNone;
}
}  // namespace

void ClientConn::on_upstream_failed(upstream::Failure kind, bool response_started, bool reused,
                                    std::string* unsent) {
  up_ = nullptr;
  if (closing_) return;
  // The wait ended at the gRPC client's own deadline (grpc-timeout, shorter than the version's
  // response_timeout): the client's fault, never the version's or the endpoint's, not retried.
  ctx_.deadline_passed = kind == upstream::Failure::kTimeout && ctx_.client_deadline;
  ctx_.failure = ctx_.deadline_passed ? observe::FailureKind::kNone : failure_kind(kind);
  // A pooled connection reset before any answer is the keep-alive race (the upstream closed it
  // as we reused it), not the endpoint failing: no mark against it, and a fresh connection to
  // the same endpoint is tried first.
  const bool stale = reused && kind == upstream::Failure::kReset && !response_started;
  if (!stale && !ctx_.deadline_passed) note_outcome(routing::Outcome::kFailure);
  if (tunnel_) {
    close_when_flushed();
    drive(nullptr, 0);
    return;
  }
  // Before any response byte: another attempt where that is safe and the budget allows
  // (another endpoint, another version of the alias, or a fresh connection).
  if (!response_started && !ctx_.deadline_passed) {
    const observe::FailureKind failed_as = ctx_.failure;
    observe::Series* failed_series = ctx_.series;
    if (retry_elsewhere(kind, stale, unsent)) {
      if (failed_series) failed_series->attempt_failed(failed_as, now_ms());
      ctx_.failure = observe::FailureKind::kNone;
      drive(nullptr, 0);
      return;
    }
  }
  if (ctx_.response_started && !ctx_.response_flushed) {
    // The head is still only in our outbox: nothing reached the client, so it can still get
    // an honest error status instead of a truncated response.
    out_.clear();
    ctx_.response_started = false;
    ctx_.response_done = false;
    ctx_.chunk_response = false;
    ctx_.bytes_out = 0;
  }
  if (ctx_.response_started) {
    // Cut off mid-way: deliver what was relayed, then close (the only honest signal left).
    close_after_response_ = true;
    close_when_flushed();
    drive(nullptr, 0);
    return;
  }
  switch (kind) {
    case upstream::Failure::kConnect:
      respond_error(502, "connect-failed", !ctx_.request_done);
      break;
    case upstream::Failure::kConnectTimeout:
    case upstream::Failure::kTimeout:
      respond_error(504, ctx_.deadline_passed ? "grpc-deadline" : "timeout", !ctx_.request_done);
      break;
    case upstream::Failure::kReset:
    case upstream::Failure::kBadResponse:
      respond_error(502, "bad-upstream-response", !ctx_.request_done);
      break;
    case upstream::Failure::kTls:
      respond_error(502, "upstream-tls-failed", !ctx_.request_done);
      break;
  }
  drive(nullptr, 0);
}

void ClientConn::release_upstream(bool reusable) {
  if (!up_) return;
  upstream::Connection* up = std::exchange(up_, nullptr);
  // An endpoint set to drain or maint keeps no connection once its current request is done.
  if (reusable && ctx_.snapshot && ctx_.version && ctx_.endpoint) {
    const size_t i = size_t(ctx_.endpoint - ctx_.version->endpoints.data());
    reusable =
        ctx_.snapshot->health[ctx_.version->id][i]->admin_state() == routing::AdminState::kReady;
  }
  up->release(reusable && ctx_.request_done && ctx_.response_done && !tunnel_);
}

}  // namespace sluice::worker
