// HTTP/2 upstream sessions and the channels connections speak HTTP/1.1 over (see h2_client.h).
#include "upstream/h2_client.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

#include "http/rewrite.h"
#include "upstream/connection.h"

namespace sluice::upstream {
namespace {

constexpr size_t kSocketHighWater = 256 * 1024;
constexpr uint32_t kStreamWindow = 1u << 20;      // per stream: the upstream may run ahead 1 MiB
constexpr int32_t kConnectionWindow = 16u << 20;  // per session
constexpr size_t kMaxChannelsPerSession = 256;    // channels per session, whatever it allows
// The request head the connection writes was built from a client request within its limits.
constexpr uint32_t kMaxRequestHead = 16u << 20;
constexpr uint32_t kMaxRequestHeaders = 10000;

bool is_pseudo(std::string_view name) {
  return !name.empty() && name[0] == ':';
}

}  // namespace

// ---- H2Channel ----

H2Channel::H2Channel(H2Client& client, net::StreamEvents& owner)
    : client_(&client),
      events_(&owner),
      request_(HTTP_REQUEST, *this, kMaxRequestHead, kMaxRequestHeaders) {}

H2Channel::~H2Channel() = default;

bool H2Channel::ready() const {
  return client_ && client_->connected();
}

void H2Channel::connected(int status) {
  if (events_) events_->on_stream_connected(status);
}

int H2Channel::start_reading() {
  reading_ = true;
  deliver();
  return 0;
}

int H2Channel::write(net::Outbox& out) {
  if (closed_ || !client_ || !client_->session_) {
    out.clear();
    return UV_EPIPE;
  }
  if (stream_id_ < 0 && !head_ready_ && !request_.in_message()) {
    // A new exchange on this connection: a new stream.
    request_.reset();
    body_.clear();
    body_off_ = 0;
    in_.clear();
    request_end_ = deferred_ = false;
    status_ = 0;
    final_seen_ = chunked_ = response_end_ = has_length_ = false;
    fields_.clear();
  }
  out.views(views_);
  for (std::string_view piece : views_) {
    if (request_end_) break;
    const http::Parser::Result r = request_.feed(piece.data(), piece.size());
    if (r.status == http::Parser::Status::kError) {
      out.clear();
      return UV_EPROTO;  // cannot happen: the connection wrote a request head sluice built
    }
  }
  out.clear();
  if (head_ready_ && stream_id_ < 0) {
    submit();
  } else if (stream_id_ >= 0 && deferred_ && (queued_bytes() > 0 || request_end_)) {
    deferred_ = false;
    nghttp2_session_resume_data(client_->session_, stream_id_);
  }
  if (client_) client_->send_soon();
  return 0;
}

int H2Channel::on_head(http::Parser& p) {
  head_request_ = p.method() == HTTP_HEAD;
  // Every name and value is copied into nv_text_, whose capacity is reserved first so that
  // nothing moves while nv_ points into it.
  size_t total = p.url().size() + p.method_name().size() + 64;
  for (const http::Header& h : p.headers()) total += h.name.size() + h.value.size();
  nv_text_.clear();
  nv_text_.reserve(total);
  nv_.clear();
  auto keep = [&](std::string_view name, std::string_view value, bool lower) {
    const size_t at = nv_text_.size();
    for (char c : name) nv_text_.push_back(lower && c >= 'A' && c <= 'Z' ? char(c + 32) : c);
    nv_text_.append(value);
    auto* text = reinterpret_cast<uint8_t*>(nv_text_.data());
    nv_.push_back(
        {text + at, text + at + name.size(), name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
  };
  keep(":method", p.method_name(), false);
  keep(":scheme", client_ && client_->tls_ ? "https" : "http", false);
  keep(":authority", p.header("host"), false);
  keep(":path", p.url(), false);
  for (const http::Header& h : p.headers()) {
    // Connection-specific fields have no place in HTTP/2 (RFC 9113 §8.2.2); Host is :authority.
    if (http::is_hop_by_hop(h.name) || http::iequals(h.name, "host") ||
        http::iequals(h.name, "transfer-encoding"))
      continue;
    keep(h.name, h.value, true);
  }
  keep("te", "trailers", false);  // we relay trailers (gRPC requires the field)
  head_ready_ = true;
  return 0;
}

int H2Channel::on_body(http::Parser&, const char* data, size_t len) {
  if (body_off_ && body_off_ == body_.size()) {
    body_.clear();
    body_off_ = 0;
  }
  body_.append(data, len);
  return 0;
}

bool H2Channel::on_message_end(http::Parser&) {
  request_end_ = true;
  return true;
}

void H2Channel::submit() {
  nghttp2_data_provider provider{};
  provider.source.ptr = this;
  provider.read_callback = &H2Client::read_cb;
  const bool no_body = request_end_ && queued_bytes() == 0;
  const int32_t id = nghttp2_submit_request(client_->session_, nullptr, nv_.data(), nv_.size(),
                                            no_body ? nullptr : &provider, this);
  head_ready_ = false;
  nv_.clear();
  if (id < 0) {
    // The session takes no new stream (GOAWAY, ids used up): nothing was sent, which the
    // connection's borrower may retry elsewhere.
    client_->broken_ = true;
    if (events_) events_->on_stream_end(UV_ECONNRESET);
    return;
  }
  stream_id_ = id;
}

ssize_t H2Channel::read_body(uint8_t* buf, size_t length, uint32_t* flags) {
  const size_t n = std::min(queued_bytes(), length);
  if (n) {
    std::memcpy(buf, body_.data() + body_off_, n);
    body_off_ += n;
    if (body_off_ == body_.size()) {
      body_.clear();
      body_off_ = 0;
    }
    if (!written_pending_ && client_) {
      written_pending_ = true;
      client_->written_.push_back(this);
    }
  }
  if (queued_bytes() == 0 && request_end_) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return ssize_t(n);
  }
  if (n == 0) {
    deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return ssize_t(n);
}

void H2Channel::response_header(std::string_view name, std::string_view value) {
  if (name == ":status") {
    int status = 0;
    for (char c : value) status = status * 10 + (c - '0');
    status_ = status;
    return;
  }
  if (is_pseudo(name) || http::is_hop_by_hop(name)) return;
  if (!final_seen_ && name == "content-length") has_length_ = true;
  fields_.append(name).append(": ").append(value).append("\r\n");
}

void H2Channel::response_headers_done(bool end_stream) {
  if (!final_seen_) {
    char line[64];
    const std::string_view text = http::status_text(status_);
    const int n = std::snprintf(line, sizeof line, "HTTP/1.1 %d ", status_);
    in_.append(line, size_t(n)).append(text).append("\r\n").append(fields_);
    fields_.clear();
    if (status_ < 200) {
      in_.append("\r\n");  // an interim response; the final one follows
      has_length_ = false;
      deliver();
      return;
    }
    final_seen_ = true;
    const bool no_body = head_request_ || status_ == 204 || status_ == 304;
    if (!no_body && !has_length_) {
      if (end_stream) {
        in_.append("content-length: 0\r\n");  // a trailers-only gRPC answer, say
      } else {
        chunked_ = true;  // the upstream's trailers can follow the last chunk
        in_.append("transfer-encoding: chunked\r\n");
      }
    }
    in_.append("\r\n");
    if (end_stream) response_end_ = true;
  } else {
    // Trailers: after the last chunk, where HTTP/1.1 carries them.
    if (chunked_) in_.append("0\r\n").append(fields_).append("\r\n");
    fields_.clear();
    response_end_ = true;
  }
  deliver();
}

void H2Channel::response_data(const uint8_t* data, size_t len) {
  if (!events_) {
    if (client_ && client_->session_) nghttp2_session_consume_connection(client_->session_, len);
    return;
  }
  if (chunked_) {
    http::append_chunk_header(len, in_);
    in_.append(reinterpret_cast<const char*>(data), len).append("\r\n");
  } else {
    in_.append(reinterpret_cast<const char*>(data), len);
  }
  unacked_ += len;
  deliver();
}

void H2Channel::deliver() {
  if (!reading_ || delivering_ || in_.empty() || !events_) return;
  delivering_ = true;
  std::string bytes;
  bytes.swap(in_);
  if (const size_t acked = std::exchange(unacked_, 0); acked && client_ && client_->session_) {
    if (stream_id_ < 0 || nghttp2_session_consume(client_->session_, stream_id_, acked) != 0)
      nghttp2_session_consume_connection(client_->session_, acked);
  }
  events_->on_stream_data(bytes.data(), bytes.size());  // may close this channel
  delivering_ = false;
  if (in_.empty()) {
    bytes.clear();
    in_.swap(bytes);  // keep the capacity
  }
  if (client_) client_->send_soon();
}

void H2Channel::stream_closed(uint32_t error_code) {
  const bool complete = response_end_;
  stream_id_ = -1;
  head_ready_ = deferred_ = false;
  if (complete || !events_) return;
  // Reset, refused, or cut by a GOAWAY before the response ended: the exchange failed. The
  // connection above fails it as a reset (retried where that is safe).
  (void)error_code;
  in_.clear();
  if (client_ && client_->session_ && unacked_)
    nghttp2_session_consume_connection(client_->session_, std::exchange(unacked_, 0));
  events_->on_stream_end(UV_ECONNRESET);
}

void H2Channel::session_ended(int status) {
  H2Client* client = std::exchange(client_, nullptr);
  if (client) client->detach(this);
  if (events_) events_->on_stream_end(status);
}

void H2Channel::close() {
  if (closed_) return;
  closed_ = true;
  net::StreamEvents* events = std::exchange(events_, nullptr);
  if (H2Client* client = std::exchange(client_, nullptr)) {
    if (client->session_ && stream_id_ >= 0) {
      nghttp2_session_set_stream_user_data(client->session_, stream_id_, nullptr);
      if (!response_end_)
        nghttp2_submit_rst_stream(client->session_, NGHTTP2_FLAG_NONE, stream_id_, NGHTTP2_CANCEL);
      if (unacked_) nghttp2_session_consume_connection(client->session_, unacked_);
    }
    client->detach(this);
    client->send_soon();
  }
  stream_id_ = -1;
  if (events) events->on_stream_closed();
}

// ---- H2Client ----

H2Client::H2Client(Pool& pool) : pool_(pool), tcp_(pool.context(), *this) {}

H2Client::~H2Client() {
  pool_.context().cancel(this);
  if (session_) nghttp2_session_del(session_);
}

void H2Client::send_soon() {
  if (depth_ > 0 || closing_) {
    send_again_ = depth_ > 0;  // inside nghttp2: on_stream_data sends once it returns
    return;
  }
  if (!pool_.context().defer(this)) send();
}

bool H2Client::open() {
  auto give_up = [this] {
    if (tcp_.open()) close();  // on_stream_closed() follows
    return false;
  };
  const int rc = tcp_.connect(reinterpret_cast<const sockaddr*>(&pool_.endpoint().sockaddr));
  if (rc != 0) return give_up();
  if (pool_.tls_required()) {
    std::unique_ptr<net::TlsEngine> engine;
    if (pool_.tls_)
      engine = net::TlsEngine::client(pool_.tls_, pool_.server_name_, pool_.sessions_,
                                      pool_.session_key_, &net::thread_tls_buffers());
    if (!engine) return give_up();
    tls_ = std::make_unique<net::TlsStream>(tcp_, *this, std::move(engine));
    io_ = tls_.get();
  }
  return true;
}

bool H2Client::has_room() const {
  if (broken_ || closing_) return false;
  // Until this session has the upstream's SETTINGS, the limit its previous sessions announced.
  return channels_.size() < (settings_seen_ ? stream_limit() : pool_.h2_stream_limit_);
}

size_t H2Client::stream_limit() const {
  return std::min<size_t>(
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
      kMaxChannelsPerSession);
}

void H2Client::detach(H2Channel* c) {
  channels_.erase(std::remove(channels_.begin(), channels_.end(), c), channels_.end());
  written_.erase(std::remove(written_.begin(), written_.end(), c), written_.end());
  if (channels_.empty()) close();  // nobody uses it any more (idle connections keep it open)
}

void H2Client::close() {
  if (closing_) return;
  closing_ = true;
  broken_ = true;
  std::vector<H2Channel*> left = channels_;
  for (H2Channel* c : left) c->session_ended(UV_ECANCELED);
  channels_.clear();
  io_->close();  // on_stream_closed() follows: the pool frees this
}

void H2Client::fail(int status) {
  if (closing_) return;
  broken_ = true;
  std::vector<H2Channel*> left = channels_;
  for (H2Channel* c : left) {
    if (session_)
      c->session_ended(status);
    else
      c->connected(status);  // the connection never came up
  }
  close();
}

namespace {
nghttp2_session_callbacks* client_callbacks() {
  static nghttp2_session_callbacks* const cbs = [] {
    nghttp2_session_callbacks* c = nullptr;
    nghttp2_session_callbacks_new(&c);
    return c;
  }();
  return cbs;
}
}  // namespace

bool H2Client::start_session() {
  nghttp2_session_callbacks* cbs = client_callbacks();
  if (!cbs) return false;
  nghttp2_session_callbacks_set_on_header_callback(cbs, &H2Client::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &H2Client::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &H2Client::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &H2Client::on_stream_close);
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) return false;
  nghttp2_option_set_no_auto_window_update(opt, 1);
  const int rc = nghttp2_session_client_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  if (rc != 0) {
    session_ = nullptr;
    return false;
  }
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  return true;
}

void H2Client::on_stream_connected(int status) {
  if (closing_) return;
  if (status < 0) {
    // A TCP connection that came up and a TLS handshake that did not is a TLS failure.
    fail(tls_ && (status == UV_EPROTO || tls_->tcp_connected()) ? UV_EPROTO : status);
    return;
  }
  if (tls_ && tls_->engine().alpn() != "h2") {
    fail(UV_EPROTO);  // the endpoint does not speak HTTP/2 over TLS
    return;
  }
  if (!start_session()) {
    fail(UV_ENOMEM);
    return;
  }
  io_->start_reading();
  send();
  std::vector<H2Channel*> waiting = channels_;
  for (H2Channel* c : waiting)
    if (std::find(channels_.begin(), channels_.end(), c) != channels_.end()) c->connected(0);
}

void H2Client::on_stream_data(const char* data, size_t len) {
  if (closing_ || !session_) return;
  ++depth_;
  const ssize_t rv =
      nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), len);
  --depth_;
  if (rv < 0) {
    fail(UV_EPROTO);  // the upstream broke the protocol: every stream on it failed
    return;
  }
  send();
}

