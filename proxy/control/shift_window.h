// The judged window of one series: figures since the later of the step's start and
// `span_ms` ago, computed as differences of the series' whole-run totals sampled once per tick.
// Pure logic over observe snapshots (no uv.h).
#pragma once

#include <cstdint>
#include <deque>

#include "control/shift_guard.h"
#include "observe/stats.h"

namespace sluice::control {

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

 private:
  struct Point {
    uint64_t at_ms = 0;
    observe::Counts counts;
    observe::Histogram duration;
  };
  uint64_t span_ms_;
  std::deque<Point> points_;  // oldest first; front is the baseline
};

// Figures of `now` minus `base` (counts and duration histogram), over `span_ms` for the rate.
Figures difference(const observe::Counts& now_counts, const observe::Histogram& now_hist,
                   const observe::Counts& base_counts, const observe::Histogram& base_hist,
                   uint64_t span_ms);

}  // namespace sluice::control
