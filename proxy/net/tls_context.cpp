// OpenSSL server and client contexts: loading and checking PEM files, SNI slots, ALPN, the
// shared ticket key ring and client session caching.
#include "net/tls_context.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

#include "net/tls_internal.h"

namespace sluice::net {
namespace {

using Kind = TlsProblem::Kind;
using Field = TlsProblem::Field;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;

constexpr size_t kMaxPemBytes = 16 << 20;  // a CA bundle is ~200 KiB; anything bigger is a mistake
// A certificate issued "now" by a CA whose clock runs a little ahead is not refused: its
// notBefore may lie this far in the future.
constexpr int64_t kClockSkewSeconds = 300;

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

// Reads a whole file; on failure `error` says why in the words of strerror.
bool read_file(const std::string& path, std::string& out, std::string& error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    error = S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file";
    ::close(fd);
    return false;
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxPemBytes) {
    error = "is larger than 16 MiB";
    ::close(fd);
    return false;
  }
  out.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  ::close(fd);
  return true;
}

// The reason of the last OpenSSL error on this thread, and clears the queue.
std::string openssl_reason() {
  unsigned long last = 0;
  while (unsigned long e = ERR_get_error()) last = e;
  if (last == 0) return "unknown OpenSSL error";
  const char* r = ERR_reason_error_string(last);
  return r ? r : "unknown OpenSSL error";
}

int64_t asn1_to_unix(const ASN1_TIME* t) {
  struct tm tm {};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

std::string format_utc(int64_t s) {
  time_t t = static_cast<time_t>(s);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string key_type(EVP_PKEY* key) {
  int id = EVP_PKEY_get_base_id(key);
  if (id == EVP_PKEY_RSA) return "RSA-" + std::to_string(EVP_PKEY_get_bits(key));
  if (id == EVP_PKEY_EC) {
    char group[64] = {};
    size_t len = 0;
    if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) == 1) {
      const char* nist = EC_curve_nid2nist(OBJ_txt2nid(group));
      return std::string("EC-") + (nist ? nist : group);
    }
    return "EC";
  }
  const char* sn = OBJ_nid2sn(id);
  return sn ? sn : "unknown";
}

std::vector<std::string> certificate_names(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  bool any_san = false;
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      any_san = true;
      if (gn->type != GEN_DNS) continue;
      const ASN1_IA5STRING* s = gn->d.dNSName;
      names.push_back(to_lower({reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                static_cast<size_t>(ASN1_STRING_length(s))}));
    }
    GENERAL_NAMES_free(sans);
  }
  if (!any_san) {  // RFC 6125 §6.4.4: the CN only when there is no subjectAltName at all
    X509_NAME* subject = X509_get_subject_name(cert);
    int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (idx >= 0) {
      const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
      unsigned char* utf8 = nullptr;
      int len = ASN1_STRING_to_UTF8(&utf8, cn);
      if (len > 0) names.push_back(to_lower({reinterpret_cast<char*>(utf8), size_t(len)}));
      OPENSSL_free(utf8);
    }
  }
  return names;
}

CertificateInfo describe(X509* cert, EVP_PKEY* key, const std::string& file) {
  CertificateInfo info;
  info.file = file;
  info.names = certificate_names(cert);
  info.not_before_s = asn1_to_unix(X509_get0_notBefore(cert));
  info.not_after_s = asn1_to_unix(X509_get0_notAfter(cert));
  info.key_type = key_type(key);
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
    if (char* hex = BN_bn2hex(bn)) {
      info.serial_hex = hex;
      OPENSSL_free(hex);
    }
    BN_free(bn);
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio && X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    if (len > 0) info.subject.assign(data, static_cast<size_t>(len));
  }
  return info;
}

// A certificate file: the leaf first, then the chain.
struct LoadedCerts {
  X509Ptr leaf;
  std::vector<X509Ptr> chain;
};

bool parse_certs(const std::string& pem, LoadedCerts& out, std::string& error) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) {
    error = "out of memory";
    return false;
  }
  ERR_clear_error();
  for (;;) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (!x) {
      unsigned long e = ERR_peek_last_error();
      bool end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
      if (end && out.leaf) {
        ERR_clear_error();
        return true;
      }
      error = end ? "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)"
                  : "a PEM certificate that does not parse (" + openssl_reason() + ")";
      ERR_clear_error();
      return false;
    }
    if (!out.leaf) {
      out.leaf.reset(x);
    } else {
      out.chain.emplace_back(x);
    }
  }
}

