// A progressive shift's plan (steps, interval, guard, hooks): parsing and validation of its JSON
// form (the API body, the CLI's flags, the config file's [functions.f.aliases.a.shift] table).
// Pure logic: no uv.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::config {

inline constexpr uint64_t kMinEveryMs = 100;
inline constexpr uint64_t kMaxEveryMs = 24ull * 3600 * 1000;
inline constexpr size_t kMaxSteps = 20;
inline constexpr uint64_t kDefaultHookTimeoutMs = 5000;
// margin is relative (candidate > stable * (1 + margin)), so it may exceed 100%.
inline constexpr double kMaxMargin = 100.0;

struct Guard {
  std::optional<double> max_error_rate = 0.01;  // fraction of requests; unset = not judged
  std::optional<double> max_p99_ms;
  std::optional<double> max_throttle_rate;
  // The floor for every verdict on figures: no advance, promotion or rollback on fewer
  // candidate requests in the window (a candidate that cannot serve at all is not judged on
  // figures and rolls back at once).
  uint64_t min_requests = 100;
};

struct Plan {
  std::string to;                          // candidate version ("4" or "$LATEST")
  std::vector<double> steps{10, 50, 100};  // candidate percent per step, increasing, (0, 100]
  uint64_t every_ms = 60000;               // each step's interval
  Guard guard;
  // true: a guard breach rolls back only if the candidate is worse than the stable version by
  // `margin` (relative: candidate > stable * (1 + margin)); false: any breach rolls back.
  bool compare_to_stable = false;
  double margin = 0.1;
  std::string pre_traffic;   // URL POSTed the plan before the first step; must answer 2xx
  std::string post_traffic;  // URL POSTed the outcome
  uint64_t hook_timeout_ms = kDefaultHookTimeoutMs;
};

// A 400 answer: what is wrong and which field ("guard.max_p99", "steps[1]", ...).
struct PlanError {
  std::string message;
  std::string field;
};

// Parses the POST body of /admin/functions/{f}/aliases/{a}/shift (or the config-file table
// converted to JSON). Durations are strings ("300ms", "1m") or milliseconds as numbers; rates and
// the margin are percent strings ("1%") or fractions below 1 (0.01): a bare 1 or more is refused
// as ambiguous. Unknown fields are refused. nullopt + `error` if invalid.
std::optional<Plan> parse_plan(const nlohmann::json& body, PlanError* error);
nlohmann::json to_json(const Plan& plan);

// A share written as a percentage ("1%" -> 0.01, "0.5%" -> 0.005) or as a fraction below 1
// ("0.01"). A bare number of 1 or more is refused as ambiguous ("1" reads as 1% to some and as
// 100% to others), with a suggestion ("write 1% or 0.01"). nullopt with *why (what is wrong and
// what to write; `quote`: suggest "1%" with quotes, as JSON and TOML need) if malformed or above
// `max_fraction`.
std::optional<double> parse_rate(const std::string& text, std::string* why = nullptr,
                                 bool quote = false, double max_fraction = 1.0);

// "12.3%"; "250.0ms"; "2.5" (at most 6 significant digits, no trailing zeros).
std::string percent_text(double fraction);
std::string ms_text(double ms);
std::string trim_number(double v);

}  // namespace sluice::config
