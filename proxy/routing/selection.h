// Weighted selection primitives: a per-worker PRNG, cumulative weights for random picks, smooth
// weighted round robin for exact shares, and the newest-first layout for sticky keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace sluice::routing {

inline constexpr size_t kNoPick = static_cast<size_t>(-1);

// xoshiro256** (Blackman/Vigna): fast, 256-bit state, good statistical quality. Not for secrets.
// One per worker; never shared between threads.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  Rng();  // seeded from std::random_device
  uint64_t next();
  // A uniform double in [0,1) with 53 random bits.
  double next_unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t s_[4];
};

// Turns configured weights (non-negative doubles, e.g. 90 / 10 or 33.3 / 66.7) into small
// integers with the same ratios: multiplied by 1000, rounded (a positive weight never rounds to
// 0), then divided by their gcd. {90, 10} -> {9, 1}; {0, 100} -> {0, 1}.
std::vector<uint64_t> scale_weights(const std::vector<double>& weights);

// Precomputed cumulative weights for random picks: O(log n), no allocation per pick.
// A weight of 0 is never picked; with one positive weight it is always picked.
class Cumulative {
 public:
  Cumulative() = default;
  explicit Cumulative(const std::vector<double>& weights);

  // `draw` is a uniform 64-bit random number (e.g. Rng::next()). Returns the index of the picked
  // weight, or kNoPick if every weight is 0.
  size_t pick(uint64_t draw) const;
  // Deterministic form: `point` in [0, total()); each index i owns exactly scaled weight i points.
  size_t pick_scaled(uint64_t point) const;
  uint64_t total() const { return total_; }

 private:
  std::vector<uint64_t> ends_;  // ends_[i] = sum of scaled weights 0..i
  uint64_t total_ = 0;
};

// nginx-style smooth weighted round robin. Over any run of total() consecutive picks, index i is
// picked exactly weight(i) times, spread evenly (5,1,1 -> a a b a c a a). Mutable: one per worker.
class SmoothWrr {
 public:
  SmoothWrr() = default;
  explicit SmoothWrr(std::vector<uint64_t> weights);

  // Index of the next pick, or kNoPick if every weight is 0 (or there are none).
  size_t next();
  uint64_t total() const { return total_; }
  size_t size() const { return weights_.size(); }

 private:
  std::vector<int64_t> weights_;
  std::vector<int64_t> current_;
  int64_t total_ = 0;
};

// Versions laid out over [0,1) newest first, each taking a span equal to its share. Raising the
// newest version's weight only moves points from older versions to it; setting it to 0 moves
// them all back, so sticky users follow canaries and rollbacks predictably.
class StickyLayout {
 public:
  StickyLayout() = default;
  // `weights[i]` is the weight of index i; `newest_first` is a permutation of the indices,
  // newest version first.
  StickyLayout(const std::vector<double>& weights, const std::vector<size_t>& newest_first);

  // `point` in [0,1). Returns the index (into the constructor's `weights`), or kNoPick if every
  // weight is 0.
  size_t pick(double point) const;

 private:
  std::vector<double> ends_;     // upper bound of each span, in layout order; the last is 1.0
  std::vector<size_t> indices_;  // layout position -> index
};

// A stable 64-bit hash (the same on every run and machine) of a sticky key.
uint64_t sticky_hash(std::string_view key);
// The key's point in [0,1) for StickyLayout::pick.
double sticky_point(std::string_view key);

}  // namespace sluice::routing
