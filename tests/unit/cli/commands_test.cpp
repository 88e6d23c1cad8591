// The sluice binary's command line (cli/commands.h): what each command reads from its arguments,
// its help page, and its usage errors, without running anything.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/parser.h"

namespace sluice::cli {
namespace {

using nlohmann::json;

// `sluice ARGS...` parsed; `serve` and `demo` record that they ran.
struct Parsed {
  std::string served;
  int demos = 0;
  CommandLine line{{.serve = [this](const std::string& path) { return served = path, 0; },
                    .demo = [this] { return ++demos, 0; }}};
  Outcome outcome;

  explicit Parsed(std::vector<std::string> args) {
    args.insert(args.begin(), "sluice");
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    argv.push_back(nullptr);
    outcome = line.parse(static_cast<int>(args.size()), argv.data());
  }
  bool ok() const { return static_cast<bool>(outcome.run) && outcome.err.empty(); }
  // The first line of a usage error.
  std::string error() const { return outcome.err.substr(0, outcome.err.find('\n')); }
};

const std::vector<std::string> kCommands = {"run",   "check",    "demo",    "status",
                                            "alias", "rollback", "publish", "reload",
                                            "shift", "top",      "health"};
const std::vector<std::string> kClientCommands = {"status", "alias", "rollback", "publish",
                                                  "reload", "shift", "top",      "health"};

TEST_CASE("each command's --help prints its own page on stdout and exits 0") {
  for (const std::string& command : kCommands) {
    for (const std::string flag : {"--help", "-h"}) {
      CAPTURE(command);
      CAPTURE(flag);
      Parsed p({command, flag});
      CHECK(p.outcome.exit_code == 0);
      CHECK_FALSE(p.outcome.run);
      CHECK(p.outcome.err.empty());
      CHECK(p.outcome.out == p.line.help(command));
      const std::string first = p.outcome.out.substr(0, p.outcome.out.find('\n', 8));
      CHECK(first.find("sluice " + command) != std::string::npos);
      CHECK(p.outcome.out.find("  -h, --help ") != std::string::npos);
    }
  }
}

TEST_CASE("the pages keep the hand-written texts: usage forms, examples, defaults") {
  CommandLine line;
  const std::string shift = line.help("shift");
  CHECK(shift.rfind("usage:\n  sluice shift FN:ALIAS --to VERSION [--steps 10,50,100]", 0) == 0);
  CHECK(shift.find("  sluice shift status FN:ALIAS\n  sluice shift abort FN:ALIAS\n") !=
        std::string::npos);
  CHECK(shift.find("a bare 1 is\nrefused as ambiguous") != std::string::npos);
  for (const std::string option :
       {"--to VERSION", "--steps P,P,...", "--every DURATION", "--max-error-rate RATE",
        "--max-p99 DURATION", "--max-throttle-rate RATE", "--min-requests N", "--compare-to-stable",
        "--margin RATE", "--pre-traffic URL", "--post-traffic URL", "--hook-timeout DURATION",
        "--wait", "--admin HOST:PORT", "-c, --config FILE", "--token-file FILE", "--json"}) {
    CAPTURE(option);
    CHECK(shift.find("\n  " + option + "  ") != std::string::npos);
  }
  CHECK(line.help("alias").find("sluice alias set checkout:prod 3=90 4=10") != std::string::npos);
  CHECK(line.help("check").find("  2  usage error (unknown option, missing -c FILE)") !=
        std::string::npos);
  CHECK(line.help("top").find("  --interval-ms N    refresh period (default 1000, at least 100)") !=
        std::string::npos);
  CHECK(line.help("top").find("--json") == std::string::npos);     // top prints no JSON
  CHECK(line.help("health").find("--json") == std::string::npos);  // taken, but plain text
  CHECK(line.help("run").find("signals (run): SIGTERM/SIGINT") != std::string::npos);
}

TEST_CASE("sluice --help lists every command, the options and the client options once") {
  CommandLine line;
  const std::string help = line.help();
  CHECK(help.rfind("usage: sluice <command> [options]\n", 0) == 0);
  for (const std::string row :
       {"\n  run -c FILE        serve the configuration in FILE (also: sluice -c FILE)\n",
        "\n  check -c FILE      validate and lint FILE; --strict turns warnings into errors\n",
        "\n  demo               run the proxy with built-in demo upstreams on 127.0.0.1:8080\n",
        "\n  status                          functions, versions, aliases, traffic, last reload\n",
        "\n  alias set FN:ALIAS V=W [V=W..]  set an alias's traffic map, e.g. checkout:prod "
        "3=90 4=10\n",
        "\n  rollback FN:ALIAS  ", "\n  publish FN  ", "\n  reload  ",
        "\n  shift FN:ALIAS --to V [...]  ", "\n  top  ", "\n  health [ready]  ",
        "\nclient options:\n  --admin HOST:PORT  admin address (default: -c FILE's [admin] "
        "address, else 127.0.0.1:9901)\n",
        "\n  --token-file FILE  bearer token (else $SLUICE_TOKEN; see docs/admin-api.md)\n",
        "\n  --json             print the API's JSON answer instead of text\n",
        "\n  -h, --help         show help (also: sluice <command> --help)\n",
        "\n  --version          print the version\n"}) {
    CAPTURE(row);
    CHECK(help.find(row) != std::string::npos);
  }
  CHECK(help.find("show this help") == std::string::npos);  // the commands' own help flags

  Parsed none({});
  CHECK(none.outcome.exit_code == 2);
  CHECK(none.outcome.err == help);
  CHECK(Parsed({"help"}).outcome.out == help);
  CHECK(Parsed({"--version"}).outcome.out == "sluice " SLUICE_VERSION "\n");
}

TEST_CASE("an unknown option is a usage error naming it, for every command") {
  for (const std::string& command : kCommands) {
    CAPTURE(command);
    Parsed p({command, "--bogus"});
    CHECK(p.outcome.exit_code == 2);
    CHECK_FALSE(p.outcome.run);
    CHECK(p.error() == "sluice " + command + ": unknown option --bogus");
    CHECK(p.outcome.err.find("(see sluice " + command + " --help)\n") != std::string::npos);
  }
  Parsed root({"--bogus"});
  CHECK(root.outcome.exit_code == 2);
  CHECK(root.error() == "sluice: unknown option --bogus");
  Parsed unknown({"frobnicate"});
  CHECK(unknown.outcome.exit_code == 2);
  CHECK(unknown.error() == "sluice: unknown command 'frobnicate'");
  // --json is a client option of the commands that print the API's answer, not of top.
  CHECK(Parsed({"top", "--json"}).error() == "sluice top: unknown option --json");
}

TEST_CASE("run and sluice -c FILE read the config path in every form") {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"run", "-c", "a.toml"},
                                             {"run", "--config", "a.toml"},
                                             {"run", "--config=a.toml"},
                                             {"run", "-ca.toml"},
                                             {"-c", "a.toml"},
                                             {"--config", "a.toml"},
                                             {"--config=a.toml"},
                                             {"run", "-c", "b.toml", "-c", "a.toml"}}) {
    CAPTURE(args.size());
    CAPTURE(args.back());
    Parsed p(args);
    REQUIRE_MESSAGE(p.ok(), p.outcome.err);
    CHECK(p.line.config_path == "a.toml");
    CHECK(p.outcome.run() == 0);
    CHECK(p.served == "a.toml");
  }
  SUBCASE("without -c FILE, or with -c and no FILE, nothing runs") {
    Parsed missing({"run"});
    CHECK(missing.outcome.exit_code == 2);
    CHECK(missing.outcome.err ==
          "sluice run: missing -c FILE\nusage: sluice run -c FILE  (see sluice run --help)\n");
    CHECK(Parsed({"run", "-c"}).error() == "sluice run: -c needs a value (FILE)");
    CHECK(Parsed({"--config"}).error() == "sluice: --config needs a value (FILE)");
    CHECK(Parsed({"run", "a.toml"}).error() == "sluice run: unexpected argument 'a.toml'");
    CHECK(Parsed({"-c", "a.toml", "status"}).outcome.exit_code == 2);
  }
}

