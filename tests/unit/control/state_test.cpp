// Tests for the runtime-change state: JSON round trip, history bound, override precedence by
// file hash, immutability diagnostics and version numbering. (Its storage: local_store_test.)
#include <doctest/doctest.h>

#include <string>

#include "config/loader.h"
#include "control/state.h"

namespace sluice::control {
namespace {

config::Config load(const std::string& text) {
  config::LoadResult r = config::load_string(text, "sluice.toml");
  std::string errs;
  for (const auto& e : r.errors) errs += e.to_string() + "\n";
  CAPTURE(errs);
  REQUIRE(r.config.has_value());
  return *r.config;
}

// Version 3 sits in the table opened on line 5.
std::string checkout_toml(const std::string& v3_extra = "",
                          const std::string& prod = "\"3\" = 100") {
  return "[listen]\naddress = \"127.0.0.1:0\"\n"
         "[functions.checkout.latest]\nendpoints = [\"127.0.0.1:7004\"]\n"
         "[functions.checkout.versions.3]\nendpoints = [\"127.0.0.1:7003\"]\n" +
         v3_extra +
         "[functions.checkout.versions.4]\nendpoints = [\"127.0.0.1:7004\"]\n"
         "[functions.checkout.aliases.prod]\ntraffic = { " +
         prod + " }\n[[routes]]\ntarget = \"checkout:prod\"\n";
}

const config::AliasSpec& prod_of(const config::Config& cfg) {
  return cfg.functions.at(0).aliases.at(0);
}

}  // namespace

TEST_CASE("a state survives a JSON round trip unchanged") {
  State s;
  FunctionState& fs = s.functions["checkout"];
  fs.next_number = 7;
  PublishedVersion pv;
  config::Endpoint ep;
  ep.address = {"127.0.0.1:7004", "127.0.0.1", 7004};
  ep.weight = 2;
  pv.endpoints = {ep};
  pv.settings.response_timeout_ms = 5000;
  pv.settings.outlier = config::OutlierSpec{};
  pv.settings.outlier->consecutive_5xx = 9;
  pv.settings.health = config::HealthCheckSpec{};
  pv.settings.health->path = "/ready";
  pv.settings.health->expect = {200, 204};
  pv.settings.tls = config::UpstreamTlsSpec{};
  pv.settings.tls->ca = "/etc/sluice/ca.pem";
  pv.settings.tls->server_name = "checkout.internal";
  pv.time = "2026-01-01T00:00:00.000Z";
  fs.published[6] = pv;
  fs.fingerprints[3] = {{"connect_timeout", "1000ms"}};
  AliasState& as = fs.aliases["prod"];
  as.override_traffic = TrafficMap{{"3", 90}, {"4", 10.5}};
  as.override_file_hash = "abc";
  as.history = {{{"3", 100}}, {{"$LATEST", 1}}};

  State back;
  std::string error;
  REQUIRE(from_json(nlohmann::json::parse(to_json(s).dump()), back, &error));
  CHECK(back == s);
  const PublishedVersion& got = back.functions["checkout"].published.at(6);
  CHECK(got.endpoints.at(0).address.host == "127.0.0.1");
  CHECK(got.endpoints.at(0).address.port == 7004);
  CHECK(got.endpoints.at(0).weight == 2);
  CHECK(got.settings.response_timeout_ms == 5000u);
  CHECK_FALSE(got.settings.connect_timeout_ms.has_value());
  // A version published with TLS keeps it (never plaintext to its endpoints after a restart).
  REQUIRE(got.settings.outlier.has_value());
  CHECK(got.settings.outlier->consecutive_5xx == 9u);
  CHECK(got.settings.outlier->consecutive_failures == 5u);
  REQUIRE(got.settings.health.has_value());
  CHECK(got.settings.health->path == "/ready");
  CHECK(got.settings.health->expect == std::vector<int>{200, 204});
  REQUIRE(got.settings.tls.has_value());
  CHECK(got.settings.tls->ca == "/etc/sluice/ca.pem");
  CHECK(got.settings.tls->server_name == "checkout.internal");
  CHECK(got.settings.tls->verify);
  CHECK(*back.functions["checkout"].aliases["prod"].override_traffic ==
        TrafficMap{{"3", 90}, {"4", 10.5}});

  SUBCASE("a malformed document is refused with a reason") {
    State none;
    CHECK_FALSE(
        from_json(nlohmann::json::parse(R"({"format":1,"functions":{"f":{}}})"), none, &error));
    CHECK(error.find("malformed state") != std::string::npos);
    CHECK_FALSE(from_json(nlohmann::json::parse(R"({"format":9})"), none, &error));
  }
}

TEST_CASE("an alias keeps its last 32 traffic maps, oldest dropped first") {
  AliasState as;
  for (int i = 0; i < 40; ++i) as.push_history({{"3", double(i)}});
  REQUIRE(as.history.size() == kHistoryDepth);
  CHECK(as.history.front() == TrafficMap{{"3", 8}});
  CHECK(as.history.back() == TrafficMap{{"3", 39}});
}

TEST_CASE("traffic maps are canonical: numbers ascending, then $LATEST") {
  TrafficMap m = canonical({{"$LATEST", 1}, {"10", 2}, {"9", 3}});
  CHECK(m == TrafficMap{{"9", 3}, {"10", 2}, {"$LATEST", 1}});
  CHECK(traffic_text({{"3", 90}, {"4", 10.5}}) == "3=90 4=10.5");
  CHECK(traffic_json({{"3", 90}}).dump() == R"({"3":90})");
}

TEST_CASE("an API override applies while the file's alias definition is unchanged") {
  config::Config file = load(checkout_toml());
  State st;
  AliasState& as = st.functions["checkout"].aliases["prod"];
  as.override_traffic = TrafficMap{{"3", 90}, {"4", 10}};
  as.override_file_hash = alias_file_hash(prod_of(file));

  std::vector<DroppedOverride> dropped;
  config::Config cfg = compose(file, st, &dropped);
  CHECK(dropped.empty());
  CHECK(traffic_of(prod_of(cfg)) == TrafficMap{{"3", 90}, {"4", 10}});

  SUBCASE("once the file's definition changes, the file wins and the override is dropped") {
    config::Config edited = load(checkout_toml("", "\"4\" = 100"));
    config::Config out = compose(edited, st, &dropped);
    CHECK(traffic_of(prod_of(out)) == TrafficMap{{"4", 100}});
    REQUIRE(dropped.size() == 1);
    CHECK(dropped[0].old_map == TrafficMap{{"3", 90}, {"4", 10}});
    CHECK(dropped[0].new_map == TrafficMap{{"4", 100}});
    CHECK_FALSE(st.functions["checkout"].aliases["prod"].override_traffic.has_value());
    CHECK(st.functions["checkout"].aliases["prod"].history.back() ==
          TrafficMap{{"3", 90}, {"4", 10}});
  }
  SUBCASE("a change elsewhere in the file keeps the override") {
    config::Config edited = load(checkout_toml("max_concurrency = 5\n"));
    CHECK(traffic_of(prod_of(compose(edited, st, &dropped))) == TrafficMap{{"3", 90}, {"4", 10}});
    CHECK(dropped.empty());
  }
  SUBCASE("an override naming a version the file removed is dropped") {
    as.override_traffic = TrafficMap{{"9", 100}};
    CHECK(traffic_of(prod_of(compose(file, st, &dropped))) == TrafficMap{{"3", 100}});
    REQUIRE(dropped.size() == 1);
    CHECK(dropped[0].why.find("version 9") != std::string::npos);
  }
  SUBCASE("a saved override the file loader would refuse is dropped, not served") {
    // e.g. written before the API shared the loader's checks: 1e13 once served as 49/51.
    as.override_traffic = TrafficMap{{"3", 1e13}, {"4", 1e12}};
    CHECK(traffic_of(prod_of(compose(file, st, &dropped))) == TrafficMap{{"3", 100}});
    REQUIRE(dropped.size() == 1);
    CHECK(dropped[0].why ==
          "out-of-range weight 10000000000000 for version 3 of alias checkout:prod (expected a "
          "number from 0 to 1000000)");
  }
}

TEST_CASE("API-published versions join the composed config") {
  config::Config file = load(checkout_toml());
  State st;
  PublishedVersion pv;
  pv.endpoints = file.functions[0].latest->endpoints;
  st.functions["checkout"].published[5] = pv;
  config::Config cfg = compose(file, st, nullptr);
  REQUIRE(cfg.functions[0].versions.count(5) == 1);
  CHECK(cfg.functions[0].versions.at(5).endpoints.at(0).address.text == "127.0.0.1:7004");
}

TEST_CASE("a published version may change its endpoints but nothing else") {
  config::Config first = load(checkout_toml());
  State st;
  std::vector<config::Diagnostic> errors;
  check_immutable(first, st, &errors);
  REQUIRE(errors.empty());
  CHECK(st.functions["checkout"].fingerprints.size() == 2);
  CHECK(st.functions["checkout"].next_number == 5);

  SUBCASE("new endpoints are accepted") {
    std::string text = checkout_toml();
    text.replace(text.find("127.0.0.1:7003"), 14, "127.0.0.1:7999");
    check_immutable(load(text), st, &errors);
    CHECK(errors.empty());
  }
  SUBCASE("a changed response_timeout is refused at the version's table") {
    check_immutable(load(checkout_toml("response_timeout = \"5s\"\n")), st, &errors);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].to_string() ==
          "sluice.toml:5:1: version checkout:3 is published and immutable: response_timeout "
          "changed; publish a new version instead");
  }
  SUBCASE("every changed field is named") {
    check_immutable(load(checkout_toml("connect_timeout = \"2s\"\nmax_concurrency = 3\n")), st,
                    &errors);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].message.find("connect_timeout, max_concurrency changed") != std::string::npos);
  }
  SUBCASE("a removed and re-added version must come back unchanged") {
    std::string without = checkout_toml();
    without.replace(
        without.find("[functions.checkout.versions.3]"),
        std::string("[functions.checkout.versions.3]\nendpoints = [\"127.0.0.1:7003\"]\n").size(),
        "");
    without.replace(without.find("\"3\" = 100"), 9, "\"4\" = 100");
    check_immutable(load(without), st, &errors);
    CHECK(errors.empty());
    check_immutable(load(checkout_toml("max_concurrency = 1\n")), st, &errors);
    CHECK(errors.size() == 1);
  }
}

TEST_CASE("version numbers are never reused") {
  config::Config file = load(checkout_toml());
  FunctionState fs;
  CHECK(next_version_number(file.functions[0], fs) == 5);
  fs.fingerprints[9] = {};  // published once, since removed
  CHECK(next_version_number(file.functions[0], fs) == 10);
  fs.next_number = 12;
  CHECK(next_version_number(file.functions[0], fs) == 12);
}

}  // namespace sluice::control
