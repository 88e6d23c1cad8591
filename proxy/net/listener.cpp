// Listening sockets (see listener.h).
#include "net/listener.h"

#include <arpa/inet.h>

#include <utility>

namespace sluice::net {

int Listener::open_fd(int fd, int backlog) {
  int rc = uv_tcp_init(ctx_.loop, &tcp_);
  if (rc != 0) return rc;
  tcp_.data = this;
  open_ = true;
  rc = uv_tcp_open(&tcp_, fd);
  if (rc == 0) rc = uv_listen(as_stream(&tcp_), backlog, &Listener::on_connection_cb);
  return rc;
}

int Listener::bind(const sockaddr* addr, int backlog) {
  int rc = uv_tcp_init(ctx_.loop, &tcp_);
  if (rc != 0) return rc;
  tcp_.data = this;
  open_ = true;
  rc = uv_tcp_bind(&tcp_, addr, 0);
  if (rc == 0) rc = uv_listen(as_stream(&tcp_), backlog, &Listener::on_connection_cb);
  return rc;
}

uint16_t Listener::port() const {
  sockaddr_storage a{};
  int len = sizeof a;
  if (!open_ || uv_tcp_getsockname(&tcp_, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
}

void Listener::close(std::function<void()> done) {
  if (closing_) return;
  closing_ = true;
  if (!open_) {
    if (done) done();
    return;
  }
  on_closed_ = std::move(done);
  uv_close(as_handle(&tcp_), [](uv_handle_t* h) {
    auto* self = static_cast<Listener*>(h->data);
    if (self->on_closed_) std::exchange(self->on_closed_, {})();  // may free self: last use
  });
}

void Listener::on_connection_cb(uv_stream_t* s, int status) {
  auto* self = static_cast<Listener*>(s->data);
  if (self->closing_) return;
  self->on_connection_(*self, status);
}

}  // namespace sluice::net
