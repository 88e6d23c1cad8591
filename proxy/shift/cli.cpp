// `sluice shift` client (see cli.h).
#include "shift/cli.h"

#include <poll.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "admin/cli.h"
#include "config/loader.h"
#include "config/values.h"
#include "shift/plan.h"

namespace sluice::shift {
namespace {

using nlohmann::json;

const char* kUsage =
    "usage:\n"
    "  sluice shift FN:ALIAS --to VERSION [--steps 10,50,100] [--every 1m]\n"
    "               [--max-error-rate 1%] [--max-p99 300ms] [--max-throttle-rate 1%]\n"
    "               [--min-requests 100] [--compare-to-stable [--margin 10%]]\n"
    "               [--pre-traffic URL] [--post-traffic URL] [--wait]\n"
    "  sluice shift status FN:ALIAS\n"
    "  sluice shift abort FN:ALIAS\n"
    "\n"
    "Walks the alias from its stable version (the one with the most traffic) to VERSION in\n"
    "steps, judging the candidate's own figures every second; a guard breach rolls back at once,\n"
    "passing every step promotes VERSION to 100%. Only the stable version and VERSION change:\n"
    "a shift is refused while the alias sends traffic to any other version.\n"
    "\n"
    "  --steps P,P,...         the candidate's percent of traffic per step, increasing\n"
    "  --every DURATION        how long each step lasts at least (300ms, 1m)\n"
    "  --max-error-rate RATE   roll back above this share of 5xx, connect failures and timeouts\n"
    "                          (default 1%); --max-p99 DURATION and --max-throttle-rate RATE too\n"
    "  --min-requests N        no verdict (advance, promotion or rollback) until the candidate\n"
    "                          has N requests in the judged window (default 100)\n"
    "  --compare-to-stable     forgive a breach unless the candidate is worse than the stable\n"
    "                          version by more than --margin (default 10%)\n"
    "  --pre-traffic URL       POSTed the plan first; must answer 2xx for the shift to start\n"
    "  --post-traffic URL      POSTed the outcome\n"
    "  --wait                  follow the shift; exit 0 on promotion, 1 on rollback (with why)\n"
    "\n"
    "RATE and --margin are percentages (1%, 0.5%) or fractions below 1 (0.01): a bare 1 is\n"
    "refused as ambiguous.\n"
    "\n"
    "client options: --admin HOST:PORT, -c FILE, --token-file FILE (else $SLUICE_TOKEN), --json\n";

bool split_target(const std::string& s, std::string& f, std::string& a) {
  size_t colon = s.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return false;
  f = s.substr(0, colon);
  a = s.substr(colon + 1);
  return true;
}

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
  std::optional<admin::ClientResponse> run(const std::string& method, const std::string& target,
                                           const std::string& body, std::string* err) const {
    return admin::http_call(admin, method, target, token, body, err);
  }
};

// The answer's JSON and whether it is a 2xx; prints the one-line reason otherwise.
bool answer_ok(const admin::ClientResponse& r, json& doc) {
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
    std::optional<admin::ClientResponse> r = call.run("GET", target, "", &err);
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

const char* shift_usage() {
  return kUsage;
}

bool shift_body_from_args(const std::vector<std::string>& args, json& body, bool& wait,
                          std::string* error) {
  body = json::object();
  json guard = json::object();
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i], v;
    size_t eq = a.find('=');
    bool inline_value = a.rfind("--", 0) == 0 && eq != std::string::npos;
    if (inline_value) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    auto value = [&]() -> bool {
      if (inline_value) return true;
      if (i + 1 >= args.size()) {
        *error = a + " needs a value";
        return false;
      }
      v = args[++i];
      return true;
    };
    // Checked here for a usage error with the flag's name; sent as written (the API reads
    // "1%" and "0.01" the same way).
    auto rate = [&](json& into, const char* key, double max_fraction) -> bool {
      if (!value()) return false;
      std::string why;
      if (!parse_rate(v, &why, false, max_fraction)) {
        *error = a + ": " + why;
        return false;
      }
      into[key] = v;
      return true;
    };
    if (a == "--wait") {
      wait = true;
    } else if (a == "--compare-to-stable") {
      body["compare_to_stable"] = true;
    } else if (a == "--to") {
      if (!value()) return false;
      body["to"] = v == "LATEST" || v == "latest" ? "$LATEST" : v;
    } else if (a == "--steps") {
      if (!value()) return false;
      json steps = json::array();
      std::stringstream ss(v);
      std::string part;
      while (std::getline(ss, part, ',')) {
        if (!part.empty() && part.back() == '%') part.pop_back();
        char* end = nullptr;
        double p = std::strtod(part.c_str(), &end);
        if (part.empty() || !end || *end != '\0') {
          *error = "--steps: expected percentages such as 10,50,100 (got " + v + ")";
          return false;
        }
        steps.push_back(p);
      }
      body["steps"] = steps;
    } else if (a == "--every" || a == "--hook-timeout") {
      if (!value()) return false;
      if (!config::parse_duration_ms(v)) {
        *error = a + ": expected a duration such as 300ms or 1m (got " + v + ")";
        return false;
      }
      body[a == "--every" ? "every" : "hook_timeout"] = v;
    } else if (a == "--max-error-rate") {
      if (!rate(guard, "max_error_rate", 1.0)) return false;
    } else if (a == "--max-throttle-rate") {
      if (!rate(guard, "max_throttle_rate", 1.0)) return false;
    } else if (a == "--max-p99") {
      if (!value()) return false;
      if (!config::parse_duration_ms(v)) {
        *error = "--max-p99: expected a duration such as 300ms (got " + v + ")";
        return false;
      }
      guard["max_p99"] = v;
    } else if (a == "--min-requests") {
      if (!value()) return false;
      char* end = nullptr;
      unsigned long long n = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || !end || *end != '\0' || v[0] == '-') {
        *error = a + ": expected a count (got " + v + ")";
        return false;
      }
      guard["min_requests"] = n;
    } else if (a == "--margin") {
      if (!rate(body, "margin", kMaxMargin)) return false;
    } else if (a == "--pre-traffic" || a == "--post-traffic") {
      if (!value()) return false;
      body[a == "--pre-traffic" ? "pre_traffic" : "post_traffic"] = v;
    } else {
      *error = "unknown option " + a;
      return false;
    }
  }
  if (!guard.empty()) body["guard"] = guard;
  if (!body.contains("to")) {
    *error = "--to VERSION is required";
    return false;
  }
  return true;
}

