// TLS over memory: a custom BIO reads ciphertext from the caller's buffer and appends records to
// one pooled output buffer; the engine drives OpenSSL and classifies its failures.
#include "net/tls_engine.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "net/tls_internal.h"

namespace sluice::net {

// ---- buffer pool ----

std::string TlsBufferPool::get() {
  if (free_.empty()) {
    std::string s;
    s.reserve(kBufferBytes);
    return s;
  }
  std::string s = std::move(free_.back());
  free_.pop_back();
  return s;
}

void TlsBufferPool::put(std::string&& buffer) {
  if (free_.size() >= kMaxFree || buffer.capacity() > kMaxKeptBytes ||
      buffer.capacity() < kBufferBytes)
    return;
  buffer.clear();
  free_.push_back(std::move(buffer));
}

const char* to_string(TlsFailure failure) {
  switch (failure) {
    case TlsFailure::kNone:
      return "none";
    case TlsFailure::kNotTls:
      return "not-tls";
    case TlsFailure::kProtocol:
      return "protocol";
    case TlsFailure::kVerify:
      return "verify";
    case TlsFailure::kPeerAlert:
      return "peer-alert";
    case TlsFailure::kTruncated:
      return "truncated";
    case TlsFailure::kInternal:
      return "internal";
  }
  return "unknown";
}

// ---- BIO ----

namespace {

bool is_http_method_byte(unsigned char c) {
  return c >= 'A' && c <= 'Z';
}

constexpr unsigned char kHandshakeRecord = 0x16;

}  // namespace

int TlsEngine::bio_write(BIO* bio, const char* data, size_t len, size_t* written) {
  auto* self = static_cast<TlsEngine*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  self->append_output(data, len);
  *written = len;
  return 1;
}

int TlsEngine::bio_read(BIO* bio, char* out, size_t len, size_t* read) {
  auto* self = static_cast<TlsEngine*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  size_t n = 0;
  if (self->spill_pos_ < self->spill_.size()) {
    n = std::min(len, self->spill_.size() - self->spill_pos_);
    std::memcpy(out, self->spill_.data() + self->spill_pos_, n);
    self->spill_pos_ += n;
    if (self->spill_pos_ == self->spill_.size()) {
      self->spill_.clear();
      self->spill_pos_ = 0;
    }
  }
  if (n < len && self->in_len_ > 0) {
    size_t m = std::min(len - n, self->in_len_);
    std::memcpy(out + n, self->in_, m);
    self->in_ += m;
    self->in_len_ -= m;
    n += m;
  }
  if (n > 0) {
    self->track_records(out, n);
    *read = n;
    return 1;
  }
  *read = 0;
  if (!self->eof_) BIO_set_retry_read(bio);  // no retry flag: end of stream
  return 0;
}

void TlsEngine::track_records(const char* data, size_t len) {
  while (len > 0) {
    if (record_header_got_ < sizeof record_header_) {
      size_t take = std::min(len, sizeof record_header_ - record_header_got_);
      std::memcpy(record_header_ + record_header_got_, data, take);
      record_header_got_ += take;
      data += take;
      len -= take;
      if (record_header_got_ == sizeof record_header_) {
        record_body_left_ = static_cast<uint16_t>(record_header_[3] << 8 | record_header_[4]);
        if (record_body_left_ == 0) record_header_got_ = 0;
      }
      continue;
    }
    size_t take = std::min<size_t>(len, record_body_left_);
    record_body_left_ = static_cast<uint16_t>(record_body_left_ - take);
    data += take;
    len -= take;
    if (record_body_left_ == 0) record_header_got_ = 0;
  }
}

long TlsEngine::bio_ctrl(BIO* bio, int cmd, long, void*) {
  auto* self = static_cast<TlsEngine*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_PENDING:
      return static_cast<long>(self->unread_input());
    case BIO_CTRL_WPENDING:
      return 0;  // output is never held back inside the BIO
    case BIO_CTRL_EOF:
      return self->eof_ && self->unread_input() == 0;
    default:
      return 0;
  }
}

// ---- construction ----

TlsEngine::TlsEngine(SSL* ssl, bool is_server, TlsBufferPool* pool)
    : ssl_(ssl), pool_(pool), is_server_(is_server) {}