int refuse_passphrase(char*, int, int, void* asked) {
  *static_cast<bool*>(asked) = true;
  return -1;
}

bool parse_key(const std::string& pem, PkeyPtr& out, Kind& kind, std::string& error) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  bool asked = false;
  ERR_clear_error();
  out.reset(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, refuse_passphrase, &asked) : nullptr);
  if (out) return true;
  ERR_clear_error();
  if (asked) {
    kind = Kind::kEncryptedKey;
    error = "the private key is encrypted (sluice needs it unencrypted, readable only by itself)";
  } else {
    kind = Kind::kNotPem;
    error = pem.find("-----BEGIN") == std::string::npos
                ? "no PEM private key in it (expected -----BEGIN PRIVATE KEY-----)"
                : "no usable PEM private key in it (RSA or EC, PKCS#8 or traditional)";
  }
  return false;
}

// A certificate + key, loaded and checked; `ok` false when any error was reported.
struct LoadedPair {
  bool ok = false;
  LoadedCerts certs;
  PkeyPtr key;
  CertificateInfo info;
};

LoadedPair load_pair(const CertKeyFiles& files, size_t index, int64_t now_s, int64_t warn_s,
                     Field cert_field, Field key_field, std::vector<TlsProblem>& errors,
                     std::vector<TlsProblem>& warnings) {
  LoadedPair pair;
  std::string text, why;
  bool cert_ok = false, key_ok = false;
  if (!read_file(files.cert, text, why)) {
    errors.push_back({Kind::kUnreadable, cert_field, index, files.cert,
                      "cannot read certificate file " + files.cert + ": " + why});
  } else if (!parse_certs(text, pair.certs, why)) {
    errors.push_back({Kind::kNotPem, cert_field, index, files.cert,
                      "certificate file " + files.cert + " has " + why});
  } else {
    cert_ok = true;
  }
  if (!read_file(files.key, text, why)) {
    errors.push_back({Kind::kUnreadable, key_field, index, files.key,
                      "cannot read key file " + files.key + ": " + why});
  } else {
    Kind kind = Kind::kNotPem;
    if (parse_key(text, pair.key, kind, why)) {
      key_ok = true;
    } else {
      errors.push_back(
          {kind, key_field, index, files.key, "key file " + files.key + " has " + why});
    }
  }
  OPENSSL_cleanse(text.data(), text.size());  // the key's bytes should not linger in the heap
  if (!cert_ok || !key_ok) return pair;

  X509* leaf = pair.certs.leaf.get();
  pair.info = describe(leaf, X509_get0_pubkey(leaf), files.cert);
  const CertificateInfo& info = pair.info;
  if (X509_check_private_key(leaf, pair.key.get()) != 1) {
    ERR_clear_error();
    errors.push_back({Kind::kKeyMismatch, key_field, index, files.key,
                      "key file " + files.key + " (" + key_type(pair.key.get()) +
                          ") does not match certificate " + files.cert + " (" + info.key_type +
                          ")"});
    return pair;
  }
  if (info.not_after_s <= now_s) {
    errors.push_back({Kind::kExpired, cert_field, index, files.cert,
                      "certificate " + files.cert + " expired on " + format_utc(info.not_after_s)});
    return pair;
  }
  if (info.not_before_s > now_s + kClockSkewSeconds) {
    errors.push_back(
        {Kind::kNotYetValid, cert_field, index, files.cert,
         "certificate " + files.cert + " is not valid before " + format_utc(info.not_before_s)});
    return pair;
  }
  if (info.not_after_s - now_s < warn_s) {
    int64_t days = (info.not_after_s - now_s) / 86400;
    warnings.push_back({Kind::kExpiringSoon, cert_field, index, files.cert,
                        "certificate " + files.cert + " expires on " +
                            format_utc(info.not_after_s) + " (in " + std::to_string(days) +
                            (days == 1 ? " day)" : " days)")});
  }
  pair.ok = true;
  return pair;
}

int proto_version(TlsVersion v) {
  return v == TlsVersion::kTls12 ? TLS1_2_VERSION : TLS1_3_VERSION;
}

std::vector<std::string_view> split_colon(std::string_view s) {
  std::vector<std::string_view> parts;
  while (!s.empty()) {
    size_t c = s.find(':');
    std::string_view part = s.substr(0, c);
    if (!part.empty()) parts.push_back(part);
    if (c == std::string_view::npos) break;
    s.remove_prefix(c + 1);
  }
  return parts;
}

