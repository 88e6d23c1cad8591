// The judge of a progressive shift: from the candidate's and the stable version's window figures,
// whether to hold, advance, promote or roll back. Pure logic: no uv.h, no clock of its own (time
// is passed in).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/shift_plan.h"

namespace sluice::control {

// The plan is config's (parsed with the file); the engine speaks of it unqualified.
using config::Guard;
using config::ms_text;
using config::parse_plan;
using config::percent_text;
using config::Plan;
using config::PlanError;

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

}  // namespace sluice::control
