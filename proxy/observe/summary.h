// Per-series figures for /admin/status and `sluice top`: window rate, error rate, percentiles.
#pragma once

#include <cstdint>

#include <nlohmann/json_fwd.hpp>

#include "observe/stats.h"

namespace sluice::observe {

struct SeriesSummary {
  // Over the sliding window (what a progressive shift judges):
  double requests_per_second = 0;
  double error_rate = 0;  // (5xx + connect failures + timeouts) / requests, each request once
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double p999_ms = 0;
  uint64_t window_requests = 0;
  // Whole run:
  uint64_t requests_total = 0;
  uint64_t errors_total = 0;
  double total_p50_ms = 0;
  double total_p99_ms = 0;
  int64_t in_flight = 0;
};

SeriesSummary summarize(const SeriesSnapshot& series);

// {"requests_per_second":..,"error_rate":..,"p50_ms":..,"p90_ms":..,"p99_ms":..,"p999_ms":..,
//  "window_requests":..,"requests_total":..,"errors_total":..,"total_p50_ms":..,
//  "total_p99_ms":..,"in_flight":..}; ms and req/s rounded to 3 decimals, error_rate to 6.
void to_json(nlohmann::json& out, const SeriesSummary& summary);
void from_json(const nlohmann::json& in, SeriesSummary& summary);  // for clients (`sluice top`)

}  // namespace sluice::observe
