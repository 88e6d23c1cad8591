// The shared traffic-map validation (see traffic.h).
#include "config/traffic.h"

#include <cmath>
#include <cstdint>
#include <sstream>

#include "config/values.h"

namespace sluice::config {

std::string weight_text(double weight) {
  if (std::isfinite(weight) && std::floor(weight) == weight && std::fabs(weight) < 1e15)
    return std::to_string(static_cast<int64_t>(weight));
  std::ostringstream out;
  out << weight;
  return out.str();
}

bool has_version(const FunctionSpec& f, std::string_view number) {
  if (number == kLatest) return f.latest.has_value();
  auto n = parse_version_number(number);
  return n && f.versions.count(*n) != 0;
}

std::string defined_versions(const FunctionSpec& f) {
  std::string names;
  for (const auto& [n, v] : f.versions) names += (names.empty() ? "" : ", ") + std::to_string(n);
  if (f.latest) names += (names.empty() ? "" : ", ") + std::string(kLatest);
  if (names.empty()) return "no versions are defined";
  return "defined: " + names;
}

std::vector<TrafficIssue> check_traffic(const FunctionSpec& f, std::string_view label_view,
                                        const std::vector<TrafficEntry>& entries) {
  using At = TrafficIssue::At;
  const std::string label(label_view);
  std::vector<TrafficIssue> out;
  if (entries.empty()) {
    out.push_back({At::kMap, 0,
                   "alias " + label +
                       " has an empty traffic map (expected at least one version with a weight)"});
    return out;
  }
  const std::string weight_hint =
      "expected a number from 0 to " + std::to_string(static_cast<int64_t>(kMaxTrafficWeight));
  double sum = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const TrafficEntry& e = entries[i];
    if (e.version != kLatest && !parse_version_number(e.version)) {
      out.push_back({At::kKey, i,
                     "traffic key \"" + e.version + "\" of alias " + label +
                         " is not a version (expected a version number such as \"3\", or "
                         "\"$LATEST\")"});
      continue;
    }
    if (!has_version(f, e.version)) {
      out.push_back({At::kKey, i,
                     "alias " + label + " sends traffic to version " + e.version +
                         ", which is not defined (" + defined_versions(f) + ")"});
      continue;
    }
    if (!e.weight) {
      out.push_back({At::kWeight, i,
                     "weight for version " + e.version + " of alias " + label +
                         " is not a number: " + e.type_name + " (" + weight_hint + ")"});
      continue;
    }
    const double w = *e.weight;
    // NaN fails every comparison, so test for the valid range rather than the invalid one.
    if (!(std::isfinite(w) && w >= 0 && w <= kMaxTrafficWeight)) {
      out.push_back({At::kWeight, i,
                     std::string(w < 0 ? "negative" : "out-of-range") + " weight " +
                         (e.weight_text.empty() ? weight_text(w) : e.weight_text) +
                         " for version " + e.version + " of alias " + label + " (" + weight_hint +
                         ")"});
      continue;
    }
    sum += w;
  }
  if (out.empty() && sum <= 0) {
    out.push_back({At::kMap, 0,
                   "alias " + label +
                       " sends no traffic: every weight is 0 (expected at least one weight > 0)"});
  }
  return out;
}

}  // namespace sluice::config
