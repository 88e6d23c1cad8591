// Routing table tests: build from config text, route precedence, version and endpoint picks.
#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "config/loader.h"
#include "routing/table.h"

namespace sluice::routing {
namespace {

std::shared_ptr<const RoutingTable> build(std::string_view text) {
  if (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  config::LoadResult r = config::load_string(text, "t.toml");
  std::string messages;
  for (const auto& d : r.errors) messages += d.to_string() + "\n";
  CAPTURE(messages);
  REQUIRE(r.config.has_value());
  std::vector<config::Diagnostic> errors;
  auto table = RoutingTable::build(std::move(*r.config), &errors);
  REQUIRE(errors.empty());
  REQUIRE(table != nullptr);
  return table;
}

constexpr const char* kRoutes = R"(
[functions.web.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.web.aliases.prod]
traffic = { "1" = 100 }
[functions.api.versions.1]
endpoints = ["127.0.0.1:9002"]
[functions.api.versions.2]
endpoints = ["127.0.0.1:9003"]
[functions.api.aliases.prod]
traffic = { "1" = 100 }
[functions.api.aliases.beta]
traffic = { "2" = 100 }
[[routes]]
target = "web:prod"
[[routes]]
path_prefix = "/api/"
target = "api:prod"
[[routes]]
path_prefix = "/api/v2/"
target = "api:2"
[[routes]]
host = "Beta.Example.com"
target = "api:beta"
)";

std::string target_of(const Route* r) {
  if (!r) return "none";
  return r->function->name + ":" + (r->alias ? r->alias->name : r->version->number);
}

TEST_CASE("routes match the longest prefix, host-specific routes first") {
  auto table = build(kRoutes);
  CHECK(target_of(table->match("example.com", "/")) == "web:prod");
  CHECK(target_of(table->match("example.com", "/index.html")) == "web:prod");
  CHECK(target_of(table->match("example.com", "/api/users")) == "api:prod");
  CHECK(target_of(table->match("example.com", "/api/v2/users")) == "api:2");
  CHECK(target_of(table->match("example.com", "/api")) == "web:prod");  // "/api/" needs the slash

  SUBCASE("a host route beats any-host routes with longer prefixes") {
    CHECK(target_of(table->match("beta.example.com", "/api/v2/x")) == "api:beta");
  }
  SUBCASE("hosts compare case-insensitively and ignore the port") {
    CHECK(target_of(table->match("BETA.example.COM:8080", "/")) == "api:beta");
    CHECK(target_of(table->match("beta.example.com.", "/")) == "api:beta");
    CHECK(target_of(table->match("beta.example.co", "/")) == "web:prod");
  }
  SUBCASE("a pinned version route names no alias") {
    const Route* r = table->match("", "/api/v2/");
    REQUIRE(r);
    CHECK(r->alias == nullptr);
    REQUIRE(r->version);
    CHECK(r->version->label == "api:2");
  }
}

TEST_CASE("no route matching gives nullptr") {
  auto table = build(R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[[routes]]
host = "a.example"
path_prefix = "/x"
target = "f:1"
)");
  CHECK(table->match("b.example", "/x") == nullptr);
  CHECK(table->match("a.example", "/y") == nullptr);
  SUBCASE("a plain prefix, not a path segment, is matched") {
    CHECK(table->match("a.example", "/xyz") != nullptr);
  }
}

TEST_CASE("the table resolves endpoints and carries version settings") {
  auto table = build(R"(
[functions.f]
connect_timeout = "2s"
version_header = ""
[functions.f.versions.1]
endpoints = ["localhost:9001", { address = "10.1.2.3:80", weight = 3 }]
max_concurrency = 7
[functions.f.latest]
endpoints = ["[::1]:9002"]
response_timeout = "5s"
)");
  const Function* f = table->find_function("f");
  REQUIRE(f);
  CHECK(f->version_header.empty());
  CHECK(table->find_function("g") == nullptr);
  REQUIRE(f->versions.size() == 2);
  const Version* v1 = f->find_version("1");
  REQUIRE(v1);
  CHECK(v1->label == "f:1");
  CHECK(v1->connect_timeout_ms == 2000);
  CHECK(v1->response_timeout_ms == 30000);
  CHECK(v1->max_concurrency == 7);
  REQUIRE(v1->endpoints.size() == 2);
  const auto* sin = reinterpret_cast<const sockaddr_in*>(&v1->endpoints[0].sockaddr);
  CHECK(sin->sin_family == AF_INET);  // localhost prefers IPv4
  CHECK(ntohs(sin->sin_port) == 9001);
  CHECK(ntohl(sin->sin_addr.s_addr) == 0x7f000001u);
  CHECK(v1->endpoints[0].sockaddr_len == sizeof(sockaddr_in));
  CHECK(v1->endpoints[1].weight == 3);
  const Version* latest = f->find_version("$LATEST");
  REQUIRE(latest);
  CHECK(latest == f->versions.back());
  CHECK(latest->label == "f:$LATEST");
  CHECK(latest->connect_timeout_ms == 2000);
  CHECK(latest->response_timeout_ms == 5000);
  CHECK(latest->endpoints[0].sockaddr.ss_family == AF_INET6);
  CHECK(f->find_version("2") == nullptr);
}

constexpr const char* kAlias = R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.versions.2]
endpoints = ["127.0.0.1:9002"]
[functions.f.versions.3]
endpoints = ["127.0.0.1:9003"]
[functions.f.aliases.random]
traffic = { "1" = 70, "2" = 20, "3" = 10 }
[functions.f.aliases.exact]
traffic = { "1" = 70, "2" = 20, "3" = 10 }
selection = "exact"
[functions.f.aliases.canary]
traffic = { "2" = 90, "3" = 10 }
sticky = { header = "x-user" }
)";

