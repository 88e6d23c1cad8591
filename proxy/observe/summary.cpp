// Per-series summaries and their JSON form.
#include "observe/summary.h"

#include <cmath>

#include <nlohmann/json.hpp>

namespace sluice::observe {
namespace {

double ms(double us) {
  return us / 1000.0;
}
double round3(double v) {
  return std::round(v * 1000.0) / 1000.0;
}

}  // namespace

SeriesSummary summarize(const SeriesSnapshot& s) {
  SeriesSummary out;
  out.requests_per_second = s.window_requests_per_second();
  out.error_rate = s.window_error_rate();
  out.p50_ms = ms(s.window_duration.quantile_us(0.5));
  out.p90_ms = ms(s.window_duration.quantile_us(0.9));
  out.p99_ms = ms(s.window_duration.quantile_us(0.99));
  out.p999_ms = ms(s.window_duration.quantile_us(0.999));
  out.window_requests = s.window.requests();
  out.requests_total = s.total.requests();
  out.errors_total = s.total.errors;
  out.total_p50_ms = ms(s.request_duration.quantile_us(0.5));
  out.total_p99_ms = ms(s.request_duration.quantile_us(0.99));
  out.in_flight = s.in_flight;
  return out;
}

void to_json(nlohmann::json& out, const SeriesSummary& s) {
  out = nlohmann::json{{"requests_per_second", round3(s.requests_per_second)},
                       {"error_rate", std::round(s.error_rate * 1e6) / 1e6},
                       {"p50_ms", round3(s.p50_ms)},
                       {"p90_ms", round3(s.p90_ms)},
                       {"p99_ms", round3(s.p99_ms)},
                       {"p999_ms", round3(s.p999_ms)},
                       {"window_requests", s.window_requests},
                       {"requests_total", s.requests_total},
                       {"errors_total", s.errors_total},
                       {"total_p50_ms", round3(s.total_p50_ms)},
                       {"total_p99_ms", round3(s.total_p99_ms)},
                       {"in_flight", s.in_flight}};
}

void from_json(const nlohmann::json& in, SeriesSummary& s) {
  s.requests_per_second = in.value("requests_per_second", 0.0);
  s.error_rate = in.value("error_rate", 0.0);
  s.p50_ms = in.value("p50_ms", 0.0);
  s.p90_ms = in.value("p90_ms", 0.0);
  s.p99_ms = in.value("p99_ms", 0.0);
  s.p999_ms = in.value("p999_ms", 0.0);
  s.window_requests = in.value("window_requests", uint64_t{0});
  s.requests_total = in.value("requests_total", uint64_t{0});
  s.errors_total = in.value("errors_total", uint64_t{0});
  s.total_p50_ms = in.value("total_p50_ms", 0.0);
  s.total_p99_ms = in.value("total_p99_ms", 0.0);
  s.in_flight = in.value("in_flight", int64_t{0});
}

}  // namespace sluice::observe
