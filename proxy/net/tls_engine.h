// A TLS connection as a state machine over memory: ciphertext from the network in, plaintext out,
// plaintext in, ciphertext out. No sockets and no libuv, so the transport's TLS stream is a thin
// adapter and every TLS behaviour can be tested engine against engine.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "net/tls_context.h"

typedef struct bio_st BIO;

namespace sluice::net {

struct ClientSessionRef;

// Ciphertext buffers recycled per worker, so steady-state writes do not allocate and an idle
// engine holds none. Not thread-safe: one per worker, outliving the worker's engines.
class TlsBufferPool {
 public:
  // Room for one full TLS record with its header and tag.
  static constexpr size_t kBufferBytes = 16 * 1024 + 512;

  std::string get();
  void put(std::string&& buffer);
  size_t free_buffers() const { return free_.size(); }

 private:
  static constexpr size_t kMaxFree = 256;
  static constexpr size_t kMaxKeptBytes = 256 * 1024;
  std::vector<std::string> free_;
};

// Why an engine failed. The transport maps these to its answers: kNotTls → a plaintext 400 (or
// close at once), kVerify on an upstream → 502 upstream-tls-failed, others → close.
enum class TlsFailure : uint8_t {
  kNone,
  kNotTls,     // server: the first bytes are plaintext (an HTTP method), not a TLS record
  kProtocol,   // not TLS, malformed records or handshake, no common version/cipher/ALPN
  kVerify,     // the peer's certificate failed verification: chain, name, dates, or missing
  kPeerAlert,  // the peer aborted with a fatal alert (e.g. it rejected our certificate)
  kTruncated,  // the transport ended in the middle of the handshake or of a record
  kInternal,   // out of memory or an OpenSSL internal error
};
const char* to_string(TlsFailure failure);

// One TLS connection. Create it with server() or client(); it cannot be moved (its BIO points
// at it). Everything runs on the owning thread.
//
// Input is borrowed: feed() hands the engine a view of ciphertext (e.g. libuv's read buffer)
// that OpenSSL reads from directly, without a copy into a memory BIO. The view must stay valid
// until the next feed(), release_input() or the engine's end; release_input() copies whatever
// OpenSSL did not read yet (only when the caller stopped reading before kWantInput).
//
// Output accumulates: every call may produce ciphertext (handshake messages, records, alerts,
// tickets, a KeyUpdate answer); after each call check has_output() and send output(). Records
// go straight from OpenSSL's write buffer into one pooled buffer per engine, so a batch of
// writes leaves as one contiguous block for one socket write.
class TlsEngine {
 public:
  enum class Status : uint8_t {
    kOk,         // progress made: handshake complete, or plaintext returned
    kWantInput,  // nothing more until more ciphertext arrives
    kClosed,     // the peer closed: close_notify, or the stream ended between records
    kFailed,     // see failure(); send output() (it may hold an alert), then close
  };
  struct ReadResult {
    size_t n = 0;  // plaintext bytes written into the caller's buffer
    Status status = Status::kWantInput;
  };

  // Null only when OpenSSL cannot allocate. The engine keeps `context` alive (rotation swaps the
  // listener's context; this connection keeps the one it started with). `pool` may be null.
  static std::unique_ptr<TlsEngine> server(std::shared_ptr<const ServerContext> context,
                                           TlsBufferPool* pool = nullptr);
  // `server_name`: SNI and the name (or IP) verified. `cache` (may be null, must outlive the
  // engine) offers and stores sessions under `cache_key`, e.g. "10.0.0.5:443|api.internal".
  static std::unique_ptr<TlsEngine> client(std::shared_ptr<const ClientContext> context,
                                           std::string_view server_name,
                                           ClientSessionCache* cache = nullptr,
                                           std::string_view cache_key = {},
                                           TlsBufferPool* pool = nullptr);
  ~TlsEngine();
  TlsEngine(const TlsEngine&) = delete;
  TlsEngine& operator=(const TlsEngine&) = delete;

  // ---- input ----
  void feed(const char* data, size_t len);
  void feed(std::string_view data) { feed(data.data(), data.size()); }
  // The transport reached end of stream: nothing more will be fed. After the handshake, an end
  // between records reads as kClosed (close_notify_received() false), inside one as kTruncated.
  void feed_eof();
  void release_input();
  size_t unread_input() const;