BIO* TlsEngine::new_bio() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice tls engine");
    if (m && (BIO_meth_set_write_ex(m, &TlsEngine::bio_write) != 1 ||
              BIO_meth_set_read_ex(m, &TlsEngine::bio_read) != 1 ||
              BIO_meth_set_ctrl(m, &TlsEngine::bio_ctrl) != 1)) {
      BIO_meth_free(m);
      m = nullptr;
    }
    return m;
  }();
  BIO* bio = method ? BIO_new(method) : nullptr;
  if (!bio) return nullptr;
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  return bio;
}

std::unique_ptr<TlsEngine> TlsEngine::server(std::shared_ptr<const ServerContext> context,
                                             TlsBufferPool* pool) {
  if (!context) return nullptr;
  SSL* ssl = context->new_ssl();
  if (!ssl) {
    ERR_clear_error();
    return nullptr;
  }
  std::unique_ptr<TlsEngine> engine(new TlsEngine(ssl, true, pool));
  engine->server_ctx_ = std::move(context);
  BIO* bio = engine->new_bio();
  if (!bio) {
    ERR_clear_error();
    return nullptr;
  }
  SSL_set_bio(ssl, bio, bio);  // one reference, for both directions
  SSL_set_accept_state(ssl);
  return engine;
}

std::unique_ptr<TlsEngine> TlsEngine::client(std::shared_ptr<const ClientContext> context,
                                             std::string_view server_name,
                                             ClientSessionCache* cache, std::string_view cache_key,
                                             TlsBufferPool* pool) {
  if (!context) return nullptr;
  SSL* ssl = context->new_ssl(server_name);
  if (!ssl) return nullptr;
  std::unique_ptr<TlsEngine> engine(new TlsEngine(ssl, false, pool));
  engine->client_ctx_ = std::move(context);
  BIO* bio = engine->new_bio();
  if (!bio) {
    ERR_clear_error();
    return nullptr;
  }
  SSL_set_bio(ssl, bio, bio);
  SSL_set_connect_state(ssl);
  if (cache) {
    engine->session_ref_ = std::make_unique<ClientSessionRef>(
        ClientSessionRef{cache, std::string(cache_key), engine->client_ctx_->id()});
    SSL_set_ex_data(ssl, client_session_index(), engine->session_ref_.get());
    if (SSL_SESSION* session = cache->get(cache_key, engine->client_ctx_->id()))
      SSL_set_session(ssl, session);  // takes its own reference
  }
  return engine;
}

TlsEngine::~TlsEngine() {
  // OpenSSL marks the session of an SSL freed without close_notify as not resumable. Transports
  // close idle keep-alive connections without one all the time; only a failed connection's
  // session should be given up.
  if (handshake_done_ && failure_ == TlsFailure::kNone)
    SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(ssl_);  // frees the BIO; no callback reaches this engine afterwards
  if (pool_) pool_->put(std::move(out_));
}

// ---- input ----

void TlsEngine::feed(const char* data, size_t len) {
  release_input();
  in_ = data;
  in_len_ = len;
}

void TlsEngine::feed_eof() {
  eof_ = true;
}

void TlsEngine::release_input() {
  if (in_len_ > 0) {
    if (spill_pos_ > 0) {
      spill_.erase(0, spill_pos_);
      spill_pos_ = 0;
    }
    spill_.append(in_, in_len_);
  }
  in_ = nullptr;
  in_len_ = 0;
}

size_t TlsEngine::unread_input() const {
  return spill_.size() - spill_pos_ + in_len_;
}

// ---- output ----

void TlsEngine::append_output(const char* data, size_t len) {
  if (pool_ && out_.empty() && out_.capacity() < TlsBufferPool::kBufferBytes) out_ = pool_->get();
  out_.append(data, len);
}

void TlsEngine::reset_output() {
  out_pos_ = 0;
  if (pool_) {
    pool_->put(std::move(out_));
    out_ = std::string();
  } else {
    out_.clear();
  }
}

void TlsEngine::consume_output(size_t n) {
  out_pos_ += std::min(n, out_.size() - out_pos_);
  if (out_pos_ == out_.size()) reset_output();
}

std::string TlsEngine::take_output() {
  if (out_pos_ > 0) out_.erase(0, out_pos_);
  out_pos_ = 0;
  return std::exchange(out_, std::string());
}

