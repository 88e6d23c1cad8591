// TLS as one more transport: a Stream whose bytes travel through a TlsEngine over a TcpStream.
// The owner sees plaintext and the same events as over plain TCP; `http/` does not know.
#pragma once

#include <memory>

#include "net/stream.h"
#include "net/tls_engine.h"

namespace sluice::net {

// The calling thread's pool of TLS record buffers (one per worker thread).
TlsBufferPool& thread_tls_buffers();

// Layers TLS over `tcp`, which must be open (accepted, or connecting) and outlive this stream:
// the TlsStream takes over tcp's events and reports plaintext ones to `owner`.
//
// Server side: the handshake runs on the first bytes; a plaintext HTTP request gets a short
// plaintext 400 and the stream ends, garbage ends it at once (on_stream_end(UV_EPROTO)).
// Client side: on_stream_connected(0) is reported once the handshake is complete, and a
// handshake failure (verification included) as on_stream_connected(UV_EPROTO); failure() says
// which.
//
// Reading: everything decrypted from one network read is delivered before stop_reading() takes
// effect (at most one read buffer of plaintext), so an owner that stops reading may still get
// one more on_stream_data in the same callback.
class TlsStream final : public Stream, private StreamEvents {
 public:
  TlsStream(TcpStream& tcp, StreamEvents& owner, std::unique_ptr<TlsEngine> engine);
  ~TlsStream() override;
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  const TlsEngine& engine() const { return *engine_; }
  bool handshake_done() const { return engine_->handshake_done(); }
  TlsFailure failure() const { return engine_->failure(); }
  // Client: the TCP connection is established (the handshake may still be running).
  bool tcp_connected() const { return tcp_connected_; }
  // At an idle point (keep-alive wait): frees the record buffers while nothing is in flight.
  void trim() { engine_->trim(); }

  int start_reading() override;
  void stop_reading() override;
  bool reading() const override { return reading_; }
  int write(Outbox& out) override;
  size_t queued_bytes() const override { return tcp_.queued_bytes(); }
  int shutdown() override;
  void close() override { tcp_.close(); }
  bool closing() const override { return tcp_.closing(); }

 private:
  void on_stream_data(const char* data, size_t len) override;
  void on_stream_end(int status) override;
  void on_stream_written(int status) override;
  void on_stream_connected(int status) override;
  void on_stream_closed() override;

  // Decrypts what the engine holds and hands it to the owner; handles the engine's verdicts.
  void pump();
  // Sends the engine's pending output. A libuv error, or 0.
  int flush();
  // The engine failed (in the handshake or later): the alert out, then the owner is told.
  void on_engine_failed();
  void end(int status);
  void sync_reading();

  TcpStream& tcp_;
  StreamEvents& owner_;
  std::unique_ptr<TlsEngine> engine_;
  Outbox out_;
  bool reading_ = false;    // the owner wants data
  bool connected_ = false;  // client: on_stream_connected reported
  bool ended_ = false;      // on_stream_end reported
  bool tcp_connected_ = false;
};

}  // namespace sluice::net
