// Shift plan parsing and the judge (see plan.h).
#include "shift/plan.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "config/values.h"

namespace sluice::shift {
namespace {

using nlohmann::json;

bool fail(PlanError* error, std::string message, std::string field) {
  if (error) *error = {std::move(message), std::move(field)};
  return false;
}

// A duration: "300ms" / "1m" or a number of milliseconds.
bool read_duration(const json& v, const std::string& field, uint64_t min_ms, uint64_t max_ms,
                   uint64_t& out, PlanError* error) {
  std::optional<uint64_t> ms;
  if (v.is_string()) {
    ms = config::parse_duration_ms(v.get<std::string>());
  } else if (v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0)) {
    ms = v.get<uint64_t>();
  }
  if (!ms) return fail(error, field + " must be a duration such as \"300ms\" or \"1m\"", field);
  if (*ms < min_ms || *ms > max_ms)
    return fail(error,
                field + " must be between " + config::format_duration_ms(min_ms) + " and " +
                    config::format_duration_ms(max_ms) + " (got " +
                    config::format_duration_ms(*ms) + ")",
                field);
  out = *ms;
  return true;
}

bool read_rate(const json& v, const std::string& field, std::optional<double>& out,
               PlanError* error) {
  std::optional<double> r;
  if (v.is_number()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d >= 0 && d <= 1) r = d;
  } else if (v.is_string()) {
    r = parse_rate(v.get<std::string>());
  }
  if (!r)
    return fail(error,
                field + " must be a fraction between 0 and 1 (0.01) or a percentage (\"1%\")",
                field);
  out = r;
  return true;
}

bool read_count(const json& v, const std::string& field, uint64_t& out, PlanError* error) {
  if (!(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0)))
    return fail(error, field + " must be a non-negative integer", field);
  out = v.get<uint64_t>();
  return true;
}

bool read_url(const json& v, const std::string& field, std::string& out, PlanError* error) {
  if (!v.is_string()) return fail(error, field + " must be a URL string", field);
  std::string url = v.get<std::string>();
  if (url.rfind("http://", 0) != 0)
    return fail(error, field + " must be an http:// URL (got \"" + url + "\")", field);
  std::string rest = url.substr(7);
  std::string hostport = rest.substr(0, rest.find('/'));
  std::string why;
  if (hostport.empty() || !config::parse_socket_address(hostport, false, &why))
    return fail(error,
                field + " must name HOST:PORT with an IP address or localhost (" +
                    (why.empty() ? "missing" : why) + ")",
                field);
  out = url;
  return true;
}

std::string trim_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

std::optional<double> parse_rate(const std::string& text) {
  if (text.empty()) return std::nullopt;
  bool percent = text.back() == '%';
  std::string num = percent ? text.substr(0, text.size() - 1) : text;
  if (num.empty()) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(num.c_str(), &end);
  if (!end || *end != '\0' || !std::isfinite(v)) return std::nullopt;
  if (percent) v /= 100.0;
  if (v < 0 || v > 1) return std::nullopt;
  return v;
}

