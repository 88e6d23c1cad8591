// Log-linear duration histogram: bucket layout, merging, quantiles and Prometheus buckets.
#include "observe/histogram.h"

#include <cmath>

namespace sluice::observe {
namespace {

constexpr std::array<uint8_t, Histogram::kBucketCount> make_prom_index() {
  std::array<uint8_t, Histogram::kBucketCount> table{};
  for (size_t b = 0; b < Histogram::kBucketCount; ++b) {
    uint64_t low = b < (size_t{2} << Histogram::kSubBucketBits)
                       ? b
                       : (b - (((b >> Histogram::kSubBucketBits) - 1) << Histogram::kSubBucketBits))
                             << ((b >> Histogram::kSubBucketBits) - 1);
    size_t i = 0;
    while (i < Histogram::kPromBoundsUs.size() && Histogram::kPromBoundsUs[i] < low) ++i;
    table[b] = static_cast<uint8_t>(i);
  }
  return table;
}

uint64_t load(const std::atomic<uint64_t>& cell) {
  return cell.load(std::memory_order_relaxed);
}
void store(std::atomic<uint64_t>& cell, uint64_t v) {
  cell.store(v, std::memory_order_relaxed);
}

}  // namespace

const std::array<uint8_t, Histogram::kBucketCount> Histogram::kPromIndex = make_prom_index();

// record() bumps at most one bound past kPromIndex[bucket]; that is only right if no bucket
// spans two bounds. Buckets are at most 1/64 of their value wide and bounds are >= 1.2x apart.
static_assert([] {
  for (size_t i = 1; i < Histogram::kPromBoundsUs.size(); ++i)
    if (Histogram::kPromBoundsUs[i] * 64 < Histogram::kPromBoundsUs[i - 1] * 65) return false;
  return true;
}());

uint64_t Histogram::bucket_low_us(size_t index) {
  if (index < (size_t{2} << kSubBucketBits)) return index;
  size_t shift = (index >> kSubBucketBits) - 1;
  return uint64_t{index - (shift << kSubBucketBits)} << shift;
}

uint64_t Histogram::bucket_width_us(size_t index) {
  if (index < (size_t{2} << kSubBucketBits)) return 1;
  return uint64_t{1} << ((index >> kSubBucketBits) - 1);
}

void Histogram::merge(const Histogram& other) {
  for (size_t i = 0; i < kBucketCount; ++i)
    store(buckets_[i], load(buckets_[i]) + load(other.buckets_[i]));
  for (size_t i = 0; i < kPromBucketCount; ++i)
    store(prom_[i], load(prom_[i]) + load(other.prom_[i]));
  store(sum_us_, load(sum_us_) + load(other.sum_us_));
  uint64_t other_min = load(other.min_us_);
  if (other_min < load(min_us_)) store(min_us_, other_min);
  uint64_t other_max = load(other.max_us_);
  if (other_max > load(max_us_)) store(max_us_, other_max);
}

void Histogram::reset() {
  for (auto& cell : buckets_) store(cell, 0);
  for (auto& cell : prom_) store(cell, 0);
  store(sum_us_, 0);
  store(min_us_, UINT64_MAX);
  store(max_us_, 0);
}

void Histogram::copy_from(const Histogram& other) {
  for (size_t i = 0; i < kBucketCount; ++i) store(buckets_[i], load(other.buckets_[i]));
  for (size_t i = 0; i < kPromBucketCount; ++i) store(prom_[i], load(other.prom_[i]));
  store(sum_us_, load(other.sum_us_));
  store(min_us_, load(other.min_us_));
  store(max_us_, load(other.max_us_));
}

uint64_t Histogram::count() const {
  uint64_t n = 0;
  for (const auto& cell : prom_) n += load(cell);
  return n;
}

uint64_t Histogram::min_us() const {
  uint64_t v = load(min_us_);
  return v == UINT64_MAX ? 0 : v;
}

double Histogram::quantile_us(double q) const {
  // Count from the buckets themselves so a concurrent writer cannot make the rank unreachable.
  uint64_t total = 0;
  for (const auto& cell : buckets_) total += load(cell);
  if (total == 0) return 0;
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  size_t bucket = kBucketCount - 1;
  for (size_t i = 0; i < kBucketCount; ++i) {
    seen += load(buckets_[i]);
    if (seen >= rank) {
      bucket = i;
      break;
    }
  }
  double value = static_cast<double>(bucket_low_us(bucket)) +
                 static_cast<double>(bucket_width_us(bucket) - 1) / 2.0;
  double lo = static_cast<double>(min_us());
  double hi = static_cast<double>(max_us());
  if (value < lo) value = lo;
  if (value > hi) value = hi;
  return value;
}

std::array<uint64_t, Histogram::kPromBucketCount> Histogram::cumulative_prom() const {
  std::array<uint64_t, kPromBucketCount> out{};
  uint64_t running = 0;
  for (size_t i = 0; i < kPromBucketCount; ++i) {
    running += load(prom_[i]);
    out[i] = running;
  }
  return out;
}

}  // namespace sluice::observe
