// HTTP/2 client connections: nghttp2 framing, streams served by ClientConns (see h2_session.h).
#include "worker/h2_session.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "http/grpc.h"
#include "http/rewrite.h"
#include "worker/client_conn.h"
#include "worker/worker.h"

namespace sluice::worker {
namespace {

// Our output waiting in the socket above this: nghttp2 is not asked for more frames, and the
// client's bytes are not read (its PINGs and SETTINGS would only pile up more answers).
constexpr size_t kSocketHighWater = 256 * 1024;
constexpr uint32_t kStreamWindow = 65535;  // per stream, as RFC 9113's default
// Abuse budgets (h2_session.h).
constexpr uint64_t kDecodedHeaderFactor = 4;  // a header list may decode to 4x the head limit
constexpr uint32_t kMaxContinuations = 64;    // CONTINUATION frames in one header block
constexpr uint64_t kEarlyResetBudget = 100;   // streams cancelled early, and over half of them
constexpr uint32_t kControlFramesPerSecond = 1000;  // PING + SETTINGS from the client

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

// ---- H2Stream: the request side ----

H2Stream::H2Stream(H2Session& session, int32_t id, uint32_t max_head_bytes, uint32_t max_headers)
    : session_(session),
      id_(id),
      max_head_bytes_(max_head_bytes),
      max_headers_(max_headers),
      parser_(HTTP_RESPONSE, *this, max_head_bytes * 2 + 4096, max_headers * 2 + 16) {
  parser_.keep_trailers(true);  // the upstream's trailers become a trailing HEADERS frame
}

void H2Stream::reuse(int32_t id) {
  auto clear = [](std::string& s) {
    if (s.capacity() > 16 * 1024)
      std::string().swap(s);
    else
      s.clear();
  };
  id_ = id;
  conn_ = nullptr;
  events_ = nullptr;
  for (std::string* s :
       {&method_, &path_, &authority_, &cookie_, &head_, &in_, &names_, &trailer_text_, &body_})
    clear(*s);
  unacked_ = 0;
  decoded_ = 0;
  header_count_ = 0;
  has_length_ = chunked_ = grpc_ = head_request_ = request_ended_ = false;
  reading_ = delivering_ = false;
  parser_.reset();
  views_.clear();
  nv_.clear();
  trailer_nv_.clear();
  body_off_ = 0;
  head_parsed_ = head_submitted_ = trailers_only_ = response_end_ = deferred_ = false;
  closed_by_conn_ = nghttp2_closed_ = reset_sent_ = written_pending_ = end_sent_ = false;
}

bool H2Stream::add_header(std::string_view name, std::string_view value) {
  decoded_ += name.size() + value.size() + 32;  // RFC 9113 §6.5.2's size of a field
  if (decoded_ > kDecodedHeaderFactor * max_head_bytes_) return false;
  if (!name.empty() && name[0] == ':') {
    // nghttp2 has checked the pseudo-headers (each once, before the regular ones, no others).
    if (name == ":method")
      method_ = value;
    else if (name == ":path")
      path_ = value;
    else if (name == ":authority")
      authority_ = value;
    return true;
  }
  if (name == "cookie") {  // RFC 9113 §8.2.3: crumbs are joined again for HTTP/1.1
    if (!cookie_.empty()) cookie_ += "; ";
    cookie_.append(value);
    return true;
  }
  if (name == "host" && !authority_.empty()) return true;  // :authority wins (RFC 9113 §8.3.1)
  if (name == "content-length") has_length_ = true;
  if (name == "content-type" && http::is_grpc(value)) grpc_ = true;
  // Past the limits the head is not grown further: it is already too large, and the engine's
  // parser answers 431 exactly as for HTTP/1.1.
  if (head_.size() > max_head_bytes_ || ++header_count_ > max_headers_ + 1) return true;
  head_.append(name).append(": ").append(value).append("\r\n");
  return true;
}

void H2Stream::head_complete(bool end_stream) {
  head_request_ = method_ == "HEAD";
  if (method_ == "CONNECT") path_ = authority_;  // answered 405 by the engine
  // The whole HTTP/1.1 head goes into in_ (empty until now; its capacity kept across streams).
  in_.append(method_).append(" ").append(path_).append(" HTTP/1.1\r\n");
  if (!authority_.empty()) in_.append("host: ").append(authority_).append("\r\n");
  if (!cookie_.empty()) in_.append("cookie: ").append(cookie_).append("\r\n");
  in_.append(head_);
  if (!end_stream && !has_length_) {
    chunked_ = true;
    in_.append("transfer-encoding: chunked\r\n");
  }
  // One request per engine: it answers and closes (its Connection: close is not forwarded).
  in_.append("connection: close\r\n\r\n");
  head_.clear();
  cookie_.clear();

  ClientConn* conn = session_.worker_.open_stream_conn();
  conn_ = conn;
  events_ = conn;
  if (!conn->accept_stream(*this, session_.owner_.client_ip(), session_.owner_.trusted_peer_,
                           session_.secure_)) {
    conn_ = nullptr;
    events_ = nullptr;
    if (!conn->has_handles()) session_.worker_.erase(conn);
    in_.clear();
    closed_by_conn_ = true;
    reset_sent_ = true;
    nghttp2_submit_rst_stream(session_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_REFUSED_STREAM);
    return;
  }
  if (end_stream)
    request_end();
  else
    deliver();
}

void H2Stream::request_data(const char* data, size_t len) {
  if (closed_by_conn_ || request_ended_ || end_sent_) {
    // Nobody reads it any more: the window is given back at once.
    nghttp2_session_consume(session_.session_, id_, len);
    return;
  }
  if (chunked_) {
    http::append_chunk_header(len, in_);
    in_.append(data, len).append("\r\n");
  } else {
    in_.append(data, len);
  }
  unacked_ += len;
  deliver();
}

void H2Stream::request_end() {
  if (request_ended_) return;
  request_ended_ = true;
  if (chunked_ && !closed_by_conn_) in_.append("0\r\n\r\n");
  deliver();
}

int H2Stream::start_reading() {
  reading_ = true;
  deliver();
  return 0;
}

void H2Stream::deliver() {
  if (!reading_ || delivering_ || closed_by_conn_ || in_.empty() || !events_) return;
  delivering_ = true;
  std::string bytes;
  bytes.swap(in_);
  const size_t acked = std::exchange(unacked_, 0);
  // The engine parses all of it now (it holds what it cannot use yet), so the window opens.
  if (acked) {
    if (nghttp2_closed_)
      nghttp2_session_consume_connection(session_.session_, acked);
    else
      nghttp2_session_consume(session_.session_, id_, acked);
  }
  H2Session& session = session_;
  events_->on_stream_data(bytes.data(), bytes.size());  // may close this stream's engine
  delivering_ = false;
  session.send_soon();
}

// ---- H2Stream: the response side ----

int H2Stream::write(net::Outbox& out) {
  if (closed_by_conn_ || nghttp2_closed_) {
    out.clear();
    return closed_by_conn_ ? UV_EPIPE : 0;
  }
  out.views(views_);
  for (std::string_view piece : views_) {
    if (response_end_) break;  // nothing follows a response on this stream
    const http::Parser::Result r = parser_.feed(piece.data(), piece.size());
    if (r.status == http::Parser::Status::kError) {
      // Our own engine wrote it, so this cannot happen; the stream ends rather than lie.
      out.clear();
      response_end_ = true;
      if (!reset_sent_) {
        reset_sent_ = true;
        nghttp2_submit_rst_stream(session_.session_, NGHTTP2_FLAG_NONE, id_,
                                  NGHTTP2_INTERNAL_ERROR);
      }
      session_.send_soon();
      return 0;
    }
  }
  out.clear();
  if (head_parsed_ && !head_submitted_) {
    submit_head();
  } else if (head_submitted_ && deferred_ && (queued_bytes() > 0 || response_end_)) {
    deferred_ = false;
    nghttp2_session_resume_data(session_.session_, id_);
  }
  session_.send_soon();
  return 0;
}

int H2Stream::on_head(http::Parser& p) {
  const int status = p.status_code();
  if (status < 200) return 0;  // interim responses are not relayed over HTTP/2
  head_parsed_ = true;
  nv_.clear();
  names_.clear();
  static constexpr std::string_view kStatusDigits = "0123456789";
  char* s = status_text_;
  s[0] = kStatusDigits[(status / 100) % 10];
  s[1] = kStatusDigits[(status / 10) % 10];
  s[2] = kStatusDigits[status % 10];
  const std::string_view sluice_error = p.header("x-sluice-error");
  if (grpc_ && status != 200 && !sluice_error.empty()) {
    // sluice answered this gRPC call itself: say it the way a gRPC client reads it (HTTP 200,
    // trailers only), not with a status line it cannot interpret.
    trailers_only_ = true;
    const int code = http::grpc_status_for_http(status);
    const int n = std::snprintf(grpc_code_, sizeof grpc_code_, "%d", code);
    nv_.push_back(make_nv(":status", "200"));
    nv_.push_back(make_nv("content-type", "application/grpc"));
    nv_.push_back(make_nv("grpc-status", std::string_view(grpc_code_, size_t(n))));
    nv_.push_back(make_nv("grpc-message", sluice_error));
    nv_.push_back(make_nv("x-sluice-error", sluice_error));
    const std::string_view request_id = p.header("x-request-id");
    if (!request_id.empty()) nv_.push_back(make_nv("x-request-id", request_id));
    return 1;  // the HTTP/1.1 body of the error is not relayed
  }
  nv_.push_back(make_nv(":status", std::string_view(s, 3)));
  size_t total = 0;
  for (const http::Header& h : p.headers()) total += h.name.size();
  names_.reserve(total);  // no reallocation below: nv_ points into names_
  for (const http::Header& h : p.headers()) {
    if (http::is_hop_by_hop(h.name)) continue;  // Connection, Transfer-Encoding, Keep-Alive...
    const size_t at = names_.size();
    for (char c : h.name) names_.push_back(c >= 'A' && c <= 'Z' ? char(c + 32) : c);
    nv_.push_back(make_nv(std::string_view(names_).substr(at, h.name.size()), h.value));
  }
  return (head_request_ || status == 204 || status == 304) ? 1 : 0;
}

int H2Stream::on_body(http::Parser&, const char* data, size_t len) {
  if (trailers_only_) return 0;
  if (body_off_ && body_off_ == body_.size()) {
    body_.clear();
    body_off_ = 0;
  }
  body_.append(data, len);
  return 0;
}

bool H2Stream::on_message_end(http::Parser& p) {
  if (p.status_code() < 200) return false;  // the final response follows
  response_end_ = true;
  if (!p.trailers().empty() && !trailers_only_) {
    size_t total = 0;
    for (const http::Header& t : p.trailers()) total += t.name.size() + t.value.size();
    trailer_text_.reserve(total);  // no reallocation below: trailer_nv_ points into it
    for (const http::Header& t : p.trailers()) {
      if (http::is_hop_by_hop(t.name)) continue;
      const size_t at = trailer_text_.size();
      for (char c : t.name) trailer_text_.push_back(c >= 'A' && c <= 'Z' ? char(c + 32) : c);
      trailer_text_.append(t.value);
      const std::string_view all(trailer_text_);
      trailer_nv_.push_back(
          make_nv(all.substr(at, t.name.size()), all.substr(at + t.name.size(), t.value.size())));
    }
  }
  return true;
}

void H2Stream::submit_head() {
  head_submitted_ = true;
  nghttp2_session* s = session_.session_;
  if (trailers_only_ || (response_end_ && queued_bytes() == 0 && trailer_nv_.empty())) {
    nghttp2_submit_response(s, id_, nv_.data(), nv_.size(), nullptr);  // END_STREAM on HEADERS
  } else {
    nghttp2_data_provider provider{};
    provider.source.ptr = this;
    provider.read_callback = &H2Session::read_cb;
    nghttp2_submit_response(s, id_, nv_.data(), nv_.size(), &provider);
  }
  nv_.clear();
  names_.clear();
}

ssize_t H2Stream::read_body(uint8_t* buf, size_t length, uint32_t* flags) {
  const size_t n = std::min(queued_bytes(), length);
  if (n) {
    std::memcpy(buf, body_.data() + body_off_, n);
    body_off_ += n;
    if (body_off_ == body_.size()) {
      body_.clear();
      body_off_ = 0;
    }
    if (!written_pending_) {
      written_pending_ = true;
      session_.written_.push_back(this);
    }
  }
  if (queued_bytes() == 0 && response_end_) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!trailer_nv_.empty()) {
      // The stream ends with the trailers' HEADERS frame instead (gRPC's status).
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      nghttp2_submit_trailer(session_.session_, id_, trailer_nv_.data(), trailer_nv_.size());
      trailer_nv_.clear();
    }
    return ssize_t(n);
  }
  if (n == 0) {
    deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return ssize_t(n);
}

void H2Stream::close() {
  if (closed_by_conn_) return;
  closed_by_conn_ = true;
  net::StreamEvents* events = std::exchange(events_, nullptr);
  conn_ = nullptr;
  in_.clear();
  if (const size_t unacked = std::exchange(unacked_, 0)) {
    if (nghttp2_closed_)
      nghttp2_session_consume_connection(session_.session_, unacked);
    else
      nghttp2_session_consume(session_.session_, id_, unacked);
  }
  if (!nghttp2_closed_ && !reset_sent_ && !(head_submitted_ && response_complete())) {
    // The engine gave up before the response was complete (a timeout, an upstream cut off
    // mid-way): the client must not take a truncated response for a whole one.
    reset_sent_ = true;
    nghttp2_submit_rst_stream(session_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_INTERNAL_ERROR);
  }
  H2Session& session = session_;
  if (nghttp2_closed_) session.retire(this);
  if (events) events->on_stream_closed();
  session.send_soon();
}

// ---- H2Session ----

H2Session::H2Session(Worker& worker, ClientConn& owner, net::Stream& io, bool secure)
    : worker_(worker), owner_(owner), io_(io), secure_(secure) {}

H2Session::~H2Session() {
  worker_.context().cancel(this);
  if (session_) nghttp2_session_del(session_);
}

void H2Session::send_soon() {
  if (depth_ > 0) {
    send_again_ = true;  // inside nghttp2: on_data sends once it returns
    return;
  }
  if (!worker_.context().defer(this)) send();
}

void H2Session::run_deferred() {
  send();
  bury_dead();  // here no stream's call is on the stack
}

void H2Session::bury_dead() {
  const config::LimitsSpec& limits = worker_.limits();
  for (std::unique_ptr<H2Stream>& s : dead_) {
    if (spare_.size() >= 16 || s->max_head_bytes_ != limits.max_header_bytes ||
        s->max_headers_ != limits.max_headers)
      continue;  // freed below
    s->reuse(0);
    spare_.push_back(std::move(s));
  }
  dead_.clear();
}

uint64_t H2Session::now_ms() const {
  return uv_now(worker_.context().loop);
}

namespace {
nghttp2_session_callbacks* callbacks() {
  static nghttp2_session_callbacks* const cbs = [] {
    nghttp2_session_callbacks* c = nullptr;
    nghttp2_session_callbacks_new(&c);
    return c;
  }();
  return cbs;
}
}  // namespace

bool H2Session::start() {
  nghttp2_session_callbacks* cbs = callbacks();
  if (!cbs) return false;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &H2Session::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &H2Session::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &H2Session::on_frame_recv);
  nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, &H2Session::on_begin_frame);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &H2Session::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &H2Session::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &H2Session::on_frame_send);
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) return false;
  // Request bytes are acknowledged when the stream's engine takes them (back-pressure).
  nghttp2_option_set_no_auto_window_update(opt, 1);
  const int rc = nghttp2_session_server_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  if (rc != 0) {
    session_ = nullptr;
    return false;
  }
  const config::LimitsSpec& limits = worker_.limits();
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits.max_header_bytes},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  // The connection's window lets every stream fill its own: one slow stream cannot hold the
  // window the others need.
  nghttp2_session_set_local_window_size(
      session_, NGHTTP2_FLAG_NONE, 0,
      int32_t(std::min<uint64_t>(uint64_t{limits.max_concurrent_streams} * kStreamWindow,
                                 (uint64_t{1} << 31) - 1)));
  set_idle(true);
  return true;
}