bool TlsEngine::trim() {
  bool all = true;
  if (has_output()) {
    all = false;
  } else {
    out_pos_ = 0;
    if (pool_ && out_.capacity() >= TlsBufferPool::kBufferBytes) pool_->put(std::move(out_));
    std::string().swap(out_);
  }
  if (unread_input() == 0) {
    std::string().swap(spill_);
    spill_pos_ = 0;
  } else {
    all = false;
  }
  if (early_.empty()) {
    std::string().swap(early_);
  } else {
    all = false;
  }
  // Fails (and frees nothing) while OpenSSL holds part of a record either way.
  return SSL_free_buffers(ssl_) == 1 && all;
}

// ---- failures ----

TlsEngine::Status TlsEngine::fail(TlsFailure failure, std::string detail) {
  if (failure_ == TlsFailure::kNone) {
    failure_ = failure;
    failure_detail_ = std::move(detail);
  }
  ERR_clear_error();  // the queue is per thread: leave nothing for the next connection
  return Status::kFailed;
}

TlsEngine::Status TlsEngine::from_ssl_error(int rc) {
  const int err = SSL_get_error(ssl_, rc);
  switch (err) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:  // our BIO never refuses output; treat as waiting for input
      ERR_clear_error();
      return Status::kWantInput;
    case SSL_ERROR_ZERO_RETURN:
      peer_closed_ = true;
      ERR_clear_error();
      return Status::kClosed;
    case SSL_ERROR_SYSCALL:
      // Only our BIO does I/O, so this is end of stream where more was needed.
      return fail(TlsFailure::kTruncated, handshake_done_ ? "stream ended inside a TLS record"
                                                          : "stream ended during the handshake");
    case SSL_ERROR_SSL:
      break;
    default:
      return fail(TlsFailure::kInternal, "unexpected SSL_get_error " + std::to_string(err));
  }
  const unsigned long e = ERR_peek_error();
  const int lib = ERR_GET_LIB(e);
  const int reason = ERR_GET_REASON(e);
  const char* text = ERR_reason_error_string(e);
  std::string detail = text ? text : "TLS error";
  const long verify = SSL_get_verify_result(ssl_);
  if (lib == ERR_LIB_SSL && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    return fail(
        TlsFailure::kVerify,
        detail + ": " +
            X509_verify_cert_error_string(verify == X509_V_OK ? X509_V_ERR_UNSPECIFIED : verify));
  }
  if (lib == ERR_LIB_SSL && reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
    return fail(TlsFailure::kVerify, detail);
  if (lib == ERR_LIB_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING && handshake_done_ &&
      record_header_got_ == 0) {
    // Between records: most HTTP clients close this way, without close_notify. HTTP's own
    // framing tells a cut message from a finished one, so this is a close, not an attack.
    ERR_clear_error();
    ended_ = true;
    return Status::kClosed;
  }
  if (lib == ERR_LIB_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    return fail(TlsFailure::kTruncated, handshake_done_ ? "stream ended inside a TLS record"
                                                        : "stream ended during the handshake");
  }
  if (lib == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET)
    return fail(TlsFailure::kPeerAlert, detail);
  if (lib == ERR_LIB_SSL && (reason == ERR_R_MALLOC_FAILURE || reason == ERR_R_INTERNAL_ERROR))
    return fail(TlsFailure::kInternal, detail);
  return fail(TlsFailure::kProtocol, detail);
}

// ---- driving ----

TlsEngine::Status TlsEngine::handshake() {
  if (failure_ != TlsFailure::kNone) return Status::kFailed;
  if (handshake_done_) return Status::kOk;
  if (is_server_ && !saw_input_) {
    // Judge the first byte ourselves: plaintext HTTP gets a clear verdict at once (the transport
    // can answer 400 in plaintext), and garbage fails without OpenSSL waiting for a "record".
    const char* first = spill_pos_ < spill_.size() ? spill_.data() + spill_pos_
                        : in_len_ > 0              ? in_
                                                   : nullptr;
    if (!first)
      return eof_ ? fail(TlsFailure::kTruncated, "stream ended before a ClientHello")
                  : Status::kWantInput;
    saw_input_ = true;
    const auto byte = static_cast<unsigned char>(*first);
    if (byte != kHandshakeRecord) {
      return is_http_method_byte(byte)
                 ? fail(TlsFailure::kNotTls, "plaintext request on a TLS port")
                 : fail(TlsFailure::kProtocol, "not a TLS handshake record");
    }
  }
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_);
  if (rc != 1) return from_ssl_error(rc);
  handshake_done_ = true;
  if (!flush_early()) return Status::kFailed;
  return Status::kOk;
}

