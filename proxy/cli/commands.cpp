// Every command of the sluice binary: its usage, help text and options, and what it runs.
#include "cli/commands.h"

#include <cstdio>
#include <functional>
#include <optional>

#include "cli/parser.h"

namespace sluice::cli {
namespace {

const char* kClientGroup = "client commands (talk to a running sluice's admin API)";

// The pages are raw strings, wrapped by hand as they print.
const char* kSignals =
    R"(signals (run): SIGTERM/SIGINT drain in-flight requests and exit 0; SIGHUP reloads FILE
(so do saving FILE and POST /admin/reload). The admin API listens on [admin] address
(default 127.0.0.1:9901) and prints `sluice: admin on HOST:PORT`.)";

Page root_page() {
  return {
      .usage = "sluice <command> [options]",
      .description =
          R"(sluice is a weighted-routing HTTP reverse proxy: versions, aliases, canaries, rollback.)",
      .footer = kSignals,
  };
}

Page run_page() {
  return {
      .usage = "sluice run -c FILE",
      .synopsis = "run -c FILE",
      .summary = "serve the configuration in FILE (also: sluice -c FILE)",
      .description =
          R"(Serves FILE's listeners and proxies each request: route -> alias -> weighted version ->
endpoint. A listen port of 0 picks a free port; the bound addresses are printed to stderr
as `sluice: listening on HOST:PORT` once every worker accepts.)",
      .footer = kSignals,
  };
}

Page check_page() {
  return {
      .usage = "sluice check -c FILE [--strict]",
      .synopsis = "check -c FILE",
      .summary = "validate and lint FILE; --strict turns warnings into errors",
      .description =
          R"(Validate a sluice configuration file and lint it, without starting the proxy.
Endpoint host names are resolved as the proxy would at start-up.)",
      .footer = R"(exit status:
  0  valid; prints a one-line summary, then any lint warnings
  1  invalid; prints every error as file:line:column: message
  2  usage error (unknown option, missing -c FILE)

Lint warnings: an alias named prod/production/live sending traffic to $LATEST; a
published version no alias or route uses; an alias with 100% of its traffic on one
version that still lists others at weight 0.)",
  };
}

Page demo_page() {
  return {
      .usage = "sluice demo",
      .synopsis = "demo",
      .summary = "run the proxy with built-in demo upstreams on 127.0.0.1:8080",
      .description =
          R"(Starts three demo upstreams on 127.0.0.1:9101-9103 (function `hello`, versions 1, 2
and a flaky version 3 that fails 20% of requests and adds latency) and the proxy on
127.0.0.1:8080 with alias hello:prod = 1 at 90%, 2 at 10% (config/demo.toml,
embedded). Stop with Ctrl-C.)",
  };
}

Page status_page() {
  return {
      .usage = "sluice status [options]",
      .synopsis = "status",
      .summary = "functions, versions, aliases, traffic, last reload",
      .description =
          R"(Shows what a running sluice serves: each function's versions; each alias's traffic map,
history depth and running shift; per version the live req/s, error % and p50/p99; the
reloads (with the last one's errors) and where the state is kept.)",
  };
}

Page alias_page() {
  return {
      .usage = "sluice alias set FN:ALIAS VERSION=WEIGHT [VERSION=WEIGHT ...] [options]",
      .synopsis = "alias set FN:ALIAS V=W [V=W..]",
      .summary = "set an alias's traffic map, e.g. checkout:prod 3=90 4=10",
      .description =
          R"(Sets an alias's traffic map, effective on the next request: a version's share is its
weight over the sum of the weights (0 and 100 are exact). LATEST stands for $LATEST.)",
      .footer = R"(example:
  sluice alias set checkout:prod 3=90 4=10     # 90% to version 3, 10% to version 4)",
  };
}

Page rollback_page() {
  return {
      .usage = "sluice rollback FN:ALIAS [options]",
      .synopsis = "rollback FN:ALIAS",
      .summary = "move an alias back to its previous traffic map",
      .description =
          R"(Moves an alias back to its previous traffic map: one pointer move, effective on the
next request.)",
      .footer = R"(example:
  sluice rollback checkout:prod)",
  };
}

Page publish_page() {
  return {
      .usage = "sluice publish FN [options]",
      .synopsis = "publish FN",
      .summary = "publish FN's $LATEST as its next version number",
      .description =
          R"(Publishes function FN's $LATEST as its next version number, which aliases can then
send traffic to.)",
  };
}

Page endpoint_page() {
  return {
      .usage = "sluice endpoint drain|maint|ready FN:VERSION HOST:PORT [options]",
      .synopsis = "endpoint STATE FN:V HOST:PORT",
      .summary = "drain, maint or ready an endpoint of a version",
      .description =
          R"(Sets an endpoint of a version (as written in its endpoints list) to drain (no new
requests; those in flight finish; its keep-alive connections close after their current
request), maint (the same, for maintenance) or ready (back in rotation). Persisted like an
alias change. A version with no ready endpoint gives its share of an alias to the others.)",
      .footer = R"(example:
  sluice endpoint drain checkout:3 10.0.0.5:8080    # before restarting that instance
  sluice endpoint ready checkout:3 10.0.0.5:8080)",
  };
}