TEST_CASE("an alias picks versions by random draw, exact rotation or sticky point") {
  auto table = build(kAlias);
  const Function* f = table->find_function("f");
  REQUIRE(f);
  PickState state(*table);

  SUBCASE("random: the draw decides") {
    const Alias* a = f->find_alias("random");
    REQUIRE(a);
    CHECK(a->label == "f:random");
    CHECK(a->pick(0, std::nullopt, state)->number == "1");
    CHECK(a->pick(UINT64_MAX, std::nullopt, state)->number == "3");
    Rng rng(9);
    std::map<std::string, int> hits;
    for (int i = 0; i < 100000; ++i) ++hits[a->pick(rng.next(), std::nullopt, state)->number];
    CHECK(std::abs(hits["1"] - 70000) < 1000);
    CHECK(std::abs(hits["2"] - 20000) < 1000);
    CHECK(std::abs(hits["3"] - 10000) < 1000);
  }
  SUBCASE("exact: every 10 picks hold 7, 2 and 1") {
    const Alias* a = f->find_alias("exact");
    REQUIRE(a);
    for (int round = 0; round < 5; ++round) {
      std::map<std::string, int> hits;
      for (int i = 0; i < 10; ++i) ++hits[a->pick(0, std::nullopt, state)->number];
      CHECK(hits["1"] == 7);
      CHECK(hits["2"] == 2);
      CHECK(hits["3"] == 1);
    }
  }
  SUBCASE("sticky: the point decides, newest version first") {
    const Alias* a = f->find_alias("canary");
    REQUIRE(a);
    CHECK(a->sticky.kind == config::StickySpec::Kind::kHeader);
    CHECK(a->pick(0, 0.05, state)->number == "3");  // [0, 0.1) is the newest, version 3
    CHECK(a->pick(0, 0.15, state)->number == "2");
    CHECK(a->pick(0, 0.99, state)->number == "2");
    CHECK(a->pick(0, sticky_point("alice"), state) == a->pick(7, sticky_point("alice"), state));
  }
}

TEST_CASE("$LATEST counts as the newest version in the sticky layout") {
  auto table = build(R"(
[functions.f.latest]
endpoints = ["127.0.0.1:9000"]
[functions.f.versions.7]
endpoints = ["127.0.0.1:9007"]
[functions.f.aliases.dev]
traffic = { "7" = 50, "$LATEST" = 50 }
sticky = { cookie = "uid" }
)");
  PickState state(*table);
  const Alias* a = table->find_function("f")->find_alias("dev");
  REQUIRE(a);
  CHECK(a->pick(0, 0.25, state)->number == "$LATEST");
  CHECK(a->pick(0, 0.75, state)->number == "7");
}

TEST_CASE("endpoints are picked by smooth round robin over their weights") {
  auto table = build(R"(
[functions.f.versions.1]
endpoints = [{ address = "127.0.0.1:9001", weight = 2 }, "127.0.0.1:9002"]
[functions.f.versions.2]
endpoints = ["127.0.0.1:9003"]
)");
  PickState state(*table);
  const Function* f = table->find_function("f");
  const Version* v1 = f->find_version("1");
  std::string seq;
  for (int i = 0; i < 6; ++i) seq += v1->pick_endpoint(state)->address.back();
  CHECK(seq == "121121");
  const Version* v2 = f->find_version("2");
  CHECK(v2->pick_endpoint(state)->address == "127.0.0.1:9003");

  SUBCASE("two workers keep separate rotations") {
    PickState other(*table);
    CHECK(v1->pick_endpoint(other)->address == "127.0.0.1:9001");
  }
}

