// `sluice shift` client (see shift.h).
#include "cli/shift.h"

#include <poll.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "cli/client.h"
#include "config/loader.h"
#include "config/shift_plan.h"
#include "config/values.h"

namespace sluice::cli {
namespace {

using nlohmann::json;

std::string num_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string figures_text(const json& f) {
  if (!f.is_object()) return "-";
  char buf[160];
  std::snprintf(buf, sizeof buf, "%llu req, err %.2f%%, p99 %.1fms",
                static_cast<unsigned long long>(f.value("requests", uint64_t{0})),
                f.value("error_rate", 0.0) * 100.0, f.value("p99_ms", 0.0));
  return buf;
}

void print_shift(const json& s) {
  std::printf("shift %s:%s -> %s (stable %s): %s, step %s/%s at %s%%\n",
              s.value("function", "?").c_str(), s.value("alias", "?").c_str(),
              s.value("candidate", "?").c_str(), s.value("stable", "?").c_str(),
              s.value("state", "?").c_str(), s["step"].dump().c_str(),
              s["steps_total"].dump().c_str(), num_text(s.value("percent", 0.0)).c_str());
  if (!s.value("reason", "").empty()) std::printf("  %s\n", s.value("reason", "").c_str());
  if (s.contains("window"))
    std::printf("  window: candidate %s | stable %s\n",
                figures_text(s["window"]["candidate"]).c_str(),
                figures_text(s["window"]["stable"]).c_str());
  for (const json& r : s.value("history", json::array()))
    std::printf("  step %s (%s%%): %-11s candidate %s | stable %s\n", r["step"].dump().c_str(),
                num_text(r.value("percent", 0.0)).c_str(), r.value("outcome", "?").c_str(),
                figures_text(r["candidate"]).c_str(), figures_text(r["stable"]).c_str());
}

struct Call {
  std::string admin, token;
  std::optional<cli::ClientResponse> run(const std::string& method, const std::string& target,
                                         const std::string& body, std::string* err) const {
    return cli::http_call(admin, method, target, token, body, err);
  }
};

// The answer's JSON and whether it is a 2xx; prints the one-line reason otherwise.
bool answer_ok(const cli::ClientResponse& r, json& doc) {
  doc = json::parse(r.body, nullptr, false);
  if (r.status >= 200 && r.status < 300 && !doc.is_discarded()) return true;
  std::string reason = !doc.is_discarded() && doc.is_object() && doc.contains("error")
                           ? doc["error"].get<std::string>()
                           : "HTTP " + std::to_string(r.status);
  std::fprintf(stderr, "sluice shift: %s (HTTP %d)\n", reason.c_str(), r.status);
  return false;
}

// Prints a line when the step changes, when the shift starts waiting for requests, and the
// window figures every 5 s; returns the exit code once the shift ends.
int follow(const Call& call, const std::string& target, bool as_json) {
  std::string last_step, last_kind;
  auto unreachable_since = std::chrono::steady_clock::now();
  auto last_figures = std::chrono::steady_clock::now();
  for (;;) {
    std::string err;
    std::optional<cli::ClientResponse> r = call.run("GET", target, "", &err);
    auto now = std::chrono::steady_clock::now();
    if (!r) {
      if (now - unreachable_since > std::chrono::seconds(30)) {
        std::fprintf(stderr, "sluice shift: %s\n", err.c_str());
        return 1;
      }
      ::poll(nullptr, 0, 250);
      continue;
    }
    unreachable_since = now;
    json s;
    if (!answer_ok(*r, s)) return 1;
    const std::string state = s.value("state", "?");
    const bool live = state == "running" || state == "pre_traffic";
    if (live && !as_json) {
      const std::string step = "step " + s["step"].dump() + "/" + s["steps_total"].dump() + ": " +
                               num_text(s.value("percent", 0.0)) + "% to " +
                               s.value("candidate", "?");
      const std::string reason = s.value("reason", "");
      const std::string kind = reason.substr(0, reason.find(':'));
      if (step != last_step) {
        std::printf("%s\n", step.c_str());
        last_step = step;
        last_kind.clear();
        last_figures = now;
      }
      if (kind != last_kind && reason.rfind("waiting", 0) == 0)
        std::printf("  %s\n", reason.c_str());
      last_kind = kind;
      if (now - last_figures >= std::chrono::seconds(5) && s.contains("window")) {
        std::printf("  window: candidate %s | stable %s\n",
                    figures_text(s["window"]["candidate"]).c_str(),
                    figures_text(s["window"]["stable"]).c_str());
        last_figures = now;
      }
      std::fflush(stdout);
    }
    if (!live) {
      if (as_json)
        std::printf("%s\n", s.dump(2).c_str());
      else
        print_shift(s);
      if (state == "promoted") return 0;
      std::fprintf(stderr, "sluice shift: %s: %s\n", state.c_str(), s.value("reason", "").c_str());
      return 1;
    }
    ::poll(nullptr, 0, 200);
  }
}

}  // namespace

std::string shift_value_error(const std::string& name, const std::string& v) {
  if (name == "--steps") {
    std::stringstream ss(v);
    std::string part;
    while (std::getline(ss, part, ',')) {
      if (!part.empty() && part.back() == '%') part.pop_back();
      char* end = nullptr;
      std::strtod(part.c_str(), &end);
      if (part.empty() || !end || *end != '\0')
        return "expected percentages such as 10,50,100 (got " + v + ")";
    }
    return "";
  }
  if (name == "--every" || name == "--hook-timeout")
    return config::parse_duration_ms(v) ? ""
                                        : "expected a duration such as 300ms or 1m (got " + v + ")";
  if (name == "--max-p99")
    return config::parse_duration_ms(v) ? "" : "expected a duration such as 300ms (got " + v + ")";
  if (name == "--min-requests") {
    char* end = nullptr;
    std::strtoull(v.c_str(), &end, 10);
    return v.empty() || !end || *end != '\0' || v[0] == '-' ? "expected a count (got " + v + ")"
                                                            : "";
  }
  if (name == "--max-error-rate" || name == "--max-throttle-rate" || name == "--margin") {
    std::string why;
    return config::parse_rate(v, &why, false, name == "--margin" ? config::kMaxMargin : 1.0) ? ""
                                                                                             : why;
  }
  return "";
}

std::optional<ShiftCall> make_shift_call(const ShiftArgs& args, std::string* error) {
  auto usage = [&](const std::string& message) -> std::optional<ShiftCall> {
    *error = message;
    return std::nullopt;
  };
  const std::vector<std::string>& words = args.words;
  ShiftCall call;
  if (words.empty()) return usage("expected FN:ALIAS, status FN:ALIAS or abort FN:ALIAS");
  const bool verb = words[0] == "status" || words[0] == "abort";
  if (verb && words.size() == 2 && split_target(words[1], call.function, call.alias)) {
    call.verb = words[0];
  } else if (verb) {
    return usage("expected: shift " + words[0] + " FN:ALIAS");
  } else if (split_target(words[0], call.function, call.alias)) {
    call.verb = "start";
    if (words.size() > 1) return usage("unexpected argument '" + words[1] + "'");
  } else {
    return usage("expected FN:ALIAS (e.g. checkout:prod), got " + words[0]);
  }

  // Values are checked by shift_value_error as they are read; they are sent as written (the
  // API reads "1%" and "0.01" the same way).
  json& body = call.body;
  body = json::object();
  json guard = json::object();
  if (!args.to.empty())
    body["to"] = args.to == "LATEST" || args.to == "latest" ? "$LATEST" : args.to;
  if (!args.steps.empty()) {
    json steps = json::array();
    std::stringstream ss(args.steps);
    std::string part;
    while (std::getline(ss, part, ',')) {
      if (!part.empty() && part.back() == '%') part.pop_back();
      steps.push_back(std::strtod(part.c_str(), nullptr));
    }
    body["steps"] = steps;
  }
  if (!args.every.empty()) body["every"] = args.every;
  if (!args.hook_timeout.empty()) body["hook_timeout"] = args.hook_timeout;
  if (!args.max_error_rate.empty()) guard["max_error_rate"] = args.max_error_rate;
  if (!args.max_throttle_rate.empty()) guard["max_throttle_rate"] = args.max_throttle_rate;
  if (!args.max_p99.empty()) guard["max_p99"] = args.max_p99;
  if (!args.min_requests.empty())
    guard["min_requests"] = std::strtoull(args.min_requests.c_str(), nullptr, 10);
  if (!args.margin.empty()) body["margin"] = args.margin;
  if (args.compare_to_stable) body["compare_to_stable"] = true;
  if (!args.pre_traffic.empty()) body["pre_traffic"] = args.pre_traffic;
  if (!args.post_traffic.empty()) body["post_traffic"] = args.post_traffic;
  if (!guard.empty()) body["guard"] = guard;
  call.wait = args.wait;

  if (call.verb != "start") {
    if (!body.empty() || call.wait)
      return usage("shift " + call.verb + " takes FN:ALIAS and the client options only");
    return call;
  }
  if (!body.contains("to")) return usage("--to VERSION is required");
  return call;
}

int run_shift(const ShiftCall& sc, const ClientOptions& options) {
  const bool as_json = options.json;
  const std::string& f = sc.function;
  const std::string& a = sc.alias;
  std::string err;
  Call call;
  if (!options.resolve(&call.admin, &call.token, &err)) {
    std::fprintf(stderr, "sluice shift: %s\n", err.c_str());
    return 1;
  }
  const std::string target = "/admin/functions/" + f + "/aliases/" + a + "/shift";

  if (sc.verb == "status" || sc.verb == "abort") {
    std::optional<cli::ClientResponse> r =
        call.run(sc.verb == "status" ? "GET" : "DELETE", target, "", &err);
    if (!r) {
      std::fprintf(stderr, "sluice shift: %s\n", err.c_str());
      return 1;
    }
    json doc;
    if (!answer_ok(*r, doc)) return 1;
    if (as_json)
      std::printf("%s\n", doc.dump(2).c_str());
    else
      print_shift(doc);
    return 0;
  }

  std::optional<cli::ClientResponse> r = call.run("POST", target, sc.body.dump(), &err);
  if (!r) {
    std::fprintf(stderr, "sluice shift: %s\n", err.c_str());
    return 1;
  }
  json doc;
  if (!answer_ok(*r, doc)) return 1;
  if (!sc.wait) {
    if (as_json)
      std::printf("%s\n", doc.dump(2).c_str());
    else if (doc.value("state", "") == "pre_traffic")
      std::printf("shift of %s:%s to %s accepted: %s\n", f.c_str(), a.c_str(),
                  doc.value("candidate", "?").c_str(), doc.value("reason", "").c_str());
    else
      std::printf("shift of %s:%s to %s started from stable %s: step 1/%s at %s%%, every %s\n",
                  f.c_str(), a.c_str(), doc.value("candidate", "?").c_str(),
                  doc.value("stable", "?").c_str(), doc["steps_total"].dump().c_str(),
                  num_text(doc.value("percent", 0.0)).c_str(),
                  doc["plan"].value("every", "?").c_str());
    return 0;
  }
  if (!as_json)
    std::printf("shift of %s:%s to %s %s\n", f.c_str(), a.c_str(),
                doc.value("candidate", "?").c_str(),
                doc.value("state", "") == "pre_traffic"
                    ? "accepted: waiting for the pre_traffic hook"
                    : ("started from stable " + doc.value("stable", "?")).c_str());
  return follow(call, target, as_json);
}

}  // namespace sluice::cli
