// Tests for the config-file form of a progressive shift: [functions.f.aliases.a.shift].
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "config/loader.h"
#include "shift/plan.h"

namespace sluice::shift {
namespace {

const char* kHead =
    "[listen]\n"                              // 1
    "address = \"127.0.0.1:0\"\n"             // 2
    "[functions.shop.versions.1]\n"           // 3
    "endpoints = [\"127.0.0.1:9001\"]\n"      // 4
    "[functions.shop.versions.2]\n"           // 5
    "endpoints = [\"127.0.0.1:9002\"]\n"      // 6
    "[functions.shop.aliases.live]\n"         // 7
    "traffic = { \"1\" = 100 }\n"             // 8
    "[functions.shop.aliases.live.shift]\n";  // 9

config::LoadResult load(const std::string& shift_lines) {
  return config::load_string(
      std::string(kHead) + shift_lines + "[[routes]]\ntarget = \"shop:live\"\n", "sluice.toml");
}

}  // namespace

TEST_CASE("a shift table in the file is kept as a plan the API would accept") {
  config::LoadResult r = load(
      "to = \"2\"\n"
      "steps = [10, 50, 100]\n"
      "every = \"1m\"\n"
      "guard = { max_error_rate = \"1%\", max_p99 = \"300ms\", min_requests = 100 }\n");
  CAPTURE(r.errors.size());
  REQUIRE(r.config.has_value());
  const config::AliasSpec& al = r.config->functions[0].aliases[0];
  REQUIRE_FALSE(al.shift_json.empty());
  CHECK(al.shift_pos.line == 9);
  PlanError err;
  std::optional<Plan> plan = parse_plan(nlohmann::json::parse(al.shift_json), &err);
  REQUIRE(plan.has_value());
  CHECK(plan->to == "2");
  CHECK(plan->steps == std::vector<double>{10, 50, 100});
  CHECK(plan->every_ms == 60000);
  CHECK(*plan->guard.max_error_rate == doctest::Approx(0.01));
  CHECK(*plan->guard.max_p99_ms == doctest::Approx(300));
}

TEST_CASE("an alias without a shift table has no plan") {
  config::LoadResult r =
      config::load_string(std::string(kHead).substr(
                              0, std::string(kHead).rfind("[functions.shop.aliases.live.shift]")) +
                              "[[routes]]\ntarget = \"shop:live\"\n",
                          "sluice.toml");
  REQUIRE(r.config.has_value());
  CHECK(r.config->functions[0].aliases[0].shift_json.empty());
}

TEST_CASE("a bad shift table is an error at its line and column") {
  struct Bad {
    const char* lines;
    uint32_t line, column;
    const char* text;
  };
  const Bad cases[] = {
      {"to = \"7\"\n", 10, 6, "shift of alias shop:live goes to version 7, which is not defined"},
      {"to = \"2\"\nevery = \"soon\"\n", 11, 9, "every must be a duration"},
      {"to = \"2\"\nguard = { max_p99 = \"fast\" }\n", 11, 21, "guard.max_p99 must be a duration"},
      {"to = \"2\"\nsteps = [50, 10]\n", 11, 9, "steps[1] must be greater"},
      {"to = \"2\"\nstepz = [10]\n", 11, 9, "unknown field stepz"},
      {"every = \"1m\"\n", 9, 1, "to is required"},
  };
  for (const Bad& b : cases) {
    CAPTURE(b.lines);
    config::LoadResult r = load(b.lines);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].pos.line == b.line);
    CHECK(r.errors[0].pos.column == b.column);
    CHECK(r.errors[0].message.find(b.text) != std::string::npos);
  }
}

TEST_CASE("an ambiguous rate in the file's shift table is an error that suggests the percentage") {
  struct Bad {
    const char* lines;
    uint32_t line, column;
    const char* text;
  };
  const Bad cases[] = {
      {"to = \"2\"\nguard = { max_error_rate = 1 }\n", 11, 28,
       "guard.max_error_rate: 1 is ambiguous (1% or 100%?): write \"1%\" or 0.01 for 1 percent"},
      {"to = \"2\"\nguard = { max_throttle_rate = 5.0 }\n", 11, 31,
       "guard.max_throttle_rate: 5 is ambiguous (5% or 500%?): write \"5%\" or 0.05"},
      {"to = \"2\"\ncompare_to_stable = true\nmargin = 10\n", 12, 10,
       "margin: 10 is ambiguous (10% or 1000%?): write \"10%\" or 0.1"},
      {"to = \"2\"\nguard = { min_breach_requests = 10 }\n", 11, 33,
       "unknown field guard.min_breach_requests"},
  };
  for (const Bad& b : cases) {
    CAPTURE(b.lines);
    config::LoadResult r = load(b.lines);
    REQUIRE(r.errors.size() == 1);
    CAPTURE(r.errors[0].message);
    CHECK(r.errors[0].pos.line == b.line);
    CHECK(r.errors[0].pos.column == b.column);
    CHECK(r.errors[0].message.find(b.text) != std::string::npos);
  }
  SUBCASE("while \"1%\" and 0.01 are the same limit") {
    for (const char* rate : {"\"1%\"", "0.01"}) {
      CAPTURE(rate);
      config::LoadResult r =
          load(std::string("to = \"2\"\nguard = { max_error_rate = ") + rate + " }\n");
      REQUIRE(r.config.has_value());
      std::optional<Plan> plan =
          parse_plan(nlohmann::json::parse(r.config->functions[0].aliases[0].shift_json), nullptr);
      REQUIRE(plan.has_value());
      CHECK(*plan->guard.max_error_rate == doctest::Approx(0.01));
    }
  }
}

}  // namespace sluice::shift
