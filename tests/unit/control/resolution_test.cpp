// Tests for endpoint name resolution in the control plane, with a fake resolver: names resolve
// at start, on reload and on refresh, never on an alias change; a failed re-resolution keeps
// the last good address; reloads answer once their names resolved, one at a time.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "control/control.h"
#include "fake_dns.h"

namespace sluice::control {
namespace {

using nlohmann::json;
using test::DnsFixture;

std::string resolved_of(const std::shared_ptr<const routing::RoutingTable>& t,
                        const char* version) {
  REQUIRE(t);
  return t->find_function("checkout")->find_version(version)->endpoints.at(0).resolved;
}

json traffic(const char* version) {
  return json{{"traffic", {{version, 100}}}};
}

}  // namespace

TEST_CASE("names resolve once at start, one that does not resolve stops the start") {
  DnsFixture fx;
  auto c = fx.control();
  auto t = c->init();
  REQUIRE(t);
  CHECK(fx.dns.blocking == 1);
  CHECK(resolved_of(t, "3") == "10.0.0.5:7003");
  CHECK(c->hosts().count("api.internal") == 1);
  CHECK(c->status(nullptr)["resolution"]["hosts"]["api.internal"]["address"] == "10.0.0.5");
  CHECK(c->status(nullptr)["resolution"]["every"] == "30s");

  fx.dns.answers["api.internal"] = "";
  CHECK_FALSE(fx.control()->init());
}

TEST_CASE("an alias change, rollback and publish never wait for DNS") {
  DnsFixture fx;
  auto c = fx.control();
  REQUIRE(c->init());
  fx.attach(*c);
  fx.dns.answers.clear();  // DNS is down: nothing may depend on it now
  CHECK(c->set_alias("checkout", "prod", traffic("4"), "api:t").status == 200);
  CHECK(c->rollback("checkout", "prod", "api:t").status == 200);
  CHECK(fx.publishes == 2);
  CHECK(fx.dns.async == 0);
  CHECK(fx.dns.blocking == 1);  // the start's
  CHECK(resolved_of(fx.published, "3") == "10.0.0.5:7003");
}

TEST_CASE("a reload re-resolves names off the loop and answers once they resolved") {
  DnsFixture fx;
  auto c = fx.control();
  REQUIRE(c->init());
  fx.attach(*c);
  fx.dns.answers["api.internal"] = "10.0.0.6";
  fx.write(fx.toml("127.0.0.1:7014"));
  std::optional<ApiResult> answer;
  c->reload("api", [&](ApiResult r) { answer = r; });
  CHECK_FALSE(answer);  // waiting for DNS, off the loop
  CHECK(fx.dns.async == 1);
  // Meanwhile alias changes go through at once, on the running file.
  CHECK(c->set_alias("checkout", "prod", traffic("4"), "api:t").status == 200);
  CHECK(resolved_of(fx.published, "4") == "127.0.0.1:7004");

  SUBCASE("the answer publishes the new file with the new address, keeping the alias change") {
    fx.dns.answer();
    REQUIRE(answer);
    CHECK(answer->status == 200);
    CHECK(resolved_of(fx.published, "3") == "10.0.0.6:7003");
    CHECK(resolved_of(fx.published, "4") == "127.0.0.1:7014");
    const routing::Alias* prod = fx.published->find_function("checkout")->find_alias("prod");
    CHECK(prod->shares().at(0).version->number == "4");
  }
  SUBCASE("a second reload meanwhile waits its turn and reads the file afresh") {
    std::optional<ApiResult> second;
    fx.write(fx.toml("127.0.0.1:7024"));
    c->reload("sighup", [&](ApiResult r) { second = r; });
    CHECK(fx.dns.async == 1);  // not started yet
    fx.dns.answer();
    REQUIRE(answer);
    CHECK_FALSE(second);
    CHECK(fx.dns.async == 2);  // the queued one now resolves
    fx.dns.answer();
    REQUIRE(second);
    CHECK(second->status == 200);
    CHECK(resolved_of(fx.published, "4") == "127.0.0.1:7024");
  }
  SUBCASE("the synchronous form answers 202 while names resolve") {
    ApiResult r = c->reload("sighup");  // queued behind the first
    CHECK(r.status == 202);
    CHECK(r.body["result"] == "resolving");
    fx.dns.answer();
    fx.dns.answer();
    CHECK(c->reloads_ok() == 2);
  }
}

TEST_CASE("a reload adding a name that does not resolve is refused, the old snapshot stays") {
  DnsFixture fx;
  auto c = fx.control();
  auto first = c->init();
  REQUIRE(first);
  fx.attach(*c);
  fx.write(fx.toml("nowhere.internal:7004"));
  std::optional<ApiResult> answer;
  c->reload("api", [&](ApiResult r) { answer = r; });
  fx.dns.answer();
  REQUIRE(answer);
  CHECK(answer->status == 400);
  CHECK(answer->body["errors"][0].get<std::string>().find(
            ":4:14: cannot resolve endpoint \"nowhere.internal:7004\" of checkout:4: Name or "
            "service not known") != std::string::npos);
  CHECK(fx.publishes == 0);
  CHECK(c->table() == first);
}

TEST_CASE("re-resolution publishes a changed address and keeps the last good one on failure") {
  DnsFixture fx;
  auto c = fx.control();
  REQUIRE(c->init());
  fx.attach(*c);
  c->refresh_names();
  fx.dns.answer();
  CHECK(fx.publishes == 0);  // same address: nothing to publish

  fx.dns.answers["api.internal"] = "10.0.0.7";
  c->refresh_names();
  c->refresh_names();  // one lookup at a time
  CHECK(fx.dns.pending.size() == 1);
  fx.dns.answer();
  CHECK(fx.publishes == 1);
  CHECK(resolved_of(fx.published, "3") == "10.0.0.7:7003");

  fx.dns.answers["api.internal"] = "";  // DNS fails: the endpoint keeps working
  c->refresh_names();
  fx.dns.answer();
  CHECK(fx.publishes == 1);
  CHECK(resolved_of(c->table(), "3") == "10.0.0.7:7003");
  json host = c->status(nullptr)["resolution"]["hosts"]["api.internal"];
  CHECK(host["address"] == "10.0.0.7");
  CHECK(host["note"] == "the last re-resolution failed; kept");

  SUBCASE("a reload while DNS fails keeps the last good address too") {
    std::optional<ApiResult> answer;
    c->reload("api", [&](ApiResult r) { answer = r; });
    fx.dns.answer();
    REQUIRE(answer);
    CHECK(answer->status == 200);
    CHECK(resolved_of(fx.published, "3") == "10.0.0.7:7003");
  }
}

}  // namespace sluice::control
