// Plain TCP streams over libuv (see stream.h).
#include <arpa/inet.h>
#include <sys/ioctl.h>

#include <memory>

#include "net/stream.h"

namespace sluice::net {

int TcpStream::init() {
  int rc = uv_tcp_init(ctx_.loop, &tcp_);
  if (rc != 0) return rc;
  tcp_.data = this;
  open_ = true;
  return 0;
}

int TcpStream::accept(uv_stream_t* listener) {
  int rc = init();
  if (rc == 0) rc = uv_accept(listener, as_stream(&tcp_));
  if (rc == 0) uv_tcp_nodelay(&tcp_, 1);
  return rc;
}

int TcpStream::connect(const sockaddr* addr) {
  int rc = init();
  if (rc != 0) return rc;
  uv_tcp_nodelay(&tcp_, 1);
  connect_req_.data = this;
  return uv_tcp_connect(&connect_req_, &tcp_, addr, &TcpStream::on_connect);
}

bool TcpStream::peer(std::string* ip, sockaddr_storage* addr) const {
  sockaddr_storage a{};
  int len = sizeof a;
  if (!open_ || uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&a), &len) != 0) return false;
  if (ip) {
    char text[INET6_ADDRSTRLEN] = {0};
    if (a.ss_family == AF_INET)
      uv_ip4_name(reinterpret_cast<sockaddr_in*>(&a), text, sizeof text);
    else
      uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&a), text, sizeof text);
    *ip = text;
  }
  if (addr) *addr = a;
  return true;
}

size_t TcpStream::unread_bytes() const {
  uv_os_fd_t fd;
  int n = 0;
  if (!open_ || uv_fileno(as_handle(const_cast<uv_tcp_t*>(&tcp_)), &fd) != 0 ||
      ::ioctl(fd, FIONREAD, &n) != 0)
    return 0;
  return n > 0 ? size_t(n) : 0;
}

int TcpStream::keepalive(unsigned delay_s) {
  if (closing_ || !open_) return UV_EBADF;
  return uv_tcp_keepalive(&tcp_, 1, delay_s);
}

int TcpStream::start_reading() {
  if (reading_) return 0;
  if (closing_ || !open_) return UV_EBADF;
  const int rc = uv_read_start(as_stream(&tcp_), &LoopContext::on_alloc, &TcpStream::on_read);
  if (rc == 0) reading_ = true;
  return rc;
}

void TcpStream::stop_reading() {
  if (!reading_) return;
  uv_read_stop(as_stream(&tcp_));
  reading_ = false;
}

int TcpStream::write(Outbox& out) {
  if (closing_ || !open_) {
    out.clear();
    return UV_EPIPE;
  }
  return out.flush(as_stream(&tcp_), ctx_.writes, &TcpStream::on_write);
}

int TcpStream::shutdown() {
  if (closing_ || !open_ || shutdown_started_) return closing_ ? UV_EPIPE : 0;
  shutdown_req_.data = this;
  int rc = uv_shutdown(&shutdown_req_, as_stream(&tcp_), &TcpStream::on_shutdown);
  if (rc == 0) shutdown_started_ = true;
  return rc;
}

void TcpStream::close() {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  if (!open_) return;  // nothing to close, and no callback (see stream.h)
  uv_close(as_handle(&tcp_), &TcpStream::on_closed);
}

void TcpStream::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<TcpStream*>(s->data);
  if (self->closing_ || nread == 0) return;
  if (nread < 0) {
    self->stop_reading();
    self->events_->on_stream_end(static_cast<int>(nread));
    return;
  }
  self->events_->on_stream_data(buf->base, static_cast<size_t>(nread));
}

void TcpStream::on_write(uv_write_t* req, int status) {
  std::unique_ptr<WriteOp> op(static_cast<WriteOp*>(req->data));
  auto* self = static_cast<TcpStream*>(req->handle->data);
  self->ctx_.writes.put(std::move(op));
  if (self->closing_) return;
  self->events_->on_stream_written(status);
}

void TcpStream::on_connect(uv_connect_t* req, int status) {
  auto* self = static_cast<TcpStream*>(req->data);
  if (self->closing_ || status == UV_ECANCELED) return;
  self->events_->on_stream_connected(status);
}

void TcpStream::on_shutdown(uv_shutdown_t* req, int status) {
  auto* self = static_cast<TcpStream*>(req->data);
  if (self->closing_ || status == 0 || status == UV_ECANCELED) return;
  self->events_->on_stream_written(status);  // the FIN could not be sent: writing failed
}

void TcpStream::on_closed(uv_handle_t* h) {
  auto* self = static_cast<TcpStream*>(h->data);
  self->events_->on_stream_closed();  // last use of self: the owner may free it
}

}  // namespace sluice::net
