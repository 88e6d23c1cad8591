// A client connection: parse, route, pick, forward, stream back (see client_conn.h).
#include "worker/client_conn.h"

#include <arpa/inet.h>

#include <cstring>
#include <utility>

#include "http/rewrite.h"
#include "worker/worker.h"

namespace sluice::worker {
namespace {

constexpr size_t kMaxPendingBytes = 256 * 1024;  // pipelined bytes held while a request runs

bool idempotent(uint8_t method) {
  switch (method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_PUT:
    case HTTP_DELETE:
    case HTTP_TRACE:
      return true;
    default:
      return false;
  }
}

// The value of cookie `name` in a Cookie header, or empty.
std::string_view cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    size_t semi = header.find(';');
    std::string_view pair = header.substr(0, semi);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    if (pair.size() > name.size() && pair[name.size()] == '=' &&
        pair.substr(0, name.size()) == name)
      return pair.substr(name.size() + 1);
    if (semi == std::string_view::npos) break;
    header.remove_prefix(semi + 1);
  }
  return {};
}

void append_hex(std::string& out, uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  char buf[16];
  for (int i = 15; i >= 0; --i, v >>= 4) buf[i] = kDigits[v & 0xf];
  out.append(buf, sizeof buf);
}

}  // namespace

ClientConn::ClientConn(Worker& worker)
    : worker_(worker),
      parser_(HTTP_REQUEST, *this, worker.limits().max_header_bytes, worker.limits().max_headers) {}

ClientConn::~ClientConn() {
  if (conn_counter_) conn_counter_->fetch_sub(1, std::memory_order_relaxed);
}

bool ClientConn::accept(uv_stream_t* server) {
  uv_loop_t* loop = server->loop;
  if (uv_tcp_init(loop, &socket_) != 0) return false;
  socket_.data = this;
  ++open_handles_;
  if (uv_timer_init(loop, &timer_) != 0) {
    close();
    return false;
  }
  timer_.data = this;
  ++open_handles_;
  if (uv_accept(server, as_stream(&socket_)) != 0) {
    close();
    return false;
  }
  uv_tcp_nodelay(&socket_, 1);
  sockaddr_storage peer{};
  int len = sizeof peer;
  if (uv_tcp_getpeername(&socket_, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    char ip[INET6_ADDRSTRLEN] = {0};
    if (peer.ss_family == AF_INET)
      uv_ip4_name(reinterpret_cast<sockaddr_in*>(&peer), ip, sizeof ip);
    else
      uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&peer), ip, sizeof ip);
    client_ip_ = ip;
  }
  arm_timer(worker_.limits().header_timeout_ms);
  start_reading();
  return true;
}

void ClientConn::set_counter(std::atomic<uint32_t>* counter) {
  conn_counter_ = counter;
}

void ClientConn::close() {
  if (std::exchange(closing_, true)) return;
  release_upstream(false);
  end_request_bookkeeping();
  for (uv_handle_t* h : {as_handle(&socket_), as_handle(&timer_)})
    if (h->data && !uv_is_closing(h)) uv_close(h, &ClientConn::on_closed);
}

void ClientConn::on_closed(uv_handle_t* h) {
  auto* self = static_cast<ClientConn*>(h->data);
  if (--self->open_handles_ == 0) self->worker_.erase(self);  // last use of self
}

void ClientConn::drain() {
  draining_ = true;
  if (!in_request_)
    close();
  else
    close_after_response_ = true;
}

// ---- reading and the driver loop ----

void ClientConn::start_reading() {
  if (reading_ || closing_) return;
  if (uv_read_start(as_stream(&socket_), &LoopContext::on_alloc, &ClientConn::on_read) == 0)
    reading_ = true;
}

void ClientConn::stop_reading() {
  if (!reading_) return;
  uv_read_stop(as_stream(&socket_));
  reading_ = false;
}

void ClientConn::update_reading() {
  if (closing_) return;
  bool want = !close_when_flushed_ && !peer_eof_;
  if (want && tunnel_) {
    want = up_ && up_->queued_bytes() < kHighWaterBytes;
  } else if (want && in_request_) {
    if (request_done_)
      want = pending_in_.size() < kMaxPendingBytes;
    else
      want = local_response_ || !up_ || up_->queued_bytes() < kHighWaterBytes;
  }
  if (want)
    start_reading();
  else
    stop_reading();
}

