// The judge of a progressive shift (see shift_guard.h).
#include "control/shift_guard.h"

#include <cmath>
#include <cstdio>

namespace sluice::control {

using config::trim_number;
using nlohmann::json;

json to_json(const Figures& f) {
  auto round = [](double v, double scale) { return std::round(v * scale) / scale; };
  return {{"requests", f.requests},
          {"errors", f.errors},
          {"throttles", f.throttles},
          {"error_rate", round(f.error_rate(), 1e6)},
          {"throttle_rate", round(f.throttle_rate(), 1e6)},
          {"p99_ms", round(f.p99_ms, 1e3)},
          {"requests_per_second", round(f.requests_per_second, 1e3)}};
}

Figures figures_from_json(const json& j) {
  Figures f;
  if (!j.is_object()) return f;
  f.requests = j.value("requests", uint64_t{0});
  f.errors = j.value("errors", uint64_t{0});
  f.throttles = j.value("throttles", uint64_t{0});
  f.p99_ms = j.value("p99_ms", 0.0);
  f.requests_per_second = j.value("requests_per_second", 0.0);
  return f;
}

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kHold:
      return "hold";
    case Verdict::kAdvance:
      return "advance";
    case Verdict::kPromote:
      return "promote";
    case Verdict::kRollback:
      return "rollback";
  }
  return "?";
}

Decision judge(const Plan& plan, const Observation& obs) {
  Decision d;
  if (!obs.candidate_can_serve) {
    d.verdict = Verdict::kRollback;
    d.reason = "candidate " + plan.to + " cannot serve: " + obs.cannot_serve_why;
    return d;
  }
  const Figures& c = obs.candidate;
  // min_requests is the floor of every verdict on figures (and one request at least).
  const uint64_t floor = plan.guard.min_requests > 0 ? plan.guard.min_requests : 1;
  const bool stable_judgeable = obs.stable && obs.stable->requests >= floor;

  struct Check {
    const char* guard;
    const char* what;
    std::optional<double> limit;
    double cand;
    double stable;
    bool is_rate;
  };
  const Check checks[] = {
      {"error_rate", "error rate", plan.guard.max_error_rate, c.error_rate(),
       obs.stable ? obs.stable->error_rate() : 0.0, true},
      {"p99", "p99", plan.guard.max_p99_ms, c.p99_ms, obs.stable ? obs.stable->p99_ms : 0.0, false},
      {"throttle_rate", "throttle rate", plan.guard.max_throttle_rate, c.throttle_rate(),
       obs.stable ? obs.stable->throttle_rate() : 0.0, true},
  };
  std::string over;  // below the floor: the first limit the figures exceed so far
  for (const Check& k : checks) {
    if (c.requests == 0 || c.requests >= floor || !k.limit || !(k.cand > *k.limit)) continue;
    auto fmt = [&](double v) { return k.is_rate ? percent_text(v) : ms_text(v); };
    over = "; so far the candidate " + std::string(k.what) + " " + fmt(k.cand) + " is over the " +
           fmt(*k.limit) + " limit";
    break;
  }
  if (c.requests >= floor) {
    for (const Check& k : checks) {
      if (!k.limit || !(k.cand > *k.limit)) continue;
      auto fmt = [&](double v) { return k.is_rate ? percent_text(v) : ms_text(v); };
      const bool stable_bad = stable_judgeable && k.stable > *k.limit;
      std::string text = "candidate " + std::string(k.what) + " " + fmt(k.cand) + " > limit " +
                         fmt(*k.limit) + " over " + std::to_string(c.requests) + " requests";
      if (stable_judgeable)
        text += " (stable " + fmt(k.stable) + (stable_bad ? ": just as bad" : "") + ")";
      else
        text += " (stable: too few requests to compare)";
      if (plan.compare_to_stable && stable_judgeable) {
        const bool worse =
            k.cand > k.stable * (1.0 + plan.margin) && !(k.stable == 0 && k.cand == 0);
        if (!worse) {
          d.notes.push_back(text + "; not worse than stable by more than " +
                            percent_text(plan.margin) + ", so not rolled back");
          continue;
        }
      }
      d.verdict = Verdict::kRollback;
      d.guard = k.guard;
      d.stable_as_bad = stable_bad;
      d.reason = text;
      return d;
    }
  }
  const uint64_t end_ms = obs.step_started_ms + plan.every_ms;
  if (obs.now_ms < end_ms) {
    d.verdict = Verdict::kHold;
    d.reason = "step " + std::to_string(obs.step + 1) +
               " interval: " + std::to_string(end_ms - obs.now_ms) + "ms left" + over;
    return d;
  }
  if (c.requests < floor) {
    d.verdict = Verdict::kHold;
    d.reason = "waiting for min_requests: " + std::to_string(c.requests) + " of " +
               std::to_string(floor) + " candidate requests in the window" + over;
    return d;
  }
  const bool last = obs.step + 1 >= plan.steps.size();
  d.verdict = last ? Verdict::kPromote : Verdict::kAdvance;
  d.reason = "step " + std::to_string(obs.step + 1) + " (" + trim_number(plan.steps[obs.step]) +
             "%) passed: " + std::to_string(c.requests) + " requests, error rate " +
             percent_text(c.error_rate()) + ", p99 " + ms_text(c.p99_ms);
  return d;
}

}  // namespace sluice::control
