// The routing decision without a socket: a request parsed from text, a routing table built from
// config text, and the choice of route, alias and version (override header, sticky keys, issued
// cookies, weighted picks with injected draws), plus absolute-form targets.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "config/loader.h"
#include "http/parser.h"
#include "routing/table.h"
#include "worker/route.h"

namespace sluice::worker {
namespace {

std::shared_ptr<const routing::RoutingTable> build(std::string_view text) {
  config::LoadResult r = config::load_string(text, "t.toml");
  std::string messages;
  for (const auto& d : r.errors) messages += d.to_string() + "\n";
  CAPTURE(messages);
  REQUIRE(r.config.has_value());
  std::vector<config::Diagnostic> errors;
  auto table = routing::RoutingTable::build(std::move(*r.config), &errors);
  REQUIRE(errors.empty());
  REQUIRE(table != nullptr);
  return table;
}

constexpr const char* kConfig = R"(
[functions.shop.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.shop.versions.2]
endpoints = ["127.0.0.1:9002"]
[functions.shop.aliases.prod]
traffic = { "1" = 90, "2" = 10 }
allow_override = true
[functions.shop.aliases.sticky]
traffic = { "1" = 50, "2" = 50 }
sticky = { header = "x-user" }
[functions.shop.aliases.jar]
traffic = { "1" = 50, "2" = 50 }
sticky = { cookie = "sb", issue = true }
[[routes]]
target = "shop:prod"
[[routes]]
path_prefix = "/pinned/"
target = "shop:2"
[[routes]]
host = "sticky.test"
target = "shop:sticky"
[[routes]]
host = "jar.test"
target = "shop:jar"
[[routes]]
host = "only.test"
path_prefix = "/only/"
target = "shop:prod"
)";

// Parses one request head and keeps it for the decision (headers point into the parser).
struct Request final : http::Sink {
  http::Parser parser{HTTP_REQUEST, *this, 8192, 64};
  explicit Request(const std::string& head) {
    auto r = parser.feed(head.data(), head.size());
    REQUIRE(r.status != http::Parser::Status::kError);
    REQUIRE(parser.head_complete());
  }
  int on_head(http::Parser&) override { return 0; }
  int on_body(http::Parser&, const char*, size_t) override { return 0; }
  bool on_message_end(http::Parser&) override { return true; }
};

std::string get(const std::string& target, const std::string& headers = "Host: e2e.test\r\n") {
  return "GET " + target + " HTTP/1.1\r\n" + headers + "\r\n";
}

struct Decide {
  std::shared_ptr<const routing::RoutingTable> table = build(kConfig);
  routing::PickState picks{*table};
  routing::Rng rng{42};
  std::string origin;

  RouteChoice operator()(const std::string& head) {
    Request req(head);
    Target t = target_of(req.parser, origin);
    return choose_version(*table, picks, req.parser, t, rng);
  }
  std::string version(const std::string& head) {
    RouteChoice c = (*this)(head);
    return c.result == RouteChoice::Result::kOk ? c.version->number : "none";
  }
};

}  // namespace

TEST_CASE("a request is routed by host and longest path prefix to an alias or a pinned version") {
  Decide d;
  RouteChoice c = d(get("/anything"));
  REQUIRE(c.result == RouteChoice::Result::kOk);
  CHECK(c.function->name == "shop");
  REQUIRE(c.alias);
  CHECK(c.alias->name == "prod");

  c = d(get("/pinned/x?y=1"));
  REQUIRE(c.result == RouteChoice::Result::kOk);
  CHECK(c.alias == nullptr);
  CHECK(c.version->number == "2");

  SUBCASE("a host-only route does not match other paths of that host") {
    c = d(get("/elsewhere", "Host: only.test\r\n"));
    REQUIRE(c.result == RouteChoice::Result::kOk);
    CHECK(c.route->host.empty());  // the catch-all route, not only.test's
  }
  SUBCASE("no route matches") {
    Decide narrow;
    narrow.table = build(R"(
[functions.a.versions.1]
endpoints = ["127.0.0.1:1"]
[functions.a.aliases.p]
traffic = { "1" = 100 }
[[routes]]
path_prefix = "/api/"
target = "a:p"
)");
    routing::PickState picks(*narrow.table);
    Request req(get("/web"));
    Target t = target_of(req.parser, narrow.origin);
    CHECK(choose_version(*narrow.table, picks, req.parser, t, narrow.rng).result ==
          RouteChoice::Result::kNoRoute);
  }
}

