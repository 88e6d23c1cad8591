// Selection tests: random shares over 10^6 picks, exact windows, sticky stability and
// monotonicity, weight scaling, and the PRNG's determinism.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "routing/selection.h"

namespace sluice::routing {
namespace {

// "k" + std::to_string(i) trips GCC 12's -Wrestrict false positive in Release builds.
std::string numbered(std::string prefix, int i) {
  prefix.append(std::to_string(i));
  return prefix;
}

TEST_CASE("the PRNG is deterministic for a seed and differs between seeds") {
  Rng a(42), b(42), c(43);
  std::vector<uint64_t> xs, ys;
  for (int i = 0; i < 100; ++i) {
    xs.push_back(a.next());
    ys.push_back(b.next());
  }
  CHECK(xs == ys);
  int same = 0;
  Rng d(42);
  for (int i = 0; i < 100; ++i) same += (c.next() == d.next());
  CHECK(same == 0);
  Rng e(7);
  for (int i = 0; i < 1000; ++i) {
    const double u = e.next_unit();
    CHECK(u >= 0.0);
    CHECK(u < 1.0);
  }
}

TEST_CASE("weights scale to small integers with the same ratios") {
  CHECK(scale_weights({90, 10}) == std::vector<uint64_t>{9, 1});
  CHECK(scale_weights({50, 50}) == std::vector<uint64_t>{1, 1});
  CHECK(scale_weights({70, 20, 10}) == std::vector<uint64_t>{7, 2, 1});
  CHECK(scale_weights({0, 100}) == std::vector<uint64_t>{0, 1});
  CHECK(scale_weights({33.3, 66.7}) == std::vector<uint64_t>{333, 667});
  CHECK(scale_weights({0.0001, 1}) == std::vector<uint64_t>{1, 1000});  // never rounds to 0
  CHECK(scale_weights({0, 0}) == std::vector<uint64_t>{0, 0});
  CHECK(scale_weights({}).empty());
}

TEST_CASE("cumulative weights split evenly spread points exactly") {
  Cumulative table({90, 10});
  REQUIRE(table.total() == 10);
  std::vector<int> hits(2);
  for (uint64_t point = 0; point < table.total(); ++point) ++hits[table.pick_scaled(point)];
  CHECK(hits[0] == 9);
  CHECK(hits[1] == 1);

  SUBCASE("the boundary point goes to the later index") {
    CHECK(table.pick_scaled(8) == 0);
    CHECK(table.pick_scaled(9) == 1);
    CHECK(table.pick_scaled(10) == kNoPick);
  }
  SUBCASE("the extreme draws stay in range") {
    CHECK(table.pick(0) == 0);
    CHECK(table.pick(UINT64_MAX) == 1);
  }
}

TEST_CASE("cumulative weights over many versions give each exactly its span") {
  // More than 8 weights takes the binary-search path; zeros sit first, inside and last.
  const std::vector<double> weights = {0, 3, 1, 0, 4, 1, 5, 9, 2, 6, 0};
  const Cumulative table(weights);
  REQUIRE(table.total() == 31);
  std::vector<int> hits(weights.size());
  for (uint64_t point = 0; point < table.total(); ++point) ++hits[table.pick_scaled(point)];
  for (size_t i = 0; i < weights.size(); ++i) {
    CAPTURE(i);
    CHECK(hits[i] == static_cast<int>(weights[i]));
  }
}

TEST_CASE("weight 0 is never picked and 100 always is") {
  Cumulative zero_first({0, 100});
  Cumulative zero_last({100, 0});
  Cumulative zero_middle({50, 0, 50});
  Rng rng(1);
  int wrong = 0;
  for (int i = 0; i < 100000; ++i) {
    const uint64_t draw = rng.next();
    wrong += zero_first.pick(draw) != 1;
    wrong += zero_last.pick(draw) != 0;
    wrong += zero_middle.pick(draw) == 1;
  }
  CHECK(wrong == 0);
  for (uint64_t draw : {uint64_t{0}, uint64_t{1}, UINT64_MAX / 2, UINT64_MAX}) {
    CHECK(zero_first.pick(draw) == 1);
    CHECK(zero_last.pick(draw) == 0);
  }
  CHECK(Cumulative({0, 0}).pick(12345) == kNoPick);
  CHECK(Cumulative().pick(12345) == kNoPick);
}

TEST_CASE("random picks match the configured shares within 0.3 points over 10^6 picks") {
  struct Case {
    std::vector<double> weights;
    uint64_t seed;
  };
  for (const Case& c : {Case{{90, 10}, 1}, Case{{50, 50}, 2}, Case{{70, 20, 10}, 3}}) {
    const Cumulative table(c.weights);
    Rng rng(c.seed);
    std::vector<uint64_t> hits(c.weights.size());
    constexpr int kPicks = 1'000'000;
    for (int i = 0; i < kPicks; ++i) ++hits[table.pick(rng.next())];
    double total = 0;
    for (double w : c.weights) total += w;
    for (size_t i = 0; i < c.weights.size(); ++i) {
      const double want = 100.0 * c.weights[i] / total;
      const double got = 100.0 * static_cast<double>(hits[i]) / kPicks;
      CAPTURE(i);
      CAPTURE(want);
      CAPTURE(got);
      CHECK(std::abs(got - want) <= 0.3);
    }
  }
}

// Counts, for every window of `window` consecutive picks, how often each index appears.
void check_every_window_exact(std::vector<uint64_t> weights) {
  SmoothWrr wrr(weights);
  uint64_t total = 0;
  for (uint64_t w : weights) total += w;
  REQUIRE(wrr.total() == total);
  std::vector<size_t> seq;
  for (uint64_t i = 0; i < total * 20; ++i) seq.push_back(wrr.next());
  size_t out_of_range = 0, bad_windows = 0;
  for (size_t pick : seq) out_of_range += pick >= weights.size();
  REQUIRE(out_of_range == 0);
  // Slide the window one pick at a time, keeping counts.
  std::vector<uint64_t> hits(weights.size());
  for (size_t i = 0; i < total; ++i) ++hits[seq[i]];
  for (size_t start = 0;; ++start) {
    bad_windows += hits != weights;
    if (start + total >= seq.size()) break;
    --hits[seq[start]];
    ++hits[seq[start + total]];
  }
  CHECK(bad_windows == 0);
}

TEST_CASE("exact selection gives every index exactly its weight over every window") {
  check_every_window_exact({9, 1});
  check_every_window_exact({1, 1});
  check_every_window_exact({7, 2, 1});
  check_every_window_exact({5, 1, 1});
  check_every_window_exact({0, 3, 2});
  check_every_window_exact(scale_weights({33.3, 66.7}));
}

TEST_CASE("smooth round robin spreads picks like nginx") {
  SmoothWrr wrr({5, 1, 1});
  std::string seq;
  for (int i = 0; i < 7; ++i) seq += static_cast<char>('a' + wrr.next());
  CHECK(seq == "aabacaa");

  SUBCASE("all zero or empty never picks") {
    SmoothWrr none({0, 0});
    CHECK(none.next() == kNoPick);
    SmoothWrr empty;
    CHECK(empty.next() == kNoPick);
  }
}

TEST_CASE("the same sticky key always lands on the same version") {
  const StickyLayout layout({90, 10}, {1, 0});
  const StickyLayout again({90, 10}, {1, 0});
  std::vector<uint64_t> hits(2);
  int out_of_range = 0, changed = 0;
  for (int i = 0; i < 100000; ++i) {
    const std::string key = numbered("user-", i);
    const double point = sticky_point(key);
    out_of_range += !(point >= 0.0 && point < 1.0);
    const size_t first = layout.pick(point);
    changed += layout.pick(sticky_point(key)) != first;
    changed += again.pick(sticky_point(key)) != first;
    ++hits[first];
  }
  CHECK(out_of_range == 0);
  CHECK(changed == 0);
  // The hash spreads keys evenly, so shares hold for sticky traffic too.
  CHECK(std::abs(static_cast<double>(hits[1]) / 1000.0 - 10.0) <= 0.5);
}

TEST_CASE("the sticky hash is stable across runs and machines") {
  // Golden values: changing the hash would move every sticky user.
  CHECK(sticky_hash("") == UINT64_C(0x6606205d4b816ed9));
  CHECK(sticky_hash("user-1") == UINT64_C(0x40c138adfb8e8371));
  CHECK(sticky_hash("a-much-longer-sticky-key-0123456789") == UINT64_C(0x06b6812974d1df1d));
  CHECK(sticky_hash("user-1") != sticky_hash("user-2"));
  CHECK(sticky_hash("abcdefgh") != sticky_hash("abcdefgi"));
}

TEST_CASE("raising the newer version's weight only moves keys from older to newer") {
  // Index 0 = version 1 (older), index 1 = version 2 (newer); laid out newest first.
  const std::vector<size_t> newest_first = {1, 0};
  const std::vector<std::vector<double>> steps = {{90, 10}, {50, 50}, {0, 100}, {100, 0}};
  std::vector<size_t> previous;
  std::vector<uint64_t> newer_count;
  for (const auto& weights : steps) {
    const StickyLayout layout(weights, newest_first);
    std::vector<size_t> now;
    uint64_t newer = 0;
    for (int i = 0; i < 100000; ++i) {
      now.push_back(layout.pick(sticky_point(numbered("k", i))));
      newer += now.back() == 1;
    }
    newer_count.push_back(newer);
    if (!previous.empty() && weights[1] > 0) {
      // A key on the newer version stays there while its weight only grows.
      int moved_back = 0;
      for (size_t i = 0; i < now.size(); ++i) moved_back += previous[i] == 1 && now[i] != 1;
      CHECK(moved_back == 0);
    }
    previous = std::move(now);
  }
  CHECK(newer_count[0] > 9000);
  CHECK(newer_count[0] < 11000);
  CHECK(newer_count[1] > 49000);
  CHECK(newer_count[1] < 51000);
  CHECK(newer_count[2] == 100000);  // 100 is exact
  CHECK(newer_count[3] == 0);       // 0 moves everyone back
}

TEST_CASE("with three versions, raising the newest only moves keys toward newer versions") {
  // Indices in traffic order: version 3 (newest), 1 (oldest), 2.
  const std::vector<size_t> newest_first = {0, 2, 1};
  const StickyLayout before({10, 70, 20}, newest_first);
  const StickyLayout after({60, 70, 20}, newest_first);
  const std::vector<int> age = {3, 1, 2};  // version number per index
  int moved = 0, moved_older = 0;
  for (int i = 0; i < 100000; ++i) {
    const double point = sticky_point(numbered("u", i));
    const size_t was = before.pick(point), is = after.pick(point);
    moved_older += age[is] < age[was];
    moved += was != is;
  }
  CHECK(moved_older == 0);
  CHECK(moved > 20000);  // the newest version's share went from 10% to 40%
}

TEST_CASE("sticky layout never picks a weight of 0") {
  const StickyLayout layout({0, 100, 0}, {0, 1, 2});
  for (double p : {0.0, 0.25, 0.5, 0.999999, 0.9999999999999999}) CHECK(layout.pick(p) == 1);
  CHECK(StickyLayout({0, 0}, {0, 1}).pick(0.5) == kNoPick);
  CHECK(StickyLayout().pick(0.5) == kNoPick);
}

}  // namespace
}  // namespace sluice::routing