Page reload_page() {
  return {
      .usage = "sluice reload [options]",
      .synopsis = "reload",
      .summary = "re-read the config file now",
      .description =
          R"(Re-reads the configuration file now, as SIGHUP does; an invalid file is refused with
its errors and the running configuration stays.)",
  };
}

Page shift_page() {
  return {
      .usage = R"(
  sluice shift FN:ALIAS --to VERSION [--steps 10,50,100] [--every 1m]
               [--max-error-rate 1%] [--max-p99 300ms] [--max-throttle-rate 1%]
               [--min-requests 100] [--compare-to-stable [--margin 10%]]
               [--pre-traffic URL] [--post-traffic URL] [--wait]
  sluice shift status FN:ALIAS
  sluice shift abort FN:ALIAS)",
      .synopsis = "shift FN:ALIAS --to V [...]",
      .summary = "progressive shift with automatic rollback (shift --help)",
      .description =
          R"(Walks the alias from its stable version (the one with the most traffic) to VERSION in
steps, judging the candidate's own figures every second; a guard breach rolls back at once,
passing every step promotes VERSION to 100%. Only the stable version and VERSION change:
a shift is refused while the alias sends traffic to any other version.)",
      .footer =
          R"(RATE and --margin are percentages (1%, 0.5%) or fractions below 1 (0.01): a bare 1 is
refused as ambiguous.)",
  };
}

Page top_page() {
  return {
      .usage = "sluice top [options]",
      .synopsis = "top",
      .summary = "live view of every alias: split, req/s, errors, p50/p99",
      .description =
          R"(A live view of every alias: its traffic split as bars, and per version the weight, the
share actually served, requests/s, error %, p50/p99 (over the sliding window) and requests
in flight. Refreshes every second; q or Ctrl-C quits, space refreshes now. When stdout is
not a terminal it prints one snapshot and exits.)",
  };
}

Page health_page() {
  return {
      .usage = "sluice health [ready] [options]",
      .synopsis = "health [ready]",
      .summary = "exit 0 if GET /healthz (/readyz) answers 200: for probes",
      .description =
          R"(Exits 0 if GET /healthz answers 200, else 1: for container health checks and exec
probes. With `ready` it asks GET /readyz, which answers 200 once the configuration is
loaded and every listener accepts. Prints the answer (ok, not ready); needs no token.)",
  };
}

// The options every client command shares, defined here once.
void add_client_options(CLI::App& app, ClientOptions& o, bool json) {
  const char* group = "client options";
  Parser::value(app, "--admin", o.admin, "HOST:PORT",
                "admin address (default: -c FILE's [admin] address, else 127.0.0.1:9901)")
      ->group(group);
  Parser::value(app, "-c,--config", o.config_path, "FILE",
                "take the admin address and token_file from FILE")
      ->group(group);
  Parser::value(app, "--token-file", o.token_file, "FILE",
                "bearer token (else $SLUICE_TOKEN; see docs/admin-api.md)")
      ->group(group);
  if (json)
    Parser::flag(app, "--json", o.json, "print the API's JSON answer instead of text")
        ->group(group);
}

// A check of a shift option's value (shift_value_error), in the option's own words.
std::function<std::string(const std::string&)> shift_check(const std::string& name) {
  return [name](const std::string& v) { return shift_value_error(name, v); };
}

}  // namespace