TEST_CASE("weighted picks follow the alias's shares over many draws") {
  Decide d;
  std::map<std::string, int> hits;
  for (int i = 0; i < 10000; ++i) ++hits[d.version(get("/"))];
  CAPTURE(hits);
  CHECK(hits["1"] > 8700);
  CHECK(hits["1"] < 9300);
  CHECK(hits["1"] + hits["2"] == 10000);
}

TEST_CASE("the override header picks a version where the alias allows it, or fails") {
  Decide d;
  CHECK(d.version(get("/", "Host: e2e.test\r\nx-sluice-version: shop:2\r\n")) == "2");
  CHECK(d.version(get("/", "Host: e2e.test\r\nx-sluice-version: 1\r\n")) == "1");
  CHECK(d(get("/", "Host: e2e.test\r\nx-sluice-version: 9\r\n")).result ==
        RouteChoice::Result::kUnknownVersion);
  SUBCASE("an alias without allow_override ignores it") {
    CHECK(d(get("/", "Host: sticky.test\r\nx-sluice-version: 9\r\n")).result ==
          RouteChoice::Result::kOk);
  }
}

TEST_CASE("a sticky key keeps a client on one version, a missing cookie is issued once") {
  Decide d;
  for (const char* user : {"alice", "bob", "carol", "dave"}) {
    CAPTURE(user);
    const std::string head = get("/", std::string("Host: sticky.test\r\nx-user: ") + user + "\r\n");
    const std::string first = d.version(head);
    for (int i = 0; i < 50; ++i) CHECK(d.version(head) == first);
  }
  RouteChoice issued = d(get("/", "Host: jar.test\r\n"));
  REQUIRE(issued.result == RouteChoice::Result::kOk);
  REQUIRE(issued.issued_cookie != 0);
  std::string cookie;
  sticky_cookie("sb", issued.issued_cookie, cookie);
  CHECK(cookie.rfind("sb=", 0) == 0);
  CHECK(cookie.find("; Path=/; Max-Age=31536000; HttpOnly") == 19);
  // Coming back with that cookie: the same version, and nothing new is issued.
  const std::string value = cookie.substr(3, 16);
  for (int i = 0; i < 20; ++i) {
    RouteChoice back = d(get("/", "Host: jar.test\r\nCookie: a=1; sb=" + value + "\r\n"));
    CHECK(back.issued_cookie == 0);
    CHECK(back.version == issued.version);
  }
}

TEST_CASE("an absolute-form target is routed by its authority and forwarded in origin-form") {
  Decide d;
  Request req("GET http://jar.test:8080/p/q?x=1 HTTP/1.1\r\nHost: ignored.test\r\n\r\n");
  Target t = target_of(req.parser, d.origin);
  CHECK(t.host == "jar.test:8080");
  CHECK(t.authority == "jar.test:8080");
  CHECK(t.origin == "/p/q?x=1");
  CHECK(t.path == "/p/q");
  RouteChoice c = choose_version(*d.table, d.picks, req.parser, t, d.rng);
  REQUIRE(c.result == RouteChoice::Result::kOk);
  CHECK(c.alias->name == "jar");

  SUBCASE("no path after the authority is /") {
    Request bare("GET http://e2e.test?x HTTP/1.1\r\nHost: e2e.test\r\n\r\n");
    Target b = target_of(bare.parser, d.origin);
    CHECK(b.origin == "/?x");
    CHECK(b.path == "/");
  }
  SUBCASE("an origin-form target is left alone") {
    Request plain(get("/a?b"));
    Target p = target_of(plain.parser, d.origin);
    CHECK(p.origin.empty());
    CHECK(p.authority.empty());
    CHECK(p.host == "e2e.test");
    CHECK(p.path == "/a");
  }
}

}  // namespace sluice::worker