H2Stream* H2Session::stream(int32_t id) const {
  return static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session_, id));
}

void H2Session::set_idle(bool idle) {
  if (idle) idle_since_ms_ = now_ms();
  owner_.set_waiting(idle && !finishing_);
}

void H2Session::retire(H2Stream* s) {
  auto it = streams_.find(s->id_);
  if (it == streams_.end()) return;
  if (s->written_pending_) {
    auto w = std::find(written_.begin(), written_.end(), s);
    if (w != written_.end()) written_.erase(w);
  }
  dead_.push_back(std::move(it->second));
  streams_.erase(it);
}

void H2Session::on_data(const char* data, size_t len) {
  if (finishing_ || !session_) return;
  ++depth_;
  const ssize_t rv =
      nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), len);
  --depth_;
  if (rv < 0) {
    // A protocol error (nghttp2 queued GOAWAY where one is due), a flood, or abuse seen by a
    // callback: whatever is queued goes out, then the connection closes.
    if (rv != NGHTTP2_ERR_CALLBACK_FAILURE)
      nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
    finishing_ = true;
  }
  send();
  bury_dead();
}

void H2Session::on_written() {
  send();
  if (!finishing_ && io_.queued_bytes() < kSocketHighWater) io_.start_reading();
  bury_dead();
}