// OpenSSL ignores names it does not know inside a list; sluice must not accept and ignore a
// typo, so each positive element is tried alone.
void check_cipher_lists(const std::string& ciphers, const std::string& suites,
                        const std::string& groups, std::vector<TlsProblem>& errors) {
  CtxPtr scratch(SSL_CTX_new(TLS_method()));
  if (!scratch) return;
  for (std::string_view element : split_colon(ciphers)) {
    if (element[0] == '!' || element[0] == '-' || element[0] == '@') continue;
    if (element[0] == '+') element.remove_prefix(1);
    std::string name(element);
    if (SSL_CTX_set_cipher_list(scratch.get(), name.c_str()) != 1) {
      errors.push_back({Kind::kBadCipherList, Field::kCiphers, 0, "",
                        "ciphers: '" + name + "' names no cipher this OpenSSL offers"});
    }
  }
  if (SSL_CTX_set_cipher_list(scratch.get(), ciphers.c_str()) != 1)
    errors.push_back({Kind::kBadCipherList, Field::kCiphers, 0, "",
                      "ciphers: '" + ciphers + "' selects no cipher"});
  for (std::string_view element : split_colon(suites)) {
    std::string name(element);
    if (SSL_CTX_set_ciphersuites(scratch.get(), name.c_str()) != 1)
      errors.push_back({Kind::kBadCipherList, Field::kCiphersuites, 0, "",
                        "ciphersuites: '" + name + "' is not a TLS 1.3 cipher suite"});
  }
  if (split_colon(suites).empty())
    errors.push_back(
        {Kind::kBadCipherList, Field::kCiphersuites, 0, "",
         "ciphersuites is empty (expected e.g. " + std::string(kDefaultCiphersuites) + ")"});
  if (SSL_CTX_set1_groups_list(scratch.get(), groups.c_str()) != 1)
    errors.push_back({Kind::kBadCipherList, Field::kCiphers, 0, "",
                      "groups: '" + groups + "' names a group this OpenSSL does not offer"});
  ERR_clear_error();
}

bool alpn_wire(const std::vector<std::string>& names, std::string& wire,
               std::vector<TlsProblem>& errors) {
  wire.clear();
  bool ok = true;
  for (const std::string& n : names) {
    if (n.empty() || n.size() > 255) {
      errors.push_back({Kind::kBadAlpn, Field::kAlpn, 0, "",
                        "ALPN protocol name '" + n + "' must be 1 to 255 bytes"});
      ok = false;
      continue;
    }
    wire.push_back(static_cast<char>(n.size()));
    wire += n;
  }
  return ok;
}

// Settings every context (server slot or client) shares.
bool apply_common(SSL_CTX* ctx, TlsVersion min_v, TlsVersion max_v, const std::string& ciphers,
                  const std::string& suites) {
  return SSL_CTX_set_min_proto_version(ctx, proto_version(min_v)) == 1 &&
         SSL_CTX_set_max_proto_version(ctx, proto_version(max_v)) == 1 &&
         SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) == 1 &&
         SSL_CTX_set_ciphersuites(ctx, suites.c_str()) == 1;
}

bool use_pair(SSL_CTX* ctx, LoadedPair& pair) {
  STACK_OF(X509)* chain = sk_X509_new_null();
  if (!chain) return false;
  for (X509Ptr& c : pair.certs.chain) sk_X509_push(chain, c.get());
  // Copies what it keeps (up-refs the certificates, dups the chain stack).
  int rc = SSL_CTX_use_cert_and_key(ctx, pair.certs.leaf.get(), pair.key.get(), chain, 1);
  sk_X509_free(chain);
  return rc == 1;
}

X509_STORE* store_from_pem(const std::string& pem) {
  LoadedCerts certs;
  std::string why;
  if (!parse_certs(pem, certs, why)) return nullptr;
  X509_STORE* store = X509_STORE_new();
  if (!store) return nullptr;
  bool ok = X509_STORE_add_cert(store, certs.leaf.get()) == 1;
  for (X509Ptr& c : certs.chain) ok = ok && X509_STORE_add_cert(store, c.get()) == 1;
  if (!ok) {
    X509_STORE_free(store);
    ERR_clear_error();
    return nullptr;
  }
  return store;
}

