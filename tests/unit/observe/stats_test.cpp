// Tests for per-worker series counters, the sliding window, and the cross-worker merge.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "observe/stats.h"

using namespace sluice::observe;

namespace {
constexpr WindowSpec kWindow{6000, 10};
}

TEST_CASE("a request counts once by status class with its failure and retries") {
  Series s({"f", "live", "2"}, kWindow);
  s.begin();
  s.begin();
  CHECK(s.snapshot(0).in_flight == 2);
  s.end(200, 1500, 1200, FailureKind::kNone, 0, 10);
  s.end(502, 3000, 2900, FailureKind::kConnectFailed, 2, 20);
  s.attempt_failed(FailureKind::kReset, 20);
  s.throttled(30);

  SeriesSnapshot snap = s.snapshot(100);
  CHECK(snap.in_flight == 0);
  CHECK(snap.total.requests() == 2);
  CHECK(snap.total.requests_by_class[1] == 1);
  CHECK(snap.total.requests_by_class[4] == 1);
  CHECK(snap.total.failures_by_kind[0] == 1);  // connect_failed
  CHECK(snap.total.failures_by_kind[2] == 1);  // reset
  CHECK(snap.total.retries == 2);
  CHECK(snap.total.throttles == 1);
  CHECK(snap.total.errors == 1);
  CHECK(snap.request_duration.count() == 2);
  CHECK(snap.request_duration.sum_us() == 4500);
  CHECK(snap.upstream_duration.sum_us() == 4100);
  CHECK(snap.window.requests() == 2);
  CHECK(snap.window.throttles == 1);
}

TEST_CASE("status classes and label names map as documented") {
  CHECK(status_class_index(101) == 0);
  CHECK(status_class_index(204) == 1);
  CHECK(status_class_index(304) == 2);
  CHECK(status_class_index(499) == 3);
  CHECK(status_class_index(599) == 4);
  CHECK(status_class_index(0) == 4);
  CHECK(status_class_index(600) == 4);
  CHECK(status_class_name(1) == "2xx");
  CHECK(failure_kind_name(FailureKind::kBadResponse) == "bad_response");
}

TEST_CASE("error rate counts 5xx, connect failures and timeouts once per request") {
  Series s({"f", "a", "1"}, kWindow);
  for (int i = 0; i < 7; ++i) s.end(200, 1000, 900, FailureKind::kNone, 0, 1000);
  s.end(503, 1000, kNoUpstream, FailureKind::kNone, 0, 1000);
  s.end(502, 1000, 900, FailureKind::kConnectFailed, 0, 1000);  // 5xx and connect: one error
  s.end(200, 1000, 900, FailureKind::kReset, 1, 1000);          // retried, recovered: no error
  SeriesSnapshot snap = s.snapshot(2000);
  CHECK(snap.total.errors == 2);
  CHECK(snap.error_rate() == doctest::Approx(0.2));
  CHECK(snap.window_error_rate() == doctest::Approx(0.2));
  CHECK(snap.upstream_duration.count() == 9);  // the 503 never reached an upstream
}

