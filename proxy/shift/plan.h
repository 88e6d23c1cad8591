// A progressive shift's plan (steps, interval, guard, hooks), its JSON form, and the judge that
// decides from the candidate's and the stable version's window figures whether to hold, advance,
// promote or roll back. Pure logic: no uv.h, no clock of its own (time is passed in).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::shift {

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

// What one version did in the judged window.
struct Figures {
  uint64_t requests = 0;
  uint64_t errors = 0;  // 5xx + connect failures + timeouts, each request once
  uint64_t throttles = 0;
  double p99_ms = 0;
  double requests_per_second = 0;
  double error_rate() const { return requests ? double(errors) / double(requests) : 0.0; }
  double throttle_rate() const { return requests ? double(throttles) / double(requests) : 0.0; }
};
nlohmann::json to_json(const Figures& f);
Figures figures_from_json(const nlohmann::json& j);

enum class Verdict { kHold, kAdvance, kPromote, kRollback };
const char* verdict_name(Verdict v);

struct Decision {
  Verdict verdict = Verdict::kHold;
  // Rollback: why ("candidate error rate 20.0% > limit 1.0% (stable 0.0%)"). Hold: what it waits
  // for. Advance/promote: the passing figures in words.
  std::string reason;
  std::string guard;  // rollback on a guard: "error_rate" | "p99" | "throttle_rate"; else ""
  bool stable_as_bad = false;  // the stable version breaches the same limit
  // compare_to_stable: breaches forgiven because the stable version is as bad.
  std::vector<std::string> notes;
};

// What the judge knows at one instant.
struct Observation {
  size_t step = 0;  // index into plan.steps
  uint64_t step_started_ms = 0;
  uint64_t now_ms = 0;
  Figures candidate;
  std::optional<Figures> stable;    // nullopt: no stable figures (no series yet)
  bool candidate_can_serve = true;  // false: version gone or without endpoints
  std::string cannot_serve_why;
};

// The rules: a candidate that cannot serve is rolled back at once. No other verdict is reached on
// fewer than guard.min_requests candidate requests in the window (at least one): with enough, a
// guard breach rolls back at once (compare_to_stable may forgive a breach the stable version
// shares), and a step whose interval has ended advances (promotes, after the last step);
// otherwise it holds.
Decision judge(const Plan& plan, const Observation& obs);

// "12.3%"; "250.0ms".
std::string percent_text(double fraction);
std::string ms_text(double ms);

}  // namespace sluice::shift
