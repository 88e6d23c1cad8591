// The judged window of one series: figures since the later of the step's start and
// `span_ms` ago, computed as differences of the series' whole-run totals sampled once per tick.
// Pure logic over observe snapshots (no uv.h).
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/shift_guard.h"
#include "observe/stats.h"

namespace sluice::control {

// A window's raw figures: what a node of a fleet publishes for the shift leader to add up
// (figures of several nodes cannot be added; their counts and histogram buckets can).
struct WindowCounts {
  uint64_t requests = 0, errors = 0, throttles = 0;
  uint64_t covered_ms = 0;        // how long the window covers (for the request rate)
  std::vector<uint64_t> buckets;  // duration histogram cells (HistogramLayout), or empty
  void add(const WindowCounts& other);
};
Figures figures_of(const WindowCounts& w);
nlohmann::json to_json(const WindowCounts& w);  // buckets sparse: {"index": count}
// Bounded: at most HistogramLayout::kBucketCount cells; anything else is ignored.
WindowCounts window_counts_from_json(const nlohmann::json& j);

class SeriesWindow {
 public:
  explicit SeriesWindow(uint64_t span_ms = 60000) : span_ms_(span_ms) {}

  // Starts a fresh window at `now_ms` from the series' current totals (nullptr: no series yet,
  // so everything it records later counts).
  void reset(uint64_t now_ms, const observe::SeriesSnapshot* current);
  // Records the totals at `now_ms` (call once per tick, time non-decreasing) and returns the
  // figures of the window ending now.
  Figures sample(uint64_t now_ms, const observe::SeriesSnapshot* current);
  uint64_t span_ms() const { return span_ms_; }
  // The raw counts behind the last sample().
  const WindowCounts& last_counts() const { return last_counts_; }

 private:
  struct Point {
    uint64_t at_ms = 0;
    observe::Counts counts;
    observe::Histogram duration;
  };
  uint64_t span_ms_;
  std::deque<Point> points_;  // oldest first; front is the baseline
  WindowCounts last_counts_;
};

// The raw counts of `now` minus `base`.
WindowCounts window_counts(const observe::Counts& now_counts, const observe::Histogram& now_hist,
                           const observe::Counts& base_counts, const observe::Histogram& base_hist,
                           uint64_t covered_ms);

// Figures of `now` minus `base` (counts and duration histogram), over `span_ms` for the rate.
Figures difference(const observe::Counts& now_counts, const observe::Histogram& now_hist,
                   const observe::Counts& base_counts, const observe::Histogram& base_hist,
                   uint64_t span_ms);

}  // namespace sluice::control
