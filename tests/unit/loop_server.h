// A loopback HTTP/1.1 server for loop-level tests: it runs on the test's own libuv loop (no
// thread), answers each request head with a canned response, and counts what it saw. close()
// closes every handle it opened; run the loop after it (before the server is destroyed) so the
// close callbacks run, and the test's uv_loop_close() proves nothing leaked.
#pragma once

#include <uv.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "routing/table.h"

namespace sluice::test {

class LoopServer {
 public:
  // Listens on 127.0.0.1:0 on `loop`; port() is 0 if that failed.
  explicit LoopServer(uv_loop_t* loop) : loop_(loop) {
    uv_tcp_init(loop, &listener_);
    listener_.data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0) != 0 ||
        uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 64, &LoopServer::on_connection) != 0)
      return;
    sockaddr_storage bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }
  ~LoopServer() = default;  // close() and a loop run first: the handles live in this object
  LoopServer(const LoopServer&) = delete;
  LoopServer& operator=(const LoopServer&) = delete;

  uint16_t port() const { return port_; }
  // An endpoint naming this server, as the routing table would hold it.
  routing::Endpoint endpoint() const { return endpoint_at(port_); }
  static routing::Endpoint endpoint_at(uint16_t port) {
    routing::Endpoint ep;
    ep.address = "127.0.0.1:" + std::to_string(port);
    uv_ip4_addr("127.0.0.1", port, reinterpret_cast<sockaddr_in*>(&ep.sockaddr));
    ep.sockaddr_len = sizeof(sockaddr_in);
    return ep;
  }

  // Closes the listener and every accepted connection. Safe to call twice.
  void close() {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&listener_)))
      uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    for (auto& p : peers_) p->close();
  }
  // Stops accepting (the listener closes); open connections stay.
  void stop_listening() {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&listener_)))
      uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  }

  std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  bool answer = true;  // false: read requests, never answer
  int accepted = 0;    // connections accepted
  int requests = 0;    // request heads read
  int open = 0;        // accepted connections not yet closed

 private:
  struct Peer {
    LoopServer* server;
    uv_tcp_t tcp{};
    std::string buf;
    bool closing = false;
    void close() {
      if (std::exchange(closing, true)) return;
      uv_close(reinterpret_cast<uv_handle_t*>(&tcp), [](uv_handle_t* h) {
        auto* p = static_cast<Peer*>(h->data);
        --p->server->open;
      });
    }
  };
  struct Write {
    uv_write_t req{};
    std::string bytes;
  };

  static void on_connection(uv_stream_t* listener, int status) {
    auto* self = static_cast<LoopServer*>(listener->data);
    if (status < 0) return;
    auto peer = std::make_unique<Peer>();
    peer->server = self;
    uv_tcp_init(self->loop_, &peer->tcp);
    peer->tcp.data = peer.get();
    ++self->open;
    Peer* p = peer.get();
    self->peers_.push_back(std::move(peer));
    if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&p->tcp)) != 0) {
      p->close();
      return;
    }
    ++self->accepted;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&p->tcp),
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          static char storage[65536];
          *buf = uv_buf_init(storage, sizeof storage);
        },
        &LoopServer::on_read);
  }

  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    auto* p = static_cast<Peer*>(s->data);
    if (nread < 0) {
      p->close();  // EOF or reset: the client side went away
      return;
    }
    p->buf.append(buf->base, static_cast<size_t>(nread));
    for (size_t end; (end = p->buf.find("\r\n\r\n")) != std::string::npos;) {
      p->buf.erase(0, end + 4);
      ++p->server->requests;
      if (!p->server->answer) continue;
      auto* w = new Write;
      w->bytes = p->server->response;
      w->req.data = w;
      uv_buf_t out = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
      if (uv_write(&w->req, s, &out, 1,
                   [](uv_write_t* r, int) { delete static_cast<Write*>(r->data); }) != 0)
        delete w;
    }
  }

  uv_loop_t* loop_;
  uv_tcp_t listener_{};
  uint16_t port_ = 0;
  std::vector<std::unique_ptr<Peer>> peers_;  // freed with the server, after their close
};

// A port on 127.0.0.1 that refuses connections: bound and closed again. (Another process could
// take it in between; the test that uses it checks the failure kind only.)
inline uint16_t refused_port() {
  uv_loop_t loop;
  uv_loop_init(&loop);
  uint16_t port = 0;
  {
    LoopServer s(&loop);
    port = s.port();
    s.close();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_loop_close(&loop);
  return port;
}

}  // namespace sluice::test