TEST_CASE("check reads -c FILE in every form and --strict") {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"check", "-c", "a.toml", "--strict"},
                                             {"check", "--strict", "--config", "a.toml"},
                                             {"check", "--config=a.toml", "--strict"}}) {
    CAPTURE(args[1]);
    Parsed p(args);
    REQUIRE_MESSAGE(p.ok(), p.outcome.err);
    CHECK(p.line.check.config_path == "a.toml");
    CHECK(p.line.check.strict);
  }
  Parsed plain({"check", "-c", "a.toml"});
  CHECK_FALSE(plain.line.check.strict);
  CHECK(Parsed({"check"}).outcome.err ==
        "sluice check: missing -c FILE\n"
        "usage: sluice check -c FILE [--strict]  (see sluice check --help)\n");
  CHECK(Parsed({"check", "-c"}).error() == "sluice check: -c needs a value (FILE)");
  CHECK(Parsed({"check", "-c", "a", "b"}).error() == "sluice check: unexpected argument 'b'");
}

TEST_CASE("demo takes no arguments and runs the demo") {
  Parsed p({"demo"});
  REQUIRE(p.ok());
  CHECK(p.outcome.run() == 0);
  CHECK(p.demos == 1);
  CHECK(Parsed({"demo", "extra"}).error() == "sluice demo: unexpected argument 'extra'");
}

