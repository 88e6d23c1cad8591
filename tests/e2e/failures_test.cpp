// End-to-end: every failure row of DESIGN.md §3 (status + x-sluice-error), request smuggling
// vectors, client-side limits and timeouts. After each failure the proxy must keep serving and
// stop cleanly.
#include <string>
#include <vector>

#include "e2e.h"

using namespace sluice::e2e;

namespace {

std::string config_for(const Upstream& up, const std::string& limits = "",
                       const std::string& version_extra = "", int workers = 2) {
  ConfigText cfg;
  cfg.workers = workers;
  cfg.limits = limits;
  cfg.function("shop", {{"1", {up.address()}, version_extra}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  return cfg.str();
}

// Sends `bytes` on a fresh connection and returns the first response (nullopt if none).
std::optional<Response> one_shot(const std::string& bytes, RawClient& c, int timeout_ms = 5000) {
  if (!c.connected() || !c.send(bytes)) return std::nullopt;
  return c.read_response(timeout_ms);
}

// The proxy still answers a plain request correctly on a fresh connection.
void check_still_serving(const Sluice& s, const std::string& target = "/still-ok") {
  RawClient c(s.port());
  REQUIRE(c.connected());
  REQUIRE(c.send(raw_request("GET", target)));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("x-target") == target);
}

}  // namespace

TEST_CASE("a malformed request gets 400 and the connection is closed") {
  Upstream v1("v1");
  Sluice s(config_for(v1));
  REQUIRE_STARTED(s);
  const std::vector<std::string> vectors = {
      "GET / HTTP/1.1\r\nHost: e2e.test\r\nBad Header Line\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: e2e.test\r\nx-space : before-colon\r\n\r\n",
      "G@T / HTTP/1.1\r\nHost: e2e.test\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: e2e.test\r\nContent-Length: abc\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: e2e.test\r\nContent-Length: -1\r\n\r\n",
      "GET / HTTP/1.1\r\n\r\n",                                        // HTTP/1.1 without Host
      "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",  // two Hosts
  };
  for (const auto& v : vectors) {
    CAPTURE(v);
    RawClient c(s.port());
    auto r = one_shot(v, c);
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(!r->header("x-sluice-error").empty());
    MESSAGE("400 reason: " << r->header("x-sluice-error"));
    CHECK(c.wait_closed(5000));
  }
  CHECK(v1.requests() == 0);
  check_still_serving(s);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("request smuggling vectors get 400 and never reach the upstream as an extra request") {
  Upstream v1("v1");
  Sluice s(config_for(v1));
  REQUIRE_STARTED(s);
  const std::string smuggled = "GET /smuggled HTTP/1.1\r\nHost: e2e.test\r\n\r\n";
  struct Vector {
    std::string name;
    std::string bytes;
    bool head_invalid;  // the head alone is invalid: nothing may reach the upstream
  };
  const std::vector<Vector> vectors = {
      {"CL+TE",
       "POST /count-body HTTP/1.1\r\nHost: e2e.test\r\nContent-Length: 4\r\n"
       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
           smuggled,
       true},
      {"TE+CL",
       "POST /count-body HTTP/1.1\r\nHost: e2e.test\r\nTransfer-Encoding: chunked\r\n"
       "Content-Length: 48\r\n\r\n0\r\n\r\n" +
           smuggled,
       true},
      {"duplicate differing Content-Length",
       "POST /count-body HTTP/1.1\r\nHost: e2e.test\r\nContent-Length: 5\r\n"
       "Content-Length: 46\r\n\r\nhello" +
           smuggled,
       true},
      {"Transfer-Encoding with chunked not last",
       "POST /count-body HTTP/1.1\r\nHost: e2e.test\r\nTransfer-Encoding: chunked, identity\r\n"
       "\r\n0\r\n\r\n" +
           smuggled,
       true},
      {"non-hex chunk size",
       "POST /count-body HTTP/1.1\r\nHost: e2e.test\r\n"
       "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" +
           smuggled,
       false},
      {"0x-prefixed chunk size",
       "POST /count-body HTTP/1.1\r\nHost: e2e.test\r\n"
       "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n" +
           smuggled,
       false},
      {"negative chunk size",
       "POST /count-body HTTP/1.1\r\nHost: e2e.test\r\n"
       "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n" +
           smuggled,
       false},
      {"overflowing chunk size",
       "POST /count-body HTTP/1.1\r\nHost: e2e.test\r\nTransfer-Encoding: chunked\r\n\r\n"
       "10000000000000005\r\nhello\r\n0\r\n\r\n" +
           smuggled,
       false},
  };
  for (const auto& v : vectors) {
    CAPTURE(v.name);
    size_t before = v1.requests();
    RawClient c(s.port());
    auto r = one_shot(v.bytes, c);
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(!r->header("x-sluice-error").empty());
    MESSAGE(v.name << ": 400 reason: " << r->header("x-sluice-error"));
    CHECK(c.wait_closed(5000));
    CHECK(!c.read_response(200));  // nothing after the 400: the smuggled GET got no answer
    if (v.head_invalid) CHECK(v1.requests() == before);
  }
  CHECK(v1.count_target("/smuggled") == 0);
  // Pooled upstream connections were not left mid-body: fresh requests get their own answers.
  for (int i = 0; i < 5; ++i) check_still_serving(s, "/ok/" + std::to_string(i));
  for (const auto& req : v1.received()) {
    CAPTURE(req.target);
    CHECK((req.target == "/count-body" || req.target.rfind("/ok/", 0) == 0));
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("request heads over max_header_bytes or max_headers get 431") {
  Upstream v1("v1");
  Sluice s(config_for(v1, "max_header_bytes = 4096\nmax_headers = 20\n"));
  REQUIRE_STARTED(s);

  RawClient big(s.port());
  auto r = one_shot(raw_request("GET", "/", "x-big: " + std::string(6000, 'a') + "\r\n"), big);
  REQUIRE(r);
  CHECK(r->status == 431);
  CHECK(!r->header("x-sluice-error").empty());

  std::string many;
  for (int i = 0; i < 30; ++i) many += "x-h-" + std::to_string(i) + ": v\r\n";
  RawClient count(s.port());
  auto r2 = one_shot(raw_request("GET", "/", many), count);
  REQUIRE(r2);
  CHECK(r2->status == 431);
  CHECK(!r2->header("x-sluice-error").empty());
  CHECK(v1.requests() == 0);

  // Just under both limits is fine.
  RawClient fine(s.port());
  std::string ten;
  for (int i = 0; i < 10; ++i) ten += "x-h-" + std::to_string(i) + ": v\r\n";
  auto ok =
      one_shot(raw_request("GET", "/", ten + "x-mid: " + std::string(2500, 'b') + "\r\n"), fine);
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(v1.requests() == 1);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a body over max_body_size gets 413") {
  Upstream v1("v1");
  Sluice s(config_for(v1, "max_body_size = 1024\n"));
  REQUIRE_STARTED(s);

  RawClient under(s.port());
  auto ok = one_shot(raw_request("POST", "/count-body", "", std::string(1000, 'x')), under);
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(ok->body.rfind("bytes=1000 ", 0) == 0);

  SUBCASE("declared by Content-Length") {
    RawClient c(s.port());
    auto r = one_shot(raw_request("POST", "/count-body", "", std::string(2048, 'x')), c);
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(!r->header("x-sluice-error").empty());
  }
  SUBCASE("declared by Content-Length with Expect 100-continue: 413 comes instead of 100") {
    RawClient c(s.port());
    auto r = one_shot(
        raw_request("POST", "/count-body", "Expect: 100-continue\r\nContent-Length: 2048\r\n"), c);
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(!r->header("x-sluice-error").empty());
  }
  SUBCASE("growing past the limit in chunks") {
    RawClient c(s.port());
    std::string bytes = raw_request("POST", "/count-body", "Transfer-Encoding: chunked\r\n") +
                        "400\r\n" + std::string(1024, 'x') + "\r\n400\r\n" +
                        std::string(1024, 'y') + "\r\n0\r\n\r\n";
    auto r = one_shot(bytes, c);
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(!r->header("x-sluice-error").empty());
  }
  check_still_serving(s);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a request no route matches gets 404 no-route") {
  Upstream v1("v1"), v2("v2");
  ConfigText cfg;
  cfg.function("api", {{"1", {v1.address()}}})
      .alias("api", "prod", R"({ "1" = 100 })")
      .function("site", {{"1", {v2.address()}}})
      .alias("site", "prod", R"({ "1" = 100 })")
      .route("api:prod", "/api/")
      .route("site:prod", "/", "only.example");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send(raw_request("GET", "/elsewhere") + raw_request("GET", "/api/items") +
                 raw_request("GET", "/elsewhere", "Host: ONLY.example:8080\r\n")));
  auto none = c.read_response();
  REQUIRE(none);
  check_generated_error(*none, 404, "no-route");
  auto api = c.read_response();
  REQUIRE(api);
  CHECK(api->status == 200);
  CHECK(api->header("x-upstream") == "v1");
  auto site = c.read_response();
  REQUIRE(site);
  CHECK(site->status == 200);
  CHECK(site->header("x-upstream") == "v2");
  CHECK(v1.requests() == 1);
  CHECK(v2.requests() == 1);

  SUBCASE("the body of an unrouted request never becomes a request of its own") {
    // sluice may skip the framed body and go on, or announce Connection: close and close; it
    // must never read the body as the next request.
    for (bool chunked : {false, true}) {
      CAPTURE(chunked);
      RawClient p(s.port());
      const std::string evil = "GET /api/evil HTTP/1.1\r\nHost: e2e.test\r\n\r\n";
      std::string first_req =
          chunked ? raw_request("POST", "/nowhere", "Transfer-Encoding: chunked\r\n") + "2a\r\n" +
                        evil + "\r\n0\r\n\r\n"
                  : raw_request("POST", "/nowhere", "", evil);
      REQUIRE(evil.size() == 0x2a);
      REQUIRE(p.send(first_req + raw_request("GET", "/api/next")));
      auto first = p.read_response();
      REQUIRE(first);
      check_generated_error(*first, 404, "no-route");
      if (to_lower(first->header("connection")) == "close") {
        CHECK(p.wait_closed(5000));
      } else {
        auto next = p.read_response();
        REQUIRE(next);
        CHECK(next->status == 200);
        CHECK(next->header("x-target") == "/api/next");
      }
    }
    CHECK(v1.count_target("/api/evil") == 0);
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an override naming a version that does not exist gets 404 unknown-version") {
  Upstream v1("v1"), v2("v2");
  ConfigText cfg;
  cfg.function("shop", {{"1", {v1.address()}}, {"2", {v2.address()}}})
      .alias("shop", "prod", R"({ "1" = 100, "2" = 0 })", "allow_override = true")
      .route("shop:prod");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  CurlClient curl;
  HttpResult r = curl.get(s.url("/"), {"x-sluice-version: 9"});
  CHECK(r.status == 404);
  CHECK(r.header("x-sluice-error") == "unknown-version");
  CHECK(v1.requests() + v2.requests() == 0);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a version at max_concurrency answers 429 throttled") {
  Upstream v1("v1");
  Sluice s(config_for(v1, "", "max_concurrency = 1", 1));
  REQUIRE_STARTED(s);
  RawClient slow(s.port());
  REQUIRE(slow.send(raw_request("GET", "/slow?ms=1500")));
  REQUIRE(poll_until([&] { return v1.requests() == 1; }, 5000));

  CurlClient curl;
  HttpResult r = curl.get(s.url("/second"));
  CHECK(r.status == 429);
  CHECK(r.header("x-sluice-error") == "throttled");

  auto first = slow.read_response();
  REQUIRE(first);
  CHECK(first->status == 200);
  CHECK(first->body == "slow v1");
  HttpResult after = curl.get(s.url("/third"));
  CHECK(after.status == 200);
  CHECK(v1.count_target("/second") == 0);
  CHECK(v1.count_target("/third") == 1);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("max_concurrency is one limit shared by all workers") {
  Upstream v1("v1");
  Sluice s(config_for(v1, "", "max_concurrency = 2", 2));
  REQUIRE_STARTED(s);
  RawClient a(s.port()), b(s.port());
  REQUIRE(a.send(raw_request("GET", "/slow?ms=1500")));
  REQUIRE(b.send(raw_request("GET", "/slow?ms=1500")));
  REQUIRE(poll_until([&] { return v1.requests() == 2; }, 5000));
  int throttled = 0;
  for (int i = 0; i < 8; ++i) {  // fresh connections land on both workers
    RawClient c(s.port());
    REQUIRE(c.send(raw_request("GET", "/extra")));
    auto r = c.read_response();
    REQUIRE(r);
    throttled += r->status == 429 && r->header("x-sluice-error") == "throttled";
  }
  CHECK(throttled == 8);
  CHECK(v1.count_target("/extra") == 0);
  REQUIRE(a.read_response());
  REQUIRE(b.read_response());
  CurlClient curl;
  CHECK(curl.get(s.url("/extra")).status == 200);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a refused upstream connect gets 502 connect-failed") {
  uint16_t dead = unused_port();
  ConfigText cfg;
  cfg.function("shop", {{"1", {loopback(dead)}}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  for (int i = 0; i < 3; ++i) {  // the client connection survives generated errors
    CAPTURE(i);
    REQUIRE(c.send(raw_request("GET", "/")));
    auto r = c.read_response();
    REQUIRE(r);
    check_generated_error(*r, 502, "connect-failed");
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an invalid upstream response gets 502 bad-upstream-response") {
  Upstream v1("v1");
  Sluice s(config_for(v1));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send(raw_request("GET", "/bad")));
  auto r = c.read_response();
  REQUIRE(r);
  check_generated_error(*r, 502, "bad-upstream-response");

  SUBCASE("ambiguous upstream framing is an invalid response") {
    for (const std::string target : {"/resp-te-cl", "/resp-dup-cl"}) {
      CAPTURE(target);
      RawClient d(s.port());
      REQUIRE(d.send(raw_request("GET", target)));
      auto r2 = d.read_response();
      REQUIRE(r2);
      check_generated_error(*r2, 502, "bad-upstream-response");
    }
  }
  SUBCASE("an upstream closing without an answer is a 502 too") {
    RawClient d(s.port());
    REQUIRE(d.send(raw_request("GET", "/close")));
    auto r2 = d.read_response();
    REQUIRE(r2);
    CHECK(r2->status == 502);
    CHECK(!r2->header("x-sluice-error").empty());
    MESSAGE("/close reason: " << r2->header("x-sluice-error"));
  }
  check_still_serving(s);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an upstream slower than response_timeout gets 504 timeout") {
  Upstream v1("v1");
  Sluice s(config_for(v1, "", "response_timeout = \"300ms\""));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  auto start = std::chrono::steady_clock::now();
  REQUIRE(c.send(raw_request("GET", "/slow?ms=5000")));
  auto r = c.read_response(10000);
  REQUIRE(r);
  long ms = elapsed_ms(start);
  check_generated_error(*r, 504, "timeout");
  CHECK(ms >= 250);
  CHECK(ms < 3000);
  // The late answer must not leak into the next request on either connection.
  REQUIRE(c.send(raw_request("GET", "/next")));
  auto next = c.read_response();
  REQUIRE(next);
  CHECK(next->status == 200);
  CHECK(next->header("x-target") == "/next");
  CHECK(next->body == "hello from v1\n");
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an upstream connect hanging past connect_timeout gets 504 timeout") {
  BlackholeListener hole;
  ConfigText cfg;
  cfg.function("shop", {{"1", {loopback(hole.port())}, "connect_timeout = \"300ms\""}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  auto start = std::chrono::steady_clock::now();
  REQUIRE(c.send(raw_request("GET", "/")));
  auto r = c.read_response(10000);
  REQUIRE(r);
  long ms = elapsed_ms(start);
  check_generated_error(*r, 504, "timeout");
  CHECK(ms >= 250);
  CHECK(ms < 3000);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE(
    "a client trickling header bytes is cut off at the header timeout while others are served") {
  Upstream v1("v1");
  Sluice s(config_for(v1, "header_timeout = \"500ms\"\n"));
  REQUIRE_STARTED(s);
  RawClient slow(s.port());
  REQUIRE(slow.connected());
  auto start = std::chrono::steady_clock::now();
  REQUIRE(slow.send("GET /trickle HTTP/1.1\r\nHost: e2e.test\r\nx-trickle: "));
  CurlClient other;
  int served = 0;
  while (!slow.peer_closed() && elapsed_ms(start) < 5000) {
    if (!slow.send("a")) break;  // one byte, then wait for close up to 100 ms
    slow.wait_closed(100);
    served += other.get(s.url("/other")).status == 200;
  }
  long ms = elapsed_ms(start);
  CHECK(slow.wait_closed(1000));
  CHECK(ms >= 400);
  CHECK(ms < 2500);
  if (!slow.buffer().empty()) {  // a 408 may precede the close
    auto r = slow.read_response(100);
    REQUIRE(r);
    CHECK(r->status == 408);
  }
  CHECK(served >= 3);
  CHECK(v1.count_target("/trickle") == 0);
  CHECK(v1.count_target("/other") == static_cast<size_t>(served));
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an idle keep-alive client connection is closed after idle_timeout") {
  Upstream v1("v1");
  Sluice s(config_for(v1, "idle_timeout = \"500ms\"\n"));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send(raw_request("GET", "/")));
  REQUIRE(c.read_response());
  auto start = std::chrono::steady_clock::now();
  CHECK(c.wait_closed(5000));
  long ms = elapsed_ms(start);
  CHECK(ms >= 400);
  CHECK(ms < 2500);
  CHECK(c.buffer().empty());
  check_still_serving(s);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("at max_connections a newcomer replaces the oldest idle connection") {
  Upstream v1("v1");
  Sluice s(config_for(v1, "max_connections = 2\n", "", 1));
  REQUIRE_STARTED(s);
  RawClient a(s.port()), b(s.port());
  for (RawClient* c : {&a, &b}) {
    REQUIRE(c->send(raw_request("GET", "/held")));
    auto r = c->read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  // Both are idle keep-alive connections: the oldest (a) makes room for the newcomer.
  RawClient extra(s.port());
  REQUIRE(extra.send(raw_request("GET", "/extra")));
  auto r = extra.read_response(5000);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(a.wait_closed(5000));
  CHECK(v1.count_target("/extra") == 1);
  // b was younger: it was kept and still serves.
  REQUIRE(b.send(raw_request("GET", "/b-again")));
  auto rb = b.read_response(5000);
  REQUIRE(rb);
  CHECK(rb->status == 200);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE(
    "at max_connections a newcomer is refused while every connection has a request in flight") {
  Upstream v1("v1");
  Sluice s(config_for(v1, "max_connections = 2\n", "", 1));
  REQUIRE_STARTED(s);
  RawClient a(s.port()), b(s.port());
  for (RawClient* c : {&a, &b}) REQUIRE(c->send(raw_request("GET", "/slow?ms=1500")));
  REQUIRE(poll_until([&] { return v1.count_target("/slow") == 2; }, 5000));
  RawClient extra(s.port());
  if (extra.connected() && extra.send(raw_request("GET", "/extra"))) {
    auto r = extra.read_response(1000);
    CHECK(!(r && r->status == 200));
  }
  CHECK(v1.count_target("/extra") == 0);
  // The busy ones were not shed.
  for (RawClient* c : {&a, &b}) {
    auto r = c->read_response(5000);
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  extra.close();
  a.close();
  bool served = poll_until(
      [&] {
        RawClient d(s.port());
        if (!d.send(raw_request("GET", "/later"))) return false;
        auto r = d.read_response(1000);
        return r && r->status == 200;
      },
      5000);
  CHECK(served);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a broken upstream body after the head closes the client connection instead of hanging") {
  Upstream v1("v1");
  Sluice s(config_for(v1));
  REQUIRE_STARTED(s);
  for (const std::string target : {"/truncated", "/bad-chunked"}) {
    CAPTURE(target);
    RawClient c(s.port());
    REQUIRE(c.send(raw_request("GET", target)));
    // If sluice sees the bad bytes before it sent anything, it answers 502; otherwise it has
    // relayed the 200 head and must end the connection. An empty reply is neither.
    auto head = c.read_head();
    REQUIRE_MESSAGE(head, "no response head at all; received: " << c.buffer());
    if (head->status == 502) {
      CHECK(head->header("x-sluice-error") == "bad-upstream-response");
    } else {
      CHECK(head->status == 200);
      CHECK(c.wait_closed(5000));  // the response cannot complete: the connection must end
      Response full;
      CHECK(parse_response(c.buffer(), false, false, full) <= 0);  // never a complete message
    }
  }
  check_still_serving(s);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a client vanishing mid-request or mid-response does not poison the upstream pool") {
  Upstream v1("v1");
  Sluice s(config_for(v1, "", "", 1));
  REQUIRE_STARTED(s);
  {
    RawClient half_body(s.port());
    REQUIRE(half_body.send(raw_request("POST", "/count-body", "Content-Length: 1000\r\n") +
                           "only-ten-b"));
    REQUIRE(poll_until([&] { return v1.count_target("/count-body") == 1; }, 5000));
  }
  {
    RawClient half_read(s.port());
    REQUIRE(half_read.send(raw_request("GET", "/download?bytes=" + std::to_string(64 << 20))));
    REQUIRE(half_read.read_head());
  }
  // The upstream connections serving the abandoned exchanges get closed, not pooled.
  CHECK(poll_until([&] { return v1.open_connections() == 0; }, 5000));
  for (int i = 0; i < 10; ++i) check_still_serving(s, "/after/" + std::to_string(i));
  CHECK_CLEAN_STOP(s);
}

TEST_CASE(
    "a stalled head on a keep-alive connection or a silent new connection is cut off at the header "
    "timeout") {
  Upstream v1("v1");
  Sluice s(config_for(v1, "header_timeout = \"500ms\"\nidle_timeout = \"60s\"\n"));
  REQUIRE_STARTED(s);
  SUBCASE("the second request's head stalls") {
    RawClient c(s.port());
    REQUIRE(c.send(raw_request("GET", "/first")));
    REQUIRE(c.read_response());
    auto start = std::chrono::steady_clock::now();
    REQUIRE(c.send("GET /second HTTP/1.1\r\nHo"));
    CHECK(c.wait_closed(5000));
    long ms = elapsed_ms(start);
    CHECK(ms >= 400);
    CHECK(ms < 2500);
    if (!c.buffer().empty()) {
      auto r = c.read_response(100);
      REQUIRE(r);
      CHECK(r->status == 408);
    }
  }
  SUBCASE("a new connection sends nothing") {
    RawClient c(s.port());
    auto start = std::chrono::steady_clock::now();
    CHECK(c.wait_closed(5000));
    long ms = elapsed_ms(start);
    CHECK(ms < 2500);
  }
  CHECK(v1.count_target("/second") == 0);
  CHECK_CLEAN_STOP(s);
}