void H2Client::on_stream_end(int) {
  fail(UV_ECONNRESET);
}

void H2Client::on_stream_written(int status) {
  if (status < 0) {
    fail(UV_ECONNRESET);
    return;
  }
  send();
}

void H2Client::on_stream_closed() {
  pool_.erase_h2(this);  // last use of this
}

void H2Client::send() {
  if (!session_ || closing_) return;
  if (depth_ > 0 || sending_) {
    send_again_ = true;
    return;
  }
  sending_ = true;
  do {
    send_again_ = false;
    while (io_->queued_bytes() < kSocketHighWater) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n <= 0) break;
      out_.copy(std::string_view(reinterpret_cast<const char*>(data), size_t(n)));
    }
    if (!out_.empty() && io_->write(out_) < 0) {
      sending_ = false;
      fail(UV_ECONNRESET);
      return;
    }
    std::vector<H2Channel*> written;
    written.swap(written_);
    for (H2Channel* c : written) {
      c->written_pending_ = false;
      if (c->events_) c->events_->on_stream_written(0);
      if (closing_) break;
    }
  } while (send_again_ && !closing_);
  sending_ = false;
  if (!closing_ && !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_))
    fail(UV_EOF);  // the upstream said GOAWAY and every stream is over
}

H2Channel* H2Client::channel(int32_t stream_id) const {
  return static_cast<H2Channel*>(nghttp2_session_get_stream_user_data(session_, stream_id));
}