TlsEngine::ReadResult TlsEngine::read(char* buf, size_t cap) {
  ReadResult result;
  if (!handshake_done_) {
    Status s = handshake();
    if (s != Status::kOk) {
      result.status = s;
      return result;
    }
  }
  if (failure_ != TlsFailure::kNone) {
    result.status = Status::kFailed;
    return result;
  }
  if (peer_closed_ || ended_) {
    result.status = Status::kClosed;
    return result;
  }
  while (result.n < cap) {
    size_t got = 0;
    ERR_clear_error();
    const int rc = SSL_read_ex(ssl_, buf + result.n, cap - result.n, &got);
    if (rc == 1) {
      result.n += got;
      continue;
    }
    Status s = from_ssl_error(rc);
    // Plaintext already decrypted is delivered first; the verdict comes on the next call
    // (failure_ / peer_closed_ are sticky).
    result.status = result.n > 0 ? Status::kOk : s;
    return result;
  }
  result.status = Status::kOk;
  return result;
}

bool TlsEngine::encrypt(const char* data, size_t len) {
  while (len > 0) {
    size_t done = 0;
    ERR_clear_error();
    const int rc = SSL_write_ex(ssl_, data, len, &done);
    if (rc != 1) {
      from_ssl_error(rc);
      if (failure_ == TlsFailure::kNone) fail(TlsFailure::kInternal, "SSL_write made no progress");
      return false;
    }
    data += done;
    len -= done;
  }
  return true;
}

bool TlsEngine::flush_early() {
  if (early_.empty()) return true;
  std::string pending = std::move(early_);
  early_ = std::string();
  return encrypt(pending.data(), pending.size());
}

bool TlsEngine::write(std::string_view plaintext) {
  if (failure_ != TlsFailure::kNone || close_sent_) return false;
  if (!handshake_done_) {
    early_.append(plaintext);
    return true;
  }
  return encrypt(plaintext.data(), plaintext.size());
}

bool TlsEngine::write(std::span<const std::string_view> pieces) {
  if (failure_ != TlsFailure::kNone || close_sent_) return false;
  if (!handshake_done_) {
    for (std::string_view p : pieces) early_.append(p);
    return true;
  }
  // Small pieces are gathered so that a head and a short body make one record, not one each;
  // a large piece is encrypted from where it lies.
  constexpr size_t kRecord = 16 * 1024;
  constexpr size_t kDirect = 4 * 1024;
  char gather[kRecord];
  size_t used = 0;
  for (std::string_view p : pieces) {
    if (p.size() >= kDirect) {
      if (used > 0 && !encrypt(gather, used)) return false;
      used = 0;
      if (!encrypt(p.data(), p.size())) return false;
      continue;
    }
    while (!p.empty()) {
      size_t n = std::min(p.size(), kRecord - used);
      std::memcpy(gather + used, p.data(), n);
      used += n;
      p.remove_prefix(n);
      if (used == kRecord) {
        if (!encrypt(gather, used)) return false;
        used = 0;
      }
    }
  }
  return used == 0 || encrypt(gather, used);
}

void TlsEngine::close() {
  if (close_sent_ || failure_ != TlsFailure::kNone) return;
  close_sent_ = true;
  if (!handshake_done_) return;  // nothing to close cleanly; the transport just closes
  ERR_clear_error();
  SSL_shutdown(ssl_);  // queues close_notify; we do not wait for the peer's
  ERR_clear_error();
}

// ---- state ----

std::string_view TlsEngine::alpn() const {
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &data, &len);
  return data ? std::string_view(reinterpret_cast<const char*>(data), len) : std::string_view();
}

std::string_view TlsEngine::server_name() const {
  const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return name ? name : "";
}

bool TlsEngine::resumed() const {
  return SSL_session_reused(ssl_) == 1;
}

std::string_view TlsEngine::version() const {
  return SSL_get_version(ssl_);
}

std::string_view TlsEngine::cipher() const {
  const char* name = SSL_get_cipher_name(ssl_);
  return name ? name : "";
}

long TlsEngine::verify_result() const {
  return SSL_get_verify_result(ssl_);
}

}  // namespace sluice::net