CommandLine::CommandLine(AppCommands app)
    : app_(std::move(app)),
      parser_(std::make_unique<Parser>("sluice", root_page(), "sluice " SLUICE_VERSION)) {
  Parser& p = *parser_;

  // sluice -c FILE: run.
  Parser::value(p.root(), "-c,--config", config_path, "FILE",
                "the TOML configuration (see config/sluice.toml for every key)");
  auto serve = [this] { return app_.serve ? app_.serve(config_path) : 1; };
  auto need_config = [this]() -> std::string {
    return config_path.empty() ? "missing -c FILE" : "";
  };
  p.set_default(serve, need_config);

  CLI::App& run = p.add("run", "commands", run_page(), serve, need_config);
  Parser::value(run, "-c,--config", config_path, "FILE", "the TOML configuration");

  CLI::App& check_app = p.add(
      "check", "commands", check_page(), [this] { return run_check(check); },
      [this]() -> std::string { return check.config_path.empty() ? "missing -c FILE" : ""; });
  Parser::value(check_app, "-c,--config", check.config_path, "FILE",
                "the TOML file to check (required)");
  Parser::flag(check_app, "--strict", check.strict,
               "treat lint warnings as errors (same as strict = true in the file)");

  p.add("demo", "commands", demo_page(), [this] { return app_.demo ? app_.demo() : 1; });

  // status, alias, rollback, publish, reload (and health, after top): one call each.
  auto client_command = [&](const char* name, Page page) {
    CLI::App& c = p.add(
        name, kClientGroup, std::move(page), [this] { return run_client(call, client); },
        [this, name]() -> std::string {
          std::string error;
          std::optional<ClientCall> made = make_client_call(name, client_args, &error);
          if (made) call = std::move(*made);
          return error;
        });
    c.add_option("args", client_args)->group("");
    add_client_options(c, client, true);
    return &c;
  };
  CLI::App* status = client_command("status", status_page());
  client_command("alias", alias_page());
  client_command("rollback", rollback_page());
  client_command("publish", publish_page());
  client_command("reload", reload_page());
  client_command("endpoint", endpoint_page());

  CLI::App& shift_app = p.add(
      "shift", kClientGroup, shift_page(), [this] { return run_shift(shift_call, client); },
      [this]() -> std::string {
        std::string error;
        std::optional<ShiftCall> made = make_shift_call(shift, &error);
        if (made) shift_call = std::move(*made);
        return error;
      });
  shift_app.add_option("words", shift.words)->group("");
  Parser::value(shift_app, "--to", shift.to, "VERSION",
                "the candidate version (LATEST stands for $LATEST)");
  Parser::value(shift_app, "--steps", shift.steps, "P,P,...",
                "the candidate's percent of traffic per step, increasing\n(default 10,50,100)",
                shift_check("--steps"));
  Parser::value(shift_app, "--every", shift.every, "DURATION",
                "how long each step lasts at least (300ms, 1m; default 1m)",
                shift_check("--every"));
  Parser::value(shift_app, "--max-error-rate", shift.max_error_rate, "RATE",
                "roll back above this share of 5xx, connect failures and timeouts\n(default 1%)",
                shift_check("--max-error-rate"));
  Parser::value(shift_app, "--max-p99", shift.max_p99, "DURATION",
                "roll back above this p99 latency (default: not judged)", shift_check("--max-p99"));
  Parser::value(shift_app, "--max-throttle-rate", shift.max_throttle_rate, "RATE",
                "roll back above this share of throttled (429) requests\n(default: not judged)",
                shift_check("--max-throttle-rate"));
  Parser::value(shift_app, "--min-requests", shift.min_requests, "N",
                "no verdict (advance, promotion or rollback) until the candidate\n"
                "has N requests in the judged window (default 100)",
                shift_check("--min-requests"));
  Parser::flag(shift_app, "--compare-to-stable", shift.compare_to_stable,
               "forgive a breach unless the candidate is worse than the stable\n"
               "version by more than --margin (default 10%)");
  Parser::value(shift_app, "--margin", shift.margin, "RATE",
                "the margin of --compare-to-stable (relative: may exceed 100%)",
                shift_check("--margin"));
  Parser::value(shift_app, "--pre-traffic", shift.pre_traffic, "URL",
                "POSTed the plan first; must answer 2xx for the shift to start");
  Parser::value(shift_app, "--post-traffic", shift.post_traffic, "URL", "POSTed the outcome");
  Parser::value(shift_app, "--hook-timeout", shift.hook_timeout, "DURATION",
                "how long each hook call may take (default 5s)", shift_check("--hook-timeout"));
  Parser::flag(shift_app, "--wait", shift.wait,
               "follow the shift; exit 0 on promotion, 1 on rollback (with why)");
  add_client_options(shift_app, client, true);

  CLI::App& top_app =
      p.add("top", kClientGroup, top_page(), [this] { return run_top(top, client); });
  Parser::flag(top_app, "--once", top.once, "print one snapshot even on a terminal");
  Parser::value(top_app, "--interval-ms", top.interval_ms, "N",
                "refresh period (default 1000, at least 100)", top_interval_error);
  add_client_options(top_app, client, false);

  // health prints the probe's plain answer; --json is taken, as ever, but not offered.
  client_command("health", health_page())->get_option("--json")->group("");

  p.show_on_root(*status, "client options");
}

CommandLine::~CommandLine() = default;

Outcome CommandLine::parse(int argc, const char* const* argv) {
  return parser_->parse(argc, argv);
}

int CommandLine::run(int argc, const char* const* argv) {
  Outcome outcome = parse(argc, argv);
  std::fputs(outcome.out.c_str(), stdout);
  std::fputs(outcome.err.c_str(), stderr);
  if (!outcome.run) return outcome.exit_code;
  std::fflush(stdout);
  return outcome.run();
}

std::string CommandLine::help(const std::string& command) const {
  return parser_->help(command);
}

}  // namespace sluice::cli