TEST_CASE("every client command takes the same client options, in every form") {
  const std::map<std::string, std::vector<std::string>> positional = {
      {"status", {}},        {"alias", {"set", "f:a", "1=100"}},
      {"rollback", {"f:a"}}, {"publish", {"f"}},
      {"reload", {}},        {"shift", {"f:a", "--to", "2"}},
      {"top", {"--once"}},   {"health", {"ready"}}};
  for (const std::string& command : kClientCommands) {
    CAPTURE(command);
    for (const std::vector<std::string>& options : std::vector<std::vector<std::string>>{
             {"--admin", "127.0.0.1:1", "-c", "s.toml", "--token-file", "t"},
             {"--admin=127.0.0.1:1", "--config=s.toml", "--token-file=t"},
             {"--admin", "x:2", "--admin", "127.0.0.1:1", "--config", "s.toml", "--token-file",
              "t"}}) {
      std::vector<std::string> args = {command};
      args.insert(args.end(), options.begin(), options.end());  // before the positionals, too
      args.insert(args.end(), positional.at(command).begin(), positional.at(command).end());
      Parsed p(args);
      REQUIRE_MESSAGE(p.ok(), p.outcome.err);
      CHECK(p.line.client.admin == "127.0.0.1:1");
      CHECK(p.line.client.config_path == "s.toml");
      CHECK(p.line.client.token_file == "t");
      CHECK_FALSE(p.line.client.json);
    }
    if (command != "top") {
      std::vector<std::string> args = {command, "--json"};
      args.insert(args.end(), positional.at(command).begin(), positional.at(command).end());
      Parsed p(args);
      REQUIRE_MESSAGE(p.ok(), p.outcome.err);
      CHECK(p.line.client.json);
    }
    Parsed missing({command, "--admin"});
    CHECK(missing.error() == "sluice " + command + ": --admin needs a value (HOST:PORT)");
  }
}

TEST_CASE("alias set reads FN:ALIAS and VERSION=WEIGHT shares into one PUT") {
  Parsed p({"alias", "set", "checkout:prod", "3=90", "4=10"});
  REQUIRE_MESSAGE(p.ok(), p.outcome.err);
  const ClientCall& call = p.line.call;
  CHECK(call.command == "alias");
  CHECK(call.method == "PUT");
  CHECK(call.target == "/admin/functions/checkout/aliases/prod");
  CHECK(json::parse(call.body) == json{{"traffic", {{"3", 90}, {"4", 10}}}});
  CHECK(call.function == "checkout");
  CHECK(call.alias == "prod");

  SUBCASE("options may come between the shares; LATEST is $LATEST; weights may be fractions") {
    Parsed q({"alias", "--admin", "h:1", "set", "checkout:prod", "LATEST=2.5", "--json", "3=0"});
    REQUIRE_MESSAGE(q.ok(), q.outcome.err);
    CHECK(json::parse(q.line.call.body) == json{{"traffic", {{"$LATEST", 2.5}, {"3", 0}}}});
    CHECK(q.line.client.admin == "h:1");
    CHECK(q.line.client.json);
  }
  SUBCASE("anything else is a usage error that says what was expected") {
    const std::string expected =
        "sluice alias: expected: alias set FUNCTION:ALIAS VERSION=WEIGHT [VERSION=WEIGHT ...]";
    for (const std::vector<std::string>& args :
         std::vector<std::vector<std::string>>{{"alias"},
                                               {"alias", "set"},
                                               {"alias", "set", "checkout:prod"},
                                               {"alias", "get", "checkout:prod", "3=100"},
                                               {"alias", "set", "checkout", "3=100"},
                                               {"alias", "set", ":prod", "3=100"},
                                               {"alias", "set", "checkout:", "3=100"}}) {
      CAPTURE(args.size());
      Parsed bad(args);
      CHECK(bad.outcome.exit_code == 2);
      CHECK_FALSE(bad.outcome.run);
      CHECK(bad.error() == expected);
    }
    for (const std::string share : {"3=x", "=90", "3=", "3", "3=90%"}) {
      CAPTURE(share);
      Parsed bad({"alias", "set", "checkout:prod", "4=10", share});
      CHECK(bad.outcome.exit_code == 2);
      CHECK(bad.error() ==
            "sluice alias: bad share '" + share + "' (expected VERSION=WEIGHT, e.g. 3=90)");
    }
  }
}