void H2Session::send() {
  if (!session_ || aborted_) return;
  if (depth_ > 0 || sending_) {
    send_again_ = true;
    return;
  }
  sending_ = true;
  do {
    send_again_ = false;
    while (io_.queued_bytes() < kSocketHighWater) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n <= 0) {
        if (n < 0) finishing_ = true;  // nghttp2 cannot go on (out of memory)
        break;
      }
      out_.copy(std::string_view(reinterpret_cast<const char*>(data), size_t(n)));
    }
    if (!out_.empty()) {
      if (io_.queued_bytes() == 0) owner_.out_progress_ms_ = now_ms();
      if (io_.write(out_) < 0) {
        sending_ = false;
        owner_.close();
        return;
      }
    }
    if (!reset_after_write_.empty()) {
      // RST_STREAM NO_ERROR for streams answered before their request ended (on_frame_send),
      // in a write of its own.
      for (const int32_t id : reset_after_write_) {
        H2Stream* s = stream(id);
        if (s && !s->reset_sent_ && !s->request_ended_) {
          s->reset_sent_ = true;
          nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR);
          send_again_ = true;
        }
      }
      reset_after_write_.clear();
    }
    std::vector<H2Stream*> written;
    written.swap(written_);
    for (H2Stream* s : written) {
      s->written_pending_ = false;
      if (s->events_) s->events_->on_stream_written(0);
    }
    written.clear();
    if (written_.empty()) written_.swap(written);  // keep the capacity
  } while (send_again_ && !aborted_);
  sending_ = false;
  if (aborted_) return;
  if (io_.queued_bytes() >= kSocketHighWater) io_.stop_reading();
  if (!finishing_ && ((draining_ && streams_open_ == 0) || (!nghttp2_session_want_read(session_) &&
                                                            !nghttp2_session_want_write(session_))))
    finishing_ = true;
  if (finishing_) {
    io_.stop_reading();
    owner_.set_waiting(false);
    if (io_.queued_bytes() == 0 && out_.empty()) {
      owner_.close();
      return;
    }
  }
  owner_.schedule();
}

