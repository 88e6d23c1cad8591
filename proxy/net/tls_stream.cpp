// TLS over a TcpStream (see tls_stream.h).
#include "net/tls_stream.h"

#include <array>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::net {
namespace {

// What a plaintext HTTP request on a TLS port gets: a clear answer, then the end.
constexpr std::string_view kPlaintextAnswer =
    "HTTP/1.1 400 Bad Request\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 48\r\n"
    "Connection: close\r\n"
    "X-Sluice-Error: plaintext-on-tls-port\r\n"
    "\r\n"
    "This port speaks TLS: use https:// to reach it.\n";

// Decrypted bytes of one network read land here; the owner consumes or copies them during its
// on_stream_data call (the same contract as the loop's read buffer).
char* plaintext_buffer() {
  static thread_local std::array<char, kReadBufferBytes> buffer;
  return buffer.data();
}

std::vector<std::string_view>& scratch_views() {
  static thread_local std::vector<std::string_view> views;
  return views;
}

}  // namespace

TlsBufferPool& thread_tls_buffers() {
  static thread_local TlsBufferPool pool;
  return pool;
}

TlsStream::TlsStream(TcpStream& tcp, StreamEvents& owner, std::unique_ptr<TlsEngine> engine)
    : tcp_(tcp), owner_(owner), engine_(std::move(engine)) {
  tcp_.set_events(*this);
}

TlsStream::~TlsStream() = default;

void TlsStream::sync_reading() {
  if (tcp_.closing() || ended_) return;
  const bool handshaking = !engine_->handshake_done() && !engine_->failed();
  if (reading_ || handshaking)
    tcp_.start_reading();
  else
    tcp_.stop_reading();
}

int TlsStream::start_reading() {
  if (tcp_.closing()) return UV_EBADF;
  reading_ = true;
  if (ended_) return 0;
  return tcp_.start_reading();
}

void TlsStream::stop_reading() {
  reading_ = false;
  sync_reading();
}

int TlsStream::flush() {
  if (!engine_->has_output() || tcp_.closing()) return 0;
  const std::string_view bytes = engine_->output();
  out_.borrow(bytes);
  const int rc = tcp_.write(out_);  // what the kernel does not take at once is copied
  engine_->consume_output(bytes.size());
  return rc;
}

int TlsStream::write(Outbox& out) {
  if (tcp_.closing()) {
    out.clear();
    return UV_EPIPE;
  }
  std::vector<std::string_view>& views = scratch_views();
  out.views(views);
  const bool ok = engine_->write(views);
  out.clear();
  views.clear();
  if (!ok) return UV_EPROTO;
  return flush();
}

int TlsStream::shutdown() {
  if (tcp_.closing()) return UV_EPIPE;
  engine_->close();  // close_notify, after the handshake
  flush();
  return tcp_.shutdown();
}

void TlsStream::end(int status) {
  if (std::exchange(ended_, true)) return;
  tcp_.stop_reading();
  owner_.on_stream_end(status);
}

void TlsStream::on_engine_failed() {
  // An alert, if the engine made one, goes out before the end.
  flush();
  if (engine_->failure() == TlsFailure::kNotTls && engine_->is_server()) {
    out_.borrow(kPlaintextAnswer);
    tcp_.write(out_);
    tcp_.shutdown();
  }
  if (!engine_->is_server() && !connected_) {
    connected_ = true;
    tcp_.stop_reading();
    owner_.on_stream_connected(UV_EPROTO);
    return;
  }
  end(engine_->failure() == TlsFailure::kTruncated || engine_->failure() == TlsFailure::kNotTls
          ? UV_EOF
          : UV_EPROTO);
}

void TlsStream::pump() {
  char* plain = plaintext_buffer();
  for (;;) {
    if (tcp_.closing() || ended_) return;
    const TlsEngine::ReadResult r = engine_->read(plain, kReadBufferBytes);
    flush();  // a failed write surfaces as on_stream_written(< 0) or as the end of reads
    if (!engine_->is_server() && !connected_ && engine_->handshake_done()) {
      connected_ = true;
      sync_reading();
      owner_.on_stream_connected(0);
      if (tcp_.closing()) return;
    }
    if (r.n > 0) {
      owner_.on_stream_data(plain, r.n);
      continue;
    }
    switch (r.status) {
      case TlsEngine::Status::kOk:
      case TlsEngine::Status::kWantInput:
        sync_reading();
        return;
      case TlsEngine::Status::kClosed:
        if (!engine_->is_server() && !connected_) {
          connected_ = true;
          owner_.on_stream_connected(UV_EPROTO);
          return;
        }
        end(UV_EOF);
        return;
      case TlsEngine::Status::kFailed:
        on_engine_failed();
        return;
    }
  }
}

// ---- the TCP stream's events ----

void TlsStream::on_stream_data(const char* data, size_t len) {
  engine_->feed(data, len);
  pump();
  // pump() reads until the engine wants input, so nothing borrowed is left; release_input()
  // copies whatever is (only if the stream was closed in the middle).
  if (engine_->unread_input() > 0) engine_->release_input();
}

void TlsStream::on_stream_end(int status) {
  if (status == UV_EOF) {
    engine_->feed_eof();
    pump();
    if (!ended_ && !tcp_.closing()) {
      if (!engine_->is_server() && !connected_) {
        connected_ = true;
        owner_.on_stream_connected(UV_ECONNRESET);
        return;
      }
      end(UV_EOF);
    }
    return;
  }
  if (!engine_->is_server() && !connected_) {
    connected_ = true;
    owner_.on_stream_connected(status);
    return;
  }
  end(status);
}

void TlsStream::on_stream_written(int status) {
  owner_.on_stream_written(status);
}

void TlsStream::on_stream_connected(int status) {
  if (status < 0) {
    connected_ = true;
    owner_.on_stream_connected(status);
    return;
  }
  tcp_connected_ = true;
  tcp_.start_reading();
  engine_->handshake();  // the ClientHello
  if (engine_->failed()) {
    on_engine_failed();
    return;
  }
  flush();
}

void TlsStream::on_stream_closed() {
  owner_.on_stream_closed();
}

}  // namespace sluice::net