ssize_t H2Client::read_cb(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*) {
  return static_cast<H2Channel*>(source->ptr)->read_body(buf, length, flags);
}

int H2Client::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                        size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                        void* user) {
  auto* self = static_cast<H2Client*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  H2Channel* c = self->channel(frame->hd.stream_id);
  if (c)
    c->response_header(std::string_view(reinterpret_cast<const char*>(name), namelen),
                       std::string_view(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int H2Client::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Client*>(user);
  const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
      if (H2Channel* c = self->channel(frame->hd.stream_id)) c->response_headers_done(end);
      break;
    case NGHTTP2_DATA:
      if (end)
        if (H2Channel* c = self->channel(frame->hd.stream_id)) {
          if (c->chunked_) c->in_.append("0\r\n\r\n");
          c->response_end_ = true;
          c->deliver();
        }
      break;
    case NGHTTP2_SETTINGS:
      if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        self->settings_seen_ = true;
        self->pool_.h2_stream_limit_ = uint32_t(std::max<size_t>(self->stream_limit(), 1));
      }
      break;
    case NGHTTP2_GOAWAY: {
      // No new stream on this session; channels between exchanges leave it now (their pooled
      // connections close), the exchanges in flight finish or are refused.
      self->broken_ = true;
      std::vector<H2Channel*> idle;
      for (H2Channel* c : self->channels_)
        if (c->stream_id_ < 0 && !c->head_ready_) idle.push_back(c);
      for (H2Channel* c : idle) c->session_ended(UV_EOF);
      break;
    }
    default:
      break;
  }
  return 0;
}

int H2Client::on_data_chunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data,
                            size_t len, void* user) {
  auto* self = static_cast<H2Client*>(user);
  if (H2Channel* c = self->channel(id)) {
    c->response_data(data, len);
    return 0;
  }
  // A stream nobody reads any more (its connection closed): give the window back.
  if (nghttp2_session_consume(session, id, len) != 0)
    nghttp2_session_consume_connection(session, len);
  return 0;
}

int H2Client::on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* user) {
  auto* self = static_cast<H2Client*>(user);
  if (H2Channel* c = self->channel(id)) c->stream_closed(error_code);
  return 0;
}

}  // namespace sluice::upstream
