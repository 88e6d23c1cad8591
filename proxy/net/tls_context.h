// OpenSSL contexts for TLS on both sides: server contexts (certificates chosen by SNI, ALPN,
// tickets under a shared rotating key ring, rotation by swapping immutable contexts) and client
// contexts for upstreams (verification, SNI and hostname checks, mTLS, session reuse).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
typedef struct x509_store_st X509_STORE;
typedef struct evp_cipher_st EVP_CIPHER;

namespace sluice::net {

// Mozilla "intermediate" for TLS 1.2, forward-secret AEAD suites only (no DHE: slow and rarely
// needed by clients that also speak TLS 1.2 with ECDHE).
inline constexpr const char* kDefaultCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
inline constexpr const char* kDefaultCiphersuites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
inline constexpr const char* kDefaultGroups = "X25519:P-256:P-384";
inline constexpr int64_t kExpiryWarningSeconds = 14 * 24 * 3600;

// Protocol versions sluice speaks; anything older is refused at load and on the wire.
enum class TlsVersion : uint8_t { kTls12, kTls13 };

// What went wrong loading TLS material. `field` says which config key to point at, so the
// loader can turn one into `file:line:column: message` for the right key.
struct TlsProblem {
  enum class Kind : uint8_t {
    kUnreadable,      // the file cannot be opened or read (message has strerror)
    kNotPem,          // no PEM block of the expected type
    kEncryptedKey,    // a key protected by a passphrase (sluice cannot ask for one)
    kKeyMismatch,     // the key does not belong to the certificate
    kExpired,         // notAfter is in the past (error)
    kNotYetValid,     // notBefore over 5 minutes ahead (error; less is clock skew)
    kExpiringSoon,    // notAfter within kExpiryWarningSeconds (warning)
    kRejected,        // OpenSSL refused it (e.g. key too small for the security level)
    kBadCipherList,   // ciphers / ciphersuites / groups name nothing usable
    kBadProtocols,    // protocol list empty or not TLS 1.2 / 1.3
    kBadAlpn,         // an ALPN name empty or over 255 bytes
    kNoCertificates,  // a server needs at least one pair
    kNeverServed,     // a pair whose names earlier pairs all cover (warning)
  };
  enum class Field : uint8_t { kCert, kKey, kCa, kCiphers, kCiphersuites, kProtocols, kAlpn, kTls };
  Kind kind;
  Field field;
  size_t pair = 0;   // index into ServerOptions::certificates (cert/key problems)
  std::string file;  // the file concerned, if any
  std::string message;
};

// What a loaded certificate says about itself, for lint and for
// sluice_tls_certificate_expiry_seconds{listener,name}.
struct CertificateInfo {
  std::string file;
  std::vector<std::string> names;  // DNS subjectAltNames, or the CN when there is none
  std::string subject;             // one-line RFC 2253 form
  std::string serial_hex;          // upper-case hex, no leading zeros
  std::string key_type;            // "RSA-2048", "EC-P-256", ...
  int64_t not_before_s = 0;        // Unix seconds
  int64_t not_after_s = 0;
};

// Session ticket keys shared by every worker of the process (and by old and new contexts across a
// certificate rotation), so a client resumes wherever it lands. A new key encrypts tickets every
// `rotate_every_s`; a key is accepted for decryption until `ticket_lifetime_s` after it stopped
// encrypting, which covers the lifetime the server advertises for a ticket (SSL_CTX_set_timeout).
// Tickets decrypted with an older key are renewed with the current one.
//
// Thread-safe: the key set is an immutable snapshot behind an atomic shared_ptr; rotation (lazy,
// from the ticket callback, or rotate_if_due() from a timer) takes a mutex that handshakes never
// wait for (try_lock).
class TicketKeyRing {
 public:
  struct Options {
    int64_t rotate_every_s = 3600;
    int64_t ticket_lifetime_s = 4 * 3600;
  };
  struct Key {
    unsigned char name[16];
    unsigned char aes_key[32];
    unsigned char hmac_key[32];
    int64_t created_s;
  };
  struct KeySet {
    std::vector<Key> keys;  // newest first; keys[0] encrypts
    ~KeySet();              // wipes the keys: a dropped key must not linger in freed memory
  };
  using Clock = std::function<int64_t()>;  // seconds, monotonic enough for ages

  explicit TicketKeyRing(Options options, Clock now_s = {});
  ~TicketKeyRing();
  TicketKeyRing(const TicketKeyRing&) = delete;
  TicketKeyRing& operator=(const TicketKeyRing&) = delete;

  // The current keys, rotated first if due. Never blocks on another thread's rotation.
  std::shared_ptr<const KeySet> keys();
  void rotate_if_due();
  const Options& options() const { return options_; }
  EVP_CIPHER* cipher() const { return cipher_; }  // null if OpenSSL lacks AES-256-CBC
  int64_t now_s() const { return now_s_(); }

