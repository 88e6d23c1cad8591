// Tests for the shift plan's JSON form and the judge's hold/advance/promote/rollback rules.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "shift/plan.h"

namespace sluice::shift {
namespace {

using nlohmann::json;

Plan parse_ok(const json& body) {
  PlanError err;
  std::optional<Plan> p = parse_plan(body, &err);
  CAPTURE(err.message);
  REQUIRE(p.has_value());
  return *p;
}

PlanError parse_bad(const json& body) {
  PlanError err;
  CHECK_FALSE(parse_plan(body, &err).has_value());
  return err;
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

TEST_CASE("a plan parses with every field and keeps the given values") {
  Plan p = parse_ok(json::parse(R"({"to":"4","steps":[5,25,100],"every":"1m",
      "guard":{"max_error_rate":"2%","max_p99":"300ms","max_throttle_rate":0.05,
               "min_requests":50},
      "compare_to_stable":true,"margin":"20%","pre_traffic":"http://127.0.0.1:9000/pre",
      "post_traffic":"http://localhost:9000/post","hook_timeout":"2s"})"));
  CHECK(p.to == "4");
  CHECK(p.steps == std::vector<double>{5, 25, 100});
  CHECK(p.every_ms == 60000);
  REQUIRE(p.guard.max_error_rate.has_value());
  CHECK(*p.guard.max_error_rate == doctest::Approx(0.02));
  CHECK(*p.guard.max_p99_ms == doctest::Approx(300));
  CHECK(*p.guard.max_throttle_rate == doctest::Approx(0.05));
  CHECK(p.guard.min_requests == 50);
  CHECK(p.compare_to_stable);
  CHECK(p.margin == doctest::Approx(0.2));
  CHECK(p.pre_traffic == "http://127.0.0.1:9000/pre");
  CHECK(p.post_traffic == "http://localhost:9000/post");
  CHECK(p.hook_timeout_ms == 2000);

  SUBCASE("and round-trips through its JSON form") {
    Plan again = parse_ok(to_json(p));
    CHECK(to_json(again) == to_json(p));
  }
}

TEST_CASE("a plan with only the candidate gets the defaults") {
  Plan p = parse_ok(json{{"to", 4}});
  CHECK(p.to == "4");
  CHECK(p.steps == std::vector<double>{10, 50, 100});
  CHECK(p.every_ms == 60000);
  CHECK(*p.guard.max_error_rate == doctest::Approx(0.01));
  CHECK_FALSE(p.guard.max_p99_ms.has_value());
  CHECK(p.guard.min_requests == 100);
  CHECK_FALSE(p.compare_to_stable);
  CHECK(parse_ok(json{{"to", "LATEST"}}).to == "$LATEST");
}

TEST_CASE("an invalid plan is refused naming the field") {
  struct Bad {
    const char* body;
    const char* field;
  };
  const Bad cases[] = {
      {R"([1])", "body"},
      {R"({})", "to"},
      {R"({"to":"x"})", "to"},
      {R"({"to":"04"})", "to"},
      {R"({"to":"4","stepz":[10]})", "stepz"},
      {R"({"to":"4","steps":[]})", "steps"},
      {R"({"to":"4","steps":[10,"50"]})", "steps[1]"},
      {R"({"to":"4","steps":[50,10]})", "steps[1]"},
      {R"({"to":"4","steps":[0,100]})", "steps[0]"},
      {R"({"to":"4","steps":[10,101]})", "steps[1]"},
      {R"({"to":"4","every":"soon"})", "every"},
      {R"({"to":"4","every":"10ms"})", "every"},
      {R"({"to":"4","guard":[]})", "guard"},
      {R"({"to":"4","guard":{"max_eror_rate":0.1}})", "guard.max_eror_rate"},
      {R"({"to":"4","guard":{"max_error_rate":2}})", "guard.max_error_rate"},
      {R"({"to":"4","guard":{"max_error_rate":"150%"}})", "guard.max_error_rate"},
      {R"({"to":"4","guard":{"max_p99":"fast"}})", "guard.max_p99"},
      {R"({"to":"4","guard":{"max_throttle_rate":-0.1}})", "guard.max_throttle_rate"},
      {R"({"to":"4","guard":{"min_requests":-1}})", "guard.min_requests"},
      {R"({"to":"4","guard":{"min_breach_requests":10}})", "guard.min_breach_requests"},
      {R"({"to":"4","guard":{"max_error_rate":1}})", "guard.max_error_rate"},
      {R"({"to":"4","guard":{"max_error_rate":"1"}})", "guard.max_error_rate"},
      {R"({"to":"4","guard":{"max_throttle_rate":5}})", "guard.max_throttle_rate"},
      {R"({"to":"4","margin":1})", "margin"},
      {R"({"to":"4","margin":"20000%"})", "margin"},
      {R"({"to":"4","compare_to_stable":"yes"})", "compare_to_stable"},
      {R"({"to":"4","margin":-1})", "margin"},
      {R"({"to":"4","pre_traffic":"https://127.0.0.1:1/x"})", "pre_traffic"},
      {R"({"to":"4","post_traffic":"http://example.com/x"})", "post_traffic"},
      {R"({"to":"4","hook_timeout":"5m"})", "hook_timeout"},
  };
  for (const Bad& b : cases) {
    CAPTURE(b.body);
    PlanError e = parse_bad(json::parse(b.body));
    CHECK(e.field == b.field);
    CHECK(e.message.find(b.field) != std::string::npos);
  }
}

TEST_CASE("rates parse as fractions or percentages") {
  CHECK(*parse_rate("1%") == doctest::Approx(0.01));
  CHECK(*parse_rate("0.5%") == doctest::Approx(0.005));
  CHECK(*parse_rate("100%") == doctest::Approx(1.0));
  CHECK(*parse_rate("0.2") == doctest::Approx(0.2));
  CHECK(*parse_rate("0") == 0.0);
  CHECK_FALSE(parse_rate("").has_value());
  CHECK_FALSE(parse_rate("%").has_value());
  CHECK_FALSE(parse_rate("abc%").has_value());
  CHECK_FALSE(parse_rate(" 1%").has_value());
  CHECK_FALSE(parse_rate("-1%").has_value());
  CHECK_FALSE(parse_rate("101%").has_value());

  SUBCASE("a bare number of 1 or more is ambiguous and the error suggests the percentage") {
    std::string why;
    CHECK_FALSE(parse_rate("1", &why).has_value());
    CHECK(why ==
          "1 is ambiguous (1% or 100%?): write 1% or 0.01 for 1 percent; a bare number is "
          "a fraction below 1");
    CHECK_FALSE(parse_rate("1.5", &why).has_value());
    CHECK(why.find("write 1.5% or 0.015") != std::string::npos);
    CHECK_FALSE(parse_rate("1", &why, true).has_value());  // as JSON and TOML need it
    CHECK(why.find("write \"1%\" or 0.01") != std::string::npos);
    CHECK_FALSE(parse_rate("100", &why).has_value());
    CHECK(why.find("write 100% for 100 percent") != std::string::npos);
    CHECK_FALSE(parse_rate("250", &why).has_value());
    CHECK(why.find("write a percentage up to 100%") != std::string::npos);
  }
  SUBCASE("a margin may go above 100% but not as a bare number") {
    CHECK(*parse_rate("150%", nullptr, false, kMaxMargin) == doctest::Approx(1.5));
    CHECK_FALSE(parse_rate("1.5", nullptr, false, kMaxMargin).has_value());
  }
}

TEST_CASE("rates of 100% and margins above it round-trip through the plan's JSON form") {
  Plan p = parse_ok(json::parse(
      R"({"to":"4","guard":{"max_error_rate":"100%","max_throttle_rate":"0.5%"},"margin":"150%"})"));
  CHECK(*p.guard.max_error_rate == 1.0);
  CHECK(p.margin == doctest::Approx(1.5));
  json j = to_json(p);
  CHECK(j["guard"]["max_error_rate"] == "100%");
  CHECK(j["guard"]["max_throttle_rate"] == 0.005);
  CHECK(j["margin"] == "150%");
  CHECK(to_json(parse_ok(j)) == j);
}

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

}  // namespace sluice::shift