// The system trust store, loaded once per process and shared by every client context (it is
// hundreds of certificates; one copy per upstream version would be wasteful).
X509_STORE* system_store() {
  static X509_STORE* store = [] {
    X509_STORE* s = X509_STORE_new();
    if (s && X509_STORE_set_default_paths(s) != 1) ERR_clear_error();
    return s;
  }();
  return store;
}

bool is_ip_literal(std::string_view host, std::string& text) {
  text.assign(host);
  if (text.size() > 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

std::atomic<uint64_t> next_client_context_id{1};

}  // namespace

// ---- shared pieces ----

int64_t unix_now_s() {
  return static_cast<int64_t>(::time(nullptr));
}

int server_context_index() {
  static int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int client_session_index() {
  static int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

namespace {

// "example.com" for "*.example.com"; empty when `pattern` is not a valid RFC 6125 wildcard (one
// whole leftmost label, over a name of at least two literal labels).
std::string_view wildcard_base(std::string_view pattern) {
  if (pattern.size() < 3 || pattern[0] != '*' || pattern[1] != '.') return {};
  std::string_view rest = pattern.substr(2);
  if (rest.find('*') != std::string_view::npos || rest.find('.') == std::string_view::npos ||
      rest.front() == '.')
    return {};
  return rest;
}

}  // namespace

bool certificate_name_matches(std::string_view pattern, std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (!pattern.empty() && pattern.back() == '.') pattern.remove_suffix(1);
  if (name.empty() || pattern.empty()) return false;
  if (std::string_view base = wildcard_base(pattern); !base.empty()) {
    size_t dot = name.find('.');
    if (dot == 0 || dot == std::string_view::npos) return false;
    return iequals(name.substr(dot + 1), base);
  }
  if (pattern.find('*') != std::string_view::npos) return false;  // partial wildcards: never
  return iequals(pattern, name);
}

// ---- ticket keys ----

TicketKeyRing::TicketKeyRing(Options options, Clock now_s)
    : options_(options), now_s_(std::move(now_s)) {
  if (!now_s_) {
    now_s_ = [] {
      return static_cast<int64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                      std::chrono::steady_clock::now().time_since_epoch())
                                      .count());
    };
  }
  cipher_ = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
  keys_.store(rotated(nullptr, now_s_()));
}

TicketKeyRing::~TicketKeyRing() {
  EVP_CIPHER_free(cipher_);
}

TicketKeyRing::KeySet::~KeySet() {
  if (!keys.empty()) OPENSSL_cleanse(keys.data(), keys.size() * sizeof(Key));
}

std::shared_ptr<const TicketKeyRing::KeySet> TicketKeyRing::rotated(
    const std::shared_ptr<const KeySet>& old, int64_t now) {
  auto next = std::make_shared<KeySet>();
  Key key{};
  key.created_s = now;
  if (RAND_bytes(key.name, sizeof key.name) == 1 &&
      RAND_bytes(key.aes_key, sizeof key.aes_key) == 1 &&
      RAND_bytes(key.hmac_key, sizeof key.hmac_key) == 1) {
    next->keys.push_back(key);
  } else {
    ERR_clear_error();  // no new key: keep encrypting with the old one rather than none
  }
  OPENSSL_cleanse(&key, sizeof key);
  if (old) {
    for (const Key& k : old->keys)
      if (now < k.created_s + options_.rotate_every_s + options_.ticket_lifetime_s)
        next->keys.push_back(k);
  }
  return next;
}

std::shared_ptr<const TicketKeyRing::KeySet> TicketKeyRing::keys() {
  std::shared_ptr<const KeySet> keys = keys_.load();
  const int64_t now = now_s_();
  const bool due = keys->keys.empty() || now >= keys->keys[0].created_s + options_.rotate_every_s;
  if (due && rotate_mutex_.try_lock()) {
    keys = keys_.load();  // another thread may have rotated meanwhile
    if (keys->keys.empty() || now >= keys->keys[0].created_s + options_.rotate_every_s) {
      keys = rotated(keys, now);
      keys_.store(keys);
    }
    rotate_mutex_.unlock();
  }
  return keys;
}

void TicketKeyRing::rotate_if_due() {
  (void)keys();
}

namespace {

// SSL_CTX_set_tlsext_ticket_key_evp_cb: called on whichever worker runs the handshake.
int on_ticket_key(SSL* ssl, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cctx,
                  EVP_MAC_CTX* hctx, int encrypt) {
  auto* owner = static_cast<const ServerContext*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), server_context_index()));
  if (!owner || !owner->ticket_keys() || !owner->ticket_keys()->cipher()) return 0;
  TicketKeyRing& ring = *owner->ticket_keys();
  std::shared_ptr<const TicketKeyRing::KeySet> keys = ring.keys();
  const TicketKeyRing::Options& opt = ring.options();
  const TicketKeyRing::Key* key = nullptr;
  int result = 1;
  if (encrypt) {
    if (keys->keys.empty()) return 0;  // no ticket; the handshake goes on
    key = &keys->keys[0];
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(ring.cipher())) != 1) return -1;
    std::memcpy(key_name, key->name, sizeof key->name);
  } else {
    const int64_t now = ring.now_s();
    for (size_t i = 0; i < keys->keys.size(); ++i) {
      const TicketKeyRing::Key& k = keys->keys[i];
      if (std::memcmp(k.name, key_name, sizeof k.name) != 0) continue;
      if (now < k.created_s + opt.rotate_every_s + opt.ticket_lifetime_s) {
        key = &k;
        result = i == 0 ? 1 : 2;  // 2: valid, and the client gets a ticket under the current key
      }
      break;
    }
    if (!key) return 0;  // unknown or retired key: a full handshake
    // TLS 1.3 clients use a ticket once (OpenSSL marks it spent), and OpenSSL's server only
    // sends a ticket after a resumption when asked to renew: always ask, or the client's next
    // connection has nothing to resume with.
    if (SSL_version(ssl) >= TLS1_3_VERSION) result = 2;
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(
          OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(key->hmac_key), sizeof key->hmac_key),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(hctx, params) != 1) return -1;
  int ok = encrypt ? EVP_EncryptInit_ex2(cctx, ring.cipher(), key->aes_key, iv, nullptr)
                   : EVP_DecryptInit_ex2(cctx, ring.cipher(), key->aes_key, iv, nullptr);
  return ok == 1 ? result : -1;
}

}  // namespace