 private:
  std::shared_ptr<const KeySet> rotated(const std::shared_ptr<const KeySet>& old, int64_t now);

  Options options_;
  Clock now_s_;
  EVP_CIPHER* cipher_ = nullptr;  // AES-256-CBC, fetched once (RFC 5077's recommended layout)
  std::atomic<std::shared_ptr<const KeySet>> keys_;
  std::mutex rotate_mutex_;
};

struct CertKeyFiles {
  std::string cert;  // PEM: the leaf first, then its intermediates
  std::string key;   // PEM private key (RSA or EC), unencrypted
};

struct ServerOptions {
  // Chosen by SNI from each certificate's names; the first pair also serves clients without SNI
  // or with a name no certificate has. Pairs whose certificates carry exactly the same names and
  // different key types (RSA + ECDSA) share one slot, and OpenSSL serves the one the client's
  // signature algorithms prefer.
  std::vector<CertKeyFiles> certificates;
  TlsVersion min_version = TlsVersion::kTls12;
  TlsVersion max_version = TlsVersion::kTls13;
  std::string ciphers = kDefaultCiphers;            // TLS 1.2 cipher list (OpenSSL syntax)
  std::string ciphersuites = kDefaultCiphersuites;  // TLS 1.3 suites
  std::string groups = kDefaultGroups;
  // ALPN protocols the server accepts, most preferred first: the server picks the first of these
  // that the client offered, whatever the client's order. A client that offers ALPN but none of
  // these gets a no_application_protocol alert (RFC 7301 §3.2); one that offers none gets HTTP/1.1.
  std::vector<std::string> alpn = {"http/1.1"};
  // Ticket keys; null = a ring of this context's own (tickets then resume only on this context).
  std::shared_ptr<TicketKeyRing> ticket_keys;
  // Non-empty: require a client certificate signed by one of these CAs (mTLS toward sluice).
  std::string client_ca;
  // SSL_MODE_RELEASE_BUFFERS: OpenSSL frees its 16 KiB+ record buffers whenever they are empty,
  // at the price of an allocation per record. TlsEngine::trim() frees them at idle points
  // instead, which keeps the steady state allocation-free; see tls_engine.h.
  bool release_buffers = false;
  int64_t expiry_warning_s = kExpiryWarningSeconds;
};

class ServerContext;

struct ServerBuild {
  std::shared_ptr<const ServerContext> context;  // null if and only if `errors` is not empty
  std::vector<TlsProblem> errors;
  std::vector<TlsProblem> warnings;
  std::vector<CertificateInfo> certificates;  // one per pair that loaded, in option order
};

// Loads and checks every file, then builds the contexts. `now_s` is the time validity is judged
// at (injected for tests). Never throws; every problem found is reported, not only the first.
ServerBuild build_server_context(const ServerOptions& options, int64_t now_s);
int64_t unix_now_s();

// An immutable server configuration: one SSL_CTX per certificate slot, all configured alike.
// Shared by all workers (SSL_CTX is thread-safe for SSL_new); an engine holds a shared_ptr for
// its whole life, so a context replaced by a rotation lives until its last connection ends.
class ServerContext {
 public:
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  // A new server-side SSL, or null on allocation failure. The caller owns it (SSL_free).
  SSL* new_ssl() const;
  // The slot a server name selects: exact names first, then a `*.` wildcard covering exactly
  // the leftmost label (RFC 6125 §6.4.3), then slot 0. Case-insensitive; a trailing dot ignored.
  size_t slot_for(std::string_view server_name) const;
  size_t slots() const { return slots_.size(); }
  const std::vector<CertificateInfo>& certificates() const { return certificates_; }
  const std::vector<std::string>& alpn() const { return alpn_; }
  const std::shared_ptr<TicketKeyRing>& ticket_keys() const { return ticket_keys_; }

 private:
  friend ServerBuild build_server_context(const ServerOptions& options, int64_t now_s);
  ServerContext() = default;
  static int on_servername(SSL* ssl, int* alert, void* arg);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                     const unsigned char* in, unsigned int inlen, void* arg);

  std::vector<SSL_CTX*> slots_;  // slots_[0] is the default and session context
  std::map<std::string, size_t, std::less<>> exact_;     // lower-case name → slot
  std::map<std::string, size_t, std::less<>> wildcard_;  // "example.com" for "*.example.com"
  std::vector<std::string> alpn_;
  std::string alpn_wire_;  // alpn_ in wire format, for the selection callback
  std::shared_ptr<TicketKeyRing> ticket_keys_;
  std::vector<CertificateInfo> certificates_;
};

// The context a listener's new connections use. A reload builds a new context and store()s it;
// a failed build stores nothing, so the old one stays. load() is one atomic operation.
class ServerContextSlot {
 public:
  explicit ServerContextSlot(std::shared_ptr<const ServerContext> initial)
      : current_(std::move(initial)) {}
  std::shared_ptr<const ServerContext> load() const { return current_.load(); }
  void store(std::shared_ptr<const ServerContext> next) { current_.store(std::move(next)); }

