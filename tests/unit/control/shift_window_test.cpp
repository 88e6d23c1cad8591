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