// ---- server ----

ServerContext::~ServerContext() {
  for (SSL_CTX* ctx : slots_) SSL_CTX_free(ctx);
}

SSL* ServerContext::new_ssl() const {
  return SSL_new(slots_[0]);
}

size_t ServerContext::slot_for(std::string_view name) const {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  char buf[256];
  if (name.empty() || name.size() > sizeof buf) return 0;
  for (size_t i = 0; i < name.size(); ++i) buf[i] = lower(name[i]);
  std::string_view lname(buf, name.size());
  if (auto it = exact_.find(lname); it != exact_.end()) return it->second;
  size_t dot = lname.find('.');
  if (dot == 0 || dot == std::string_view::npos) return 0;
  if (auto it = wildcard_.find(lname.substr(dot + 1)); it != wildcard_.end()) return it->second;
  return 0;
}

int ServerContext::on_servername(SSL* ssl, int* alert, void* arg) {
  auto* self = static_cast<const ServerContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name) return SSL_TLSEXT_ERR_OK;  // no SNI: the default slot serves
  size_t slot = self->slot_for(name);
  if (slot != 0 && SSL_set_SSL_CTX(ssl, self->slots_[slot]) == nullptr) {
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

int ServerContext::on_alpn(SSL*, const unsigned char** out, unsigned char* outlen,
                           const unsigned char* in, unsigned int inlen, void* arg) {
  auto* self = static_cast<const ServerContext*>(arg);
  if (self->alpn_.empty()) return SSL_TLSEXT_ERR_NOACK;
  // Server preference: the first of ours that the client offered, whatever its order.
  const auto* ours = reinterpret_cast<const unsigned char*>(self->alpn_wire_.data());
  for (size_t i = 0; i < self->alpn_wire_.size(); i += 1 + ours[i]) {
    const unsigned char* name = ours + i + 1;
    const unsigned char len = ours[i];
    for (unsigned int j = 0; j < inlen; j += 1u + in[j]) {
      if (in[j] == len && j + 1u + len <= inlen && std::memcmp(in + j + 1, name, len) == 0) {
        *out = name;  // points into this context, which outlives the handshake
        *outlen = len;
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;  // no_application_protocol (RFC 7301 §3.2)
}

ServerBuild build_server_context(const ServerOptions& options, int64_t now_s) {
  ServerBuild build;
  if (options.certificates.empty())
    build.errors.push_back({Kind::kNoCertificates, Field::kTls, 0, "",
                            "a TLS listener needs at least one certificate and key"});
  if (options.min_version > options.max_version)
    build.errors.push_back({Kind::kBadProtocols, Field::kProtocols, 0, "",
                            "protocol range is empty (minimum above maximum)"});
  check_cipher_lists(options.ciphers, options.ciphersuites, options.groups, build.errors);
  std::string alpn_wire_text;
  alpn_wire(options.alpn, alpn_wire_text, build.errors);

  std::vector<LoadedPair> pairs;
  for (size_t i = 0; i < options.certificates.size(); ++i) {
    pairs.push_back(load_pair(options.certificates[i], i, now_s, options.expiry_warning_s,
                              Field::kCert, Field::kKey, build.errors, build.warnings));
    if (pairs.back().ok) build.certificates.push_back(pairs.back().info);
  }
  X509_STORE* client_store = nullptr;
  STACK_OF(X509_NAME)* client_names = nullptr;
  if (!options.client_ca.empty()) {
    std::string text, why;
    if (!read_file(options.client_ca, text, why)) {
      build.errors.push_back({Kind::kUnreadable, Field::kCa, 0, options.client_ca,
                              "cannot read CA file " + options.client_ca + ": " + why});
    } else if (!(client_store = store_from_pem(text))) {
      build.errors.push_back({Kind::kNotPem, Field::kCa, 0, options.client_ca,
                              "CA file " + options.client_ca + " has no PEM certificate"});
    } else {
      client_names = SSL_load_client_CA_file(options.client_ca.c_str());
    }
  }
  if (!build.errors.empty()) {
    X509_STORE_free(client_store);
    sk_X509_NAME_pop_free(client_names, X509_NAME_free);
    return build;
  }

  std::shared_ptr<ServerContext> ctx(new ServerContext());
  ctx->alpn_ = options.alpn;
  ctx->alpn_wire_ = alpn_wire_text;
  ctx->certificates_ = build.certificates;
  ctx->ticket_keys_ = options.ticket_keys
                          ? options.ticket_keys
                          : std::make_shared<TicketKeyRing>(TicketKeyRing::Options{});
  const TicketKeyRing::Options& ring = ctx->ticket_keys_->options();

  auto new_slot = [&]() -> SSL_CTX* {
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    if (!c) return nullptr;
    ctx->slots_.push_back(c);
    bool ok = apply_common(c, options.min_version, options.max_version, options.ciphers,
                           options.ciphersuites) &&
              SSL_CTX_set1_groups_list(c, options.groups.c_str()) == 1;
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_PRIORITIZE_CHACHA | SSL_OP_NO_COMPRESSION);
    // Tickets carry the session, so no server-side cache (and no lock shared by workers).
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    static const unsigned char kSidContext[] = "sluice";
    ok = ok && SSL_CTX_set_session_id_context(c, kSidContext, sizeof kSidContext - 1) == 1;
    SSL_CTX_set_timeout(c, static_cast<long>(ring.ticket_lifetime_s));
    SSL_CTX_set_tlsext_ticket_key_evp_cb(c, on_ticket_key);
    SSL_CTX_set_ex_data(c, server_context_index(), ctx.get());
    SSL_CTX_set_tlsext_servername_callback(c, &ServerContext::on_servername);
    SSL_CTX_set_tlsext_servername_arg(c, ctx.get());
    SSL_CTX_set_alpn_select_cb(c, &ServerContext::on_alpn, ctx.get());
    if (options.release_buffers) SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    if (client_store) {
      X509_STORE_up_ref(client_store);
      SSL_CTX_set_cert_store(c, client_store);
      if (client_names) SSL_CTX_set_client_CA_list(c, SSL_dup_CA_list(client_names));
      SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
    return ok ? c : nullptr;
  };

  // Slots: pairs with exactly the same names and a different key type share one.
  struct SlotKeys {
    std::vector<std::string> names;  // sorted
    std::vector<int> key_ids;
  };
  std::vector<SlotKeys> slot_keys;
  for (size_t i = 0; i < pairs.size(); ++i) {
    LoadedPair& pair = pairs[i];
    std::vector<std::string> names = pair.info.names;
    std::sort(names.begin(), names.end());
    const int key_id = EVP_PKEY_get_base_id(pair.key.get());
    size_t slot = slot_keys.size();
    for (size_t s = 0; s < slot_keys.size(); ++s) {
      if (slot_keys[s].names == names &&
          std::find(slot_keys[s].key_ids.begin(), slot_keys[s].key_ids.end(), key_id) ==
              slot_keys[s].key_ids.end()) {
        slot = s;
        break;
      }
    }
    const bool own_slot = slot == slot_keys.size();
    if (own_slot) {
      if (!new_slot()) {
        build.errors.push_back(
            {Kind::kRejected, Field::kCert, i, options.certificates[i].cert,
             "cannot set up TLS for " + options.certificates[i].cert + ": " + openssl_reason()});
        break;
      }
      slot_keys.push_back({names, {}});
    }
    slot_keys[slot].key_ids.push_back(key_id);
    if (!use_pair(ctx->slots_[slot], pair)) {
      build.errors.push_back({Kind::kRejected, Field::kCert, i, options.certificates[i].cert,
                              "OpenSSL refuses certificate " + options.certificates[i].cert + ": " +
                                  openssl_reason()});
      continue;
    }
    size_t claimed = 0;  // names this pair is the first to cover
    for (const std::string& name : pair.info.names) {
      if (std::string_view base = wildcard_base(name); !base.empty()) {
        claimed += ctx->wildcard_.emplace(std::string(base), slot).second;
      } else if (name.find('*') == std::string::npos) {
        claimed += ctx->exact_.emplace(name, slot).second;
      }  // other uses of '*' (partial wildcards) match nothing, as in certificate_name_matches
    }
    if (own_slot && i != 0 && claimed == 0)
      build.warnings.push_back({Kind::kNeverServed, Field::kCert, i, options.certificates[i].cert,
                                "certificate " + options.certificates[i].cert +
                                    " is never served: earlier certificates cover all its names"});
  }
  X509_STORE_free(client_store);
  sk_X509_NAME_pop_free(client_names, X509_NAME_free);
  ERR_clear_error();
  if (build.errors.empty()) build.context = std::move(ctx);
  return build;
}

// ---- client ----

ClientContext::~ClientContext() {
  SSL_CTX_free(ctx_);
}

namespace {

int on_new_client_session(SSL* ssl, SSL_SESSION* session) {
  auto* ref = static_cast<ClientSessionRef*>(SSL_get_ex_data(ssl, client_session_index()));
  if (!ref || !ref->cache || !SSL_SESSION_is_resumable(session)) return 0;
  ref->cache->put(ref->key, ref->context_id, session);
  return 1;  // the cache keeps our reference
}

}  // namespace

SSL* ClientContext::new_ssl(std::string_view server_name) const {
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) return nullptr;
  std::string name;
  bool ok = true;
  if (server_name.empty()) {
    ok = !verify_;  // verifying needs a name: never verify a chain but skip the name check
  } else if (is_ip_literal(server_name, name)) {
    // RFC 6066 forbids IP addresses in SNI; the address is checked against IP SANs.
    if (verify_) ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) == 1;
  } else {
    ok = SSL_set_tlsext_host_name(ssl, name.c_str()) == 1;
    if (ok && verify_) {
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set1_host(ssl, name.c_str()) == 1;
    }
  }
  if (!ok) {
    SSL_free(ssl);
    ERR_clear_error();
    return nullptr;
  }
  return ssl;
}

ClientBuild build_client_context(const ClientOptions& options, int64_t now_s) {
  ClientBuild build;
  if (options.min_version > options.max_version)
    build.errors.push_back({Kind::kBadProtocols, Field::kProtocols, 0, "",
                            "protocol range is empty (minimum above maximum)"});
  check_cipher_lists(options.ciphers, options.ciphersuites, kDefaultGroups, build.errors);
  std::string alpn;
  alpn_wire(options.alpn, alpn, build.errors);

  X509_STORE* store = nullptr;
  if (!options.ca.empty()) {
    std::string text, why;
    if (!read_file(options.ca, text, why)) {
      build.errors.push_back({Kind::kUnreadable, Field::kCa, 0, options.ca,
                              "cannot read CA file " + options.ca + ": " + why});
    } else if (!(store = store_from_pem(text))) {
      build.errors.push_back({Kind::kNotPem, Field::kCa, 0, options.ca,
                              "CA file " + options.ca + " has no PEM certificate"});
    }
  }
  LoadedPair pair;
  if (options.cert.empty() != options.key.empty()) {
    build.errors.push_back({Kind::kNoCertificates,
                            options.cert.empty() ? Field::kCert : Field::kKey, 0, "",
                            "a client certificate needs both cert and key"});
  } else if (!options.cert.empty()) {
    pair = load_pair({options.cert, options.key}, 0, now_s, options.expiry_warning_s, Field::kCert,
                     Field::kKey, build.errors, build.warnings);
    if (pair.ok) build.certificates.push_back(pair.info);
  }
  if (!build.errors.empty()) {
    X509_STORE_free(store);
    return build;
  }

  std::shared_ptr<ClientContext> ctx(new ClientContext());
  ctx->verify_ = options.verify;
  ctx->id_ = next_client_context_id.fetch_add(1);
  ctx->ctx_ = SSL_CTX_new(TLS_client_method());
  SSL_CTX* c = ctx->ctx_;
  bool ok = c &&
            apply_common(c, options.min_version, options.max_version, options.ciphers,
                         options.ciphersuites) &&
            SSL_CTX_set1_groups_list(c, kDefaultGroups) == 1;
  if (ok) {
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_verify(c, options.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    if (store) {
      SSL_CTX_set_cert_store(c, store);  // takes our reference
      store = nullptr;
    } else if (X509_STORE* sys = system_store()) {
      SSL_CTX_set1_cert_store(c, sys);
    }
    if (!alpn.empty())
      ok = SSL_CTX_set_alpn_protos(c, reinterpret_cast<const unsigned char*>(alpn.data()),
                                   static_cast<unsigned>(alpn.size())) == 0;
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c, on_new_client_session);
    if (pair.ok && !use_pair(c, pair)) {
      build.errors.push_back(
          {Kind::kRejected, Field::kCert, 0, options.cert,
           "OpenSSL refuses certificate " + options.cert + ": " + openssl_reason()});
    }
  }
  X509_STORE_free(store);
  if (!ok && build.errors.empty())
    build.errors.push_back(
        {Kind::kRejected, Field::kTls, 0, "", "cannot set up upstream TLS: " + openssl_reason()});
  ERR_clear_error();
  if (build.errors.empty()) build.context = std::move(ctx);
  return build;
}

// ---- client session cache ----

ClientSessionCache::~ClientSessionCache() {
  for (auto& [key, entry] : entries_)
    for (SSL_SESSION* session : entry.sessions) SSL_SESSION_free(session);
}

SSL_SESSION* ClientSessionCache::get(std::string_view key, uint64_t context_id) {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.context_id != context_id) return nullptr;
  std::vector<SSL_SESSION*>& sessions = it->second.sessions;
  // Newest first; TLS 1.3 sessions are spent once used (OpenSSL marks them), so drop those.
  while (!sessions.empty()) {
    if (SSL_SESSION_is_resumable(sessions.back())) return sessions.back();
    SSL_SESSION_free(sessions.back());
    sessions.pop_back();
  }
  return nullptr;
}

void ClientSessionCache::put(std::string_view key, uint64_t context_id, SSL_SESSION* session) {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (capacity_ == 0) {
      SSL_SESSION_free(session);
      return;
    }
    if (entries_.size() >= capacity_) {
      auto oldest = std::min_element(entries_.begin(), entries_.end(), [](auto& a, auto& b) {
        return a.second.stamp < b.second.stamp;
      });
      for (SSL_SESSION* s : oldest->second.sessions) SSL_SESSION_free(s);
      entries_.erase(oldest);
    }
    it = entries_.emplace(std::string(key), Entry{context_id, {}, 0}).first;
  }
  Entry& entry = it->second;
  if (entry.context_id != context_id) {  // the upstream's TLS settings changed: start over
    for (SSL_SESSION* s : entry.sessions) SSL_SESSION_free(s);
    entry.sessions.clear();
    entry.context_id = context_id;
  }
  entry.stamp = ++clock_;
  entry.sessions.push_back(session);
  if (entry.sessions.size() > kSessionsPerKey) {
    SSL_SESSION_free(entry.sessions.front());
    entry.sessions.erase(entry.sessions.begin());
  }
}

void ClientSessionCache::erase(std::string_view key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  for (SSL_SESSION* s : it->second.sessions) SSL_SESSION_free(s);
  entries_.erase(it);
}

}  // namespace sluice::net