 private:
  std::atomic<std::shared_ptr<const ServerContext>> current_;
};

// ---- client (upstream) side ----

struct ClientOptions {
  bool verify = true;  // verify the chain and the name; false is for tests and lab setups only
  std::string ca;      // PEM bundle of trusted CAs; empty = the system store
  std::string cert;    // client certificate for mTLS (with `key`); empty = none
  std::string key;
  TlsVersion min_version = TlsVersion::kTls12;
  TlsVersion max_version = TlsVersion::kTls13;
  std::string ciphers = kDefaultCiphers;
  std::string ciphersuites = kDefaultCiphersuites;
  std::vector<std::string> alpn = {"http/1.1"};  // offered, in this order; empty = no ALPN
  int64_t expiry_warning_s = kExpiryWarningSeconds;
};

class ClientContext;

struct ClientBuild {
  std::shared_ptr<const ClientContext> context;  // null if and only if `errors` is not empty
  std::vector<TlsProblem> errors;
  std::vector<TlsProblem> warnings;
  std::vector<CertificateInfo> certificates;  // the client certificate, if any
};

ClientBuild build_client_context(const ClientOptions& options, int64_t now_s);

// One upstream TLS configuration (per version or function), shared by all workers.
class ClientContext {
 public:
  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  // A new client-side SSL checking `server_name` (a host name: SNI + name check; an IP literal:
  // IP SAN check, no SNI). Null on failure, and for an empty name when verifying (a chain
  // check without a name check would accept any certificate the CA ever signed). The caller
  // owns it.
  SSL* new_ssl(std::string_view server_name) const;
  bool verify() const { return verify_; }
  // Distinguishes contexts for session caches: a session made under one context is never offered
  // under another (it could skip a verification the other would do).
  uint64_t id() const { return id_; }

 private:
  friend ClientBuild build_client_context(const ClientOptions& options, int64_t now_s);
  ClientContext() = default;

  SSL_CTX* ctx_ = nullptr;
  bool verify_ = true;
  uint64_t id_ = 0;
};

// Resumable sessions per upstream key (e.g. "10.0.0.5:443|api.internal"), the newest few: a
// TLS 1.3 server sends two tickets per full handshake and a client spends one per connection, so
// keeping more than one lets concurrent new connections resume too. One per worker, used only on
// its thread: no lock. Bounded in keys; the least recently filled key goes first.
class ClientSessionCache {
 public:
  static constexpr size_t kSessionsPerKey = 4;

  explicit ClientSessionCache(size_t capacity = 4096) : capacity_(capacity) {}
  ~ClientSessionCache();
  ClientSessionCache(const ClientSessionCache&) = delete;
  ClientSessionCache& operator=(const ClientSessionCache&) = delete;

  // The newest resumable session to offer, or null; spent ones are dropped on the way. Borrowed:
  // valid until the next call on this key (SSL_set_session takes its own reference).
  SSL_SESSION* get(std::string_view key, uint64_t context_id);
  // Takes ownership of `session` (one reference).
  void put(std::string_view key, uint64_t context_id, SSL_SESSION* session);
  void erase(std::string_view key);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    uint64_t context_id;
    std::vector<SSL_SESSION*> sessions;  // oldest first
    uint64_t stamp;
  };
  size_t capacity_;
  uint64_t clock_ = 0;
  std::map<std::string, Entry, std::less<>> entries_;
};

// The TLS contexts of the process: its listeners' by [listen] address as configured (a listener
// without TLS has none) and its upstreams' by the identity of their spec. Immutable: a reload that
// changes certificates publishes a new one; new connections use it while established ones keep
// theirs.
struct TlsContexts {
  struct Listener {
    std::string address;
    std::shared_ptr<const ServerContext> context;
  };
  struct Upstream {
    std::string identity;  // config::UpstreamTlsSpec::identity(): CA, verification, client pair
    std::shared_ptr<const ClientContext> context;
  };
  std::vector<Listener> listeners;
  std::vector<Upstream> upstreams;

  // Null for a plaintext listener.
  const std::shared_ptr<const ServerContext>* listener(std::string_view address) const {
    for (const Listener& e : listeners)
      if (e.address == address) return &e.context;
    return nullptr;
  }
  // The client context for an upstream TLS spec's identity; null if none was built.
  const std::shared_ptr<const ClientContext>* upstream(std::string_view identity) const {
    for (const Upstream& e : upstreams)
      if (e.identity == identity) return &e.context;
    return nullptr;
  }
};

// Is `name` covered by the certificate name `pattern` (exact, or `*.rest` for one leftmost
// label)? Both case-insensitive. Exposed for tests and for lint.
bool certificate_name_matches(std::string_view pattern, std::string_view name);

}  // namespace sluice::net
