// Passive health and version-aware failover, without a socket: consecutive failures eject an
// endpoint for a doubling time under the ejection cap, successes reset the streaks, and an alias
// whose picked version cannot serve gives its share to the others in proportion.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/loader.h"
#include "routing/health.h"
#include "routing/table.h"

namespace sluice::routing {
namespace {

struct Pool {
  std::vector<std::unique_ptr<EndpointHealth>> owned;
  std::vector<EndpointHealth*> eps;
  explicit Pool(size_t n) {
    for (size_t i = 0; i < n; ++i) {
      owned.push_back(std::make_unique<EndpointHealth>());
      eps.push_back(owned.back().get());
    }
  }
  bool fail(size_t i, const config::OutlierSpec& spec, uint64_t now,
            Outcome o = Outcome::kFailure) {
    return record_outcome(*eps[i], eps.data(), eps.size(), spec, o, now);
  }
};

}  // namespace

TEST_CASE("consecutive failures eject an endpoint for a time that doubles up to the cap") {
  config::OutlierSpec spec;  // 5 in a row, 30 s base, 300 s max, 50%
  Pool p(2);
  for (int i = 0; i < 4; ++i) CHECK_FALSE(p.fail(0, spec, 1000));
  CHECK(p.eps[0]->usable(1000));
  CHECK(p.fail(0, spec, 1000));  // the fifth
  CHECK_FALSE(p.eps[0]->usable(1000));
  CHECK(p.eps[0]->usable(1000 + 30000));
  CHECK(p.eps[0]->ejections_total == 1);

  SUBCASE("a success in between resets the streak") {
    Pool q(2);
    for (int i = 0; i < 4; ++i) q.fail(0, spec, 1000);
    q.fail(0, spec, 1000, Outcome::kSuccess);
    for (int i = 0; i < 4; ++i) CHECK_FALSE(q.fail(0, spec, 1000));
    CHECK(q.eps[0]->usable(1000));
  }
  SUBCASE("the next ejection lasts twice as long, and never more than the cap") {
    uint64_t now = 1000 + 30000;
    for (int i = 0; i < 5; ++i) p.fail(0, spec, now);
    CHECK_FALSE(p.eps[0]->usable(now + 59999));
    CHECK(p.eps[0]->usable(now + 60000));
    for (int round = 0; round < 6; ++round) {
      now = p.eps[0]->ejected_until_ms.load();
      for (int i = 0; i < 5; ++i) p.fail(0, spec, now);
    }
    CHECK(p.eps[0]->ejected_until_ms.load() - now == 300000);
  }
  SUBCASE("5xx answers eject on their own streak") {
    Pool q(2);
    for (int i = 0; i < 4; ++i) CHECK_FALSE(q.fail(1, spec, 5, Outcome::k5xx));
    CHECK(q.fail(1, spec, 5, Outcome::k5xx));
  }
  SUBCASE("a trigger set to 0 never ejects") {
    config::OutlierSpec off = spec;
    off.consecutive_failures = 0;
    Pool q(1);
    for (int i = 0; i < 100; ++i) CHECK_FALSE(q.fail(0, off, 5));
  }
}

TEST_CASE("at most max_ejection_percent of a version is ejected, but always at least one") {
  config::OutlierSpec spec;
  spec.consecutive_failures = 1;
  SUBCASE("a single endpoint may be ejected: a dead canary is taken out") {
    Pool p(1);
    CHECK(p.fail(0, spec, 1));
  }
  SUBCASE("50% of four: two, not three") {
    Pool p(4);
    CHECK(p.fail(0, spec, 1));
    CHECK(p.fail(1, spec, 1));
    CHECK_FALSE(p.fail(2, spec, 1));
    CHECK(p.eps[2]->usable(1));
  }
  SUBCASE("0%: still one") {
    spec.max_ejection_percent = 0;
    Pool p(3);
    CHECK(p.fail(0, spec, 1));
    CHECK_FALSE(p.fail(1, spec, 1));
  }
}

TEST_CASE("an operator's drain or a failed check makes an endpoint unusable") {
  EndpointHealth h;
  CHECK(h.usable(0));
  h.admin = uint8_t(AdminState::kDrain);
  CHECK_FALSE(h.usable(0));
  h.admin = uint8_t(AdminState::kReady);
  h.checked_up = false;
  CHECK_FALSE(h.usable(0));
  AdminState s;
  CHECK(parse_admin_state("maint", &s));
  CHECK(s == AdminState::kMaint);
  CHECK_FALSE(parse_admin_state("up", &s));
}

TEST_CASE("a version that cannot serve gives its share of the alias to the others") {
  config::LoadResult r = config::load_string(R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:1"]
[functions.f.versions.2]
endpoints = ["127.0.0.1:2"]
[functions.f.versions.3]
endpoints = ["127.0.0.1:3"]
[functions.f.aliases.a]
traffic = { "1" = 60, "2" = 30, "3" = 10 }
[[routes]]
target = "f:a"
)",
                                             "t.toml");
  REQUIRE(r.config);
  std::vector<config::Diagnostic> errors;
  auto table = RoutingTable::build(std::move(*r.config), &errors);
  REQUIRE(table);
  const Alias& alias = *table->aliases().front();
  const Version* v3 = table->find_function("f")->find_version("3");
  auto not_3 = [&](const Version& v) { return &v != v3; };
  Rng rng(9);
  std::map<std::string, int> hits;
  for (int i = 0; i < 9000; ++i) ++hits[alias.pick_usable(rng.next(), std::nullopt, not_3)->number];
  CAPTURE(hits);
  CHECK(hits["3"] == 0);
  CHECK(hits["1"] > 5700);  // 60 / 90 of 9000 = 6000
  CHECK(hits["1"] < 6300);
  SUBCASE("a sticky point on the failed version moves to a survivor") {
    int moved = 0;
    for (int i = 0; i < 1000; ++i) {
      const double point = (i + 0.5) / 1000;
      const Version* normal = alias.pick_usable(0, point, [](const Version&) { return true; });
      const Version* failed_over = alias.pick_usable(0, point, not_3);
      CHECK(failed_over != v3);
      moved += normal != failed_over;
    }
    CHECK(moved >= 100);  // version 3's 10% had to move
  }
  SUBCASE("nothing usable: nullptr") {
    CHECK(alias.pick_usable(1, std::nullopt, [](const Version&) { return false; }) == nullptr);
  }
}

}  // namespace sluice::routing