void ClientConn::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<ClientConn*>(s->data);
  if (self->closing_ || nread == 0) return;
  if (nread < 0) {
    self->peer_eof_ = true;
    self->stop_reading();
    if (self->tunnel_) {
      self->close_when_flushed();
    } else if (self->in_request_ && self->request_done_ && !self->response_done_) {
      // Half-close after a complete request: answer it, then close.
      self->close_after_response_ = true;
    } else {
      self->close();
      return;
    }
    self->drive(nullptr, 0);
    return;
  }
  self->drive(buf->base, static_cast<size_t>(nread));
}

void ClientConn::drive(const char* data, size_t len) {
  const char* p = data;
  size_t n = len;
  for (;;) {
    if (closing_) return;
    if (n) {
      if (tunnel_) {
        if (up_) up_->out().borrow(p, n);
      } else if (in_request_ && request_done_) {
        pending_in_.append(p, n);
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
    if (close_when_flushed_) {
      if (out_.empty() && socket_.write_queue_size == 0) close();
      return;
    }
    if (tunnel_ || !in_request_ || !request_done_ || !response_done_) break;
    // The exchange is complete: keep-alive or close.
    if (!complete_request()) return;
    if (pending_in_.empty()) break;
    work_.swap(pending_in_);
    pending_in_.clear();
    p = work_.data();
    n = work_.size();
  }
  update_reading();
}

void ClientConn::on_parse_error() {
  if (parser_.error() == http::ParseError::kSinkError) return;  // already answered
  release_upstream(false);
  if (response_started_) {
    close();
    return;
  }
  const bool too_large = parser_.error() == http::ParseError::kHeadTooLarge ||
                         parser_.error() == http::ParseError::kTooManyHeaders;
  if (too_large)
    respond_error(431, "header-too-large", true);
  else
    respond_error(400, "malformed-request", true);
}

bool ClientConn::complete_request() {
  release_upstream(true);
  end_request_bookkeeping();
  if (close_after_response_ || peer_eof_ || draining_) {
    close_when_flushed();
    if (out_.empty() && socket_.write_queue_size == 0) close();
    return false;
  }
  reset_request();
  parser_.resume();
  arm_timer(worker_.limits().idle_timeout_ms);
  return true;
}

void ClientConn::end_request_bookkeeping() {
  if (in_request_ && !accounted_) {
    accounted_ = true;
    record_request();
  }
  if (concurrency_) {
    concurrency_->fetch_sub(1, std::memory_order_relaxed);
    concurrency_ = nullptr;
  }
  if (snapshot_) {
    worker_.release_snapshot(snapshot_);
    snapshot_ = nullptr;
  }
}

void ClientConn::record_request() {
  observe::AccessLogBuffer* log = worker_.access_log();
  if (!series_ && !log) return;
  const uint64_t now_ns = uv_hrtime();
  const uint64_t duration_us = (now_ns - start_ns_) / 1000;
  const uint64_t upstream_us =
      upstream_start_ns_
          ? ((upstream_end_ns_ ? upstream_end_ns_ : now_ns) - upstream_start_ns_) / 1000
          : observe::kNoUpstream;
  const int status = status_ ? status_ : 499;  // 499: the client left before an answer
  if (series_) {
    series_->end(status, duration_us, upstream_us, failure_, retried_ ? 1 : 0,
                 uv_now(worker_.context().loop));
    series_ = nullptr;
  }
  if (log && parser_.head_complete()) {
    observe::AccessRecord r;
    r.unix_ms = observe::AccessLog::wall_clock_ms();
    r.client = client_ip_;
    r.method = parser_.method_name();
    r.path = parser_.url();
    r.status = status;
    r.bytes = bytes_out_;
    r.duration_us = duration_us;
    r.upstream_us = upstream_us;
    if (function_) r.function = function_->name;
    if (alias_) r.alias = alias_->name;
    if (version_) r.version = version_->number;
    if (endpoint_) r.endpoint = endpoint_->address;
    r.request_id = request_id_.empty() ? parser_.header("x-request-id") : request_id_;
    r.retried = retried_;
    log->append(r);
  }
}

void ClientConn::reset_request() {
  accounted_ = false;
  alias_ = nullptr;
  endpoint_ = nullptr;
  series_ = nullptr;
  upstream_start_ns_ = upstream_end_ns_ = bytes_out_ = 0;
  status_ = 0;
  failure_ = observe::FailureKind::kNone;
  in_request_ = request_done_ = response_done_ = response_started_ = response_flushed_ = false;
  abs_target_.clear();
  local_response_ = request_has_body_ = request_chunked_ = head_request_ = false;
  upgrade_requested_ = chunk_response_ = retried_ = request_bytes_sent_ = false;
  body_bytes_in_ = 0;
  version_ = nullptr;
  function_ = nullptr;
  pool_ = nullptr;
  set_cookie_.clear();
}

void ClientConn::arm_timer(uint32_t ms) {
  if (ms)
    uv_timer_start(&timer_, &ClientConn::on_timer, ms, 0);
  else
    uv_timer_stop(&timer_);
}

void ClientConn::on_timer(uv_timer_t* t) {
  auto* self = static_cast<ClientConn*>(t->data);
  if (self->closing_) return;
  if (self->in_request_ && !self->parser_.head_complete() && !self->response_started_) {
    // The head did not arrive in time: 408 where a response can still be sent.
    self->respond_error(408, "header-timeout", true);
    self->drive(nullptr, 0);
  } else if (!self->in_request_) {
    self->close();  // idle keep-alive (or a silent new connection) ran out
  }
}

// ---- writing ----

void ClientConn::flush_client() {
  if (out_.empty() || closing_) return;
  if (response_started_) response_flushed_ = true;
  int rc = out_.flush(as_stream(&socket_), worker_.context().writes, &ClientConn::on_write);
  if (rc < 0) close();
}

void ClientConn::flush_upstream() {
  if (up_) up_->flush();
}

void ClientConn::on_write(uv_write_t* req, int status) {
  std::unique_ptr<WriteOp> op(static_cast<WriteOp*>(req->data));
  auto* self = static_cast<ClientConn*>(req->handle->data);
  self->worker_.context().writes.put(std::move(op));
  if (self->closing_) return;
  if (status < 0) {
    self->close();
    return;
  }
  if (self->socket_.write_queue_size == 0 && self->close_when_flushed_ && self->out_.empty()) {
    self->close();
    return;
  }
  if (self->up_ && self->socket_.write_queue_size < kHighWaterBytes) self->up_->resume_reading();
}

void ClientConn::close_when_flushed() {
  close_when_flushed_ = true;
  stop_reading();
  uv_timer_stop(&timer_);
}

void ClientConn::respond_error(int status, const char* reason, bool close_after) {
  if (response_started_) {
    close();
    return;
  }
  const bool close_now = close_after || !client_keep_alive_ || draining_;
  http::build_error_response(status, reason, close_now, response_head_);
  out_.copy(response_head_);
  status_ = status;
  bytes_out_ += response_head_.size();
  response_started_ = true;
  response_done_ = true;
  if (close_now) {
    close_after_response_ = true;
    if (close_after) close_when_flushed();
  }
}

// ---- the client's request (http::Sink) ----

void ClientConn::on_message_begin(http::Parser&) {
  in_request_ = true;
  start_ns_ = uv_hrtime();
  arm_timer(worker_.limits().header_timeout_ms);
}

int ClientConn::local_error(int status, const char* reason) {
  if (request_has_body_ || upgrade_requested_) {
    respond_error(status, reason, true);
    return -1;
  }
  local_response_ = true;
  respond_error(status, reason, false);
  return 0;
}

int ClientConn::on_head(http::Parser& p) {
  uv_timer_stop(&timer_);
  http10_ = p.http_major() == 1 && p.http_minor() == 0;
  client_keep_alive_ = p.keep_alive();
  if (!client_keep_alive_ || draining_) close_after_response_ = true;
  head_request_ = p.method() == HTTP_HEAD;
  request_chunked_ = p.chunked();
  request_has_body_ = request_chunked_ || p.content_length() > 0;
  upgrade_requested_ = p.upgrade();

  // RFC 9112 §3.2: a request without Host (HTTP/1.1) or with more than one is malformed.
  int hosts = 0;
  for (const http::Header& h : p.headers()) hosts += http::iequals(h.name, "host");
  if ((!http10_ && hosts == 0) || hosts > 1) {
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
  snapshot_ = worker_.acquire_snapshot();
  const routing::RoutingTable& table = *snapshot_->table;

  std::string_view host = p.header("host");
  std::string_view path = p.url();
  if (!path.empty() && path.front() != '/') {
    // absolute-form: scheme://authority[/path][?query]; forwarded in origin-form with the
    // authority as Host (RFC 9112 §3.2.2).
    size_t scheme = path.find("://");
    if (scheme != std::string_view::npos) {
      std::string_view rest = path.substr(scheme + 3);
      size_t end = rest.find_first_of("/?");
      abs_host_ = host = rest.substr(0, end);
      abs_target_.clear();
      if (end == std::string_view::npos || rest[end] == '?') abs_target_ = "/";
      if (end != std::string_view::npos) abs_target_.append(rest.substr(end));
      path = abs_target_;
    }
  }
  size_t q = path.find('?');
  if (q != std::string_view::npos) path = path.substr(0, q);

  const routing::Route* route = table.match(host, path);
  if (!route) return local_error(404, "no-route");
  function_ = route->function;
  version_ = route->version;
  routing::Rng& rng = worker_.context().rng;
  if (!version_) {
    const routing::Alias& alias = *route->alias;
    if (alias.allow_override) {
      std::string_view want = p.header("x-sluice-version");
      if (!want.empty()) {
        size_t colon = want.rfind(':');
        if (colon != std::string_view::npos) want = want.substr(colon + 1);
        version_ = function_->find_version(want);
        if (!version_) return local_error(404, "unknown-version");
      }
    }
    if (!version_) {
      std::optional<double> point;
      if (alias.sticky.kind != config::StickySpec::Kind::kNone) {
        std::string_view key;
        if (alias.sticky.kind == config::StickySpec::Kind::kHeader)
          key = p.header(alias.sticky.name);
        else
          key = cookie_value(p.header("cookie"), alias.sticky.name);
        if (key.empty() && alias.sticky.issue) {
          std::string fresh;
          append_hex(fresh, rng.next());
          set_cookie_ = alias.sticky.name + "=" + fresh + "; Path=/; Max-Age=31536000; HttpOnly";
          point = routing::sticky_point(fresh);
        } else if (!key.empty()) {
          point = routing::sticky_point(key);
        }
      }
      version_ = alias.pick(rng.next(), point, *snapshot_->picks);
    }
  }
  if (!version_ || version_->endpoints.empty()) return local_error(503, "no-healthy-version");
  alias_ = route->alias;
  series_ = worker_.series(*snapshot_, alias_, version_);
  if (series_) series_->begin();

  std::atomic<int32_t>* limit = snapshot_->concurrency[version_->id];
  if (limit) {
    if (limit->fetch_add(1, std::memory_order_relaxed) >= int32_t(version_->max_concurrency)) {
      limit->fetch_sub(1, std::memory_order_relaxed);
      if (series_) series_->throttled(uv_now(worker_.context().loop));
      return local_error(429, "throttled");
    }
    concurrency_ = limit;
  }

  const routing::Endpoint* ep = version_->pick_endpoint(*snapshot_->picks);
  endpoint_ = ep;
  pool_ = snapshot_->pools[version_->id][size_t(ep - version_->endpoints.data())];

  request_id_.clear();
  if (!p.has_header("x-request-id")) {
    append_hex(request_id_, rng.next());
    append_hex(request_id_, rng.next());
  }
  http::UpstreamRequestInfo info;
  info.client_ip = client_ip_;
  info.request_id = request_id_;
  info.chunked_body = request_chunked_;
  info.upgrade = upgrade_requested_;
  if (!abs_target_.empty()) {
    info.target = abs_target_;
    info.host = abs_host_;
  }
  http::build_upstream_request(p, info, upstream_head_);

  if (!connect_upstream(false)) return local_error(502, "connect-failed");
  up_->out().borrow(upstream_head_);
  return 0;
}

bool ClientConn::connect_upstream(bool fresh) {
  up_ = fresh ? nullptr : pool_->take_idle();
  if (!up_) up_ = upstream::Connection::open(*pool_, version_->connect_timeout_ms);
  if (!up_) return false;
  up_->lend(this, version_->response_timeout_ms, head_request_);
  upstream_start_ns_ = uv_hrtime();
  return true;
}

int ClientConn::on_body(http::Parser&, const char* data, size_t len) {
  if (local_response_) return 0;
  body_bytes_in_ += len;
  const uint64_t max_body = worker_.limits().max_body_size;
  if (max_body && body_bytes_in_ > max_body) {
    release_upstream(false);
    respond_error(413, "body-too-large", true);
    return -1;
  }
  if (!up_) return 0;  // the upstream failed; the error response is already queued
  request_bytes_sent_ = true;
  Outbox& out = up_->out();
  if (request_chunked_) {
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
  request_done_ = true;
  if (request_chunked_ && up_ && !local_response_) up_->out().copy("0\r\n\r\n");
  return true;  // pause: the next pipelined request waits for this response
}

// ---- the upstream's response (upstream::Borrower) ----

int ClientConn::on_upstream_head(http::Parser& resp) {
  const int status = resp.status_code();
  http::ClientResponseInfo info;
  info.http10_client = http10_;
  if (status >= 100 && status < 200 && status != 101) {
    if (http10_) return 0;  // HTTP/1.0 clients get no interim responses
    http::build_client_response(resp, info, response_head_);
    out_.copy(response_head_);
    return 0;
  }
  if (status == 101 && !upgrade_requested_) return -1;
  const bool no_body = head_request_ || status == 204 || status == 304 || status == 101;
  const bool eof_body = !no_body && !resp.chunked() && !resp.has_content_length();
  chunk_response_ = !no_body && !http10_ && (resp.chunked() || eof_body);
  if (http10_ && (resp.chunked() || eof_body)) close_after_response_ = true;
  info.keep_alive = !close_after_response_;
  info.chunked = chunk_response_;
  info.upgrade = status == 101;
  info.version_header = function_->version_header;
  info.version_label = version_->label;
  info.set_cookie = set_cookie_;
  http::build_client_response(resp, info, response_head_);
  out_.borrow(response_head_);
  response_started_ = true;
  status_ = status;
  bytes_out_ += response_head_.size();
  return 0;
}

int ClientConn::on_upstream_body(const char* data, size_t len) {
  bytes_out_ += len;
  if (chunk_response_) {
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
  if (chunk_response_) out_.copy("0\r\n\r\n");
  response_done_ = true;
  upstream_end_ns_ = uv_hrtime();
  if (status == 101) {
    tunnel_ = true;
    up_->start_tunnel();
    if (!pending_in_.empty()) {
      up_->out().copy(pending_in_);
      pending_in_.clear();
    }
    uv_timer_stop(&timer_);
  } else if (!request_done_) {
    // Answered before the request body ended: the rest of the body cannot be framed reliably.
    close_after_response_ = true;
    close_when_flushed();
  }
  return true;
}

void ClientConn::on_upstream_raw(const char* data, size_t len) {
  out_.borrow(data, len);
}

void ClientConn::on_upstream_flush() {
  drive(nullptr, 0);
  if (!closing_ && up_ && socket_.write_queue_size > kHighWaterBytes) up_->pause_reading();
}

void ClientConn::on_upstream_drained() {
  update_reading();
}

namespace {
observe::FailureKind failure_kind(upstream::Failure kind) {
  switch (kind) {
    case upstream::Failure::kConnect:
      return observe::FailureKind::kConnectFailed;
    case upstream::Failure::kTimeout:
      return observe::FailureKind::kTimeout;
    case upstream::Failure::kReset:
      return observe::FailureKind::kReset;
    case upstream::Failure::kBadResponse:
      return observe::FailureKind::kBadResponse;
  }
  return observe::FailureKind::kNone;
}
}  // namespace

void ClientConn::on_upstream_failed(upstream::Failure kind, bool response_started, bool reused) {
  up_ = nullptr;
  if (closing_) return;
  failure_ = failure_kind(kind);
  if (tunnel_) {
    close_when_flushed();
    drive(nullptr, 0);
    return;
  }
  // A reused connection that died before any response byte: retry once on a fresh one when
  // replaying is safe (no body to resend, idempotent method).
  if (!response_started && reused && !retried_ && !request_has_body_ && !request_bytes_sent_ &&
      idempotent(parser_.method()) && kind == upstream::Failure::kReset && pool_) {
    retried_ = true;
    if (series_) series_->attempt_failed(failure_, uv_now(worker_.context().loop));
    failure_ = observe::FailureKind::kNone;
    if (connect_upstream(true)) {
      up_->out().borrow(upstream_head_);
      drive(nullptr, 0);
      return;
    }
  }
  if (response_started_ && !response_flushed_) {
    // The head is still only in our outbox: nothing reached the client, so it can still get
    // an honest error status instead of a truncated response.
    out_.clear();
    response_started_ = false;
    chunk_response_ = false;
    bytes_out_ = 0;
  }
  if (response_started_) {
    // Cut off mid-way: deliver what was relayed, then close (the only honest signal left).
    close_after_response_ = true;
    close_when_flushed();
    drive(nullptr, 0);
    return;
  }
  switch (kind) {
    case upstream::Failure::kConnect:
      respond_error(502, "connect-failed", !request_done_);
      break;
    case upstream::Failure::kTimeout:
      respond_error(504, "timeout", !request_done_);
      break;
    case upstream::Failure::kReset:
    case upstream::Failure::kBadResponse:
      respond_error(502, "bad-upstream-response", !request_done_);
      break;
  }
  drive(nullptr, 0);
}

void ClientConn::release_upstream(bool reusable) {
  if (!up_) return;
  upstream::Connection* up = std::exchange(up_, nullptr);
  up->release(reusable && request_done_ && response_done_ && !tunnel_);
}

}  // namespace sluice::worker
