// Self-tests of the e2e tooling without sluice: the test upstream, the wire helpers and the
// clients, talking to each other directly, so a proxy failure is never a harness failure.
#include <doctest/doctest.h>

#include "harness.h"
#include "upstream.h"

using namespace sluice::e2e;

TEST_CASE("the chunked decoder handles extensions and trailers and rejects bad sizes") {
  std::string body;
  ChunkedDecoder dec;
  std::string in = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
  size_t used = dec.feed(in, [&](std::string_view d) { body.append(d); });
  CHECK(dec.done());
  CHECK(body == "hello world");
  CHECK(in.substr(used) == "NEXT");

  SUBCASE("fed one byte at a time") {
    ChunkedDecoder slow;
    std::string out;
    size_t total = 0;
    for (size_t i = 0; i < in.size() && !slow.done(); ++i)
      total +=
          slow.feed(std::string_view(in).substr(i, 1), [&](std::string_view d) { out.append(d); });
    CHECK(slow.done());
    CHECK(out == "hello world");
    CHECK(total == used);
  }
  SUBCASE("a non-hex size is an error") {
    ChunkedDecoder bad;
    bad.feed("zz\r\nhello\r\n", [](std::string_view) {});
    CHECK(bad.error());
  }
}

TEST_CASE("the response parser frames content-length chunked and bodiless responses") {
  Response r;
  std::string two =
      "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcHTTP/1.1 204 No Content\r\n\r\n";
  long used = parse_response(two, false, false, r);
  CHECK(used == 41);
  CHECK(r.body == "abc");
  CHECK(parse_response(std::string_view(two).substr(41), false, false, r) == 27);
  CHECK(r.status == 204);
  CHECK(parse_response("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true, false, r) == 38);
  CHECK(parse_response("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc", false, false, r) == 0);
  CHECK(parse_response("HTTP/1.1 2x0 OK\r\n\r\n", false, false, r) == -1);
  std::string chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
  CHECK(parse_response(chunked, false, false, r) == static_cast<long>(chunked.size()));
  CHECK(r.body == "hi");
  CHECK(r.chunked);
}

TEST_CASE("the test upstream answers its paths directly through libcurl") {
  Upstream up("alpha");
  CurlClient curl;
  std::string base = "http://" + up.address();

  HttpResult hello = curl.get(base + "/");
  CHECK(hello.status == 200);
  CHECK(hello.body == "hello from alpha\n");
  CHECK(hello.header("x-upstream") == "alpha");
  CHECK(hello.header("x-target") == "/");

  HttpResult echo = curl.request("POST", base + "/echo", {}, "ping-body");
  CHECK(echo.status == 200);
  CHECK(echo.body == "ping-body");
  CHECK(echo.header("transfer-encoding") == "chunked");

  HttpResult status = curl.get(base + "/status/503");
  CHECK(status.status == 503);
  CHECK(status.body == "status 503\n");

  HttpResult headers = curl.get(base + "/headers", {"x-probe: 42"});
  CHECK(headers.body.find("x-probe: 42\r\n") != std::string::npos);
  CHECK(headers.body.rfind("GET /headers HTTP/1.1\r\n", 0) == 0);

  HttpResult down = curl.download(base + "/download?bytes=1000000", 20000);
  CHECK(down.status == 200);
  CHECK(down.body_bytes == 1000000);
  CHECK(down.body_hash == pattern_hash(1000000));

  for (bool chunked : {false, true}) {
    CAPTURE(chunked);
    HttpResult up_res = curl.upload(base + "/count-body", 3000000, chunked, 20000);
    CHECK(up_res.status == 200);
    char expect[96];
    std::snprintf(expect, sizeof expect, "bytes=3000000 hash=%016llx",
                  static_cast<unsigned long long>(pattern_hash(3000000)));
    CHECK(up_res.body == expect);
  }

  HttpResult hints = curl.get(base + "/early-hints");
  CHECK(hints.status == 200);
  CHECK(hints.body == "after hints");

  HttpResult bad = curl.get(base + "/bad");
  CHECK(bad.status == 0);  // curl refuses the invalid status line
  CHECK(up.requests() == 9);
}

TEST_CASE("the test upstream keeps connections alive and records request heads") {
  Upstream up("beta");
  RawClient c(up.port());
  REQUIRE(c.connected());
  REQUIRE(c.send(
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /download?bytes=50 HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /status/304 HTTP/1.1\r\nHost: x\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /count-body HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
      "Content-Length: 3\r\n\r\nabc"));
  auto a = c.read_response();
  REQUIRE(a);
  CHECK(a->body == "hello from beta\n");
  auto head = c.read_response(10000, true);
  REQUIRE(head);
  CHECK(head->header("content-length") == "50");
  CHECK(head->body.empty());
  auto not_modified = c.read_response();
  REQUIRE(not_modified);
  CHECK(not_modified->status == 304);
  auto no_content = c.read_response();
  REQUIRE(no_content);
  CHECK(no_content->status == 204);
  auto cont = c.read_response();
  REQUIRE(cont);
  CHECK(cont->status == 100);
  auto counted = c.read_response();
  REQUIRE(counted);
  CHECK(counted->body.rfind("bytes=3 ", 0) == 0);
  CHECK(up.connections() == 1);
  CHECK(up.requests() == 5);
  auto recv = up.received();
  REQUIRE(recv.size() == 5);
  CHECK(recv[1].method == "HEAD");
  CHECK(recv[4].headers.get("expect") == "100-continue");

  SUBCASE("an upgrade to websocket echoes raw bytes") {
    RawClient ws(up.port());
    REQUIRE(ws.send(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"));
    auto sw = ws.read_response();
    REQUIRE(sw);
    CHECK(sw->status == 101);
    REQUIRE(ws.send("raw-bytes"));
    CHECK(ws.read_at_least(9, 5000));
    CHECK(ws.buffer() == "raw-bytes");
  }
  SUBCASE("/close closes without an answer") {
    RawClient cl(up.port());
    REQUIRE(cl.send("GET /close HTTP/1.1\r\nHost: x\r\n\r\n"));
    CHECK(cl.wait_closed(5000));
    CHECK(cl.buffer().empty());
  }
}
