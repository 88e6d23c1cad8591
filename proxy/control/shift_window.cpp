// Window figures as differences of sampled totals (see window.h).
#include "control/shift_window.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

namespace sluice::control {

using observe::HistogramLayout;

WindowCounts window_counts(const observe::Counts& now_counts, const observe::Histogram& now_hist,
                           const observe::Counts& base_counts, const observe::Histogram& base_hist,
                           uint64_t covered_ms) {
  auto sub = [](uint64_t a, uint64_t b) { return a > b ? a - b : 0; };
  WindowCounts w;
  w.requests = sub(now_counts.requests(), base_counts.requests());
  w.errors = sub(now_counts.errors, base_counts.errors);
  w.throttles = sub(now_counts.throttles, base_counts.throttles);
  w.covered_ms = covered_ms;
  w.buckets.resize(HistogramLayout::kBucketCount);
  for (size_t i = 0; i < w.buckets.size(); ++i)
    w.buckets[i] = sub(now_hist.bucket_count(i), base_hist.bucket_count(i));
  return w;
}

void WindowCounts::add(const WindowCounts& o) {
  requests += o.requests;
  errors += o.errors;
  throttles += o.throttles;
  covered_ms = std::max(covered_ms, o.covered_ms);
  if (buckets.size() < o.buckets.size()) buckets.resize(o.buckets.size());
  for (size_t i = 0; i < o.buckets.size(); ++i) buckets[i] += o.buckets[i];
}

Figures figures_of(const WindowCounts& w) {
  Figures f;
  f.requests = w.requests;
  f.errors = w.errors;
  f.throttles = w.throttles;
  f.requests_per_second = w.covered_ms ? double(f.requests) * 1000.0 / double(w.covered_ms) : 0.0;
  // p99 by nearest rank over the buckets, reported as the bucket's midpoint.
  uint64_t total = 0;
  for (uint64_t c : w.buckets) total += c;
  if (total > 0) {
    uint64_t rank = static_cast<uint64_t>(std::ceil(0.99 * double(total)));
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < w.buckets.size(); ++i) {
      seen += w.buckets[i];
      if (seen >= rank) {
        double mid = double(HistogramLayout::bucket_low_us(i)) +
                     double(HistogramLayout::bucket_width_us(i)) / 2.0;
        f.p99_ms = mid / 1000.0;
        break;
      }
    }
  }
  return f;
}

nlohmann::json to_json(const WindowCounts& w) {
  nlohmann::json buckets = nlohmann::json::object();
  for (size_t i = 0; i < w.buckets.size(); ++i)
    if (w.buckets[i]) buckets[std::to_string(i)] = w.buckets[i];
  return {{"requests", w.requests},
          {"errors", w.errors},
          {"throttles", w.throttles},
          {"covered_ms", w.covered_ms},
          {"buckets", buckets}};
}

WindowCounts window_counts_from_json(const nlohmann::json& j) {
  WindowCounts w;
  if (!j.is_object()) return w;
  auto num = [&j](const char* k) -> uint64_t {
    auto it = j.find(k);
    return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
  };
  w.requests = num("requests");
  w.errors = num("errors");
  w.throttles = num("throttles");
  w.covered_ms = num("covered_ms");
  w.buckets.assign(HistogramLayout::kBucketCount, 0);
  auto b = j.find("buckets");
  if (b != j.end() && b->is_object())
    for (const auto& [k, v] : b->items()) {
      char* end = nullptr;
      const unsigned long i = std::strtoul(k.c_str(), &end, 10);
      if (end && *end == '\0' && i < w.buckets.size() && v.is_number_unsigned())
        w.buckets[i] = v.get<uint64_t>();
    }
  return w;
}

Figures difference(const observe::Counts& now_counts, const observe::Histogram& now_hist,
                   const observe::Counts& base_counts, const observe::Histogram& base_hist,
                   uint64_t span_ms) {
  return figures_of(window_counts(now_counts, now_hist, base_counts, base_hist, span_ms));
}

void SeriesWindow::reset(uint64_t now_ms, const observe::SeriesSnapshot* current) {
  points_.clear();
  Point p;
  p.at_ms = now_ms;
  if (current) {
    p.counts = current->total;
    p.duration = current->request_duration;
  }
  points_.push_back(std::move(p));
}

Figures SeriesWindow::sample(uint64_t now_ms, const observe::SeriesSnapshot* current) {
  if (points_.empty()) reset(now_ms, nullptr);
  Point p;
  p.at_ms = now_ms;
  if (current) {
    p.counts = current->total;
    p.duration = current->request_duration;
  } else {
    p.counts = points_.back().counts;
    p.duration = points_.back().duration;
  }
  // Drop baselines that the next one already covers: keep the newest point at or before
  // now - span as the front.
  while (points_.size() >= 2 && points_[1].at_ms + span_ms_ <= now_ms) points_.pop_front();
  const Point& base = points_.front();
  uint64_t covered = now_ms > base.at_ms ? now_ms - base.at_ms : 0;
  last_counts_ = window_counts(p.counts, p.duration, base.counts, base.duration,
                               std::max<uint64_t>(covered, 1));
  points_.push_back(std::move(p));
  return figures_of(last_counts_);
}

}  // namespace sluice::control
