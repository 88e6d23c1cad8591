// Window figures as differences of sampled totals (see window.h).
#include "control/shift_window.h"

#include <cmath>
#include <vector>

namespace sluice::control {

using observe::HistogramLayout;

Figures difference(const observe::Counts& now_counts, const observe::Histogram& now_hist,
                   const observe::Counts& base_counts, const observe::Histogram& base_hist,
                   uint64_t span_ms) {
  auto sub = [](uint64_t a, uint64_t b) { return a > b ? a - b : 0; };
  Figures f;
  f.requests = sub(now_counts.requests(), base_counts.requests());
  f.errors = sub(now_counts.errors, base_counts.errors);
  f.throttles = sub(now_counts.throttles, base_counts.throttles);
  f.requests_per_second = span_ms ? double(f.requests) * 1000.0 / double(span_ms) : 0.0;
  // p99 by nearest rank over the bucket differences, reported as the bucket's midpoint.
  std::vector<uint64_t> counts(HistogramLayout::kBucketCount);
  uint64_t total = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    counts[i] = sub(now_hist.bucket_count(i), base_hist.bucket_count(i));
    total += counts[i];
  }
  if (total > 0) {
    uint64_t rank = static_cast<uint64_t>(std::ceil(0.99 * double(total)));
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      seen += counts[i];
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
  Figures f =
      difference(p.counts, p.duration, base.counts, base.duration, std::max<uint64_t>(covered, 1));
  points_.push_back(std::move(p));
  return f;
}

}  // namespace sluice::control
