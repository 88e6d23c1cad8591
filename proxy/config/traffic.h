// The one validation of an alias's traffic map, shared by the file loader and the admin API, so
// that a map the file would refuse can never be set at runtime. No toml++ or JSON types here.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"

namespace sluice::config {

// Weights above this are refused: shares are computed from weight / sum, and the selection
// tables scale weights to integers, so unbounded magnitudes would silently distort the split.
inline constexpr double kMaxTrafficWeight = 1'000'000;

// One "version" = weight entry of a traffic map, as the caller read it.
struct TrafficEntry {
  std::string version;           // the key as written: "3", "$LATEST", "v2", ...
  std::optional<double> weight;  // nullopt: the value is not a number
  std::string weight_text;       // the value as written, for messages ("2000001", "1e+13")
  std::string type_name;         // what the value is when it is not a number ("a string")
};

// One problem found. `at` says what the caller should point at: the entry's key, its value, or
// the whole map; `index` is the entry's position in the input (kMap: unused).
struct TrafficIssue {
  enum class At { kKey, kWeight, kMap };
  At at = At::kMap;
  size_t index = 0;
  std::string message;
};

// Checks the traffic map of alias `label` ("checkout:prod") of `function`: at least one entry,
// every key a version number or $LATEST that `function` defines, every weight a finite number
// from 0 to kMaxTrafficWeight, and (when every entry is otherwise valid) at least one > 0.
// Returns every issue, in entry order, the map-level one last; empty means valid.
std::vector<TrafficIssue> check_traffic(const FunctionSpec& function, std::string_view label,
                                        const std::vector<TrafficEntry>& entries);

// A weight as messages show it: integral values without a fraction, others as "%g" would.
std::string weight_text(double weight);

// True if `function` defines version `number` ("3" or "$LATEST").
bool has_version(const FunctionSpec& function, std::string_view number);
// "defined: 3, 4, $LATEST" or "no versions are defined".
std::string defined_versions(const FunctionSpec& function);

}  // namespace sluice::config
