// The transport seen from above: a byte stream with back-pressure, implemented over plain TCP
// here (TcpStream) and over TLS on top of it. Connections (worker/, upstream/, admin/, the etcd
// client in control/, the demo upstreams in app/) talk to a Stream and never touch a uv_tcp_t;
// everything runs on the stream's loop.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "net/loop_context.h"
#include "net/outbox.h"

namespace sluice::net {

// What a stream tells its owner. Callbacks run on the loop; none of them may destroy the
// stream -- the owner frees it after on_stream_closed().
class StreamEvents {
 public:
  virtual ~StreamEvents() = default;
  // Bytes arrived. They are valid only during the call (a worker's reads share one buffer).
  virtual void on_stream_data(const char* data, size_t len) = 0;
  // The peer closed its side (status == UV_EOF) or reading failed (another libuv error).
  // Reading has stopped.
  virtual void on_stream_end(int status) = 0;
  // A queued write completed: queued_bytes() went down, or (status < 0) writing failed.
  virtual void on_stream_written(int status) = 0;
  // Outgoing streams: connected (status 0), or not (a libuv error).
  virtual void on_stream_connected(int status) { (void)status; }
  // The stream is closed and will call nothing more: the owner may free it now.
  virtual void on_stream_closed() = 0;
};

class Stream {
 public:
  virtual ~Stream() = default;

  // Returns 0 (also when already reading), or a libuv error if reading could not start.
  virtual int start_reading() = 0;
  virtual void stop_reading() = 0;
  virtual bool reading() const = 0;
  // Sends what `out` gathered: what the kernel takes at once goes without a copy, the rest is
  // copied into a queued write (on_stream_written follows). `out` is left empty either way.
  // Returns 0, or a libuv error if the stream is broken.
  virtual int write(Outbox& out) = 0;
  // Bytes accepted by write() that have not left yet.
  virtual size_t queued_bytes() const = 0;
  // Sends FIN after the queued output; the peer may keep sending (reads continue).
  virtual int shutdown() = 0;
  // Closes at once (queued output is dropped); on_stream_closed() follows if the stream was
  // ever opened (see TcpStream::open()). Safe to call twice.
  virtual void close() = 0;
  virtual bool closing() const = 0;
};

// A plain TCP stream. Lives inside its owner (no allocation per connection); the owner must not
// be freed before on_stream_closed().
class TcpStream final : public Stream {
 public:
  TcpStream(LoopContext& ctx, StreamEvents& events) : ctx_(ctx), events_(&events) {}
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;

  // Takes the next pending connection of `listener`. Returns a libuv error (then close()).
  int accept(uv_stream_t* listener);
  // Starts connecting to `addr`; on_stream_connected() follows (also on failure). Returns a
  // libuv error if the attempt could not even start (then close()).
  int connect(const sockaddr* addr);
  // The peer's address as text ("10.0.0.5", "::1") and as a sockaddr; false if unknown.
  bool peer(std::string* ip, sockaddr_storage* addr) const;
  // True once the handle exists (after accept()/connect() began); close() is needed from then.
  bool open() const { return open_; }
  // Bytes the peer sent that we have not read yet (FIONREAD; a system call). For rare decisions
  // only, such as which connection to shed.
  size_t unread_bytes() const;

  // Sends TCP keep-alive probes after `delay_s` idle seconds, so a peer that vanished without a
  // FIN still ends the stream (on_stream_end). Returns a libuv error.
  int keepalive(unsigned delay_s);
  // Reports to `events` from now on (a TlsStream layered over this one).
  void set_events(StreamEvents& events) { events_ = &events; }

  int start_reading() override;
  void stop_reading() override;
  bool reading() const override { return reading_; }
  int write(Outbox& out) override;
  size_t queued_bytes() const override { return tcp_.write_queue_size; }
  int shutdown() override;
  void close() override;
  bool closing() const override { return closing_; }

 private:
  int init();
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_connect(uv_connect_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  static void on_closed(uv_handle_t* h);

  LoopContext& ctx_;      // the worker's (or control loop's); outlives its streams
  StreamEvents* events_;  // the owner (or a TlsStream over this), which outlives the stream
  uv_tcp_t tcp_{};
  uv_connect_t connect_req_{};
  uv_shutdown_t shutdown_req_{};
  bool open_ = false;
  bool reading_ = false;
  bool closing_ = false;
  bool shutdown_started_ = false;
};

}  // namespace sluice::net
