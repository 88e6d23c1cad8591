// Log-linear histogram of durations in microseconds: fixed buckets, no allocation, one writer.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace sluice::observe {

// Bucket layout (HdrHistogram-like): values below 128 µs each have their own bucket; above,
// every power-of-two range [2^k, 2^(k+1)) is split into 64 equal sub-buckets, so a bucket is at
// most 1/64 of its lower bound wide. A quantile reports its bucket's midpoint, so its relative
// error is below 1/128 (0.8%) over the tracked range. Values of 2^28 µs (268 s) and more land in
// the last bucket (their sum, min and max stay exact).
//
// Alongside, the histogram keeps exact counts for fixed Prometheus bounds (kPromBoundsUs), so the
// `_bucket{le=...}` series are exact, not approximated from the log-linear buckets.
//
// Threading: one writer thread calls record()/merge()/reset(); any thread may read at the same
// time. Every cell is a std::atomic updated with a relaxed load + store (no locked instruction),
// so reads are race-free; a read racing a write may miss that one value.
// The bucket layout, shared by every counter width.
class HistogramLayout {
 public:
  static constexpr unsigned kSubBucketBits = 6;  // 64 sub-buckets per power of two
  static constexpr unsigned kMaxValueBits = 28;  // values < 2^28 µs tracked exactly to 1/64
  static constexpr size_t kBucketCount =
      ((kMaxValueBits - kSubBucketBits) << kSubBucketBits) + (size_t{1} << kSubBucketBits);
  static constexpr uint64_t kMaxTrackedUs = (uint64_t{1} << kMaxValueBits) - 1;

  // Upper bounds (inclusive, µs) of the exported Prometheus buckets; +Inf is implied.
  static constexpr std::array<uint64_t, 19> kPromBoundsUs = {
      100,    250,    500,     1000,    2500,    5000,     10000,    25000,    50000,   100000,
      250000, 500000, 1000000, 2500000, 5000000, 10000000, 15000000, 30000000, 60000000};
  static constexpr size_t kPromBucketCount = kPromBoundsUs.size() + 1;  // + the +Inf bucket

  static size_t bucket_index(uint64_t us) {
    if (us > kMaxTrackedUs) us = kMaxTrackedUs;
    if (us < (uint64_t{2} << kSubBucketBits)) return static_cast<size_t>(us);
    unsigned shift = static_cast<unsigned>(63 - __builtin_clzll(us)) - kSubBucketBits;
    return (size_t{shift} << kSubBucketBits) + static_cast<size_t>(us >> shift);
  }
  static uint64_t bucket_low_us(size_t index);
  static uint64_t bucket_width_us(size_t index);
  // The Prometheus bucket (index into kPromBoundsUs, or kPromBoundsUs.size() for +Inf) of `us`,
  // given its log-linear bucket.
  static size_t prom_index(size_t bucket, uint64_t us) {
    size_t prom = kPromIndex[bucket];
    if (prom < kPromBoundsUs.size() && us > kPromBoundsUs[prom]) ++prom;
    return prom;
  }

 private:
  // For each log-linear bucket, the first Prometheus bound >= its lowest value.
  static const std::array<uint8_t, kBucketCount> kPromIndex;
};

// Count: uint64_t for whole-run histograms; uint32_t for window slots (half the memory, and a
// slot of a few seconds cannot reach 2^32 requests).
template <typename Count>
class BasicHistogram : public HistogramLayout {
 public:
  BasicHistogram() = default;
  // Copies load each cell (relaxed): a snapshot of a live histogram.
  BasicHistogram(const BasicHistogram& other) { copy_from(other); }
  BasicHistogram& operator=(const BasicHistogram& other) {
    if (this != &other) copy_from(other);
    return *this;
  }

  // Hot path: about a dozen instructions, no locked instruction, no allocation.
  void record(uint64_t us) {
    size_t bucket = bucket_index(us);
    bump(buckets_[bucket]);
    bump(prom_[prom_index(bucket, us)]);
    sum_us_.store(sum_us_.load(std::memory_order_relaxed) + us, std::memory_order_relaxed);
    if (us < min_us_.load(std::memory_order_relaxed)) min_us_.store(us, std::memory_order_relaxed);
    if (us > max_us_.load(std::memory_order_relaxed)) max_us_.store(us, std::memory_order_relaxed);
  }

  // Adds `other` (which may be live in another thread) into this one.
  template <typename OtherCount>
  void merge(const BasicHistogram<OtherCount>& other) {
    for (size_t i = 0; i < kBucketCount; ++i) add(buckets_[i], other.bucket_count(i));
    for (size_t i = 0; i < kPromBucketCount; ++i) add(prom_[i], other.prom_count(i));
    sum_us_.store(sum_us_.load(std::memory_order_relaxed) + other.sum_us(),
                  std::memory_order_relaxed);
    uint64_t other_min = other.min_raw();
    if (other_min < min_us_.load(std::memory_order_relaxed))
      min_us_.store(other_min, std::memory_order_relaxed);
    uint64_t other_max = other.max_us();
    if (other_max > max_us_.load(std::memory_order_relaxed))
      max_us_.store(other_max, std::memory_order_relaxed);
  }
  // Sets every cell to zero (writer only).
  void reset();

  // Number of recorded values (the sum of the Prometheus bucket counts).
  uint64_t count() const;
  uint64_t sum_us() const { return sum_us_.load(std::memory_order_relaxed); }
  uint64_t min_us() const;  // 0 when empty
  uint64_t max_us() const { return max_us_.load(std::memory_order_relaxed); }

  // The value at quantile q in [0, 1] (nearest rank: the ceil(q*n)-th smallest value), in µs, as
  // its bucket's midpoint clamped to [min, max]. 0 when empty.
  double quantile_us(double q) const;

  // Cumulative counts for each kPromBoundsUs bound, then the +Inf bucket (== count()).
  std::array<uint64_t, kPromBucketCount> cumulative_prom() const;

  uint64_t bucket_count(size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }
  uint64_t prom_count(size_t i) const { return prom_[i].load(std::memory_order_relaxed); }
  uint64_t min_raw() const { return min_us_.load(std::memory_order_relaxed); }  // MAX if empty

 private:
  static void bump(std::atomic<Count>& cell) {
    cell.store(cell.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  static void add(std::atomic<Count>& cell, uint64_t n) {
    cell.store(static_cast<Count>(cell.load(std::memory_order_relaxed) + n),
               std::memory_order_relaxed);
  }
  void copy_from(const BasicHistogram& other);

  std::array<std::atomic<Count>, kBucketCount> buckets_{};
  std::array<std::atomic<Count>, kPromBucketCount> prom_{};
  std::atomic<uint64_t> sum_us_{0};
  std::atomic<uint64_t> min_us_{UINT64_MAX};
  std::atomic<uint64_t> max_us_{0};
};

extern template class BasicHistogram<uint64_t>;
extern template class BasicHistogram<uint32_t>;

using Histogram = BasicHistogram<uint64_t>;      // whole run, merged snapshots
using SlotHistogram = BasicHistogram<uint32_t>;  // one window slot of one worker

}  // namespace sluice::observe