std::optional<Plan> parse_plan(const json& body, PlanError* error) {
  static const std::set<std::string> kTop = {
      "to",     "steps",       "every",        "guard",       "compare_to_stable",
      "margin", "pre_traffic", "post_traffic", "hook_timeout"};
  static const std::set<std::string> kGuard = {"max_error_rate", "max_p99", "max_throttle_rate",
                                               "min_requests", "min_breach_requests"};
  Plan plan;
  if (!body.is_object()) {
    fail(error, "the body must be a JSON object", "body");
    return std::nullopt;
  }
  for (auto it = body.begin(); it != body.end(); ++it)
    if (!kTop.count(it.key())) {
      fail(error,
           "unknown field " + it.key() +
               " (expected: to, steps, every, guard, compare_to_stable, margin, pre_traffic, "
               "post_traffic, hook_timeout)",
           it.key());
      return std::nullopt;
    }
  if (!body.contains("to")) {
    fail(error, "to is required: the candidate version to shift traffic to", "to");
    return std::nullopt;
  }
  const json& to = body["to"];
  if (to.is_number_unsigned() || (to.is_number_integer() && to.get<int64_t>() > 0)) {
    plan.to = std::to_string(to.get<uint64_t>());
  } else if (to.is_string()) {
    plan.to = to.get<std::string>();
    if (plan.to == "LATEST" || plan.to == "latest") plan.to = "$LATEST";
  }
  if (plan.to != "$LATEST" && !config::parse_version_number(plan.to)) {
    fail(error, "to must be a version number or \"$LATEST\"", "to");
    return std::nullopt;
  }
  if (body.contains("steps")) {
    const json& s = body["steps"];
    if (!s.is_array() || s.empty() || s.size() > kMaxSteps) {
      fail(error,
           "steps must be a list of 1 to " + std::to_string(kMaxSteps) +
               " percentages, e.g. [10, 50, 100]",
           "steps");
      return std::nullopt;
    }
    plan.steps.clear();
    for (size_t i = 0; i < s.size(); ++i) {
      const std::string field = "steps[" + std::to_string(i) + "]";
      if (!s[i].is_number() || !std::isfinite(s[i].get<double>()) || s[i].get<double>() <= 0 ||
          s[i].get<double>() > 100) {
        fail(error, field + " must be a percentage in (0, 100]", field);
        return std::nullopt;
      }
      double p = s[i].get<double>();
      if (!plan.steps.empty() && p <= plan.steps.back()) {
        fail(error, field + " must be greater than the step before it (steps only increase)",
             field);
        return std::nullopt;
      }
      plan.steps.push_back(p);
    }
  }
  if (body.contains("every") &&
      !read_duration(body["every"], "every", kMinEveryMs, kMaxEveryMs, plan.every_ms, error))
    return std::nullopt;
  if (body.contains("hook_timeout") &&
      !read_duration(body["hook_timeout"], "hook_timeout", 10, 60000, plan.hook_timeout_ms, error))
    return std::nullopt;
  if (body.contains("compare_to_stable")) {
    if (!body["compare_to_stable"].is_boolean()) {
      fail(error, "compare_to_stable must be true or false", "compare_to_stable");
      return std::nullopt;
    }
    plan.compare_to_stable = body["compare_to_stable"].get<bool>();
  }
  if (body.contains("margin")) {
    const json& m = body["margin"];
    std::optional<double> r;
    if (m.is_number() && std::isfinite(m.get<double>()) && m.get<double>() >= 0 &&
        m.get<double>() <= 100)
      r = m.get<double>();
    else if (m.is_string() && m.get<std::string>().size() > 1 && m.get<std::string>().back() == '%')
      r = parse_rate(m.get<std::string>());  // "10%" -> 0.1
    if (!r) {
      fail(error, "margin must be a non-negative fraction (0.1) or a percentage (\"10%\")",
           "margin");
      return std::nullopt;
    }
    plan.margin = *r;
  }
  if (body.contains("pre_traffic") &&
      !read_url(body["pre_traffic"], "pre_traffic", plan.pre_traffic, error))
    return std::nullopt;
  if (body.contains("post_traffic") &&
      !read_url(body["post_traffic"], "post_traffic", plan.post_traffic, error))
    return std::nullopt;
  if (body.contains("guard")) {
    const json& g = body["guard"];
    if (!g.is_object()) {
      fail(error, "guard must be an object", "guard");
      return std::nullopt;
    }
    for (auto it = g.begin(); it != g.end(); ++it)
      if (!kGuard.count(it.key())) {
        fail(error,
             "unknown field guard." + it.key() +
                 " (expected: max_error_rate, max_p99, max_throttle_rate, min_requests, "
                 "min_breach_requests)",
             "guard." + it.key());
        return std::nullopt;
      }
    Guard& gd = plan.guard;
    if (g.contains("max_error_rate")) {
      if (g["max_error_rate"].is_null())
        gd.max_error_rate.reset();
      else if (!read_rate(g["max_error_rate"], "guard.max_error_rate", gd.max_error_rate, error))
        return std::nullopt;
    }
    if (g.contains("max_throttle_rate") &&
        !read_rate(g["max_throttle_rate"], "guard.max_throttle_rate", gd.max_throttle_rate, error))
      return std::nullopt;
    if (g.contains("max_p99")) {
      uint64_t ms = 0;
      if (!read_duration(g["max_p99"], "guard.max_p99", 1, 3600 * 1000, ms, error))
        return std::nullopt;
      gd.max_p99_ms = static_cast<double>(ms);
    }
    if (g.contains("min_requests") &&
        !read_count(g["min_requests"], "guard.min_requests", gd.min_requests, error))
      return std::nullopt;
    if (g.contains("min_breach_requests")) {
      if (!read_count(g["min_breach_requests"], "guard.min_breach_requests", gd.min_breach_requests,
                      error))
        return std::nullopt;
      if (gd.min_breach_requests == 0) {
        fail(error, "guard.min_breach_requests must be at least 1", "guard.min_breach_requests");
        return std::nullopt;
      }
    }
  }
  return plan;
}

