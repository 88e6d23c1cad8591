// Tests for the judged window: differences of sampled series totals, bounded by span and reset.
#include <doctest/doctest.h>

#include "control/shift_window.h"

namespace sluice::control {
namespace {

// A series snapshot with `ok` 200s and `failed` 500s of `us` each added to `s`.
void add(observe::SeriesSnapshot& s, uint64_t ok, uint64_t failed, uint64_t us) {
  s.total.requests_by_class[1] += ok;
  s.total.requests_by_class[4] += failed;
  s.total.errors += failed;
  for (uint64_t i = 0; i < ok + failed; ++i) s.request_duration.record(us);
}

}  // namespace

TEST_CASE("the window counts only what happened since its reset") {
  observe::SeriesSnapshot s;
  add(s, 1000, 1000, 5000);  // before the shift: not the candidate's problem
  SeriesWindow w(60000);
  w.reset(0, &s);
  add(s, 80, 20, 200000);
  Figures f = w.sample(1000, &s);
  CHECK(f.requests == 100);
  CHECK(f.errors == 20);
  CHECK(f.error_rate() == doctest::Approx(0.2));
  CHECK(f.p99_ms == doctest::Approx(200.0).epsilon(0.01));
  CHECK(f.requests_per_second == doctest::Approx(100.0));
}

TEST_CASE("the window slides: figures older than its span drop out") {
  observe::SeriesSnapshot s;
  SeriesWindow w(2000);
  w.reset(0, nullptr);
  add(s, 0, 50, 1000);  // failures in the first second
  CHECK(w.sample(1000, &s).errors == 50);
  add(s, 100, 0, 1000);
  CHECK(w.sample(2000, &s).errors == 50);
  add(s, 100, 0, 1000);
  Figures f = w.sample(3000, &s);  // window (1000, 3000]: the failures are gone
  CHECK(f.errors == 0);
  CHECK(f.requests == 200);
}

TEST_CASE("a missing series counts as no requests") {
  SeriesWindow w(60000);
  w.reset(0, nullptr);
  Figures f = w.sample(1000, nullptr);
  CHECK(f.requests == 0);
  CHECK(f.p99_ms == 0);
  observe::SeriesSnapshot s;
  add(s, 7, 0, 300);
  CHECK(w.sample(2000, &s).requests == 7);  // series appears after the reset: all of it counts
}

TEST_CASE("p99 over a difference uses nearest rank") {
  observe::SeriesSnapshot base, now;
  add(base, 100, 0, 900000);
  now = base;
  add(now, 99, 0, 1000);
  add(now, 1, 0, 500000);
  Figures f = difference(now.total, now.request_duration, base.total, base.request_duration, 1000);
  CHECK(f.requests == 100);
  CHECK(f.p99_ms == doctest::Approx(1.0).epsilon(0.01));  // rank 99 of 100
  add(now, 1, 0, 500000);
  f = difference(now.total, now.request_duration, base.total, base.request_duration, 1000);
  CHECK(f.p99_ms == doctest::Approx(500.0).epsilon(0.01));  // rank 100 of 101 is slow
}

}  // namespace sluice::control

namespace sluice::control {

TEST_CASE("window counts of several nodes add up to the figures of one window over them all") {
  observe::SeriesSnapshot a, b;
  SeriesWindow wa(60000), wb(60000);
  wa.reset(0, &a);
  wb.reset(0, &b);
  add(a, 95, 5, 10000);    // node a: 5% errors, 10 ms
  add(b, 100, 0, 300000);  // node b: no errors, 300 ms
  wa.sample(1000, &a);
  wb.sample(1000, &b);
  WindowCounts sum = wa.last_counts();
  // Through JSON, as the nodes publish them.
  sum.add(window_counts_from_json(nlohmann::json::parse(to_json(wb.last_counts()).dump())));
  const Figures f = figures_of(sum);
  CHECK(f.requests == 200);
  CHECK(f.errors == 5);
  CHECK(f.error_rate() == doctest::Approx(0.025));
  CHECK(f.p99_ms == doctest::Approx(300.0).epsilon(0.02));  // the slow node's tail shows
  CHECK(f.requests_per_second == doctest::Approx(200.0));
}

TEST_CASE("window counts from JSON ignore what is not theirs") {
  const WindowCounts w = window_counts_from_json(nlohmann::json::parse(
      R"({"requests": 3, "errors": -1, "buckets": {"0": 2, "99999": 5, "x": 1, "1": "7"}})"));
  CHECK(w.requests == 3);
  CHECK(w.errors == 0);
  CHECK(w.buckets.at(0) == 2);
  uint64_t total = 0;
  for (uint64_t c : w.buckets) total += c;
  CHECK(total == 2);
  CHECK(window_counts_from_json(nullptr).requests == 0);
}

}  // namespace sluice::control