TEST_CASE("status, rollback, publish, reload and health read their positional arguments") {
  struct Case {
    std::vector<std::string> args;
    std::string method, target;
  };
  for (const Case& c :
       std::vector<Case>{{{"status"}, "GET", "/admin/status"},
                         {{"rollback", "checkout:prod"},
                          "POST",
                          "/admin/functions/checkout/aliases/prod/rollback"},
                         {{"publish", "checkout"}, "POST", "/admin/functions/checkout/versions"},
                         {{"reload"}, "POST", "/admin/reload"},
                         {{"health"}, "GET", "/healthz"},
                         {{"health", "ready"}, "GET", "/readyz"}}) {
    CAPTURE(c.target);
    Parsed p(c.args);
    REQUIRE_MESSAGE(p.ok(), p.outcome.err);
    CHECK(p.line.call.command == c.args[0]);
    CHECK(p.line.call.method == c.method);
    CHECK(p.line.call.target == c.target);
    CHECK(p.line.call.body.empty());
  }
  CHECK(Parsed({"status", "x"}).error() == "sluice status: takes no arguments");
  CHECK(Parsed({"reload", "x"}).error() == "sluice reload: takes no arguments");
  CHECK(Parsed({"rollback", "checkout"}).error() ==
        "sluice rollback: expected: rollback FUNCTION:ALIAS");
  CHECK(Parsed({"publish"}).error() == "sluice publish: expected: publish FUNCTION");
  CHECK(Parsed({"publish", "a", "b"}).error() == "sluice publish: expected: publish FUNCTION");
  CHECK(Parsed({"health", "live"}).error() == "sluice health: expected: health [ready]");
  CHECK(Parsed({"health", "ready", "x"}).error() == "sluice health: expected: health [ready]");
}

