// Loading TLS material: every bad asset gets a precise error on the right key, certificate
// facts for metrics and lint, name matching rules, the ticket key ring and the session cache.
#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "tls_harness.h"

namespace sluice::net {
namespace {

using namespace testing;
using Kind = TlsProblem::Kind;
using Field = TlsProblem::Field;

ServerBuild build_pair(const std::string& cert, const std::string& key) {
  ServerOptions o;
  o.certificates.push_back({tls_asset(cert), tls_asset(key)});
  return build_server_context(o, unix_now_s());
}

TEST_CASE("a good certificate pair loads and describes itself") {
  ServerBuild b = build_server_context(server_options({"rsa", "ecdsa"}), unix_now_s());
  REQUIRE(b.errors.empty());
  CHECK(b.warnings.empty());
  REQUIRE(b.context);
  REQUIRE(b.certificates.size() == 2);
  const CertificateInfo& rsa = b.certificates[0];
  CHECK(rsa.file == tls_asset("rsa.pem"));
  CHECK(rsa.names == std::vector<std::string>{"example.test", "www.example.test"});
  CHECK(rsa.serial_hex == "1001");
  CHECK(rsa.subject == "CN=example.test");
  CHECK(rsa.key_type == "RSA-2048");
  CHECK(rsa.not_after_s - rsa.not_before_s == 365 * 86400);
  CHECK(rsa.not_after_s > unix_now_s() + 300 * 86400);
  const CertificateInfo& ec = b.certificates[1];
  CHECK(ec.names == std::vector<std::string>{"*.wild.test", "api.example.test"});
  CHECK(ec.key_type == "EC-P-256");
  CHECK(b.context->certificates().size() == 2);
}

TEST_CASE("each bad asset is an error naming the file and the key to blame") {
  struct Case {
    const char* cert;
    const char* key;
    Kind kind;
    Field field;
    const char* words;
  };
  for (Case k : {
           Case{"missing.pem", "rsa.key", Kind::kUnreadable, Field::kCert,
                "No such file or directory"},
           Case{"rsa.pem", "missing.key", Kind::kUnreadable, Field::kKey,
                "No such file or directory"},
           Case{".", "rsa.key", Kind::kUnreadable, Field::kCert, "is a directory"},
           Case{"not-pem.pem", "rsa.key", Kind::kNotPem, Field::kCert, "no PEM certificate"},
           Case{"rsa.der", "rsa.key", Kind::kNotPem, Field::kCert, "no PEM certificate"},
           Case{"empty.pem", "rsa.key", Kind::kNotPem, Field::kCert, "no PEM certificate"},
           Case{"rsa.pem", "not-pem.pem", Kind::kNotPem, Field::kKey, "no PEM private key"},
           Case{"rsa.pem", "rsa.pem", Kind::kNotPem, Field::kKey, "no usable PEM private key"},
           Case{"rsa.pem", "encrypted.key", Kind::kEncryptedKey, Field::kKey, "encrypted"},
           Case{"rsa.pem", "wrong.key", Kind::kKeyMismatch, Field::kKey,
                "does not match certificate"},
           Case{"rsa.pem", "ecdsa.key", Kind::kKeyMismatch, Field::kKey,
                "(EC-P-256) does not match certificate"},
           Case{"expired.pem", "expired.key", Kind::kExpired, Field::kCert, "expired on"},
           Case{"not-yet.pem", "not-yet.key", Kind::kNotYetValid, Field::kCert,
                "is not valid before"},
       }) {
    CAPTURE(k.cert);
    CAPTURE(k.key);
    ServerBuild b = build_pair(k.cert, k.key);
    CHECK_FALSE(b.context);
    REQUIRE(b.errors.size() == 1);
    const TlsProblem& p = b.errors[0];
    CAPTURE(p.message);
    CHECK(p.kind == k.kind);
    CHECK(p.field == k.field);
    CHECK(p.pair == 0);
    CHECK(p.file == tls_asset(k.field == Field::kCert ? k.cert : k.key));
    CHECK(p.message.find(k.words) != std::string::npos);
    CHECK(p.message.find(p.file) != std::string::npos);
  }
}

TEST_CASE("a certificate expiring within 14 days loads with a warning") {
  ServerBuild b = build_pair("soon.pem", "soon.key");
  REQUIRE(b.context);
  REQUIRE(b.warnings.size() == 1);
  CHECK(b.warnings[0].kind == Kind::kExpiringSoon);
  CHECK(b.warnings[0].field == Field::kCert);
  REQUIRE(b.certificates.size() == 1);
  // Made with -days 5: "in 5 days" in the second it was made, "in 4 days" after that.
  const int64_t left = b.certificates[0].not_after_s - unix_now_s();
  CHECK(left < 5 * 86400 + 60);
  const std::string& m = b.warnings[0].message;
  CAPTURE(m);
  CHECK((m.find("(in 4 days)") != std::string::npos || m.find("(in 5 days)") != std::string::npos));
}

TEST_CASE("every problem in a listener's TLS settings is reported, not only the first") {
  ServerOptions o;
  o.certificates = {{tls_asset("rsa.pem"), tls_asset("rsa.key")},
                    {tls_asset("expired.pem"), tls_asset("expired.key")},
                    {tls_asset("missing.pem"), tls_asset("wrong.key")}};
  o.ciphers = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA257:!aNULL";
  o.ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_AES_512_GCM";
  o.alpn = {"http/1.1", ""};
  ServerBuild b = build_server_context(o, unix_now_s());
  CHECK_FALSE(b.context);
  std::vector<std::pair<Kind, size_t>> seen;
  for (const TlsProblem& p : b.errors) seen.emplace_back(p.kind, p.pair);
  CHECK(seen == std::vector<std::pair<Kind, size_t>>{{Kind::kBadCipherList, 0},
                                                     {Kind::kBadCipherList, 0},
                                                     {Kind::kBadAlpn, 0},
                                                     {Kind::kExpired, 1},
                                                     {Kind::kUnreadable, 2}});
  CHECK(b.errors[0].field == Field::kCiphers);
  CHECK(b.errors[0].message.find("'ECDHE-RSA-AES128-GCM-SHA257'") != std::string::npos);
  CHECK(b.errors[1].field == Field::kCiphersuites);
  CHECK(b.errors[1].message.find("'TLS_AES_512_GCM'") != std::string::npos);
  CHECK(b.errors[2].field == Field::kAlpn);
}

TEST_CASE("listener settings that cannot work are refused") {
  SUBCASE("no certificate") {
    ServerBuild b = build_server_context(ServerOptions{}, unix_now_s());
    REQUIRE(b.errors.size() == 1);
    CHECK(b.errors[0].kind == Kind::kNoCertificates);
  }
  SUBCASE("an empty protocol range") {
    ServerOptions o = server_options({"rsa"});
    o.min_version = TlsVersion::kTls13;
    o.max_version = TlsVersion::kTls12;
    ServerBuild b = build_server_context(o, unix_now_s());
    REQUIRE(b.errors.size() == 1);
    CHECK(b.errors[0].kind == Kind::kBadProtocols);
    CHECK(b.errors[0].field == Field::kProtocols);
  }
  SUBCASE("an unreadable client CA") {
    ServerOptions o = server_options({"rsa"});
    o.client_ca = tls_asset("missing-ca.pem");
    ServerBuild b = build_server_context(o, unix_now_s());
    REQUIRE(b.errors.size() == 1);
    CHECK(b.errors[0].field == Field::kCa);
  }
}

TEST_CASE("a pair whose names earlier pairs cover is loaded with a warning") {
  ServerBuild b = build_server_context(server_options({"rsa", "other"}), unix_now_s());
  REQUIRE(b.context);
  REQUIRE(b.warnings.size() == 1);
  CHECK(b.warnings[0].kind == Kind::kNeverServed);
  CHECK(b.warnings[0].pair == 1);
}

TEST_CASE("upstream TLS settings are checked like a listener's") {
  SUBCASE("a CA file that is not PEM") {
    ClientOptions o;
    o.ca = tls_asset("not-pem.pem");
    ClientBuild b = build_client_context(o, unix_now_s());
    REQUIRE(b.errors.size() == 1);
    CHECK(b.errors[0].kind == Kind::kNotPem);
    CHECK(b.errors[0].field == Field::kCa);
  }
  SUBCASE("a client certificate without its key") {
    ClientOptions o;
    o.cert = tls_asset("client.pem");
    ClientBuild b = build_client_context(o, unix_now_s());
    REQUIRE(b.errors.size() == 1);
    CHECK(b.errors[0].field == Field::kKey);
  }
  SUBCASE("a client certificate whose key does not match") {
    ClientOptions o;
    o.cert = tls_asset("client.pem");
    o.key = tls_asset("other-client.key");
    ClientBuild b = build_client_context(o, unix_now_s());
    REQUIRE(b.errors.size() == 1);
    CHECK(b.errors[0].kind == Kind::kKeyMismatch);
  }
  SUBCASE("a good client certificate is described") {
    ClientOptions o;
    o.cert = tls_asset("client.pem");
    o.key = tls_asset("client.key");
    ClientBuild b = build_client_context(o, unix_now_s());
    REQUIRE(b.context);
    REQUIRE(b.certificates.size() == 1);
    CHECK(b.certificates[0].names == std::vector<std::string>{"sluice client"});
  }
}

TEST_CASE("certificate names match exactly or by one leftmost wildcard label") {
  struct Case {
    const char* pattern;
    const char* name;
    bool match;
  };
  for (Case k :
       {Case{"example.test", "example.test", true}, Case{"example.test", "EXAMPLE.Test", true},
        Case{"example.test", "example.test.", true},
        Case{"example.test", "www.example.test", false},
        Case{"*.example.test", "www.example.test", true},
        Case{"*.example.test", "WWW.EXAMPLE.TEST", true},
        Case{"*.example.test", "example.test", false},
        Case{"*.example.test", "a.b.example.test", false},
        Case{"*.example.test", ".example.test", false},
        Case{"*.test", "example.test", false},  // no wildcard over a single label
        Case{"w*.example.test", "www.example.test", false},
        Case{"*w.example.test", "www.example.test", false},
        Case{"www.*.test", "www.example.test", false}, Case{"*.*.test", "a.b.test", false},
        Case{"", "example.test", false}}) {
    CAPTURE(k.pattern);
    CAPTURE(k.name);
    CHECK(certificate_name_matches(k.pattern, k.name) == k.match);
  }
}

TEST_CASE("a server name selects its slot: exact before wildcard, the default otherwise") {
  ServerBuild b = build_server_context(server_options({"rsa", "ecdsa", "cn-only"}), unix_now_s());
  REQUIRE(b.context);
  const ServerContext& ctx = *b.context;
  CHECK(ctx.slots() == 3);
  CHECK(ctx.slot_for("example.test") == 0);
  CHECK(ctx.slot_for("api.example.test") == 1);
  CHECK(ctx.slot_for("foo.wild.test") == 1);
  CHECK(ctx.slot_for("FOO.Wild.Test.") == 1);
  CHECK(ctx.slot_for("wild.test") == 0);
  CHECK(ctx.slot_for("a.foo.wild.test") == 0);
  CHECK(ctx.slot_for("cn-only.test") == 2);
  CHECK(ctx.slot_for("") == 0);
  CHECK(ctx.slot_for(std::string(300, 'a')) == 0);
}

TEST_CASE("wildcards RFC 6125 does not allow select nothing") {
  ServerBuild b = build_server_context(server_options({"rsa", "bad-wild"}), unix_now_s());
  REQUIRE(b.context);
  CHECK(b.context->slots() == 2);
  CHECK(b.context->slot_for("example.test") == 0);
  CHECK(b.context->slot_for("other.test") == 0);        // not by "*.test"
  CHECK(b.context->slot_for("www.partial.test") == 0);  // not by "w*.partial.test"
  REQUIRE(b.warnings.size() == 1);
  CHECK(b.warnings[0].kind == Kind::kNeverServed);
}

TEST_CASE("an upstream engine refuses to verify without a name to check") {
  auto verifying = make_client(client_options());
  CHECK_FALSE(TlsEngine::client(verifying, ""));
  ClientOptions lax = client_options();
  lax.verify = false;
  CHECK(TlsEngine::client(make_client(lax), ""));
}

TEST_CASE("the ticket key ring rotates on schedule and forgets keys after their grace period") {
  int64_t now = 5000;
  TicketKeyRing ring({/*rotate_every_s=*/100, /*ticket_lifetime_s=*/250}, [&now] { return now; });
  auto first = ring.keys();
  REQUIRE(first->keys.size() == 1);
  now += 99;
  CHECK(ring.keys() == first);
  now += 1;
  auto second = ring.keys();
  REQUIRE(second->keys.size() == 2);
  CHECK(std::memcmp(second->keys[1].name, first->keys[0].name, 16) == 0);
  CHECK(std::memcmp(second->keys[0].name, first->keys[0].name, 16) != 0);
  now += 100;
  CHECK(ring.keys()->keys.size() == 3);
  now += 100;  // 300 s after the first key was made: past 100 + 250? not yet (350)
  CHECK(ring.keys()->keys.size() == 4);
  now += 100;  // 400: the first key (encrypting until 100, valid to 350) is gone
  auto later = ring.keys();
  CHECK(later->keys.size() == 4);
  for (const TicketKeyRing::Key& k : later->keys)
    CHECK(std::memcmp(k.name, first->keys[0].name, 16) != 0);
}

TEST_CASE("the client session cache keeps one session per key, bounded") {
  auto server = make_server(server_options());
  auto client = make_client(client_options());
  ClientSessionCache cache(2);
  for (const char* key : {"a", "b", "c"}) {
    Connection c = connect(server, client, "example.test", &cache, key);
    REQUIRE(c.established());
    REQUIRE(c.server->write("x"));
    pump(*c.client, *c.server);
  }
  CHECK(cache.size() == 2);
  CHECK_FALSE(cache.get("a", client->id()));  // the oldest went first
  CHECK(cache.get("b", client->id()));
  CHECK(cache.get("c", client->id()));
  cache.erase("b");
  CHECK(cache.size() == 1);
}

}  // namespace
}  // namespace sluice::net
