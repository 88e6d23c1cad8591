// Shared helpers for the TLS unit tests: build contexts from the generated assets and run two
// engines against each other in memory.
#pragma once

#include <doctest/doctest.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "net/tls_context.h"
#include "net/tls_engine.h"
#include "tls_test_certs.h"

namespace sluice::net::testing {

using test::tls_asset;

inline ServerOptions server_options(std::initializer_list<const char*> names = {"rsa", "ecdsa"}) {
  ServerOptions o;
  for (const char* n : names)
    o.certificates.push_back(
        {tls_asset(std::string(n) + ".pem"), tls_asset(std::string(n) + ".key")});
  return o;
}

inline std::shared_ptr<const ServerContext> make_server(const ServerOptions& o) {
  ServerBuild b = build_server_context(o, unix_now_s());
  for (const TlsProblem& p : b.errors) FAIL_CHECK(p.message);
  REQUIRE(b.context);
  return b.context;
}

inline ClientOptions client_options(const char* ca = "ca.pem") {
  ClientOptions o;
  if (ca) o.ca = tls_asset(ca);
  return o;
}

inline std::shared_ptr<const ClientContext> make_client(const ClientOptions& o) {
  ClientBuild b = build_client_context(o, unix_now_s());
  for (const TlsProblem& p : b.errors) FAIL_CHECK(p.message);
  REQUIRE(b.context);
  return b.context;
}

// Reads all plaintext `e` can produce now (driving its handshake) into `plain`.
inline void drive(TlsEngine& e, std::string* plain = nullptr) {
  char buf[4096];
  for (int i = 0; i < 1000; ++i) {
    TlsEngine::ReadResult r = e.read(buf, sizeof buf);
    if (plain) plain->append(buf, r.n);
    if (r.status != TlsEngine::Status::kOk) return;
  }
  FAIL("engine kept returning data");
}

// Moves `from`'s output into `to` and lets `to` react. False if there was nothing to move.
inline bool transfer(TlsEngine& from, TlsEngine& to, std::string* to_plain = nullptr) {
  if (!from.has_output()) return false;
  std::string wire(from.output());
  from.consume_output(wire.size());
  to.feed(wire);
  drive(to, to_plain);
  to.release_input();  // `wire` dies here
  return true;
}

// Runs the two engines until no bytes move; plaintext each side receives is appended.
inline void pump(TlsEngine& client, TlsEngine& server, std::string* client_plain = nullptr,
                 std::string* server_plain = nullptr) {
  drive(client, client_plain);
  for (int round = 0; round < 50; ++round) {
    bool moved = transfer(client, server, server_plain);
    moved |= transfer(server, client, client_plain);
    if (!moved) return;
  }
  FAIL("engines still talking after 50 rounds");
}

struct Connection {
  std::unique_ptr<TlsEngine> client;
  std::unique_ptr<TlsEngine> server;
  bool established() const {
    return client->handshake_done() && server->handshake_done() && !client->failed() &&
           !server->failed();
  }
};

inline Connection connect(std::shared_ptr<const ServerContext> server,
                          std::shared_ptr<const ClientContext> client, std::string_view server_name,
                          ClientSessionCache* cache = nullptr,
                          std::string_view cache_key = "upstream") {
  Connection c{TlsEngine::client(std::move(client), server_name, cache, cache_key),
               TlsEngine::server(std::move(server))};
  REQUIRE(c.client);
  REQUIRE(c.server);
  pump(*c.client, *c.server);
  return c;
}

inline std::string serial_of(X509* cert) {
  if (!cert) return "";
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  char* hex = BN_bn2hex(bn);
  std::string s = hex;
  OPENSSL_free(hex);
  BN_free(bn);
  return s;
}

// The serial of the certificate the server presented, as the client saw it.
inline std::string served_serial(const Connection& c) {
  return serial_of(SSL_get0_peer_certificate(c.client->native_handle()));
}

}  // namespace sluice::net::testing
