// Weighted selection primitives: xoshiro256**, cumulative weights, smooth WRR, sticky layout.
#include "routing/selection.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace sluice::routing {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

// Final avalanche (the splitmix64/murmur3 finalizer): every input bit affects every output bit.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) s = splitmix64(seed);
}

Rng::Rng() : Rng((static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}()) {}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

std::vector<uint64_t> scale_weights(const std::vector<double>& weights) {
  std::vector<uint64_t> scaled;
  scaled.reserve(weights.size());
  uint64_t g = 0;
  for (double w : weights) {
    uint64_t s = 0;
    if (w > 0 && std::isfinite(w)) {
      // The loader caps weights at 1e6, so this stays far below 2^63.
      s = std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(std::min(w, 1e12) * 1000.0)));
    }
    scaled.push_back(s);
    g = std::gcd(g, s);
  }
  if (g > 1) {
    for (uint64_t& s : scaled) s /= g;
  }
  return scaled;
}

Cumulative::Cumulative(const std::vector<double>& weights) {
  ends_ = scale_weights(weights);
  for (uint64_t& e : ends_) {
    total_ += e;
    e = total_;
  }
}

size_t Cumulative::pick_scaled(uint64_t point) const {
  if (point >= total_) return kNoPick;
  // First index whose end is beyond the point; a zero weight has an empty span and is skipped.
  // Aliases rarely list more than a few versions: a branch-free count beats a binary search.
  if (ends_.size() <= 8) {
    size_t index = 0;
    for (uint64_t end : ends_) index += end <= point;
    return index;
  }
  auto it = std::upper_bound(ends_.begin(), ends_.end(), point);
  return static_cast<size_t>(it - ends_.begin());
}

size_t Cumulative::pick(uint64_t draw) const {
  if (total_ == 0) return kNoPick;
  // Lemire's multiply-high maps a uniform 64-bit draw onto [0, total) without a division.
  const auto point = static_cast<uint64_t>((static_cast<unsigned __int128>(draw) * total_) >> 64);
  return pick_scaled(point);
}

SmoothWrr::SmoothWrr(std::vector<uint64_t> weights) {
  weights_.reserve(weights.size());
  for (uint64_t w : weights) {
    weights_.push_back(static_cast<int64_t>(w));
    total_ += static_cast<int64_t>(w);
  }
  current_.assign(weights_.size(), 0);
}

size_t SmoothWrr::next() {
  size_t best = kNoPick;
  for (size_t i = 0; i < weights_.size(); ++i) {
    if (weights_[i] == 0) continue;
    current_[i] += weights_[i];
    if (best == kNoPick || current_[i] > current_[best]) best = i;
  }
  if (best != kNoPick) current_[best] -= total_;
  return best;
}

StickyLayout::StickyLayout(const std::vector<double>& weights,
                           const std::vector<size_t>& newest_first) {
  double total = 0;
  for (size_t i : newest_first) {
    if (i < weights.size() && weights[i] > 0) total += weights[i];
  }
  if (total <= 0) return;
  double cum = 0;
  for (size_t i : newest_first) {
    if (i >= weights.size() || !(weights[i] > 0)) continue;  // weight 0: no span at all
    cum += weights[i];
    ends_.push_back(cum / total);
    indices_.push_back(i);
  }
  ends_.back() = 1.0;  // no rounding gap at the top: every point in [0,1) lands somewhere
}

size_t StickyLayout::pick(double point) const {
  if (ends_.empty()) return kNoPick;
  auto it = std::upper_bound(ends_.begin(), ends_.end(), point);
  if (it == ends_.end()) --it;  // point >= 1 (caller error): clamp to the oldest span
  return indices_[static_cast<size_t>(it - ends_.begin())];
}

uint64_t sticky_hash(std::string_view key) {
  // Byte-order independent: words are assembled little-endian by hand.
  uint64_t h = 0x243f6a8885a308d3ULL ^ (key.size() * 0x9e3779b97f4a7c15ULL);
  size_t i = 0;
  for (; i + 8 <= key.size(); i += 8) {
    uint64_t w = 0;
    for (size_t b = 0; b < 8; ++b) {
      w |= static_cast<uint64_t>(static_cast<unsigned char>(key[i + b])) << (8 * b);
    }
    h = rotl(h ^ mix64(w), 29) * 0x9fb21c651e98df25ULL;
  }
  uint64_t tail = 0;
  for (size_t b = 0; i + b < key.size(); ++b) {
    tail |= static_cast<uint64_t>(static_cast<unsigned char>(key[i + b])) << (8 * b);
  }
  h = rotl(h ^ mix64(tail ^ 0xff51afd7ed558ccdULL), 29) * 0x9fb21c651e98df25ULL;
  return mix64(h);
}

double sticky_point(std::string_view key) {
  return static_cast<double>(sticky_hash(key) >> 11) * 0x1.0p-53;
}

}  // namespace sluice::routing
