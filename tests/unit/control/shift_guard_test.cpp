// Tests for the judge's hold/advance/promote/rollback rules.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "control/shift_guard.h"

namespace sluice::control {
namespace {

using nlohmann::json;

Plan parse_ok(const json& body) {
  PlanError err;
  std::optional<Plan> p = parse_plan(body, &err);
  CAPTURE(err.message);
  REQUIRE(p.has_value());
  return *p;
}

Figures figures(uint64_t requests, uint64_t errors, double p99_ms = 10, uint64_t throttles = 0) {
  Figures f;
  f.requests = requests;
  f.errors = errors;
  f.p99_ms = p99_ms;
  f.throttles = throttles;
  return f;
}

// The issue's example plan with 300 ms steps.
Plan example_plan() {
  return parse_ok(json::parse(R"({"to":"4","steps":[10,50,100],"every":"300ms",
      "guard":{"max_error_rate":0.01,"max_p99":"300ms","max_throttle_rate":0.01,
               "min_requests":100}})"));
}

}  // namespace
TEST_CASE("a step holds until its interval ends, then advances with enough requests") {
  Plan plan = example_plan();
  Observation o;
  o.step = 0;
  o.step_started_ms = 1000;
  o.candidate = figures(500, 0);
  o.stable = figures(4500, 0);

  o.now_ms = 1299;
  Decision d = judge(plan, o);
  CHECK(d.verdict == Verdict::kHold);
  CHECK(d.reason == "step 1 interval: 1ms left");

  o.now_ms = 1300;
  d = judge(plan, o);
  CHECK(d.verdict == Verdict::kAdvance);
  CHECK(d.reason.find("step 1 (10%) passed: 500 requests") == 0);

  SUBCASE("the last step promotes") {
    o.step = 2;
    CHECK(judge(plan, o).verdict == Verdict::kPromote);
  }
}

TEST_CASE("a step with too few candidate requests does not advance") {
  Plan plan = example_plan();
  Observation o;
  o.step_started_ms = 0;
  o.now_ms = 10000;  // long past the interval
  o.candidate = figures(99, 0);
  Decision d = judge(plan, o);
  CHECK(d.verdict == Verdict::kHold);
  CHECK(d.reason == "waiting for min_requests: 99 of 100 candidate requests in the window");
  o.candidate = figures(100, 0);
  CHECK(judge(plan, o).verdict == Verdict::kAdvance);
}

TEST_CASE("a guard breach rolls back at once, mid-step") {
  Plan plan = example_plan();
  Observation o;
  o.step = 1;
  o.step_started_ms = 0;
  o.now_ms = 10;  // the interval has barely begun
  o.stable = figures(1000, 0, 20);

  SUBCASE("error rate") {
    o.candidate = figures(100, 20);
    Decision d = judge(plan, o);
    CHECK(d.verdict == Verdict::kRollback);
    CHECK(d.guard == "error_rate");
    CHECK_FALSE(d.stable_as_bad);
    CHECK(d.reason == "candidate error rate 20.0% > limit 1.0% over 100 requests (stable 0.0%)");
  }
  SUBCASE("p99") {
    o.candidate = figures(100, 0, 450);
    Decision d = judge(plan, o);
    CHECK(d.verdict == Verdict::kRollback);
    CHECK(d.guard == "p99");
    CHECK(d.reason == "candidate p99 450.0ms > limit 300.0ms over 100 requests (stable 20.0ms)");
  }
  SUBCASE("throttle rate") {
    o.candidate = figures(100, 0, 10, 5);
    Decision d = judge(plan, o);
    CHECK(d.verdict == Verdict::kRollback);
    CHECK(d.guard == "throttle_rate");
  }
  SUBCASE("a limit exactly reached is not a breach") {
    o.candidate = figures(100, 1, 300);
    CHECK(judge(plan, o).verdict == Verdict::kHold);
  }
  SUBCASE("no rollback below min_requests, which is the floor of every verdict") {
    o.candidate = figures(99, 99);
    Decision d = judge(plan, o);
    CHECK(d.verdict == Verdict::kHold);
    CHECK(d.reason ==
          "step 2 interval: 290ms left; so far the candidate error rate 100.0% is over the 1.0% "
          "limit");
    o.now_ms = 300;
    d = judge(plan, o);
    CHECK(d.verdict == Verdict::kHold);
    CHECK(d.reason ==
          "waiting for min_requests: 99 of 100 candidate requests in the window; so far the "
          "candidate error rate 100.0% is over the 1.0% limit");
    o.candidate = figures(100, 99);
    CHECK(judge(plan, o).verdict == Verdict::kRollback);
  }
  SUBCASE("without stable figures the breach still rolls back") {
    o.stable.reset();
    o.candidate = figures(100, 20);
    Decision d = judge(plan, o);
    CHECK(d.verdict == Verdict::kRollback);
    CHECK(d.reason.find("(stable: too few requests to compare)") != std::string::npos);
  }
}

TEST_CASE("a candidate that cannot serve is rolled back without waiting for requests") {
  Plan plan = example_plan();
  Observation o;
  o.now_ms = 1;
  o.candidate_can_serve = false;
  o.cannot_serve_why = "version 4 has no endpoints";
  Decision d = judge(plan, o);
  CHECK(d.verdict == Verdict::kRollback);
  CHECK(d.reason == "candidate 4 cannot serve: version 4 has no endpoints");
}

TEST_CASE("a breach the stable version shares is reported as just as bad") {
  Plan plan = example_plan();
  Observation o;
  o.now_ms = 1;
  o.candidate = figures(100, 6);
  o.stable = figures(1000, 50);  // 5%

  SUBCASE("by default it still rolls back") {
    Decision d = judge(plan, o);
    CHECK(d.verdict == Verdict::kRollback);
    CHECK(d.stable_as_bad);
    CHECK(d.reason ==
          "candidate error rate 6.0% > limit 1.0% over 100 requests (stable 5.0%: "
          "just as bad)");
  }
  SUBCASE("compare_to_stable forgives it within the margin") {
    plan.compare_to_stable = true;
    plan.margin = 0.25;  // 6% is not above 5% * 1.25
    Decision d = judge(plan, o);
    CHECK(d.verdict == Verdict::kHold);
    REQUIRE(d.notes.size() == 1);
    CHECK(d.notes[0].find("not worse than stable by more than 25.0%") != std::string::npos);
  }
  SUBCASE("compare_to_stable rolls back when worse than stable by more than the margin") {
    plan.compare_to_stable = true;
    plan.margin = 0.1;  // 6% > 5.5%
    CHECK(judge(plan, o).verdict == Verdict::kRollback);
  }
  SUBCASE("compare_to_stable with a healthy stable rolls back") {
    plan.compare_to_stable = true;
    o.stable = figures(1000, 0);
    Decision d = judge(plan, o);
    CHECK(d.verdict == Verdict::kRollback);
    CHECK_FALSE(d.stable_as_bad);
  }
  SUBCASE("compare_to_stable without enough stable requests falls back to the limit") {
    plan.compare_to_stable = true;
    o.stable = figures(99, 99);  // below min_requests: not compared
    Decision d = judge(plan, o);
    CHECK(d.verdict == Verdict::kRollback);
    CHECK(d.reason.find("(stable: too few requests to compare)") != std::string::npos);
  }
}

TEST_CASE("min_requests 0 still needs one candidate request for a verdict") {
  Plan plan = parse_ok(json::parse(R"({"to":"2","every":"100ms","guard":{"min_requests":0}})"));
  Observation o;
  o.now_ms = 100;
  CHECK(judge(plan, o).verdict == Verdict::kHold);
  o.candidate = figures(1, 1);
  CHECK(judge(plan, o).verdict == Verdict::kRollback);
}

TEST_CASE("an unset guard limit is never judged") {
  Plan plan = parse_ok(json::parse(R"({"to":"2","every":"100ms",
      "guard":{"max_error_rate":null,"min_requests":1}})"));
  Observation o;
  o.now_ms = 100;
  o.candidate = figures(10, 10, 5000, 10);
  CHECK(judge(plan, o).verdict == Verdict::kAdvance);
}

}  // namespace sluice::control
