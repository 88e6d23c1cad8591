// Tests for the per-series summary used by /admin/status and `sluice top`.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "observe/summary.h"

using namespace sluice::observe;

TEST_CASE("a summary gives window rate, error rate and percentiles in milliseconds") {
  Series s({"f", "live", "2"}, WindowSpec{6000, 10});
  // 30 s of traffic, 10 requests/s: 98 fast ones and 2 slow 5xx per 100.
  for (uint64_t i = 0; i < 300; ++i) {
    bool slow = i % 100 >= 98;
    s.begin();
    s.end(slow ? 503 : 200, slow ? 800'000 : 2'000, 1'500, FailureKind::kNone, 0, 60'000 + i * 100);
  }
  s.begin();
  SeriesSummary sum = summarize(s.snapshot(90'000));
  CHECK(sum.requests_per_second == doctest::Approx(10.0));
  CHECK(sum.error_rate == doctest::Approx(0.02));
  CHECK(sum.p50_ms == doctest::Approx(2.0).epsilon(0.02));
  CHECK(sum.p90_ms == doctest::Approx(2.0).epsilon(0.02));
  CHECK(sum.p99_ms == doctest::Approx(800.0).epsilon(0.02));
  CHECK(sum.window_requests == 300);
  CHECK(sum.requests_total == 300);
  CHECK(sum.errors_total == 6);
  CHECK(sum.in_flight == 1);

  SUBCASE("it round-trips through JSON") {
    nlohmann::json j = sum;
    CHECK(j["requests_per_second"] == 10.0);
    CHECK(j["error_rate"] == 0.02);
    CHECK(j["in_flight"] == 1);
    SeriesSummary back = j.get<SeriesSummary>();
    CHECK(back.requests_total == 300);
    CHECK(back.p99_ms == doctest::Approx(sum.p99_ms).epsilon(0.001));
  }
}