TEST_CASE("window counts drop out 60 seconds after their slot") {
  Series s({"f", "a", "1"}, kWindow);
  s.end(200, 1'000'000, 900, FailureKind::kNone, 0, 1'000);  // slot 0: a slow request
  s.end(500, 1'000, 900, FailureKind::kNone, 0, 30'000);     // slot 5: a fast one

  CHECK(s.snapshot(59'999).window.requests() == 2);
  SeriesSnapshot at60 = s.snapshot(60'000);
  CHECK(at60.window.requests() == 1);
  CHECK(at60.window.requests_by_class[4] == 1);
  CHECK(at60.window_duration.quantile_us(0.99) == 1'000);
  CHECK(at60.request_duration.quantile_us(0.99) == 1'000'000);  // the whole run keeps it
  CHECK(s.snapshot(89'999).window.requests() == 1);
  CHECK(s.snapshot(90'000).window.requests() == 0);
  CHECK(s.snapshot(90'000).total.requests() == 2);

  SUBCASE("a slot reused after wrapping starts from zero") {
    s.end(200, 2'000, 900, FailureKind::kNone, 0, 61'000);  // slot 10 reuses slot 0's storage
    SeriesSnapshot snap = s.snapshot(61'000);
    CHECK(snap.window.requests() == 2);
    CHECK(snap.window_duration.max_us() == 2'000);
    CHECK(snap.total.requests() == 3);
  }
  SUBCASE("time far in the future empties the window") {
    s.end(200, 2'000, 900, FailureKind::kNone, 0, 10'000'000);
    CHECK(s.snapshot(10'000'000).window.requests() == 1);
    CHECK(s.snapshot(10'060'000).window.requests() == 0);
  }
}

TEST_CASE("a reader whose clock lags the worker's still sees the newest slot") {
  Series s({"f", "a", "1"}, kWindow);
  s.end(200, 1'000, 900, FailureKind::kNone, 0, 6'000);  // slot 1 by the worker's clock
  CHECK(s.snapshot(5'999).window.requests() == 1);       // the reader is still in slot 0
  CHECK(s.snapshot(4'000).total.requests() == 1);
}

TEST_CASE("window request rate divides by the span the window covers") {
  Series s({"f", "a", "1"}, kWindow);
  SUBCASE("traffic for longer than the window") {
    for (uint64_t t = 0; t < 120'000; t += 100) s.end(200, 1000, 900, FailureKind::kNone, 0, t);
    SeriesSnapshot snap = s.snapshot(119'999);  // slots 10..19: 60'000..119'999
    CHECK(snap.window.requests() == 600);
    CHECK(snap.window_ms == 59'999);
    CHECK(snap.window_requests_per_second() == doctest::Approx(10.0).epsilon(0.001));
  }
  SUBCASE("traffic that started 20 s ago") {
    for (uint64_t t = 100'000; t < 120'000; t += 100)
      s.end(200, 1000, 900, FailureKind::kNone, 0, t);
    SeriesSnapshot snap = s.snapshot(120'000);
    CHECK(snap.window.requests() == 200);
    CHECK(snap.window_ms == 20'000);
    CHECK(snap.window_requests_per_second() == doctest::Approx(10.0));
  }
}

TEST_CASE("series pointers stay valid while more series are added") {
  WorkerStats w(kWindow);
  Series* first = w.series("f", "live", "1");
  REQUIRE(first != nullptr);
  for (int i = 0; i < 200; ++i) w.series("f", "live", std::to_string(i + 2));
  CHECK(w.series("f", "live", "1") == first);
  CHECK(first->key().version == "1");
  CHECK(w.list().size() == 201);
  // Keys are not confused by separators inside names.
  CHECK(w.series("f", "a", "") != w.series("f", "", "a"));
}

TEST_CASE("merging several workers gives exact sums per series") {
  Registry reg(3, kWindow);
  for (size_t i = 0; i < reg.worker_count(); ++i) {
    Series* v1 = reg.worker(i).series("f", "live", "1");
    Series* v2 = reg.worker(i).series("f", "live", "2");
    for (size_t n = 0; n < 100 * (i + 1); ++n) {
      v1->begin();
      v1->end(200, 1000 + n, 500, FailureKind::kNone, 0, 5000);
    }
    for (size_t n = 0; n < 10 * (i + 1); ++n) {
      v2->begin();
      v2->end(n % 2 ? 504 : 200, 2000, 1900, n % 2 ? FailureKind::kTimeout : FailureKind::kNone, 1,
              5000);
    }
    v2->begin();  // one still in flight per worker
  }
  reg.worker(2).series("g", "beta", "7")->throttled(5000);

  Snapshot snap = reg.merged(6000);
  REQUIRE(snap.series.size() == 3);
  CHECK(snap.series[0].key.version == "1");  // sorted by key
  const SeriesSnapshot* v1 = snap.find("f", "live", "1");
  const SeriesSnapshot* v2 = snap.find("f", "live", "2");
  const SeriesSnapshot* g = snap.find("g", "beta", "7");
  REQUIRE(v1 != nullptr);
  REQUIRE(v2 != nullptr);
  REQUIRE(g != nullptr);
  CHECK(v1->total.requests() == 600);
  CHECK(v1->total.requests_by_class[1] == 600);
  CHECK(v1->request_duration.count() == 600);
  uint64_t expected_sum = 0;
  for (uint64_t i = 0; i < 3; ++i)
    for (uint64_t n = 0; n < 100 * (i + 1); ++n) expected_sum += 1000 + n;
  CHECK(v1->request_duration.sum_us() == expected_sum);
  CHECK(v1->in_flight == 0);
  CHECK(v2->total.requests() == 60);
  CHECK(v2->total.requests_by_class[4] == 30);
  CHECK(v2->total.failures_by_kind[1] == 30);  // timeout
  CHECK(v2->total.retries == 60);
  CHECK(v2->error_rate() == doctest::Approx(0.5));
  CHECK(v2->in_flight == 3);
  CHECK(v2->window.requests() == 60);
  CHECK(v2->window_duration.count() == 60);
  CHECK(g->total.throttles == 1);
  CHECK(g->total.requests() == 0);
  CHECK(snap.find("f", "live", "3") == nullptr);
}

TEST_CASE("a reader merging while a worker records sees exact sums at the end") {
  Registry reg(2, kWindow);
  constexpr uint64_t kRequests = 200'000;
  std::atomic<bool> done{false};

  std::thread worker([&] {
    Series* a = reg.worker(0).series("f", "live", "1");
    Series* b = nullptr;
    for (uint64_t i = 0; i < kRequests; ++i) {
      uint64_t now_ms = i / 10;  // 20 s of traffic: several window slots rotate meanwhile
      if (i == kRequests / 2) b = reg.worker(0).series("f", "live", "2");  // added mid-read
      Series* s = (b != nullptr && i % 2) ? b : a;
      s->begin();
      s->end(i % 100 == 0 ? 503 : 200, 100 + i % 5000, 50, FailureKind::kNone, 0, now_ms);
    }
    done.store(true, std::memory_order_release);
  });

  uint64_t last_total = 0;
  int reads = 0;
  bool monotonic = true;
  for (; reads < 100'000 && !done.load(std::memory_order_acquire); ++reads) {
    Snapshot snap = reg.merged(kRequests / 10);
    uint64_t total = 0;
    for (const auto& s : snap.series) total += s.total.requests();
    if (total < last_total) monotonic = false;
    last_total = total;
  }
  worker.join();
  CAPTURE(reads);
  CHECK(monotonic);

  Snapshot snap = reg.merged(kRequests / 10);
  REQUIRE(snap.series.size() == 2);
  uint64_t total = 0, errors = 0, histogram = 0;
  for (const auto& s : snap.series) {
    total += s.total.requests();
    errors += s.total.errors;
    histogram += s.request_duration.count();
    CHECK(s.in_flight == 0);
  }
  CHECK(total == kRequests);
  CHECK(errors == kRequests / 100);
  CHECK(histogram == kRequests);
}