  // ---- driving ----
  // Advances the handshake with the input at hand (a client's first call produces its
  // ClientHello). kOk once complete, then plaintext written before it goes out too.
  Status handshake();
  // Drives the handshake if needed, then decrypts into `buf` (up to `cap` bytes, several records
  // at once). kOk with n > 0 while there is plaintext; kWantInput when the input is used up.
  ReadResult read(char* buf, size_t cap);

  // ---- output ----
  // Encrypts `plaintext` (all of it; before the handshake completes it is kept and sent once it
  // does). False when the engine has failed or was closed.
  bool write(std::string_view plaintext);
  // Several pieces in as few records as possible (an HTTP head and a small body: one record).
  bool write(std::span<const std::string_view> pieces);
  // Sends close_notify (once, after the handshake); later writes are refused.
  void close();
  bool has_output() const { return out_.size() > out_pos_; }
  std::string_view output() const { return std::string_view(out_).substr(out_pos_); }
  // The transport sent `n` bytes of output(). An emptied buffer goes back to the pool.
  void consume_output(size_t n);
  // Hands over all pending output (for a write request that must own its bytes); give the
  // string back to the pool when the write completes.
  std::string take_output();

  // At an idle point (keep-alive wait): frees OpenSSL's read and write record buffers (~34 KiB)
  // and this engine's, when nothing is in flight. Cheaper than SSL_MODE_RELEASE_BUFFERS, which
  // frees and reallocates them for every record. Returns whether everything could be freed.
  bool trim();

  // ---- state ----
  bool is_server() const { return is_server_; }
  bool handshake_done() const { return handshake_done_; }
  bool failed() const { return failure_ != TlsFailure::kNone; }
  TlsFailure failure() const { return failure_; }
  const std::string& failure_detail() const { return failure_detail_; }
  bool close_notify_received() const { return peer_closed_; }
  bool close_sent() const { return close_sent_; }
  // After the handshake: the negotiated ALPN protocol ("" = none), the server name the client
  // sent ("" = none), whether the session was resumed, the version and cipher names.
  std::string_view alpn() const;
  std::string_view server_name() const;
  bool resumed() const;
  std::string_view version() const;
  std::string_view cipher() const;
  // X509_V_OK (0) or the X509_V_ERR_* code of the peer's verification.
  long verify_result() const;
  // For tests and diagnostics; the engine keeps ownership.
  SSL* native_handle() const { return ssl_; }

 private:
  TlsEngine(SSL* ssl, bool is_server, TlsBufferPool* pool);
  Status fail(TlsFailure failure, std::string detail);
  Status from_ssl_error(int rc);
  bool encrypt(const char* data, size_t len);
  bool flush_early();
  void append_output(const char* data, size_t len);
  void reset_output();

  BIO* new_bio();
  void track_records(const char* data, size_t len);
  static int bio_write(BIO* bio, const char* data, size_t len, size_t* written);
  static int bio_read(BIO* bio, char* out, size_t len, size_t* read);
  static long bio_ctrl(BIO* bio, int cmd, long num, void* ptr);

  SSL* ssl_ = nullptr;  // owned; holds our BIO
  std::shared_ptr<const ServerContext>
      server_ctx_;  // keeps the SSL's SSL_CTX callbacks' data alive
  std::shared_ptr<const ClientContext> client_ctx_;
  std::unique_ptr<ClientSessionRef> session_ref_;  // client with a cache only
  TlsBufferPool* pool_ = nullptr;                  // the worker's; outlives the engine

  const char* in_ = nullptr;  // borrowed input view (see feed())
  size_t in_len_ = 0;
  std::string spill_;  // input copied by release_input(), read before in_
  size_t spill_pos_ = 0;
  std::string out_;  // ciphertext not yet consumed, from out_pos_
  size_t out_pos_ = 0;
  std::string early_;  // plaintext written before the handshake completed

  std::string failure_detail_;
  TlsFailure failure_ = TlsFailure::kNone;
  bool is_server_ = false;
  bool handshake_done_ = false;
  bool eof_ = false;
  bool peer_closed_ = false;
  bool close_sent_ = false;
  bool saw_input_ = false;  // server: the first byte has been judged (TLS or not)
  bool ended_ = false;      // the stream ended between records, without close_notify
  // Record framing of the input OpenSSL has read, so that end of stream can be told apart:
  // between records (a close) or inside one (a truncation).
  unsigned char record_header_[5] = {};
  uint8_t record_header_got_ = 0;
  uint16_t record_body_left_ = 0;
};

}  // namespace sluice::net