TEST_CASE("shift reads its options into the POST body, as written") {
  Parsed p({"shift",
            "checkout:prod",
            "--to",
            "4",
            "--steps",
            "10,50%,100",
            "--every=1m",
            "--max-error-rate",
            "1%",
            "--max-p99",
            "300ms",
            "--max-throttle-rate",
            "0.5%",
            "--min-requests",
            "20",
            "--compare-to-stable",
            "--margin",
            "0.2",
            "--pre-traffic",
            "http://h/pre",
            "--post-traffic",
            "http://h/post",
            "--hook-timeout",
            "2s",
            "--wait"});
  REQUIRE_MESSAGE(p.ok(), p.outcome.err);
  const ShiftCall& call = p.line.shift_call;
  CHECK(call.verb == "start");
  CHECK(call.function == "checkout");
  CHECK(call.alias == "prod");
  CHECK(call.wait);
  CHECK(call.body == json{{"to", "4"},
                          {"steps", {10.0, 50.0, 100.0}},
                          {"every", "1m"},
                          {"hook_timeout", "2s"},
                          {"margin", "0.2"},
                          {"compare_to_stable", true},
                          {"pre_traffic", "http://h/pre"},
                          {"post_traffic", "http://h/post"},
                          {"guard",
                           {{"max_error_rate", "1%"},
                            {"max_p99", "300ms"},
                            {"max_throttle_rate", "0.5%"},
                            {"min_requests", 20}}}});

  SUBCASE("the fewest options: --to, where LATEST is $LATEST") {
    Parsed q({"shift", "checkout:prod", "--to", "LATEST"});
    REQUIRE_MESSAGE(q.ok(), q.outcome.err);
    CHECK(q.line.shift_call.body == json{{"to", "$LATEST"}});
    CHECK_FALSE(q.line.shift_call.wait);
  }
  SUBCASE("status and abort take the alias only") {
    for (const std::string verb : {"status", "abort"}) {
      CAPTURE(verb);
      Parsed q({"shift", verb, "checkout:prod", "--json"});
      REQUIRE_MESSAGE(q.ok(), q.outcome.err);
      CHECK(q.line.shift_call.verb == verb);
      CHECK(q.line.shift_call.function == "checkout");
      CHECK(q.line.shift_call.alias == "prod");
      CHECK(Parsed({"shift", verb}).error() ==
            "sluice shift: expected: shift " + verb + " FN:ALIAS");
      CHECK(Parsed({"shift", verb, "checkout:prod", "--to", "4"}).error() ==
            "sluice shift: shift " + verb + " takes FN:ALIAS and the client options only");
    }
  }
  SUBCASE("a bad value is a usage error naming the option") {
    struct Case {
      std::vector<std::string> args;
      std::string error;
    };
    for (const Case& c : std::vector<Case>{
             {{"--max-error-rate", "1"},
              "--max-error-rate: 1 is ambiguous (1% or 100%?): write 1% or 0.01 for 1 percent; "
              "a bare number is a fraction below 1"},
             {{"--max-throttle-rate", "5"}, "--max-throttle-rate: 5 is ambiguous"},
             {{"--compare-to-stable", "--margin", "1"}, "--margin: 1 is ambiguous"},
             {{"--steps", "10,x"}, "--steps: expected percentages such as 10,50,100 (got 10,x)"},
             {{"--every", "5"}, "--every: expected a duration such as 300ms or 1m (got 5)"},
             {{"--hook-timeout", "soon"}, "--hook-timeout: expected a duration"},
             {{"--max-p99", "abc"}, "--max-p99: expected a duration such as 300ms (got abc)"},
             {{"--min-requests", "-3"}, "--min-requests: expected a count (got -3)"},
             {{"--min-requests", "3x"}, "--min-requests: expected a count (got 3x)"},
             {{"--every", "--wait"},
              "--every: expected a value (DURATION), got the option --wait"}}) {
      CAPTURE(c.error);
      std::vector<std::string> args = {"shift", "checkout:prod", "--to", "4"};
      args.insert(args.end(), c.args.begin(), c.args.end());
      Parsed bad(args);
      CHECK(bad.outcome.exit_code == 2);
      CHECK_FALSE(bad.outcome.run);
      CHECK(bad.error().rfind("sluice shift: " + c.error, 0) == 0);
    }
  }
  SUBCASE("FN:ALIAS and --to are required") {
    CHECK(Parsed({"shift"}).error() ==
          "sluice shift: expected FN:ALIAS, status FN:ALIAS or abort FN:ALIAS");
    CHECK(Parsed({"shift", "checkout", "--to", "4"}).error() ==
          "sluice shift: expected FN:ALIAS (e.g. checkout:prod), got checkout");
    CHECK(Parsed({"shift", "checkout:prod", "--every", "1m"}).error() ==
          "sluice shift: --to VERSION is required");
    CHECK(Parsed({"shift", "checkout:prod", "--to"}).error() ==
          "sluice shift: --to needs a value (VERSION)");
    CHECK(Parsed({"shift", "checkout:prod", "x", "--to", "4"}).error() ==
          "sluice shift: unexpected argument 'x'");
  }
}

TEST_CASE("top reads --once and --interval-ms, from 100 to 60000") {
  Parsed p({"top", "--once", "--interval-ms", "250"});
  REQUIRE_MESSAGE(p.ok(), p.outcome.err);
  CHECK(p.line.top.once);
  CHECK(p.line.top.interval_ms == "250");
  Parsed defaults({"top"});
  REQUIRE(defaults.ok());
  CHECK_FALSE(defaults.line.top.once);
  CHECK(defaults.line.top.interval_ms == "1000");
  for (const std::string bad : {"99", "60001", "abc", "1e3", "-5"}) {
    CAPTURE(bad);
    Parsed q({"top", "--interval-ms=" + bad});
    CHECK(q.outcome.exit_code == 2);
    CHECK(q.error() == "sluice top: --interval-ms: expected milliseconds from 100 to 60000 (got " +
                           std::string(bad) + ")");
  }
  CHECK(Parsed({"top", "--interval-ms="}).error() == "sluice top: --interval-ms needs a value (N)");
  CHECK(Parsed({"top", "extra"}).error() == "sluice top: unexpected argument 'extra'");
}

}  // namespace
}  // namespace sluice::cli
