// Header rules of a proxy hop: the Connection-token rule (framing, Host and sluice's own headers
// are never removed by it), Host fallback, h2c, and X-Forwarded-* from trusted and untrusted peers.
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "http/parser.h"
#include "http/rewrite.h"

namespace sluice::http {
namespace {

class NullSink final : public Sink {
 public:
  int on_head(Parser&) override { return 0; }
  int on_body(Parser&, const char*, size_t) override { return 0; }
  bool on_message_end(Parser&) override { return true; }
};

// One parsed message; its head stays readable for the builders.
struct Parsed {
  NullSink sink;
  Parser parser;
  explicit Parsed(std::string_view bytes, llhttp_type_t type = HTTP_REQUEST)
      : parser(type, sink, 65536, 100) {
    Parser::Result r = parser.feed(bytes.data(), bytes.size());
    REQUIRE(r.status != Parser::Status::kError);
    REQUIRE(parser.head_complete());
  }
};

UpstreamRequestInfo base_info() {
  UpstreamRequestInfo info;
  info.client_ip = "203.0.113.7";
  info.request_id = "generated-id";
  info.fallback_host = "10.0.0.5:8080";
  return info;
}

std::string upstream_head(const Parsed& m, UpstreamRequestInfo info) {
  info.chunked_body = m.parser.chunked();
  info.upgrade = m.parser.upgrade();
  std::string out;
  build_upstream_request(m.parser, info, out);
  return out;
}

std::string upstream_head(std::string_view request, bool trusted = false) {
  Parsed m(request);
  UpstreamRequestInfo info = base_info();
  info.trusted_peer = trusted;
  return upstream_head(m, info);
}

// Header lines of a built head ("name: value"), names lower-cased.
std::vector<std::string> lines_named(const std::string& head, std::string_view name) {
  std::vector<std::string> out;
  size_t pos = head.find("\r\n") + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    std::string line = head.substr(pos, end - pos);
    size_t colon = line.find(':');
    if (colon != std::string::npos && iequals(std::string_view(line).substr(0, colon), name))
      out.push_back(line.substr(colon + 2));
    pos = end + 2;
  }
  return out;
}

std::string only(const std::string& head, std::string_view name) {
  auto v = lines_named(head, name);
  CAPTURE(head);
  CAPTURE(name);
  REQUIRE(v.size() == 1);
  return v[0];
}

}  // namespace

TEST_CASE("Connection names never remove framing, Host or sluice's own headers") {
  CHECK(is_connection_protected("Content-Length"));
  CHECK(is_connection_protected("transfer-encoding"));
  CHECK(is_connection_protected("HOST"));
  CHECK(is_connection_protected("x-request-id"));
  CHECK(is_connection_protected("X-Forwarded-For"));
  CHECK(is_connection_protected("x-forwarded-proto"));
  CHECK(is_connection_protected("x-forwarded-host"));
  CHECK(is_connection_protected("via"));
  CHECK_FALSE(is_connection_protected("x-custom"));
  CHECK_FALSE(is_connection_protected("cookie"));

  std::string_view tokens[8];
  const size_t n = connection_tokens(
      "close, Content-Length,  x-hop ,host,, Transfer-Encoding, X-Request-Id,keep-alive", tokens,
      8);
  REQUIRE(n == 3);
  CHECK(tokens[0] == "close");
  CHECK(tokens[1] == "x-hop");
  CHECK(tokens[2] == "keep-alive");
}

