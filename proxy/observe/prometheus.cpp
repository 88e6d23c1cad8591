// Renders merged stats as Prometheus text exposition format.
#include "observe/prometheus.h"

#include <charconv>
#include <cmath>

namespace sluice::observe {
namespace {

void append_double(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  // Plain decimals ("0.0001", not "1e-04") for the usual magnitudes: easier to read and to grep.
  double magnitude = std::fabs(value);
  auto format = (magnitude == 0 || (magnitude >= 1e-9 && magnitude < 1e15))
                    ? std::chars_format::fixed
                    : std::chars_format::general;
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, format);
  out.append(buf, ec == std::errc() ? end : buf);
}

template <typename Int>
void append_int(std::string& out, Int value) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, ec == std::errc() ? end : buf);
}

double seconds(uint64_t us) {
  return static_cast<double>(us) / 1e6;
}

// The le="..." label texts of Histogram::kPromBoundsUs, in seconds.
const std::array<std::string, Histogram::kPromBucketCount>& le_labels() {
  static const auto labels = [] {
    std::array<std::string, Histogram::kPromBucketCount> out;
    for (size_t i = 0; i < Histogram::kPromBoundsUs.size(); ++i)
      append_double(out[i], seconds(Histogram::kPromBoundsUs[i]));
    out.back() = "+Inf";
    return out;
  }();
  return labels;
}

void histogram_family(PrometheusWriter& w, const Snapshot& snapshot, std::string_view name,
                      std::string_view help, Histogram SeriesSnapshot::*member) {
  std::string bucket = std::string(name) + "_bucket";
  std::string sum = std::string(name) + "_sum";
  std::string count = std::string(name) + "_count";
  w.family(name, "histogram", help);
  for (const auto& s : snapshot.series) {
    const Histogram& h = s.*member;
    auto cumulative = h.cumulative_prom();
    for (size_t i = 0; i < cumulative.size(); ++i)
      w.sample(bucket,
               {{"function", s.key.function},
                {"alias", s.key.alias},
                {"version", s.key.version},
                {"le", le_labels()[i]}},
               cumulative[i]);
    w.sample(sum,
             {{"function", s.key.function}, {"alias", s.key.alias}, {"version", s.key.version}},
             seconds(h.sum_us()));
    w.sample(count,
             {{"function", s.key.function}, {"alias", s.key.alias}, {"version", s.key.version}},
             cumulative.back());
  }
}

}  // namespace

void PrometheusWriter::append_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

void PrometheusWriter::family(std::string_view name, std::string_view type, std::string_view help) {
  text_ += "# HELP ";
  text_ += name;
  text_ += ' ';
  for (char c : help) {
    if (c == '\\')
      text_ += "\\\\";
    else if (c == '\n')
      text_ += "\\n";
    else
      text_ += c;
  }
  text_ += "\n# TYPE ";
  text_ += name;
  text_ += ' ';
  text_ += type;
  text_ += '\n';
}

void PrometheusWriter::begin_sample(std::string_view name, std::initializer_list<Label> labels) {
  text_ += name;
  if (labels.size() != 0) {
    text_ += '{';
    bool first = true;
    for (const auto& [key, value] : labels) {
      if (!first) text_ += ',';
      first = false;
      text_ += key;
      text_ += "=\"";
      append_label_value(text_, value);
      text_ += '"';
    }
    text_ += '}';
  }
  text_ += ' ';
}

void PrometheusWriter::sample(std::string_view name, std::initializer_list<Label> labels,
                              uint64_t value) {
  begin_sample(name, labels);
  append_int(text_, value);
  text_ += '\n';
}

void PrometheusWriter::sample(std::string_view name, std::initializer_list<Label> labels,
                              int64_t value) {
  begin_sample(name, labels);
  append_int(text_, value);
  text_ += '\n';
}

void PrometheusWriter::sample(std::string_view name, std::initializer_list<Label> labels,
                              double value) {
  begin_sample(name, labels);
  append_double(text_, value);
  text_ += '\n';
}

std::string render_prometheus(const Snapshot& snapshot,
                              const std::function<void(PrometheusWriter&)>& extra) {
  PrometheusWriter w;
  const auto& series = snapshot.series;

  w.family("sluice_requests_total", "counter",
           "Requests answered, by status class; a request counts once whatever its retries.");
  for (const auto& s : series)
    for (size_t c = 0; c < kStatusClassCount; ++c)
      w.sample("sluice_requests_total",
               {{"function", s.key.function},
                {"alias", s.key.alias},
                {"version", s.key.version},
                {"class", status_class_name(c)}},
               s.total.requests_by_class[c]);

  w.family("sluice_upstream_failures_total", "counter",
           "Upstream attempts that failed, by kind (retried attempts included).");
  for (const auto& s : series)
    for (size_t k = 0; k < kFailureKindCount; ++k)
      w.sample("sluice_upstream_failures_total",
               {{"function", s.key.function},
                {"alias", s.key.alias},
                {"version", s.key.version},
                {"kind", failure_kind_name(static_cast<FailureKind>(k + 1))}},
               s.total.failures_by_kind[k]);

  w.family("sluice_throttles_total", "counter", "Requests refused by a concurrency limit.");
  for (const auto& s : series)
    w.sample("sluice_throttles_total",
             {{"function", s.key.function}, {"alias", s.key.alias}, {"version", s.key.version}},
             s.total.throttles);

  w.family("sluice_upstream_retries_total", "counter", "Extra upstream attempts made by retries.");
  for (const auto& s : series)
    w.sample("sluice_upstream_retries_total",
             {{"function", s.key.function}, {"alias", s.key.alias}, {"version", s.key.version}},
             s.total.retries);

  w.family("sluice_in_flight", "gauge", "Requests currently being handled.");
  for (const auto& s : series)
    w.sample("sluice_in_flight",
             {{"function", s.key.function}, {"alias", s.key.alias}, {"version", s.key.version}},
             s.in_flight);

  histogram_family(w, snapshot, "sluice_request_duration_seconds",
                   "Time from request start to the last response byte sent.",
                   &SeriesSnapshot::request_duration);
  histogram_family(w, snapshot, "sluice_upstream_duration_seconds",
                   "Time spent on the upstream exchange.", &SeriesSnapshot::upstream_duration);

  if (extra) extra(w);
  return std::move(w.text());
}

}  // namespace sluice::observe