void H2Session::abuse() {
  nghttp2_session_terminate_session(session_, NGHTTP2_ENHANCE_YOUR_CALM);
  finishing_ = true;
}

void H2Session::drain() {
  if (!session_ || draining_ || finishing_) return;
  draining_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  send();
}

void H2Session::abort() {
  if (aborted_) return;
  aborted_ = true;
  std::vector<ClientConn*> conns;
  for (auto& [id, s] : streams_)
    if (s->conn_) conns.push_back(s->conn_);
  for (ClientConn* c : conns) c->close();
}

uint64_t H2Session::deadline() const {
  if (!dead_.empty()) return 0;  // free them from the timer, outside any stream's call
  const config::LimitsSpec& limits = worker_.limits();
  uint64_t d = UINT64_MAX;
  if (head_started_ms_) d = head_started_ms_ + limits.header_timeout_ms;
  if (streams_open_ == 0) d = std::min(d, idle_since_ms_ + limits.idle_timeout_ms);
  return d;
}

void H2Session::on_deadline() {
  bury_dead();
  if (finishing_ || aborted_) return;
  const config::LimitsSpec& limits = worker_.limits();
  const uint64_t now = now_ms();
  if (head_started_ms_ && now >= head_started_ms_ + limits.header_timeout_ms) {
    abuse();  // a header block that does not end (slowloris over HTTP/2)
  } else if (streams_open_ == 0 && now >= idle_since_ms_ + limits.idle_timeout_ms) {
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                          nullptr, 0);
    finishing_ = true;
  }
  send();
}