TEST_CASE("a body is framed by the Content-Length sluice writes, whatever Connection names") {
  SUBCASE("Connection: content-length keeps the parsed length") {
    const std::string head = upstream_head(
        "POST /p HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n"
        "hello");
    CHECK(only(head, "content-length") == "5");
    CHECK(lines_named(head, "transfer-encoding").empty());
  }
  SUBCASE("the parsed value is written, not the client's spelling") {
    const std::string head =
        upstream_head("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\nhello");
    CHECK(only(head, "content-length") == "5");
  }
  SUBCASE("Content-Length: 0 stays") {
    const std::string head =
        upstream_head("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    CHECK(only(head, "content-length") == "0");
  }
  SUBCASE("a chunked body is re-chunked even when Connection names Transfer-Encoding") {
    const std::string head = upstream_head(
        "POST /p HTTP/1.1\r\nHost: a\r\nConnection: transfer-encoding, keep-alive\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    CHECK(only(head, "transfer-encoding") == "chunked");
    CHECK(lines_named(head, "content-length").empty());
  }
  SUBCASE("no body: no framing header") {
    const std::string head = upstream_head("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK(lines_named(head, "content-length").empty());
    CHECK(lines_named(head, "transfer-encoding").empty());
  }
}

TEST_CASE("other headers named by Connection are still removed") {
  const std::string head = upstream_head(
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-hop, X-Other\r\nx-hop: 1\r\nx-other: 2\r\n"
      "x-kept: 3\r\nKeep-Alive: timeout=5\r\n\r\n");
  CHECK(lines_named(head, "x-hop").empty());
  CHECK(lines_named(head, "x-other").empty());
  CHECK(lines_named(head, "keep-alive").empty());
  CHECK(lines_named(head, "connection").empty());
  CHECK(only(head, "x-kept") == "3");
}

TEST_CASE("Host is never lost") {
  SUBCASE("Connection: host") {
    const std::string head =
        upstream_head("GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: host\r\n\r\n");
    CHECK(only(head, "host") == "shop.example");
    CHECK(only(head, "x-forwarded-host") == "shop.example");
  }
  SUBCASE("an HTTP/1.0 request without Host gets the endpoint's address") {
    const std::string head = upstream_head("GET /old HTTP/1.0\r\n\r\n");
    CHECK(head.rfind("GET /old HTTP/1.1\r\n", 0) == 0);
    CHECK(only(head, "host") == "10.0.0.5:8080");
    CHECK(lines_named(head, "x-forwarded-host").empty());  // the client named no host
  }
  SUBCASE("an empty Host is replaced, not doubled") {
    const std::string head = upstream_head("GET / HTTP/1.1\r\nHost:\r\n\r\n");
    CHECK(only(head, "host") == "10.0.0.5:8080");
  }
  SUBCASE("an absolute-form authority replaces Host") {
    Parsed m("GET http://b.example/x HTTP/1.1\r\nHost: other\r\n\r\n");
    UpstreamRequestInfo info = base_info();
    info.target = "/x";
    info.host = "b.example";
    const std::string head = upstream_head(m, info);
    CHECK(head.rfind("GET /x HTTP/1.1\r\n", 0) == 0);
    CHECK(only(head, "host") == "b.example");
  }
}

TEST_CASE("x-request-id is passed on or generated, never empty") {
  SUBCASE("Connection: x-request-id keeps the client's id") {
    const std::string head = upstream_head(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-request-id\r\nX-Request-Id: abc-123\r\n\r\n");
    CHECK(only(head, "x-request-id") == "abc-123");
  }
  SUBCASE("an empty client id is replaced by the generated one") {
    const std::string head = upstream_head("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id:\r\n\r\n");
    CHECK(only(head, "x-request-id") == "generated-id");
  }
  SUBCASE("without one the generated id is added") {
    const std::string head = upstream_head("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK(only(head, "x-request-id") == "generated-id");
  }
}

TEST_CASE("h2c is never offered upstream and the request is not an upgrade") {
  Parsed m(
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
      "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n");
  CHECK_FALSE(m.parser.upgrade());
  const std::string head = upstream_head(m, base_info());
  CHECK(lines_named(head, "upgrade").empty());
  CHECK(lines_named(head, "http2-settings").empty());
  CHECK(lines_named(head, "connection").empty());

  SUBCASE("HTTP2-Settings is dropped even when Connection does not name it") {
    const std::string h = upstream_head("GET / HTTP/1.1\r\nHost: a\r\nHTTP2-Settings: AAA\r\n\r\n");
    CHECK(lines_named(h, "http2-settings").empty());
  }
  SUBCASE("an offer of h2c and websocket upgrades to websocket only") {
    Parsed ws(
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c, websocket\r\n\r\n");
    CHECK(ws.parser.upgrade());
    const std::string h = upstream_head(ws, base_info());
    CHECK(only(h, "upgrade") == "websocket");
    CHECK(only(h, "connection") == "upgrade");
  }
}

TEST_CASE("X-Forwarded-* are believed only from a trusted proxy") {
  const std::string request =
      "GET / HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 198.51.100.1\r\n"
      "X-Forwarded-Proto: https\r\nX-Forwarded-Host: public.example\r\n"
      "X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n\r\n";
  SUBCASE("untrusted: all three are sluice's own") {
    const std::string head = upstream_head(request, false);
    CHECK(only(head, "x-forwarded-for") == "203.0.113.7");
    CHECK(only(head, "x-forwarded-proto") == "http");
    CHECK(only(head, "x-forwarded-host") == "shop.example");
  }
  SUBCASE("trusted: the chain is appended to and proto and host are kept") {
    const std::string head = upstream_head(request, true);
    CHECK(only(head, "x-forwarded-for") == "198.51.100.1, 10.0.0.1, 10.0.0.2, 203.0.113.7");
    CHECK(only(head, "x-forwarded-proto") == "https");
    CHECK(only(head, "x-forwarded-host") == "public.example");
  }
  SUBCASE("trusted without forwarding headers: sluice sets them") {
    const std::string head = upstream_head("GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n", true);
    CHECK(only(head, "x-forwarded-for") == "203.0.113.7");
    CHECK(only(head, "x-forwarded-proto") == "http");
    CHECK(only(head, "x-forwarded-host") == "shop.example");
  }
  SUBCASE("Connection cannot strip them from a trusted chain") {
    const std::string head = upstream_head(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-forwarded-for, x-forwarded-proto\r\n"
        "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n",
        true);
    CHECK(only(head, "x-forwarded-for") == "10.0.0.1, 203.0.113.7");
    CHECK(only(head, "x-forwarded-proto") == "https");
  }
}

TEST_CASE("a response's framing is sluice's own, whatever the upstream's Connection names") {
  ClientResponseInfo info;
  std::string out;
  SUBCASE("Connection: content-length keeps the length") {
    Parsed m(
        "HTTP/1.1 200 OK\r\nConnection: content-length, x-up\r\nx-up: 1\r\n"
        "Content-Length: 5\r\n\r\nhello",
        HTTP_RESPONSE);
    build_client_response(m.parser, info, out);
    CHECK(only(out, "content-length") == "5");
    CHECK(lines_named(out, "x-up").empty());
  }
  SUBCASE("a re-chunked body has no Content-Length") {
    Parsed m(
        "HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n"
        "\r\n0\r\n\r\n",
        HTTP_RESPONSE);
    info.chunked = true;
    build_client_response(m.parser, info, out);
    CHECK(only(out, "transfer-encoding") == "chunked");
    CHECK(lines_named(out, "content-length").empty());
  }
  SUBCASE("an interim response carries no length") {
    Parsed m("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", HTTP_RESPONSE);
    build_client_response(m.parser, info, out);
    CHECK(lines_named(out, "content-length").empty());
    CHECK(only(out, "link") == "</a>");
  }
}

}  // namespace sluice::http
