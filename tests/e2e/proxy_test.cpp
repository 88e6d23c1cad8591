// End-to-end: HTTP/1.1 proxying semantics through the real sluice binary (forwarding, keep-alive,
// pipelining, HEAD/204/304, HTTP/1.0, Expect, 1xx, Upgrade, header rewriting, upstream reuse).
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "e2e.h"

using namespace sluice::e2e;

namespace {

// One function "shop" with version 1 on `up`, alias prod = 100% v1, route "/" -> shop:prod.
std::string single_version_config(const Upstream& up, int workers = 2,
                                  const std::string& limits = "") {
  ConfigText cfg;
  cfg.workers = workers;
  cfg.limits = limits;
  cfg.function("shop", {{"1", {up.address()}}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  return cfg.str();
}

}  // namespace

TEST_CASE("a request is proxied to its alias version and the response names the version") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1));
  REQUIRE_STARTED(s);
  CurlClient curl;

  HttpResult r = curl.get(s.url("/cart/items?id=7"));
  CHECK(r.status == 200);
  CHECK(r.body == "hello from v1\n");
  CHECK(r.header("x-upstream") == "v1");
  CHECK(r.header("x-sluice-version") == "shop:1");
  CHECK(r.header("x-target") == "/cart/items?id=7");
  auto seen = v1.received();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].method == "GET");
  CHECK(seen[0].target == "/cart/items?id=7");

  HttpResult echo =
      curl.request("POST", s.url("/echo"), {"Content-Type: text/plain"}, "payload-123");
  CHECK(echo.status == 200);
  CHECK(echo.body == "payload-123");
  CHECK(echo.header("x-sluice-version") == "shop:1");

  HttpResult put = curl.request("PUT", s.url("/count-body"), {}, "abcdef");
  CHECK(put.status == 200);
  CHECK(put.body.rfind("bytes=6 ", 0) == 0);

  HttpResult del = curl.request("DELETE", s.url("/status/202"));
  CHECK(del.status == 202);
  CHECK(del.body == "status 202\n");
  CHECK(v1.requests() == 4);
  CHECK(v1.received().back().method == "DELETE");
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("plain sluice -c FILE serves like sluice run") {
  Upstream v1("v1");
  SluiceOptions opts;
  opts.args = {"-c", "{config}"};
  Sluice s(single_version_config(v1), opts);
  REQUIRE_STARTED(s);
  CurlClient curl;
  HttpResult r = curl.get(s.url("/"));
  CHECK(r.status == 200);
  CHECK(r.header("x-upstream") == "v1");
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("every worker has its own SO_REUSEPORT listening socket") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1, 3));
  REQUIRE_STARTED(s);
  CHECK(count_listen_sockets(s.port()) == 3);
  CHECK(s.proc_status_field("Threads") >= 3);
  // Many fresh connections spread over the workers; every one is served.
  int ok = 0;
  for (int i = 0; i < 60; ++i) {
    CurlClient curl;
    ok += curl.get(s.url("/")).status == 200;
  }
  CHECK(ok == 60);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("keep-alive connections carry many requests and upstream connections are reused") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1));
  REQUIRE_STARTED(s);

  CurlClient curl;
  long client_connects = 0;
  int ok = 0;
  for (int i = 0; i < 200; ++i) {
    HttpResult r = curl.get(s.url("/?i=" + std::to_string(i)));
    ok += r.status == 200;
    client_connects += r.new_connections;
  }
  CHECK(ok == 200);
  CHECK(client_connects == 1);  // sluice kept the client connection open
  CHECK(v1.requests() == 200);
  CHECK(v1.connections() <= 2);  // upstream keep-alive: far fewer connections than requests

  SUBCASE("Connection: close from the client ends the connection after the response") {
    RawClient c(s.port());
    REQUIRE(c.send(raw_request("GET", "/last", "Connection: close\r\n")));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->header("x-target") == "/last");
    CHECK(c.wait_closed(5000));
  }
  SUBCASE("a close-delimited upstream body is re-framed so the client connection stays usable") {
    RawClient c(s.port());
    REQUIRE(c.send(raw_request("GET", "/eof-body") + raw_request("GET", "/after-eof")));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "body-until-close");
    auto next = c.read_response();
    REQUIRE(next);
    CHECK(next->header("x-target") == "/after-eof");
  }
  SUBCASE("raw requests one after another on one socket") {
    RawClient c(s.port());
    REQUIRE(c.connected());
    for (int i = 0; i < 5; ++i) {
      CAPTURE(i);
      REQUIRE(c.send(raw_request("GET", "/seq/" + std::to_string(i))));
      auto r = c.read_response();
      REQUIRE(r);
      CHECK(r->status == 200);
      CHECK(r->header("x-target") == "/seq/" + std::to_string(i));
      CHECK(!c.peer_closed());
    }
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("100 pipelined requests on one connection are answered in order") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.connected());

  // The first request is slow, so a proxy answering out of order would show it.
  std::string batch = raw_request("GET", "/slow?ms=200&seq=0");
  for (int i = 1; i < 100; ++i) {
    std::string seq = std::to_string(i);
    batch += i % 3 == 0 ? raw_request("POST", "/echo?seq=" + seq, "", "body-" + seq)
                        : raw_request("GET", "/?seq=" + seq);
  }
  REQUIRE(c.send(batch));
  for (int i = 0; i < 100; ++i) {
    CAPTURE(i);
    std::string seq = std::to_string(i);
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    if (i == 0) {
      CHECK(r->header("x-target") == "/slow?ms=200&seq=0");
      CHECK(r->body == "slow v1");
    } else if (i % 3 == 0) {
      CHECK(r->header("x-target") == "/echo?seq=" + seq);
      CHECK(r->body == "body-" + seq);
    } else {
      CHECK(r->header("x-target") == "/?seq=" + seq);
      CHECK(r->body == "hello from v1\n");
    }
  }
  CHECK(!c.peer_closed());
  CHECK(v1.requests() == 100);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("HEAD 204 and 304 responses carry no body and the connection stays usable") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.connected());
  REQUIRE(c.send(raw_request("HEAD", "/download?bytes=5000") + raw_request("HEAD", "/echo") +
                 raw_request("GET", "/status/204") + raw_request("GET", "/status/304") +
                 raw_request("GET", "/after")));

  auto head = c.read_response(10000, true);
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->header("content-length") == "5000");
  auto head_chunked = c.read_response(10000, true);
  REQUIRE(head_chunked);
  CHECK(head_chunked->status == 200);
  CHECK(head_chunked->header("x-target") == "/echo");
  auto no_content = c.read_response();
  REQUIRE(no_content);
  CHECK(no_content->status == 204);
  CHECK(!no_content->headers.has("transfer-encoding"));
  auto not_modified = c.read_response();
  REQUIRE(not_modified);
  CHECK(not_modified->status == 304);
  // The next response starts right after the bodiless ones: no stray bytes in between.
  auto after = c.read_response();
  REQUIRE(after);
  CHECK(after->status == 200);
  CHECK(after->header("x-target") == "/after");
  CHECK(after->body == "hello from v1\n");
  CHECK(v1.requests() == 5);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an HTTP/1.0 client gets a complete response and the connection is closed") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1));
  REQUIRE_STARTED(s);

  RawClient get(s.port());
  REQUIRE(get.send("GET /old HTTP/1.0\r\nHost: e2e.test\r\n\r\n"));
  auto r = get.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "hello from v1\n");
  CHECK(get.wait_closed(5000));

  // The upstream answers /echo chunked; a 1.0 client must not get chunked framing.
  RawClient post(s.port());
  REQUIRE(post.send("POST /echo HTTP/1.0\r\nHost: e2e.test\r\nContent-Length: 5\r\n\r\nhello"));
  auto e = post.read_response();
  REQUIRE(e);
  CHECK(e->status == 200);
  CHECK(!e->chunked);
  CHECK(e->body == "hello");
  CHECK(post.wait_closed(5000));
  CHECK(v1.requests() == 2);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("Expect 100-continue gets an interim 100 before the body is sent") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(
      c.send("POST /count-body HTTP/1.1\r\nHost: e2e.test\r\nExpect: 100-continue\r\n"
             "Content-Length: 11\r\n\r\n"));
  auto interim = c.read_response(5000);
  REQUIRE(interim);
  CHECK(interim->status == 100);
  REQUIRE(c.send("hello world"));
  auto final_response = c.read_response();
  REQUIRE(final_response);
  CHECK(final_response->status == 200);
  CHECK(final_response->body.rfind("bytes=11 ", 0) == 0);
  CHECK(final_response->header("x-sluice-version") == "shop:1");
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("1xx interim responses from the upstream are relayed before the final response") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send(raw_request("GET", "/early-hints") + raw_request("GET", "/next")));
  auto hints = c.read_response();
  REQUIRE(hints);
  CHECK(hints->status == 103);
  CHECK(hints->header("link") == "</style.css>; rel=preload");
  auto final_response = c.read_response();
  REQUIRE(final_response);
  CHECK(final_response->status == 200);
  CHECK(final_response->body == "after hints");
  auto next = c.read_response();
  REQUIRE(next);
  CHECK(next->header("x-target") == "/next");
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a WebSocket-style upgrade relays bytes both ways after 101") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(
      c.send("GET /ws HTTP/1.1\r\nHost: e2e.test\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n"));
  auto switched = c.read_response();
  REQUIRE(switched);
  CHECK(switched->status == 101);
  CHECK(to_lower(switched->header("upgrade")) == "websocket");
  CHECK(switched->header("x-upstream") == "v1");

  REQUIRE(c.send("hello-ws"));
  REQUIRE(c.read_at_least(8, 5000));
  CHECK(c.buffer() == "hello-ws");
  c.buffer().clear();

  std::string big(1 << 20, '\0');
  fill_pattern(0, big.data(), big.size());
  REQUIRE(c.send(big));
  REQUIRE(c.read_at_least(big.size(), 20000));
  CHECK(c.buffer().size() == big.size());
  CHECK(c.buffer() == big);

  auto seen = v1.received();
  REQUIRE(seen.size() == 1);
  CHECK(to_lower(seen[0].headers.get("upgrade")) == "websocket");
  CHECK(to_lower(seen[0].headers.get("connection")).find("upgrade") != std::string::npos);

  c.close();  // closing the client closes the upstream side too
  CHECK(poll_until([&] { return v1.open_connections() == 0; }, 5000));
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("hop-by-hop request headers are removed and forwarding headers are added") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(
      c.send("GET /headers HTTP/1.1\r\nHost: shop.example:8080\r\n"
             "Connection: keep-alive, x-custom-hop\r\nx-custom-hop: 1\r\nKeep-Alive: timeout=5\r\n"
             "Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: x-t\r\nUpgrade: h2c\r\n"
             "X-Forwarded-For: 10.1.2.3\r\nx-end-to-end: kept\r\nx-request-id: abc-123\r\n\r\n"));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  auto seen = v1.received();
  REQUIRE(seen.size() == 1);
  const Headers& h = seen[0].headers;
  CAPTURE(seen[0].head);
  for (const char* gone :
       {"x-custom-hop", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}) {
    CAPTURE(gone);
    CHECK(!h.has(gone));
  }
  CHECK(to_lower(h.get("connection")).find("x-custom-hop") == std::string::npos);
  CHECK(h.get("x-end-to-end") == "kept");
  CHECK(h.get("x-forwarded-for") == "127.0.0.1");  // no trusted_proxies: the client's is replaced
  CHECK(h.get("x-forwarded-proto") == "http");
  CHECK(h.get("x-forwarded-host") == "shop.example:8080");
  CHECK(h.get("via").find("1.1") != std::string::npos);
  CHECK(h.count("x-request-id") == 1);
  CHECK(h.get("x-request-id") == "abc-123");

  SUBCASE("without client values the proxy generates them") {
    REQUIRE(c.send(raw_request("GET", "/headers")));
    REQUIRE(c.send(raw_request("GET", "/headers")));
    REQUIRE(c.read_response());
    REQUIRE(c.read_response());
    auto all = v1.received();
    REQUIRE(all.size() == 3);
    CHECK(all[1].headers.get("x-forwarded-for") == "127.0.0.1");
    CHECK(all[1].headers.get("x-forwarded-host") == "e2e.test");
    std::string id1 = all[1].headers.get("x-request-id");
    std::string id2 = all[2].headers.get("x-request-id");
    CHECK(!id1.empty());
    CHECK(!id2.empty());
    CHECK(id1 != id2);
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("hop-by-hop response headers from the upstream are removed") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send(raw_request("GET", "/hop-response")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "hop");
  CHECK(r->header("x-kept") == "yes");
  CHECK(!r->headers.has("x-up-hop"));
  CHECK(!r->headers.has("keep-alive"));
  CHECK(to_lower(r->header("connection")).find("x-up-hop") == std::string::npos);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("chunked request bodies stream to the upstream and chunked responses stream back") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1));
  REQUIRE_STARTED(s);
  CurlClient curl;
  const uint64_t n = 3 * 1000 * 1000 + 17;
  char expect[96];
  std::snprintf(expect, sizeof expect, "bytes=%llu hash=%016llx",
                static_cast<unsigned long long>(n),
                static_cast<unsigned long long>(pattern_hash(n)));
  for (bool chunked : {true, false}) {
    CAPTURE(chunked);
    HttpResult counted = curl.upload(s.url("/count-body"), n, chunked, 60000);
    CHECK(counted.status == 200);
    CHECK(counted.body == expect);
    HttpResult echoed = curl.upload(s.url("/echo"), n, chunked, 60000);
    CHECK(echoed.status == 200);
    CHECK(echoed.body.size() == n);
    Fnv fnv;
    fnv.add(echoed.body);
    CHECK(fnv.hash == pattern_hash(n));
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("the version header name is configurable per function and can be turned off") {
  Upstream named("named-v1"), quiet("quiet-v1");
  ConfigText cfg;
  cfg.function("named", {{"1", {named.address()}}}, "version_header = \"x-served-by\"")
      .alias("named", "prod", R"({ "1" = 100 })")
      .function("quiet", {{"1", {quiet.address()}}}, "version_header = \"\"")
      .alias("quiet", "prod", R"({ "1" = 100 })")
      .route("named:prod", "/named/")
      .route("quiet:prod", "/quiet/");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  CurlClient curl;
  HttpResult a = curl.get(s.url("/named/x"));
  CHECK(a.status == 200);
  CHECK(a.header("x-upstream") == "named-v1");
  CHECK(a.header("x-served-by") == "named:1");
  CHECK(!a.headers.has("x-sluice-version"));
  HttpResult b = curl.get(s.url("/quiet/x"));
  CHECK(b.status == 200);
  CHECK(b.header("x-upstream") == "quiet-v1");
  CHECK(!b.headers.has("x-sluice-version"));
  CHECK(!b.headers.has("x-served-by"));
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a request failing on a reused upstream connection is retried on a fresh one") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1, 1));
  REQUIRE_STARTED(s);
  CurlClient curl;
  int ok = 0;
  for (int i = 0; i < 30; ++i) {
    HttpResult r = curl.get(s.url("/close-after?i=" + std::to_string(i)));
    CAPTURE(i);
    CAPTURE(r.error);
    CHECK(r.status == 200);
    ok += r.status == 200 && r.body == "closing";
  }
  CHECK(ok == 30);
  CHECK(v1.count_target("/close-after") == 30);  // each request answered exactly once
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a safe request dying on a pooled connection is retried once and an unsafe one is not") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1, 1));
  REQUIRE_STARTED(s);
  CurlClient curl;
  REQUIRE(curl.get(s.url("/warm")).status == 200);  // leaves one pooled upstream connection
  HttpResult r = curl.get(s.url("/close-if-reused"));
  CHECK(r.status == 200);
  CHECK(r.body == "fresh");
  CHECK(v1.count_target("/close-if-reused") == 2);  // the pooled attempt, then the fresh one
  CHECK(v1.connections() == 2);

  SUBCASE("a POST whose body was written is not replayed") {
    REQUIRE(curl.get(s.url("/warm-again")).status == 200);
    HttpResult post = curl.request("POST", s.url("/close-if-reused"), {}, "not-idempotent");
    CHECK(post.status == 502);
    CHECK(!post.header("x-sluice-error").empty());
    auto seen = v1.received();
    size_t posts = 0;
    for (const auto& q : seen) posts += q.method == "POST";
    CHECK(posts == 1);
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("endpoints within a version are picked by weighted round robin") {
  Upstream a("a"), b("b");
  ConfigText cfg;
  cfg.workers = 1;
  cfg.function("shop", {{"1", {"{ address = \"" + a.address() + "\", weight = 2 }", b.address()}}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  CurlClient curl;
  std::map<std::string, int> hits;
  for (int i = 0; i < 300; ++i) ++hits[curl.get(s.url("/")).header("x-upstream")];
  CHECK(hits["a"] == 200);
  CHECK(hits["b"] == 100);
  CHECK(a.requests() == 200);
  CHECK(b.requests() == 100);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("upstream keepalive = 0 opens a fresh upstream connection per request") {
  Upstream v1("v1");
  ConfigText cfg;
  cfg.body = "[upstream]\nkeepalive = 0\n\n";
  cfg.function("shop", {{"1", {v1.address()}}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  CurlClient curl;
  int ok = 0;
  for (int i = 0; i < 20; ++i) ok += curl.get(s.url("/")).status == 200;
  CHECK(ok == 20);
  CHECK(v1.requests() == 20);
  CHECK(v1.connections() == 20);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("idle pooled upstream connections are closed after the upstream idle_timeout") {
  Upstream v1("v1");
  ConfigText cfg;
  cfg.workers = 1;
  cfg.body = "[upstream]\nidle_timeout = \"300ms\"\n\n";
  cfg.function("shop", {{"1", {v1.address()}}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  CurlClient curl;
  REQUIRE(curl.get(s.url("/")).status == 200);
  auto start = std::chrono::steady_clock::now();
  CHECK(v1.open_connections() == 1);
  CHECK(poll_until([&] { return v1.open_connections() == 0; }, 5000));
  long ms = elapsed_ms(start);
  CHECK(ms >= 200);
  CHECK(ms < 3000);
  // The next request simply opens a new upstream connection.
  CHECK(curl.get(s.url("/")).status == 200);
  CHECK(v1.connections() == 2);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("the upstream pool keeps at most keepalive idle connections per endpoint") {
  Upstream v1("v1");
  ConfigText cfg;
  cfg.workers = 1;
  cfg.body = "[upstream]\nkeepalive = 2\n\n";
  cfg.function("shop", {{"1", {v1.address()}}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(std::make_unique<RawClient>(s.port()));
    REQUIRE(clients.back()->send(raw_request("GET", "/slow?ms=300")));
  }
  for (auto& c : clients) {
    auto r = c->read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  CHECK(v1.connections() == 5);  // five concurrent requests need five upstream connections
  CHECK(poll_until([&] { return v1.open_connections() == 2; }, 3000));
  CHECK(v1.open_connections() == 2);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("concurrent clients on many connections each get their own responses") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1));
  REQUIRE_STARTED(s);
  constexpr int kThreads = 16;
  constexpr int kPerThread = 150;
  std::atomic<int> ok{0}, wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      CurlClient curl;
      for (int i = 0; i < kPerThread; ++i) {
        std::string tag = std::to_string(t) + "-" + std::to_string(i);
        HttpResult r = i % 2 ? curl.request("POST", s.url("/echo?tag=" + tag), {}, "body-" + tag)
                             : curl.get(s.url("/?tag=" + tag));
        bool good = r.status == 200 &&
                    r.header("x-target") == (i % 2 ? "/echo?tag=" : "/?tag=") + tag &&
                    r.body == (i % 2 ? "body-" + tag : "hello from v1\n");
        (good ? ok : wrong)++;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(ok == kThreads * kPerThread);
  CHECK(wrong == 0);
  CHECK(v1.requests() == static_cast<size_t>(kThreads * kPerThread));
  CHECK(v1.connections() <= static_cast<size_t>(kThreads));  // pooled, never one per request
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a client that half-closes after its request still gets the response") {
  Upstream v1("v1");
  Sluice s(single_version_config(v1));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send(raw_request("GET", "/half")));
  c.shutdown_write();
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("x-target") == "/half");
  CHECK(c.wait_closed(5000));
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an absolute-form request is routed by its authority and forwarded in origin-form") {
  // RFC 9112 3.2.1: to an origin server a client sends origin-form; 3.2.2: a proxy replaces Host
  // with the authority of an absolute-form target.
  Upstream v1("v1"), v2("v2");
  ConfigText cfg;
  cfg.function("shop", {{"1", {v1.address()}}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .function("other", {{"1", {v2.address()}}})
      .alias("other", "prod", R"({ "1" = 100 })")
      .route("shop:prod")
      .route("other:prod", "/", "other.example");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send("GET http://other.example/abs?q=1 HTTP/1.1\r\nHost: e2e.test\r\n\r\n"));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("x-upstream") == "v2");
  auto seen = v2.received();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].target == "/abs?q=1");
  CHECK(seen[0].headers.get("host") == "other.example");
  CHECK(v1.requests() == 0);
  CHECK_CLEAN_STOP(s);
}