// ---- nghttp2 callbacks ----

ssize_t H2Session::read_cb(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                           nghttp2_data_source* source, void*) {
  return static_cast<H2Stream*>(source->ptr)->read_body(buf, length, flags);
}

int H2Session::on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Session*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  self->head_started_ms_ = self->now_ms();
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;  // trailers of a request
  const config::LimitsSpec& limits = self->worker_.limits();
  const int32_t id = frame->hd.stream_id;
  std::unique_ptr<H2Stream> s;
  if (!self->spare_.empty()) {
    s = std::move(self->spare_.back());
    self->spare_.pop_back();
    s->id_ = id;
  } else {
    s = std::make_unique<H2Stream>(*self, id, limits.max_header_bytes, limits.max_headers);
  }
  nghttp2_session_set_stream_user_data(session, id, s.get());
  self->streams_[id] = std::move(s);
  ++self->streams_opened_;
  if (self->streams_open_++ == 0) self->set_idle(false);
  return 0;
}

int H2Session::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                         size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                         void* user) {
  auto* self = static_cast<H2Session*>(user);
  H2Stream* s = self->stream(frame->hd.stream_id);
  if (!s) return 0;
  const std::string_view n(reinterpret_cast<const char*>(name), namelen);
  const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    // Request trailers are not forwarded to an HTTP/1.1 upstream; they still count.
    s->decoded_ += namelen + valuelen + 32;
    if (s->decoded_ <= kDecodedHeaderFactor * s->max_head_bytes_) return 0;
  } else if (s->add_header(n, v)) {
    return 0;
  }
  self->abuse();  // a header list that decodes to far more than any head we accept
  return NGHTTP2_ERR_CALLBACK_FAILURE;
}