json to_json(const Plan& plan) {
  json steps = json::array();
  for (double s : plan.steps)
    if (std::floor(s) == s)
      steps.push_back(static_cast<int64_t>(s));
    else
      steps.push_back(s);
  json guard = {{"min_requests", plan.guard.min_requests},
                {"min_breach_requests", plan.guard.min_breach_requests}};
  if (plan.guard.max_error_rate)
    guard["max_error_rate"] = *plan.guard.max_error_rate;
  else
    guard["max_error_rate"] = nullptr;
  if (plan.guard.max_p99_ms)
    guard["max_p99"] = config::format_duration_ms(static_cast<uint64_t>(*plan.guard.max_p99_ms));
  if (plan.guard.max_throttle_rate) guard["max_throttle_rate"] = *plan.guard.max_throttle_rate;
  json out = {{"to", plan.to},
              {"steps", steps},
              {"every", config::format_duration_ms(plan.every_ms)},
              {"guard", guard},
              {"compare_to_stable", plan.compare_to_stable},
              {"margin", plan.margin},
              {"hook_timeout", config::format_duration_ms(plan.hook_timeout_ms)}};
  if (!plan.pre_traffic.empty()) out["pre_traffic"] = plan.pre_traffic;
  if (!plan.post_traffic.empty()) out["post_traffic"] = plan.post_traffic;
  return out;
}

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

std::string percent_text(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", fraction * 100.0);
  return buf;
}

std::string ms_text(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fms", ms);
  return buf;
}

Decision judge(const Plan& plan, const Observation& obs) {
  Decision d;
  if (!obs.candidate_can_serve) {
    d.verdict = Verdict::kRollback;
    d.reason = "candidate " + plan.to + " cannot serve: " + obs.cannot_serve_why;
    return d;
  }
  const Figures& c = obs.candidate;
  const bool stable_judgeable =
      obs.stable && obs.stable->requests >= plan.guard.breach_floor() && obs.stable->requests > 0;

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
  if (c.requests > 0 && c.requests >= plan.guard.breach_floor()) {
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
               " interval: " + std::to_string(end_ms - obs.now_ms) + "ms left";
    return d;
  }
  if (c.requests < plan.guard.min_requests) {
    d.verdict = Verdict::kHold;
    d.reason = "waiting for min_requests: " + std::to_string(c.requests) + " of " +
               std::to_string(plan.guard.min_requests) + " candidate requests in the window";
    return d;
  }
  const bool last = obs.step + 1 >= plan.steps.size();
  d.verdict = last ? Verdict::kPromote : Verdict::kAdvance;
  d.reason = "step " + std::to_string(obs.step + 1) + " (" + trim_number(plan.steps[obs.step]) +
             "%) passed: " + std::to_string(c.requests) + " requests, error rate " +
             percent_text(c.error_rate()) + ", p99 " + ms_text(c.p99_ms);
  return d;
}

}  // namespace sluice::shift
