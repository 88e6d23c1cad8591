// TLS engine against TLS engine in memory: versions, SNI, ALPN, resumption across contexts and
// key rotation, verification failures, mTLS, garbage and plaintext on a TLS port, I/O details.
#include <doctest/doctest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tls_harness.h"

namespace sluice::net {
namespace {

using namespace testing;
using Status = TlsEngine::Status;

TEST_CASE("a client and a server engine complete a TLS 1.3 handshake and exchange data") {
  auto server = make_server(server_options());
  auto client = make_client(client_options());
  Connection c = connect(server, client, "example.test");
  REQUIRE(c.established());
  CHECK(c.client->version() == "TLSv1.3");
  CHECK(c.server->version() == "TLSv1.3");
  CHECK(c.client->alpn() == "http/1.1");
  CHECK(c.server->alpn() == "http/1.1");
  CHECK(c.server->server_name() == "example.test");
  CHECK(c.client->verify_result() == X509_V_OK);
  CHECK_FALSE(c.client->resumed());
  CHECK(served_serial(c) == "1001");

  std::string at_server, at_client;
  REQUIRE(c.client->write("GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"));
  pump(*c.client, *c.server, &at_client, &at_server);
  CHECK(at_server == "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n");
  REQUIRE(c.server->write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
  pump(*c.client, *c.server, &at_client, &at_server);
  CHECK(at_client == "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");

  SUBCASE("close_notify reaches the peer as a clean close") {
    c.client->close();
    CHECK(c.client->close_sent());
    CHECK_FALSE(c.client->write("late"));
    REQUIRE(transfer(*c.client, *c.server));
    char buf[16];
    CHECK(c.server->read(buf, sizeof buf).status == Status::kClosed);
    CHECK(c.server->close_notify_received());
    CHECK_FALSE(c.server->failed());
  }
  SUBCASE("end of stream between records is a close without close_notify") {
    REQUIRE(c.client->write("hello"));
    std::string wire(c.client->output());
    c.client->consume_output(wire.size());
    c.server->feed(wire);
    c.server->feed_eof();
    std::string got;
    drive(*c.server, &got);
    CHECK(got == "hello");
    char buf[16];
    CHECK(c.server->read(buf, sizeof buf).status == Status::kClosed);
    CHECK_FALSE(c.server->close_notify_received());
    CHECK_FALSE(c.server->failed());
  }
  SUBCASE("end of stream inside a record is a truncation, not a clean close") {
    REQUIRE(c.client->write("hello"));
    std::string wire(c.client->output());
    c.client->consume_output(wire.size());
    c.server->feed(wire.data(), wire.size() - 3);
    c.server->feed_eof();
    char buf[16];
    CHECK(c.server->read(buf, sizeof buf).status == Status::kFailed);
    CHECK(c.server->failure() == TlsFailure::kTruncated);
  }
}

TEST_CASE("TLS 1.2 is negotiated when one side stops there") {
  SUBCASE("the client's maximum is 1.2") {
    ClientOptions co = client_options();
    co.max_version = TlsVersion::kTls12;
    Connection c = connect(make_server(server_options()), make_client(co), "example.test");
    REQUIRE(c.established());
    CHECK(c.server->version() == "TLSv1.2");
    CHECK(c.client->alpn() == "http/1.1");
    CHECK(c.server->cipher() == "ECDHE-RSA-AES128-GCM-SHA256");
  }
  SUBCASE("the server's maximum is 1.2") {
    ServerOptions so = server_options();
    so.max_version = TlsVersion::kTls12;
    Connection c = connect(make_server(so), make_client(client_options()), "api.example.test");
    REQUIRE(c.established());
    CHECK(c.client->version() == "TLSv1.2");
    CHECK(c.client->cipher() == "ECDHE-ECDSA-AES128-GCM-SHA256");
  }
  SUBCASE("a 1.3-only server refuses a 1.2-only client") {
    ServerOptions so = server_options();
    so.min_version = TlsVersion::kTls13;
    ClientOptions co = client_options();
    co.max_version = TlsVersion::kTls12;
    Connection c = connect(make_server(so), make_client(co), "example.test");
    CHECK(c.server->failure() == TlsFailure::kProtocol);
    CHECK(c.client->failure() == TlsFailure::kPeerAlert);
  }
}

TEST_CASE("a TLS 1.1 ClientHello is refused with an alert") {
  auto server = TlsEngine::server(make_server(server_options()));
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_security_level(ctx, 0);  // let this client even try 1.1
  SSL_CTX_set_min_proto_version(ctx, TLS1_1_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
  SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0");
  SSL* old = SSL_new(ctx);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(old, in, out);
  SSL_set_connect_state(old);
  CHECK(SSL_do_handshake(old) != 1);
  char* hello = nullptr;
  long len = BIO_get_mem_data(out, &hello);
  REQUIRE(len > 0);
  CHECK(static_cast<unsigned char>(hello[0]) == 0x16);

  server->feed(hello, static_cast<size_t>(len));
  CHECK(server->handshake() == Status::kFailed);
  CHECK(server->failure() == TlsFailure::kProtocol);
  CHECK(server->failure_detail() == "unsupported protocol");
  CHECK(server->has_output());  // the protocol_version alert
  server->release_input();
  SSL_free(old);
  SSL_CTX_free(ctx);
  ERR_clear_error();
}

TEST_CASE("SNI picks the certificate that names the host, and the first pair otherwise") {
  ServerOptions so = server_options({"rsa", "ecdsa", "cn-only", "san-hides-cn"});
  auto server = make_server(so);
  ClientOptions co = client_options();
  co.verify = false;  // which certificate is served is the question here, not whether it fits
  auto client = make_client(co);
  struct Case {
    const char* sni;
    const char* serial;
  };
  for (Case k :
       {Case{"example.test", "1001"}, Case{"www.example.test", "1001"},
        Case{"api.example.test", "1002"}, Case{"API.Example.TEST", "1002"},
        Case{"x.wild.test", "1002"}, Case{"a.b.wild.test", "1001"}, Case{"wild.test", "1001"},
        Case{"cn-only.test", "1004"}, Case{"shown.test", "1005"}, Case{"hidden.test", "1001"},
        Case{"unknown.test", "1001"}, Case{"127.0.0.1", "1001"}}) {
    CAPTURE(k.sni);
    Connection c = connect(server, client, k.sni);
    REQUIRE(c.established());
    CHECK(served_serial(c) == k.serial);
  }
  SUBCASE("the chain is sent: a name under the intermediate verifies against the root") {
    Connection c = connect(server, make_client(client_options()), "x.wild.test");
    REQUIRE(c.established());
    CHECK(served_serial(c) == "1002");
    CHECK(c.client->verify_result() == X509_V_OK);
  }
}

TEST_CASE("an RSA and an ECDSA certificate for the same names share a slot") {
  ServerBuild b = build_server_context(server_options({"rsa", "example-ec"}), unix_now_s());
  REQUIRE(b.context);
  CHECK(b.context->slots() == 1);
  CHECK(b.warnings.empty());
  auto client = make_client(client_options());
  SUBCASE("a client that accepts ECDSA gets ECDSA") {
    Connection c = connect(b.context, client, "example.test");
    REQUIRE(c.established());
    CHECK(served_serial(c) == "1003");
  }
  SUBCASE("a client that only takes RSA signatures gets RSA") {
    Connection c{TlsEngine::client(client, "example.test"), TlsEngine::server(b.context)};
    REQUIRE(SSL_set1_sigalgs_list(c.client->native_handle(), "rsa_pss_rsae_sha256") == 1);
    pump(*c.client, *c.server);
    REQUIRE(c.established());
    CHECK(served_serial(c) == "1001");
  }
}

TEST_CASE("ALPN follows the server's preference") {
  ServerOptions so = server_options();
  ClientOptions co = client_options();
  SUBCASE("h2 wins when both sides offer it and the server enables it") {
    so.alpn = {"h2", "http/1.1"};
    co.alpn = {"http/1.1", "h2"};
    Connection c = connect(make_server(so), make_client(co), "example.test");
    REQUIRE(c.established());
    CHECK(c.server->alpn() == "h2");
    CHECK(c.client->alpn() == "h2");
  }
  SUBCASE("http/1.1 while the server does not enable h2") {
    co.alpn = {"h2", "http/1.1"};
    Connection c = connect(make_server(so), make_client(co), "example.test");
    REQUIRE(c.established());
    CHECK(c.client->alpn() == "http/1.1");
  }
  SUBCASE("a client without ALPN still connects, with no protocol chosen") {
    co.alpn = {};
    Connection c = connect(make_server(so), make_client(co), "example.test");
    REQUIRE(c.established());
    CHECK(c.server->alpn() == "");
  }
  SUBCASE("a client offering only protocols the server lacks gets no_application_protocol") {
    co.alpn = {"h2"};
    Connection c = connect(make_server(so), make_client(co), "example.test");
    CHECK(c.server->failure() == TlsFailure::kProtocol);
    CHECK(c.client->failure() == TlsFailure::kPeerAlert);
    CHECK(c.client->failure_detail().find("no application protocol") != std::string::npos);
  }
}

// Connects with `cache` and lets the client read the server's post-handshake tickets.
Connection connect_and_settle(std::shared_ptr<const ServerContext> server,
                              std::shared_ptr<const ClientContext> client,
                              ClientSessionCache& cache) {
  Connection c = connect(std::move(server), std::move(client), "example.test", &cache);
  REQUIRE(c.established());
  REQUIRE(c.server->write("x"));
  pump(*c.client, *c.server);
  return c;
}

TEST_CASE("a session from one server context resumes on another that shares the key ring") {
  for (TlsVersion v : {TlsVersion::kTls12, TlsVersion::kTls13}) {
    CAPTURE(static_cast<int>(v));
    auto ring = std::make_shared<TicketKeyRing>(TicketKeyRing::Options{});
    ServerOptions so = server_options();
    so.ticket_keys = ring;
    so.max_version = v;
    auto worker_a = make_server(so);
    auto worker_b = make_server(so);  // another worker, or the context after a rotation
    auto client = make_client(client_options());
    ClientSessionCache cache;

    Connection first = connect_and_settle(worker_a, client, cache);
    CHECK_FALSE(first.client->resumed());
    REQUIRE(cache.size() == 1);

    Connection second = connect_and_settle(worker_b, client, cache);
    CHECK(second.client->resumed());
    CHECK(second.server->resumed());
    CHECK(second.server->server_name() == "example.test");

    // A TLS 1.3 ticket is spent once used: the resumed connection must have brought a new one.
    Connection again = connect_and_settle(worker_a, client, cache);
    CHECK(again.client->resumed());

    ServerOptions other = so;
    other.ticket_keys = std::make_shared<TicketKeyRing>(TicketKeyRing::Options{});
    Connection third = connect_and_settle(make_server(other), client, cache);
    CHECK(third.established());
    CHECK_FALSE(third.client->resumed());  // its keys cannot open the ticket: a full handshake
  }
}

TEST_CASE("rotated ticket keys keep old tickets valid for the grace period, then not") {
  for (TlsVersion v : {TlsVersion::kTls12, TlsVersion::kTls13}) {
    CAPTURE(static_cast<int>(v));
    int64_t now = 100000;
    auto ring = std::make_shared<TicketKeyRing>(
        TicketKeyRing::Options{/*rotate_every_s=*/3600, /*ticket_lifetime_s=*/7200},
        [&now] { return now; });
    ServerOptions so = server_options();
    so.ticket_keys = ring;
    so.max_version = v;
    auto server = make_server(so);
    auto client = make_client(client_options());

    ClientSessionCache cache;
    connect_and_settle(server, client, cache);
    SSL_SESSION* original = cache.get("upstream", client->id());
    REQUIRE(original);
    auto offer_original = [&](ClientSessionCache& fresh) {
      SSL_SESSION_up_ref(original);
      fresh.put("upstream", client->id(), original);
    };
    SSL_SESSION_up_ref(original);  // keep it across the cache's replacements

    now += 3600 + 1;  // a new key encrypts now; the old one only decrypts
    CHECK(ring->keys()->keys.size() == 2);
    {
      ClientSessionCache fresh;
      offer_original(fresh);
      Connection c = connect_and_settle(server, client, fresh);
      CHECK(c.client->resumed());
      CHECK(fresh.get("upstream", client->id()) != original);  // renewed under the new key
    }
    now += 7200;  // past the old key's grace period
    {
      ClientSessionCache fresh;
      offer_original(fresh);
      Connection c = connect_and_settle(server, client, fresh);
      CHECK(c.established());
      CHECK_FALSE(c.client->resumed());
    }
    SSL_SESSION_free(original);
  }
}

TEST_CASE("handshakes on several threads share one key ring while it rotates") {
  std::atomic<int64_t> now{1000};
  auto ring = std::make_shared<TicketKeyRing>(TicketKeyRing::Options{60, 600},
                                              [&now] { return now.load(); });
  ServerOptions so = server_options();
  so.ticket_keys = ring;
  auto client = make_client(client_options());
  std::atomic<int> resumed{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      auto server = build_server_context(so, unix_now_s()).context;  // one context per worker
      ClientSessionCache cache;
      for (int i = 0; i < 15; ++i) {
        if (t == 0) now += 20;  // rotations happen while other threads handshake
        auto ce = TlsEngine::client(client, "example.test", &cache, "upstream");
        auto se = TlsEngine::server(server);
        pump(*ce, *se);
        se->write("x");
        pump(*ce, *se);
        if (!ce->handshake_done() || ce->failed() || se->failed()) ++failed;
        if (ce->resumed()) ++resumed;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(failed == 0);
  // All but each thread's first: keys live 660 s and the clock moves 300 s in all, so no ticket
  // outlives its key, whichever thread rotated the ring.
  CHECK(resumed == 3 * 14);
}

TEST_CASE("verification failures are their own kind of failure") {
  auto server = make_server(server_options());
  SUBCASE("a certificate from a CA the client does not trust") {
    Connection c = connect(server, make_client(client_options("other-ca.pem")), "example.test");
    CHECK(c.client->failure() == TlsFailure::kVerify);
    CHECK(c.client->failure_detail().find("unable to get local issuer certificate") !=
          std::string::npos);
    CHECK(c.server->failure() == TlsFailure::kPeerAlert);
  }
  SUBCASE("a certificate for another name") {
    Connection c = connect(server, make_client(client_options()), "wrong.test");
    CHECK(c.client->failure() == TlsFailure::kVerify);
    CHECK(c.client->failure_detail().find("hostname mismatch") != std::string::npos);
    CHECK(c.client->verify_result() == X509_V_ERR_HOSTNAME_MISMATCH);
  }
  SUBCASE("the system store does not know the test CA") {
    Connection c = connect(server, make_client(client_options(nullptr)), "example.test");
    CHECK(c.client->failure() == TlsFailure::kVerify);
  }
  SUBCASE("verify = false accepts anything") {
    ClientOptions co = client_options("other-ca.pem");
    co.verify = false;
    Connection c = connect(server, make_client(co), "wrong.test");
    CHECK(c.established());
  }
  SUBCASE("an IP address is checked against IP SANs") {
    auto ip_server = make_server(server_options({"ip"}));
    auto client = make_client(client_options());
    Connection good = connect(ip_server, client, "127.0.0.1");
    CHECK(good.established());
    CHECK(good.server->server_name() == "");  // no SNI for an address
    Connection bad = connect(ip_server, client, "127.0.0.2");
    CHECK(bad.client->failure() == TlsFailure::kVerify);
    CHECK(bad.client->verify_result() == X509_V_ERR_IP_ADDRESS_MISMATCH);
  }
}

TEST_CASE("a server that requires client certificates accepts ours and refuses others") {
  ServerOptions so = server_options();
  so.client_ca = tls_asset("ca.pem");
  auto server = make_server(so);
  ClientOptions co = client_options();
  for (TlsVersion v : {TlsVersion::kTls12, TlsVersion::kTls13}) {
    CAPTURE(static_cast<int>(v));
    co.max_version = v;
    SUBCASE("a certificate from the trusted CA is accepted") {
      co.cert = tls_asset("client.pem");
      co.key = tls_asset("client.key");
      Connection c = connect(server, make_client(co), "example.test");
      REQUIRE(c.established());
      CHECK(serial_of(SSL_get0_peer_certificate(c.server->native_handle())) == "2001");
    }
    SUBCASE("no certificate or a stranger's is refused") {
      for (const char* name : {"", "other-client"}) {
        CAPTURE(name);
        co.cert = *name ? tls_asset(std::string(name) + ".pem") : "";
        co.key = *name ? tls_asset(std::string(name) + ".key") : "";
        Connection c = connect(server, make_client(co), "example.test");
        CHECK(c.server->failure() == TlsFailure::kVerify);
        // In TLS 1.3 the client finishes first and learns of the refusal on its next read.
        CHECK(c.client->failure() == TlsFailure::kPeerAlert);
      }
    }
  }
}

TEST_CASE("bytes that are not a ClientHello fail at once") {
  auto server_ctx = make_server(server_options());
  auto fed = [&](std::string_view bytes) {
    auto e = TlsEngine::server(server_ctx);
    e->feed(bytes);
    Status s = e->handshake();
    e->release_input();
    return std::make_pair(s, std::move(e));
  };
  SUBCASE("a plaintext HTTP request is recognised as such, before any TLS output") {
    for (std::string_view req : {"GET / HTTP/1.1\r\n", "P", "PRI * HTTP/2.0\r\n"}) {
      CAPTURE(req);
      auto [s, e] = fed(req);
      CHECK(s == Status::kFailed);
      CHECK(e->failure() == TlsFailure::kNotTls);
      CHECK_FALSE(e->has_output());  // the transport may answer 400 in plaintext
    }
  }
  SUBCASE("random bytes") {
    auto [s, e] = fed(std::string_view("\x01\x02\x03garbage\xff", 11));
    CHECK(s == Status::kFailed);
    CHECK(e->failure() == TlsFailure::kProtocol);
  }
  SUBCASE("a handshake record holding nonsense") {
    auto [s, e] = fed(std::string_view("\x16\x03\x01\x00\x05hello", 10));
    CHECK(s == Status::kFailed);
    CHECK(e->failure() == TlsFailure::kProtocol);
  }
  SUBCASE("a record header claiming more than a record may hold") {
    auto [s, e] = fed(std::string_view("\x16\x03\x01\xff\xff", 5));
    CHECK(s == Status::kFailed);
    CHECK(e->failure() == TlsFailure::kProtocol);
  }
  SUBCASE("a partial ClientHello waits, and end of stream then fails it") {
    auto client = TlsEngine::client(make_client(client_options()), "example.test");
    CHECK(client->handshake() == Status::kWantInput);
    std::string hello(client->output());
    auto e = TlsEngine::server(server_ctx);
    e->feed(hello.data(), hello.size() / 2);
    CHECK(e->handshake() == Status::kWantInput);
    e->feed_eof();
    CHECK(e->handshake() == Status::kFailed);
    CHECK(e->failure() == TlsFailure::kTruncated);
  }
  SUBCASE("end of stream before any byte") {
    auto e = TlsEngine::server(server_ctx);
    e->feed_eof();
    CHECK(e->handshake() == Status::kFailed);
    CHECK(e->failure() == TlsFailure::kTruncated);
  }
}

TEST_CASE("a handshake fed one byte at a time completes") {
  auto client = TlsEngine::client(make_client(client_options()), "api.example.test");
  auto server = TlsEngine::server(make_server(server_options()));
  drive(*client);
  for (int round = 0; round < 20 && !(client->handshake_done() && server->handshake_done());
       ++round) {
    for (auto [from, to] : {std::pair{client.get(), server.get()}, {server.get(), client.get()}}) {
      std::string wire(from->output());
      from->consume_output(wire.size());
      for (char byte : wire) {
        to->feed(&byte, 1);
        drive(*to);
        to->release_input();
      }
    }
  }
  CHECK(client->handshake_done());
  CHECK(server->handshake_done());
  CHECK_FALSE(client->failed());
}

TEST_CASE("input the caller stopped reading is kept by release_input") {
  Connection c =
      connect(make_server(server_options()), make_client(client_options()), "example.test");
  REQUIRE(c.established());
  REQUIRE(c.client->write(std::string(3000, 'a')));
  REQUIRE(c.client->write(std::string(3000, 'b')));
  std::string wire(c.client->output());
  c.client->consume_output(wire.size());
  c.server->feed(wire);
  char buf[1000];
  TlsEngine::ReadResult r = c.server->read(buf, sizeof buf);  // back-pressure: one small read
  CHECK(r.n == 1000);
  c.server->release_input();
  CHECK(c.server->unread_input() > 0);
  std::fill(wire.begin(), wire.end(), '\0');  // the caller's buffer is reused
  std::string rest;
  drive(*c.server, &rest);
  CHECK(rest == std::string(2000, 'a') + std::string(3000, 'b'));
  CHECK(c.server->unread_input() == 0);
}

TEST_CASE("writing several pieces makes as few records as possible") {
  Connection c =
      connect(make_server(server_options()), make_client(client_options()), "example.test");
  REQUIRE(c.established());
  constexpr size_t kOverhead = 5 + 1 + 16;  // TLS 1.3 AES-GCM: header, content type, tag
  std::string_view pieces[] = {"HTTP/1.1 200 OK\r\n", "content-length: 5\r\n\r\n", "hello"};
  REQUIRE(c.server->write(std::span<const std::string_view>(pieces)));
  CHECK(c.server->output().size() == 17 + 21 + 5 + kOverhead);
  std::string at_client;
  pump(*c.client, *c.server, &at_client);
  CHECK(at_client == "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");

  SUBCASE("a large piece goes as full records") {
    std::string big(40000, 'z');
    std::string_view two[] = {"head", big};
    REQUIRE(c.server->write(std::span<const std::string_view>(two)));
    CHECK(c.server->output().size() == 4 + 40000 + 4 * kOverhead);  // head + 16K + 16K + rest
    at_client.clear();
    pump(*c.client, *c.server, &at_client);
    CHECK(at_client == "head" + big);
  }
}

TEST_CASE("a client's writes before the handshake completes go out after it") {
  auto client = TlsEngine::client(make_client(client_options()), "example.test");
  auto server = TlsEngine::server(make_server(server_options()));
  REQUIRE(client->write("GET / HTTP/1.1\r\n\r\n"));
  std::string at_server;
  pump(*client, *server, nullptr, &at_server);
  CHECK(at_server == "GET / HTTP/1.1\r\n\r\n");
}

TEST_CASE("trim frees the record buffers of an idle connection, which keeps working") {
  TlsBufferPool pool;
  auto client = TlsEngine::client(make_client(client_options()), "example.test");
  auto server = TlsEngine::server(make_server(server_options()), &pool);
  pump(*client, *server);
  REQUIRE(server->handshake_done());
  CHECK(server->trim());
  CHECK(pool.free_buffers() == 1);  // its output buffer went back to the pool
  std::string at_server, at_client;
  REQUIRE(client->write("ping"));
  pump(*client, *server, &at_client, &at_server);
  CHECK(at_server == "ping");
  REQUIRE(server->write("pong"));
  CHECK(pool.free_buffers() == 0);  // taken again for the answer
  pump(*client, *server, &at_client, &at_server);
  CHECK(at_client == "pong");
  CHECK(pool.free_buffers() == 1);
  CHECK(server->trim());

  SUBCASE("not while a record is half read") {
    REQUIRE(client->write("hello"));
    std::string wire(client->output());
    client->consume_output(wire.size());
    server->feed(wire.data(), 8);
    drive(*server);
    server->release_input();
    CHECK_FALSE(server->trim());
  }
}

TEST_CASE("take_output hands the whole pending ciphertext over") {
  Connection c =
      connect(make_server(server_options()), make_client(client_options()), "example.test");
  REQUIRE(c.server->write("abc"));
  c.server->consume_output(2);  // the kernel took two bytes
  std::string rest = c.server->take_output();
  CHECK_FALSE(c.server->has_output());
  CHECK(rest.size() == 3 + 22 - 2);
}

TEST_CASE("a rotated context serves new handshakes while old connections keep theirs") {
  ServerContextSlot slot(make_server(server_options({"rsa"})));
  auto client = make_client(client_options());
  Connection before = connect(slot.load(), client, "example.test");
  REQUIRE(before.established());
  CHECK(served_serial(before) == "1001");

  ServerBuild next = build_server_context(server_options({"example-ec"}), unix_now_s());
  REQUIRE(next.context);
  slot.store(next.context);
  next.context.reset();  // the slot and new engines hold it from here

  Connection after = connect(slot.load(), client, "example.test");
  REQUIRE(after.established());
  CHECK(served_serial(after) == "1003");

  std::string at_server;
  REQUIRE(before.client->write("still here"));
  pump(*before.client, *before.server, nullptr, &at_server);
  CHECK(at_server == "still here");

  SUBCASE("a bad new pair leaves the current context in place") {
    ServerBuild bad = build_server_context(server_options({"expired"}), unix_now_s());
    CHECK_FALSE(bad.context);
    CHECK_FALSE(bad.errors.empty());
    if (bad.context) slot.store(bad.context);
    CHECK(served_serial(connect(slot.load(), client, "example.test")) == "1003");
  }
}

TEST_CASE("an upstream session is offered only under the context that made it") {
  auto server = make_server(server_options());
  auto client_a = make_client(client_options());
  ClientOptions lax = client_options();
  lax.verify = false;
  auto client_b = make_client(lax);
  ClientSessionCache cache;
  connect_and_settle(server, client_a, cache);
  REQUIRE(cache.get("upstream", client_a->id()));
  CHECK_FALSE(cache.get("upstream", client_b->id()));
  Connection c = connect_and_settle(server, client_b, cache);
  CHECK_FALSE(c.client->resumed());
}

}  // namespace
}  // namespace sluice::net