int H2Session::on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user) {
  auto* self = static_cast<H2Session*>(user);
  if (hd->type == NGHTTP2_HEADERS) {
    self->continuations_ = 0;
  } else if (hd->type == NGHTTP2_CONTINUATION && ++self->continuations_ > kMaxContinuations) {
    self->abuse();
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

int H2Session::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Session*>(user);
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      self->head_started_ms_ = 0;
      H2Stream* s = self->stream(frame->hd.stream_id);
      if (!s) return 0;
      const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        s->head_complete(end);
      else if (end)
        s->request_end();
      return 0;
    }
    case NGHTTP2_DATA: {
      H2Stream* s = self->stream(frame->hd.stream_id);
      if (s && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) s->request_end();
      return 0;
    }
    case NGHTTP2_RST_STREAM: {
      H2Stream* s = self->stream(frame->hd.stream_id);
      if (s && !s->response_end_) {
        // Rapid reset (CVE-2023-44487): streams opened and cancelled in a loop make us start
        // (and abandon) upstream work for nothing.
        ++self->early_resets_;
        if (self->early_resets_ > kEarlyResetBudget &&
            self->early_resets_ * 2 > self->streams_opened_) {
          self->abuse();
          return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
      }
      return 0;
    }
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS: {
      if (frame->hd.flags & NGHTTP2_FLAG_ACK) return 0;
      const uint64_t now = self->now_ms();
      if (now >= self->control_window_ms_ + 1000) {
        self->control_window_ms_ = now;
        self->control_frames_ = 0;
      }
      if (++self->control_frames_ > kControlFramesPerSecond) {
        self->abuse();
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      }
      return 0;
    }
    default:
      return 0;
  }
}

int H2Session::on_data_chunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data,
                             size_t len, void* user) {
  auto* self = static_cast<H2Session*>(user);
  H2Stream* s = self->stream(id);
  if (!s) {
    nghttp2_session_consume(session, id, len);
    return 0;
  }
  s->request_data(reinterpret_cast<const char*>(data), len);
  return 0;
}

int H2Session::on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* user) {
  auto* self = static_cast<H2Session*>(user);
  H2Stream* s = self->stream(id);
  if (!s) return 0;
  s->nghttp2_closed_ = true;
  if (--self->streams_open_ == 0) self->set_idle(true);
  // Reset by the client, or ended by an error: its engine stops now (the client left: not the
  // version's fault). A stream that ended normally lets its engine finish its bookkeeping
  // (the upstream connection goes back to its pool) and close by itself.
  if (s->conn_ && (error_code != NGHTTP2_NO_ERROR || !s->response_end_)) s->conn_->close();
  if (s->closed_by_conn_) self->retire(s);
  return 0;
}

int H2Session::on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Session*>(user);
  if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  (void)session;
  H2Stream* s = self->stream(frame->hd.stream_id);
  if (!s || s->request_ended_) return 0;
  // The response is complete before the request: the rest of it is not wanted, which the client
  // is told with RST_STREAM NO_ERROR (RFC 9113 §8.1) -- in the write after the response's, as
  // nginx does: curl 7.88 reports a reset read together with the response as an error, and
  // stops reading after a response that ends before its upload, never seeing a later one.
  s->end_sent_ = true;
  self->reset_after_write_.push_back(frame->hd.stream_id);
  return 0;
}

}  // namespace sluice::worker