TEST_CASE("ids are dense indexes into the table's vectors") {
  auto table = build(kAlias);
  for (size_t i = 0; i < table->versions().size(); ++i) CHECK(table->versions()[i]->id == i);
  for (size_t i = 0; i < table->aliases().size(); ++i) CHECK(table->aliases()[i]->id == i);
  CHECK(table->versions().size() == 3);
  CHECK(table->aliases().size() == 3);
  CHECK(table->config().source == "t.toml");
}

}  // namespace
}  // namespace sluice::routing

namespace sluice::routing {
namespace {

config::Config load_config(std::string_view text) {
  if (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  config::LoadResult r = config::load_string(text, "t.toml");
  REQUIRE(r.config.has_value());
  return std::move(*r.config);
}

ResolvedHost host_at(const char* ip) {
  ResolvedHost h;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&h.addr);
  REQUIRE(inet_pton(AF_INET, ip, &v4->sin_addr) == 1);
  v4->sin_family = AF_INET;
  h.len = sizeof(sockaddr_in);
  return h;
}

constexpr const char* kNamed = R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001", "[::1]:9002", "api.internal:9003", "db.internal:9004"]
[functions.f.latest]
endpoints = ["api.internal:9005"]
[functions.f.aliases.prod]
traffic = { "1" = 100 }
)";

}  // namespace

TEST_CASE("endpoint host names come from the resolved hosts, the build itself never looks up") {
  const config::Config cfg = load_config(kNamed);
  CHECK(host_names(cfg) == std::vector<std::string>{"api.internal", "db.internal"});
  HostAddresses hosts = {{"api.internal", host_at("10.0.0.5")},
                         {"db.internal", host_at("10.0.0.6")}};
  std::vector<config::Diagnostic> errors;
  auto table = RoutingTable::build(cfg, &errors, hosts);
  REQUIRE(table);
  const Function* f = table->find_function("f");
  const std::vector<Endpoint>& eps = f->find_version("1")->endpoints;
  REQUIRE(eps.size() == 4);
  CHECK(eps[0].address == "127.0.0.1:9001");
  CHECK(eps[0].resolved == "127.0.0.1:9001");  // IP literals need no resolution
  CHECK(eps[1].resolved == "[::1]:9002");
  CHECK(eps[1].sockaddr.ss_family == AF_INET6);
  CHECK(eps[2].address == "api.internal:9003");
  CHECK(eps[2].resolved == "10.0.0.5:9003");  // the pools' key: what it connects to
  CHECK(ntohs(reinterpret_cast<const sockaddr_in*>(&eps[2].sockaddr)->sin_port) == 9003);
  CHECK(eps[3].resolved == "10.0.0.6:9004");
  CHECK(f->find_version("$LATEST")->endpoints.at(0).resolved == "10.0.0.5:9005");

  SUBCASE("a name not resolved, or that failed, is an error at its endpoint") {
    hosts.erase("db.internal");
    hosts["api.internal"].error = "Name or service not known";
    errors.clear();
    CHECK_FALSE(RoutingTable::build(cfg, &errors, hosts));
    REQUIRE(errors.size() == 3);
    CHECK(errors[0].pos.line == 2);
    CHECK(errors[0].pos.column == 46);
    CHECK(errors[0].message ==
          "cannot resolve endpoint \"api.internal:9003\" of f:1: Name or service not known "
          "(expected an IP address or a resolvable host name)");
    CHECK(errors[1].message.find("\"db.internal:9004\" of f:1: the host name has not been "
                                 "resolved") != std::string::npos);
  }
}

TEST_CASE("a blocking lookup of localhost answers from /etc/hosts, IPv4 first") {
  ResolvedHost h = resolve_blocking("localhost");
  REQUIRE(h.ok());
  CHECK(h.addr.ss_family == AF_INET);
  CHECK(address_text(h.addr) == "127.0.0.1:0");
  CHECK_FALSE(is_ip_literal("localhost"));
  CHECK(is_ip_literal("::1"));
  CHECK(is_ip_literal("10.0.0.1"));
}

}  // namespace sluice::routing