int run_shift_command(int argc, char** argv) {
  std::vector<std::string> rest;
  admin::ClientOptions options;
  bool as_json = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--json") {
      as_json = true;
    } else if (options.take(argc, argv, i)) {
    } else {
      rest.push_back(a);
    }
  }
  auto usage = [](const std::string& msg) {
    std::fprintf(stderr, "sluice shift: %s\n\n%s", msg.c_str(), kUsage);
    return 2;
  };
  std::string err;
  Call call;
  if (!options.resolve(&call.admin, &call.token, &err)) {
    std::fprintf(stderr, "sluice shift: %s\n", err.c_str());
    return 1;
  }

  if (rest.empty()) return usage("expected FN:ALIAS, status FN:ALIAS or abort FN:ALIAS");
  std::string verb, f, a;
  if ((rest[0] == "status" || rest[0] == "abort") && rest.size() == 2 &&
      split_target(rest[1], f, a)) {
    verb = rest[0];
  } else if (split_target(rest[0], f, a)) {
    verb = "start";
  } else {
    return usage("expected FN:ALIAS (e.g. checkout:prod), got " + rest[0]);
  }
  const std::string target = "/admin/functions/" + f + "/aliases/" + a + "/shift";

  if (verb == "status" || verb == "abort") {
    std::optional<admin::ClientResponse> r =
        call.run(verb == "status" ? "GET" : "DELETE", target, "", &err);
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

  json body;
  bool wait = false;
  if (!shift_body_from_args({rest.begin() + 1, rest.end()}, body, wait, &err)) return usage(err);
  std::optional<admin::ClientResponse> r = call.run("POST", target, body.dump(), &err);
  if (!r) {
    std::fprintf(stderr, "sluice shift: %s\n", err.c_str());
    return 1;
  }
  json doc;
  if (!answer_ok(*r, doc)) return 1;
  if (!wait) {
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

}  // namespace sluice::shift
