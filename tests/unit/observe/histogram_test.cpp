// Tests for the log-linear duration histogram: layout, quantile accuracy, Prometheus buckets.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "observe/histogram.h"

using sluice::observe::Histogram;
using sluice::observe::SlotHistogram;

namespace {

// Nearest-rank quantile of sorted samples, the definition Histogram::quantile_us uses.
double exact_quantile(const std::vector<uint64_t>& sorted, double q) {
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  if (rank == 0) rank = 1;
  return static_cast<double>(sorted[rank - 1]);
}

void check_quantiles(const std::vector<uint64_t>& samples) {
  Histogram h;
  for (uint64_t v : samples) h.record(v);
  std::vector<uint64_t> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  REQUIRE(h.count() == samples.size());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    double exact = exact_quantile(sorted, q);
    double got = h.quantile_us(q);
    CAPTURE(q);
    CAPTURE(exact);
    CAPTURE(got);
    CHECK(std::abs(got - exact) / exact <= 0.02);
  }
}

}  // namespace

TEST_CASE("every bucket from 100 us to 60 s is at most 1/64 of its lowest value wide") {
  size_t first = Histogram::bucket_index(100);
  size_t last = Histogram::bucket_index(60'000'000);
  REQUIRE(last < Histogram::kBucketCount);
  for (size_t i = first; i <= last; ++i) {
    CAPTURE(i);
    uint64_t low = Histogram::bucket_low_us(i);
    uint64_t width = Histogram::bucket_width_us(i);
    CHECK(width * 64 <= low);
    CHECK(Histogram::bucket_index(low) == i);
    CHECK(Histogram::bucket_index(low + width - 1) == i);
    if (i + 1 < Histogram::kBucketCount) CHECK(Histogram::bucket_low_us(i + 1) == low + width);
  }
  CHECK(Histogram::bucket_index(UINT64_MAX) == Histogram::kBucketCount - 1);
}

TEST_CASE("quantiles of uniform samples are within 2 percent of the exact ones") {
  std::mt19937_64 rng(42);
  SUBCASE("uniform over 100 us .. 60 s") {
    std::uniform_int_distribution<uint64_t> dist(100, 60'000'000);
    std::vector<uint64_t> samples(100'000);
    for (auto& v : samples) v = dist(rng);
    check_quantiles(samples);
  }
  SUBCASE("uniform over 100 us .. 2 ms") {
    std::uniform_int_distribution<uint64_t> dist(100, 2'000);
    std::vector<uint64_t> samples(100'000);
    for (auto& v : samples) v = dist(rng);
    check_quantiles(samples);
  }
  SUBCASE("log-uniform over 100 us .. 60 s") {
    std::uniform_real_distribution<double> dist(std::log(100.0), std::log(60e6));
    std::vector<uint64_t> samples(100'000);
    for (auto& v : samples) v = static_cast<uint64_t>(std::exp(dist(rng)));
    check_quantiles(samples);
  }
}

TEST_CASE("quantiles of exponential samples are within 2 percent of the exact ones") {
  std::mt19937_64 rng(7);
  for (double mean_us : {500.0, 20'000.0, 3'000'000.0}) {
    CAPTURE(mean_us);
    std::exponential_distribution<double> dist(1.0 / mean_us);
    std::vector<uint64_t> samples(100'000);
    for (auto& v : samples) v = 100 + static_cast<uint64_t>(std::min(dist(rng), 59e6));
    check_quantiles(samples);
  }
}

TEST_CASE("a constant value is reported exactly at every quantile") {
  for (uint64_t v : {100ull, 1'234ull, 987'654ull, 60'000'000ull}) {
    CAPTURE(v);
    Histogram h;
    for (int i = 0; i < 1000; ++i) h.record(v);
    for (double q : {0.0, 0.5, 0.9, 0.99, 0.999, 1.0}) CHECK(h.quantile_us(q) == double(v));
    CHECK(h.count() == 1000);
    CHECK(h.sum_us() == 1000 * v);
    CHECK(h.min_us() == v);
    CHECK(h.max_us() == v);
  }
}

TEST_CASE("an empty histogram reports zeros") {
  Histogram h;
  CHECK(h.count() == 0);
  CHECK(h.quantile_us(0.5) == 0);
  CHECK(h.min_us() == 0);
  CHECK(h.cumulative_prom().back() == 0);
}

TEST_CASE("prometheus buckets count values up to each bound exactly") {
  std::vector<uint64_t> samples;
  for (uint64_t bound : Histogram::kPromBoundsUs)
    for (uint64_t v : {bound - 1, bound, bound + 1}) samples.push_back(v);
  samples.push_back(0);
  samples.push_back(500'000'000);  // beyond the tracked range: +Inf only
  Histogram h;
  for (uint64_t v : samples) h.record(v);
  auto cumulative = h.cumulative_prom();
  for (size_t i = 0; i < Histogram::kPromBoundsUs.size(); ++i) {
    CAPTURE(Histogram::kPromBoundsUs[i]);
    auto expected = std::count_if(samples.begin(), samples.end(),
                                  [&](uint64_t v) { return v <= Histogram::kPromBoundsUs[i]; });
    CHECK(cumulative[i] == static_cast<uint64_t>(expected));
  }
  CHECK(cumulative.back() == samples.size());
  CHECK(h.max_us() == 500'000'000);
}

TEST_CASE("merging histograms equals recording the union") {
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<uint64_t> dist(100, 5'000'000);
  Histogram a, b, both;
  for (int i = 0; i < 5000; ++i) {
    uint64_t v = dist(rng);
    (i % 3 == 0 ? a : b).record(v);
    both.record(v);
  }
  a.merge(b);
  CHECK(a.count() == both.count());
  CHECK(a.sum_us() == both.sum_us());
  CHECK(a.min_us() == both.min_us());
  CHECK(a.max_us() == both.max_us());
  for (double q : {0.5, 0.9, 0.99, 0.999}) CHECK(a.quantile_us(q) == both.quantile_us(q));
  CHECK(a.cumulative_prom() == both.cumulative_prom());

  SUBCASE("a 32-bit slot histogram merges into a 64-bit one exactly") {
    SlotHistogram slot;
    Histogram from_slot;
    for (uint64_t v : {150ull, 2'000ull, 2'000ull, 70'000'000ull}) slot.record(v);
    from_slot.merge(slot);
    CHECK(from_slot.count() == 4);
    CHECK(from_slot.sum_us() == 70'004'150);
    CHECK(from_slot.min_us() == 150);
    CHECK(from_slot.quantile_us(0.5) == slot.quantile_us(0.5));
    CHECK(from_slot.quantile_us(0.5) == doctest::Approx(2'000).epsilon(0.01));
    CHECK(from_slot.cumulative_prom() == slot.cumulative_prom());
  }
  SUBCASE("a copy is equal and independent") {
    Histogram copy = a;
    CHECK(copy.cumulative_prom() == a.cumulative_prom());
    copy.record(1);
    CHECK(copy.count() == a.count() + 1);
    copy.reset();
    CHECK(copy.count() == 0);
    CHECK(copy.sum_us() == 0);
  }
}
