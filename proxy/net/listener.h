// A listening TCP socket on a loop: a worker's SO_REUSEPORT socket (opened from an fd the
// process bound) or the admin listener (bound here). Hands each new connection to its owner,
// which takes it into a TcpStream with accept().
#pragma once

#include <uv.h>

#include <functional>
#include <string>

#include "net/loop_context.h"
#include "net/stream.h"

namespace sluice::net {

class Listener {
 public:
  // `on_connection` runs on the loop for each pending connection (or accept error < 0); it should
  // call accept() once. `index` is the owner's name for this listener (e.g. its [[listen]] entry).
  Listener(LoopContext& ctx, size_t index, std::function<void(Listener&, int status)> on_connection)
      : ctx_(ctx), index_(index), on_connection_(std::move(on_connection)) {}
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Adopts a bound socket and listens. Returns a libuv error.
  int open_fd(int fd, int backlog);
  // Binds `addr` and listens (port 0: the kernel picks; see port()). Returns a libuv error.
  int bind(const sockaddr* addr, int backlog);
  uint16_t port() const;
  // Takes the pending connection into `stream` (see TcpStream::accept).
  int accept(TcpStream& stream) { return stream.accept(reinterpret_cast<uv_stream_t*>(&tcp_)); }
  size_t index() const { return index_; }
  // Stops listening; `done` (may be empty) runs once the handle is closed. Safe to call twice.
  void close(std::function<void()> done = {});
  bool closing() const { return closing_; }

 private:
  static void on_connection_cb(uv_stream_t* s, int status);

  LoopContext& ctx_;
  size_t index_;
  std::function<void(Listener&, int)> on_connection_;
  std::function<void()> on_closed_;
  uv_tcp_t tcp_{};
  bool open_ = false;
  bool closing_ = false;
};

}  // namespace sluice::net
