// Log-linear duration histogram: bucket layout, quantiles and Prometheus buckets.
#include "observe/histogram.h"

#include <cmath>

namespace sluice::observe {
namespace {

constexpr size_t kExactBuckets = size_t{2} << HistogramLayout::kSubBucketBits;

constexpr uint64_t low_of(size_t index) {
  if (index < kExactBuckets) return index;
  size_t shift = (index >> HistogramLayout::kSubBucketBits) - 1;
  return uint64_t{index - (shift << HistogramLayout::kSubBucketBits)} << shift;
}

constexpr std::array<uint8_t, HistogramLayout::kBucketCount> make_prom_index() {
  std::array<uint8_t, HistogramLayout::kBucketCount> table{};
  for (size_t b = 0; b < HistogramLayout::kBucketCount; ++b) {
    size_t i = 0;
    while (i < HistogramLayout::kPromBoundsUs.size() &&
           HistogramLayout::kPromBoundsUs[i] < low_of(b))
      ++i;
    table[b] = static_cast<uint8_t>(i);
  }
  return table;
}

// prom_index() moves at most one bound past kPromIndex[bucket]; that is only right if no bucket
// spans two bounds. Buckets are at most 1/64 of their value wide and bounds are >= 1.2x apart.
static_assert([] {
  for (size_t i = 1; i < HistogramLayout::kPromBoundsUs.size(); ++i)
    if (HistogramLayout::kPromBoundsUs[i] * 64 < HistogramLayout::kPromBoundsUs[i - 1] * 65)
      return false;
  return true;
}());

template <typename T>
uint64_t load(const std::atomic<T>& cell) {
  return cell.load(std::memory_order_relaxed);
}
template <typename T>
void store(std::atomic<T>& cell, uint64_t v) {
  cell.store(static_cast<T>(v), std::memory_order_relaxed);
}

}  // namespace

const std::array<uint8_t, HistogramLayout::kBucketCount> HistogramLayout::kPromIndex =
    make_prom_index();

uint64_t HistogramLayout::bucket_low_us(size_t index) {
  return low_of(index);
}

uint64_t HistogramLayout::bucket_width_us(size_t index) {
  if (index < kExactBuckets) return 1;
  return uint64_t{1} << ((index >> kSubBucketBits) - 1);
}

template <typename Count>
void BasicHistogram<Count>::reset() {
  for (auto& cell : buckets_) store(cell, 0);
  for (auto& cell : prom_) store(cell, 0);
  store(sum_us_, 0);
  store(min_us_, UINT64_MAX);
  store(max_us_, 0);
}

template <typename Count>
void BasicHistogram<Count>::copy_from(const BasicHistogram& other) {
  for (size_t i = 0; i < kBucketCount; ++i) store(buckets_[i], load(other.buckets_[i]));
  for (size_t i = 0; i < kPromBucketCount; ++i) store(prom_[i], load(other.prom_[i]));
  store(sum_us_, load(other.sum_us_));
  store(min_us_, load(other.min_us_));
  store(max_us_, load(other.max_us_));
}

template <typename Count>
uint64_t BasicHistogram<Count>::count() const {
  uint64_t n = 0;
  for (const auto& cell : prom_) n += load(cell);
  return n;
}

template <typename Count>
uint64_t BasicHistogram<Count>::min_us() const {
  uint64_t v = load(min_us_);
  return v == UINT64_MAX ? 0 : v;
}

template <typename Count>
double BasicHistogram<Count>::quantile_us(double q) const {
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

template <typename Count>
std::array<uint64_t, HistogramLayout::kPromBucketCount> BasicHistogram<Count>::cumulative_prom()
    const {
  std::array<uint64_t, kPromBucketCount> out{};
  uint64_t running = 0;
  for (size_t i = 0; i < kPromBucketCount; ++i) {
    running += load(prom_[i]);
    out[i] = running;
  }
  return out;
}

template class BasicHistogram<uint64_t>;
template class BasicHistogram<uint32_t>;

}  // namespace sluice::observe
