// Shift plan parsing and the judge (see plan.h).
#include "shift/plan.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <system_error>

#include "config/values.h"

namespace sluice::shift {
namespace {

using nlohmann::json;

std::string trim_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// The checks shared by rate strings and JSON numbers: `v` as written (`percent`: with a '%'),
// `shown` as the user wrote it, `q` the quote to suggest strings with ("" on a command line).
std::optional<double> rate_value(double v, bool percent, const std::string& shown,
                                 const std::string& q, double max_fraction, std::string* why) {
  auto refuse = [&](std::string message) -> std::optional<double> {
    if (why) *why = std::move(message);
    return std::nullopt;
  };
  if (v < 0) return refuse("must not be negative (got " + shown + ")");
  const std::string max_text = q + trim_number(max_fraction * 100) + "%" + q;
  if (percent) {
    if (v / 100.0 > max_fraction)
      return refuse("must be at most " + max_text + " (got " + shown + ")");
    return v / 100.0;
  }
  if (v >= 1) {
    // 1 reads as 1% to some and as 100% to others: make the writer say which.
    const std::string n = trim_number(v);
    std::string suggestion =
        v / 100.0 > max_fraction ? "a percentage up to " + max_text : q + n + "%" + q;
    if (v < 100) suggestion += " or " + trim_number(v / 100.0);
    return refuse(shown + " is ambiguous (" + n + "% or " + trim_number(v * 100) + "%?): write " +
                  suggestion + " for " + n + " percent; a bare number is a fraction below 1");
  }
  return v;
}

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

// A rate or margin: a percent string ("1%"), a fraction string or number below 1 ("0.01", 0.01).
bool read_rate(const json& v, const std::string& field, double max_fraction,
               std::optional<double>& out, PlanError* error) {
  std::optional<double> r;
  std::string why;
  if (v.is_number() && std::isfinite(v.get<double>()))
    r = rate_value(v.get<double>(), false, trim_number(v.get<double>()), "\"", max_fraction, &why);
  else if (v.is_string())
    r = parse_rate(v.get<std::string>(), &why, true, max_fraction);
  else
    why = "expected a percentage such as \"1%\" or a fraction below 1 such as 0.01";
  if (!r) return fail(error, field + ": " + why, field);
  out = r;
  return true;
}

// A rate as parse_plan reads it back: a number below 1, else a percent string ("100%").
json rate_json(double v) {
  if (v < 1) return v;
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v * 100.0);
  return std::string(buf, ec == std::errc() ? end : buf) + "%";
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

}  // namespace

std::optional<double> parse_rate(const std::string& text, std::string* why, bool quote,
                                 double max_fraction) {
  const std::string q = quote ? "\"" : "";
  const bool percent = !text.empty() && text.back() == '%';
  const std::string num = percent ? text.substr(0, text.size() - 1) : text;
  char* end = nullptr;
  double v = num.empty() || std::isspace(static_cast<unsigned char>(num[0]))
                 ? std::nan("")
                 : std::strtod(num.c_str(), &end);
  if (!end || *end != '\0' || !std::isfinite(v)) {
    if (why)
      *why = "expected a percentage such as " + q + "1%" + q +
             " or a fraction below 1 such as 0.01 (got " + q + text + q + ")";
    return std::nullopt;
  }
  return rate_value(v, percent, q + text + q, q, max_fraction, why);
}

std::optional<Plan> parse_plan(const json& body, PlanError* error) {
  static const std::set<std::string> kTop = {
      "to",     "steps",       "every",        "guard",       "compare_to_stable",
      "margin", "pre_traffic", "post_traffic", "hook_timeout"};
  static const std::set<std::string> kGuard = {"max_error_rate", "max_p99", "max_throttle_rate",
                                               "min_requests"};
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
    std::optional<double> r;
    if (!read_rate(body["margin"], "margin", kMaxMargin, r, error)) return std::nullopt;
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
                 " (expected: max_error_rate, max_p99, max_throttle_rate, min_requests)",
             "guard." + it.key());
        return std::nullopt;
      }
    Guard& gd = plan.guard;
    if (g.contains("max_error_rate")) {
      if (g["max_error_rate"].is_null())
        gd.max_error_rate.reset();
      else if (!read_rate(g["max_error_rate"], "guard.max_error_rate", 1.0, gd.max_error_rate,
                          error))
        return std::nullopt;
    }
    if (g.contains("max_throttle_rate") &&
        !read_rate(g["max_throttle_rate"], "guard.max_throttle_rate", 1.0, gd.max_throttle_rate,
                   error))
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
  json guard = {{"min_requests", plan.guard.min_requests}};
  if (plan.guard.max_error_rate)
    guard["max_error_rate"] = rate_json(*plan.guard.max_error_rate);
  else
    guard["max_error_rate"] = nullptr;
  if (plan.guard.max_p99_ms)
    guard["max_p99"] = config::format_duration_ms(static_cast<uint64_t>(*plan.guard.max_p99_ms));
  if (plan.guard.max_throttle_rate)
    guard["max_throttle_rate"] = rate_json(*plan.guard.max_throttle_rate);
  json out = {{"to", plan.to},
              {"steps", steps},
              {"every", config::format_duration_ms(plan.every_ms)},
              {"guard", guard},
              {"compare_to_stable", plan.compare_to_stable},
              {"margin", rate_json(plan.margin)},
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

}  // namespace sluice::shift
