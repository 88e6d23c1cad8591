// Prometheus text exposition format (version 0.0.4) for a merged stats snapshot.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "observe/stats.h"

namespace sluice::observe {

// The Content-Type to send with render()'s output.
inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// Appends metric families to a text buffer with HELP/TYPE lines and escaped label values.
// Write each family's samples right after its family() call (families must not interleave).
class PrometheusWriter {
 public:
  using Label = std::pair<std::string_view, std::string_view>;

  // "# HELP name help" and "# TYPE name type" (type: counter, gauge, histogram, untyped).
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, std::initializer_list<Label> labels, uint64_t value);
  void sample(std::string_view name, std::initializer_list<Label> labels, int64_t value);
  void sample(std::string_view name, std::initializer_list<Label> labels, double value);

  std::string& text() { return text_; }

  // Label value escaping: backslash, double quote and newline.
  static void append_label_value(std::string& out, std::string_view value);

 private:
  void begin_sample(std::string_view name, std::initializer_list<Label> labels);
  std::string text_;
};

// Renders every series of `snapshot`: sluice_requests_total{class}, sluice_upstream_failures_total
// {kind}, sluice_throttles_total, sluice_upstream_retries_total, sluice_in_flight, and the
// histograms sluice_request_duration_seconds and sluice_upstream_duration_seconds, each labelled
// function, alias, version. Then calls `extra` (if set) to append more families (reloads, weights,
// build).
std::string render_prometheus(const Snapshot& snapshot,
                              const std::function<void(PrometheusWriter&)>& extra = {});

}  // namespace sluice::observe
