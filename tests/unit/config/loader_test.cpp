// Loader tests: every validation error with its exact line and column, defaults, inheritance,
// strict mode, and the example configs in config/.
#include <doctest/doctest.h>

#include <string>

#include "config/loader.h"
#include "test_util.h"

namespace sluice::config {
namespace {

using test::expect_one_error;
using test::has;
using test::load;

// Five-line prefix every function test starts from (lines 1-4; line 5 is free).
constexpr const char* kBase = R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.aliases.prod]
traffic = { "1" = 100 }
)";

std::string with_base(std::string_view rest) {
  return std::string(kBase) + std::string(rest);
}

TEST_CASE("a minimal valid config loads with no errors or warnings") {
  const LoadResult r = load(with_base("[[routes]]\ntarget = \"f:prod\"\n"));
  CAPTURE(test::all_messages(r.errors));
  REQUIRE(r.config.has_value());
  CHECK(r.errors.empty());
  CHECK(r.warnings.empty());
  REQUIRE(r.config->functions.size() == 1);
  CHECK(r.config->functions[0].name == "f");
  CHECK(r.config->routes.size() == 1);
}

TEST_CASE("an unknown key is reported at the key with a did-you-mean suggestion") {
  SUBCASE("a near miss in a section") {
    expect_one_error(R"(
[listen]
adress = "127.0.0.1:8080"
)",
                     2, 1, "unknown key \"adress\" in [listen] (did you mean \"address\"?)");
  }
  SUBCASE("a transposition at the top level") {
    expect_one_error("\nwokrers = 2\n", 1, 1, "(did you mean \"workers\"?)");
  }
  SUBCASE("a near miss inside an alias") {
    expect_one_error(with_base("selecton = \"exact\"\n"), 5, 1,
                     "unknown key \"selecton\" in [functions.f.aliases.prod] (did you mean "
                     "\"selection\"?)");
  }
  SUBCASE("a near miss in [limits]") {
    expect_one_error("\n[limits]\nmax_header = 10\n", 2, 1, "(did you mean \"max_headers\"?)");
  }
  SUBCASE("no near miss lists what is allowed") {
    expect_one_error("\ncolour = 1\n", 1, 1,
                     "unknown key \"colour\" in the top level (expected one of: workers, strict");
  }
  SUBCASE("a near miss inside an endpoint table, which then lacks its address") {
    const LoadResult r = load(R"(
[functions.f.versions.1]
endpoints = [{ adress = "127.0.0.1:1" }]
)");
    CAPTURE(test::all_messages(r.errors));
    CHECK(r.errors.size() == 2);
    CHECK(has(r.errors, 2, 16,
              "unknown key \"adress\" in an endpoint of f:1 (did you mean \"address\"?)"));
    CHECK(has(r.errors, 2, 14, "endpoint of f:1 has no address"));
  }
}

TEST_CASE("a value of the wrong type is reported at the value with what was expected") {
  SUBCASE("a string for an integer") {
    expect_one_error("\nworkers = \"two\"\n", 1, 11,
                     "wrong type for workers: a string (expected an integer from 0 to 1024)");
  }
  SUBCASE("a decimal number for an integer") {
    expect_one_error("\n[limits]\nmax_headers = 1.5\n", 2, 15,
                     "wrong type for limits.max_headers: a decimal number");
  }
  SUBCASE("a string for a boolean") {
    expect_one_error(with_base("allow_override = \"yes\"\n"), 5, 18, "(expected true or false)");
  }
  SUBCASE("an array for the traffic table") {
    expect_one_error(R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.aliases.prod]
traffic = [1]
)",
                     4, 11, "wrong type for functions.f.aliases.prod.traffic: an array");
  }
  SUBCASE("a number for a section") {
    expect_one_error("\nlimits = 5\n", 1, 10,
                     "wrong type for [limits]: an integer (expected a table)");
  }
  SUBCASE("an integer for the endpoints array") {
    expect_one_error("\n[functions.f.versions.1]\nendpoints = 7\n", 2, 13,
                     "wrong type for functions.f.versions.1.endpoints: an integer");
  }
  SUBCASE("an out-of-range integer") {
    expect_one_error("\nworkers = 5000\n", 1, 11,
                     "workers = 5000 is out of range (expected an integer from 0 to 1024)");
  }
}

TEST_CASE("durations need a unit from ms, s, m, h") {
  SUBCASE("malformed durations are errors at the value") {
    for (const char* bad : {"10x", "10", "s", "-1s", "1 s", "1.s", "ms", "1..5s", "5d"}) {
      const std::string shown = bad;
      CAPTURE(shown);
      expect_one_error("\n[limits]\nheader_timeout = \"" + std::string(bad) + "\"\n", 2, 18,
                       "bad duration \"" + std::string(bad) +
                           "\" for limits.header_timeout (expected a number with a unit ms, s, "
                           "m or h");
    }
  }
  SUBCASE("a bare number is the wrong type") {
    expect_one_error("\n[limits]\nheader_timeout = 10\n", 2, 18,
                     "wrong type for limits.header_timeout");
  }
  SUBCASE("a zero timeout is refused") {
    expect_one_error(with_base("[functions.f]\nconnect_timeout = \"0s\"\n"), 6, 19,
                     "functions.f.connect_timeout must be longer than 0");
  }
  SUBCASE("the client-side timeouts are durations at their value") {
    expect_one_error("\n[limits]\nsend_timeout = \"0s\"\n", 2, 16,
                     "limits.send_timeout must be longer than 0");
    expect_one_error("\n[limits]\nbody_timeout = 5\n", 2, 16, "wrong type for limits.body_timeout");
    expect_one_error("\n[limits]\ntunnel_idle_timeout = \"1y\"\n", 2, 23,
                     "bad duration \"1y\" for limits.tunnel_idle_timeout");
    expect_one_error("\n[limits]\nmax_connections_per_client = 0\n", 2, 30,
                     "limits.max_connections_per_client = 0 is out of range");
  }
  SUBCASE("valid durations convert to milliseconds") {
    const LoadResult r = load(R"(
[limits]
header_timeout = "250ms"
idle_timeout = "1.5s"
drain_timeout = "0s"
[upstream]
idle_timeout = "2m"
)");
    REQUIRE(r.config.has_value());
    CHECK(r.config->limits.header_timeout_ms == 250);
    CHECK(r.config->limits.idle_timeout_ms == 1500);
    CHECK(r.config->limits.drain_timeout_ms == 0);
    CHECK(r.config->upstream.idle_timeout_ms == 120000);
  }
}

TEST_CASE("bad addresses and ports are reported at the value") {
  SUBCASE("listen addresses") {
    struct Case {
      const char* text;
      const char* why;
    };
    for (Case c :
         {Case{"0.0.0.0", "missing \":port\""},
          Case{"0.0.0.0:99999", "port \"99999\" is not a number from 0 to 65535"},
          Case{"0.0.0.0:http", "port \"http\" is not a number"},
          Case{"300.1.1.1:80", "\"300.1.1.1\" is not an IPv4 address"},
          Case{"::1:80", "an IPv6 address must be in brackets"},
          Case{"[::zz]:80", "\"::zz\" is not an IPv6 address"}, Case{":80", "missing host"},
          Case{"bad host:80", "\"bad host\" is not a valid host name"}}) {
      const std::string text = c.text;
      CAPTURE(text);
      expect_one_error("\n[listen]\naddress = \"" + std::string(c.text) + "\"\n", 2, 11,
                       "bad address \"" + std::string(c.text) + "\" for listen.address: " + c.why);
    }
  }
  SUBCASE("an upstream endpoint may not use port 0") {
    expect_one_error("\n[functions.f.versions.1]\nendpoints = [\"127.0.0.1:0\"]\n", 2, 14,
                     "port 0 is not allowed here");
  }
  SUBCASE("valid forms") {
    const LoadResult r = load(R"(
[[listen]]
address = "[::1]:8080"
[[listen]]
address = "localhost:0"
)");
    CAPTURE(test::all_messages(r.errors));
    REQUIRE(r.config.has_value());
    REQUIRE(r.config->listen.size() == 2);
    CHECK(r.config->listen[0].address.host == "::1");
    CHECK(r.config->listen[0].address.port == 8080);
    CHECK(r.config->listen[1].address.host == "localhost");
    CHECK(r.config->listen[1].address.port == 0);
  }
}

TEST_CASE("traffic naming an undefined version lists the defined ones") {
  expect_one_error(R"(
[functions.checkout.latest]
endpoints = ["127.0.0.1:7004"]
[functions.checkout.versions.3]
endpoints = ["127.0.0.1:7001"]
[functions.checkout.versions.4]
endpoints = ["127.0.0.1:7002"]
[functions.checkout.aliases.prod]
traffic = { "3" = 90, "5" = 10 }
)",
                   8, 23,
                   "alias checkout:prod sends traffic to version 5, which is not defined "
                   "(defined: 3, 4, $LATEST)");
}

TEST_CASE("traffic weights must be non-negative numbers with at least one above zero") {
  SUBCASE("all weights zero") {
    expect_one_error(
        R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.versions.2]
endpoints = ["127.0.0.1:9002"]
[functions.f.aliases.prod]
traffic = { "1" = 0, "2" = 0.0 }
)",
        6, 11,
        "alias f:prod sends no traffic: every weight is 0 (expected at least one weight > 0)");
  }
  SUBCASE("an empty traffic map") {
    expect_one_error(R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.aliases.prod]
traffic = {}
)",
                     4, 11, "alias f:prod has an empty traffic map");
  }
  SUBCASE("no traffic map at all") {
    expect_one_error(R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.aliases.prod]
selection = "exact"
)",
                     3, 22, "alias f:prod has no traffic map");
  }
  SUBCASE("a negative weight") {
    expect_one_error(
        R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.aliases.prod]
traffic = { "1" = -5 }
)",
        4, 19,
        "negative weight -5 for version 1 of alias f:prod (expected a number from 0 to 1000000)");
  }
  SUBCASE("a non-numeric weight") {
    expect_one_error(R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.aliases.prod]
traffic = { "1" = "ten" }
)",
                     4, 19, "weight for version 1 of alias f:prod is not a number: a string");
  }
  SUBCASE("a weight too large") {
    expect_one_error(R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.aliases.prod]
traffic = { "1" = 2e6 }
)",
                     4, 19, "out-of-range weight 2e+06 for version 1");
  }
  SUBCASE("an integer weight too large is shown as written") {
    expect_one_error(R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.aliases.prod]
traffic = { "1" = 2000001 }
)",
                     4, 19, "out-of-range weight 2000001 for version 1");
  }
  SUBCASE("a key that is not a version") {
    expect_one_error(R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.aliases.prod]
traffic = { "1" = 1, "v2" = 1 }
)",
                     4, 22, "traffic key \"v2\" of alias f:prod is not a version");
  }
  SUBCASE("decimal weights and zero alongside a positive weight are fine") {
    const LoadResult r = load(R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.versions.2]
endpoints = ["127.0.0.1:9002"]
[functions.f.aliases.prod]
traffic = { "2" = 33.5, "1" = 66.5 }
)");
    CAPTURE(test::all_messages(r.errors));
    REQUIRE(r.config.has_value());
    const AliasSpec& a = r.config->functions[0].aliases[0];
    REQUIRE(a.traffic.size() == 2);
    CHECK(a.traffic[0].version == "2");  // file order, not key order
    CHECK(a.traffic[0].weight == 33.5);
    CHECK(a.traffic[1].version == "1");
    CHECK(a.traffic[1].weight == 66.5);
    CHECK(a.traffic_pos.line == 6);
    CHECK(a.traffic_pos.column == 11);
  }
}

TEST_CASE("a duplicate route match is reported at the second route") {
  SUBCASE("same host (compared case-insensitively) and prefix") {
    expect_one_error(with_base(R"([[routes]]
host = "API.example.com"
target = "f:prod"
[[routes]]
host = "api.example.com"
path_prefix = "/"
target = "f:prod"
)"),
                     8, 1,
                     "duplicate route match: host \"api.example.com\" with path_prefix \"/\" is "
                     "already routed at line 5");
  }
  SUBCASE("any host with the default prefix twice") {
    expect_one_error(with_base(R"([[routes]]
target = "f:prod"
[[routes]]
target = "f:1"
)"),
                     7, 1, "duplicate route match: any host with path_prefix \"/\"");
  }
  SUBCASE("different prefixes or hosts are distinct") {
    const LoadResult r = load(with_base(R"([[routes]]
target = "f:prod"
[[routes]]
path_prefix = "/api/"
target = "f:prod"
[[routes]]
host = "a.example"
target = "f:prod"
)"));
    CAPTURE(test::all_messages(r.errors));
    REQUIRE(r.config.has_value());
    CHECK(r.config->routes.size() == 3);
  }
}

TEST_CASE("a route target must name a defined function and alias or version") {
  auto route = [](const char* target) {
    return with_base(std::string("[[routes]]\ntarget = \"") + target + "\"\n");
  };
  SUBCASE("unknown function with a near miss") {
    expect_one_error(
        route("g:prod"), 6, 10,
        "route target \"g:prod\" names function \"g\", which is not defined (did you mean \"f\"?)");
  }
  SUBCASE("unknown function, no near miss") {
    expect_one_error(route("billing:prod"), 6, 10, "which is not defined (defined: f)");
  }
  SUBCASE("unknown alias") {
    expect_one_error(route("f:canary"), 6, 10,
                     "route target \"f:canary\" names alias \"canary\" of f, which is not defined "
                     "(defined aliases: prod)");
  }
  SUBCASE("unknown alias with a near miss") {
    expect_one_error(route("f:prd"), 6, 10, "(did you mean \"prod\"?)");
  }
  SUBCASE("unknown pinned version") {
    expect_one_error(route("f:2"), 6, 10,
                     "route target \"f:2\" pins version 2 of f, which is not defined (defined: 1)");
  }
  SUBCASE("$LATEST when the function has none") {
    expect_one_error(route("f:$LATEST"), 6, 10, "pins version $LATEST of f, which is not defined");
  }
  SUBCASE("no colon") {
    expect_one_error(route("f"), 6, 10,
                     "route target \"f\" is malformed (expected \"function:alias\"");
  }
  SUBCASE("missing target") {
    expect_one_error(with_base("[[routes]]\npath_prefix = \"/\"\n"), 5, 1, "route has no target");
  }
  SUBCASE("a pinned version is accepted") {
    const LoadResult r = load(route("f:1"));
    REQUIRE(r.config.has_value());
    REQUIRE(r.config->routes.size() == 1);
    CHECK(r.config->routes[0].function == "f");
    CHECK(r.config->routes[0].target == "1");
    CHECK(r.config->routes[0].pinned_version);
  }
}

TEST_CASE("route hosts and prefixes are checked") {
  SUBCASE("a host with a port") {
    expect_one_error(with_base("[[routes]]\nhost = \"a.example:8080\"\ntarget = \"f:prod\"\n"), 6,
                     8, "route host \"a.example:8080\" is not a host name");
  }
  SUBCASE("a prefix without a leading slash") {
    expect_one_error(with_base("[[routes]]\npath_prefix = \"api\"\ntarget = \"f:prod\"\n"), 6, 15,
                     "route path_prefix \"api\" is not a path");
  }
  SUBCASE("hosts are lower-cased") {
    const LoadResult r = load(with_base(
        "[[routes]]\nhost = \"API.Example.COM\"\npath_prefix = \"/v1/\"\ntarget = \"f:prod\"\n"));
    REQUIRE(r.config.has_value());
    CHECK(r.config->routes[0].host == "api.example.com");
    CHECK(r.config->routes[0].path_prefix == "/v1/");
  }
}

TEST_CASE("function and alias names must match [a-z0-9][a-z0-9_-]{0,62}") {
  SUBCASE("upper case function name") {
    expect_one_error("\n[functions.Checkout.versions.1]\nendpoints = [\"127.0.0.1:1\"]\n", 1, 12,
                     "invalid function name \"Checkout\" (expected lower-case letters");
  }
  SUBCASE("leading dash") {
    expect_one_error("\n[functions.-x.versions.1]\nendpoints = [\"127.0.0.1:1\"]\n", 1, 12,
                     "invalid function name \"-x\"");
  }
  SUBCASE("64 characters is too long, 63 is fine") {
    const std::string n63(63, 'a'), n64(64, 'a');
    expect_one_error("\n[functions." + n64 + ".versions.1]\nendpoints = [\"127.0.0.1:1\"]\n", 1, 12,
                     "invalid function name");
    CHECK(load("\n[functions." + n63 + ".versions.1]\nendpoints = [\"127.0.0.1:1\"]\n").config);
  }
  SUBCASE("invalid alias name") {
    expect_one_error(R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.aliases.Prod]
traffic = { "1" = 100 }
)",
                     3, 22, "invalid alias name \"Prod\"");
  }
  SUBCASE("digits, dashes and underscores are fine") {
    CHECK(load("\n[functions.0_a-b.versions.1]\nendpoints = [\"127.0.0.1:1\"]\n").config);
  }
}

TEST_CASE("version keys must be positive integers without leading zeros") {
  for (const char* bad : {"0", "01", "abc", "1.5"}) {
    const std::string shown = bad;
    CAPTURE(shown);
    // A dotted-looking key must be quoted in TOML; quote all of them.
    const std::string text =
        std::string("\n[functions.f.versions.\"") + bad + "\"]\nendpoints = [\"127.0.0.1:1\"]\n";
    expect_one_error(text, 1, 23,
                     "version key \"" + std::string(bad) +
                         "\" in functions.f.versions is not a version number (expected a positive "
                         "integer without leading zeros");
  }
  SUBCASE("$LATEST is pointed to its own table") {
    expect_one_error("\n[functions.f.versions.\"$LATEST\"]\nendpoints = [\"127.0.0.1:1\"]\n", 1, 23,
                     "$LATEST is [functions.f.latest]");
  }
}

TEST_CASE("every version needs endpoints") {
  SUBCASE("no endpoints key") {
    expect_one_error("\n[functions.f.versions.1]\nconnect_timeout = \"1s\"\n", 1, 23,
                     "version f:1 has no endpoints (expected endpoints = [\"host:port\", ...]");
  }
  SUBCASE("an empty list") {
    expect_one_error("\n[functions.f.versions.1]\nendpoints = []\n", 2, 13,
                     "version f:1 has no endpoints");
  }
  SUBCASE("$LATEST too") {
    expect_one_error("\n[functions.f.latest]\nmax_concurrency = 5\n", 1, 14,
                     "version f:$LATEST has no endpoints");
  }
  SUBCASE("a function with no versions at all") {
    expect_one_error("\n[functions.f]\nversion_header = \"x-v\"\n", 1, 12,
                     "function f defines no versions");
  }
}

TEST_CASE("endpoint weights must be positive integers") {
  // endpoints = [{ address = "127.0.0.1:1", weight = 0 }]  -> the weight value is column 50.
  auto text = [](const char* w) {
    return std::string(
               "\n[functions.f.versions.1]\nendpoints = [{ address = \"127.0.0.1:1\", weight = ") +
           w + " }]\n";
  };
  expect_one_error(text("0"), 2, 50,
                   "endpoint weight 0 of f:1 is out of range (expected a positive integer");
  expect_one_error(text("-1"), 2, 50, "endpoint weight -1 of f:1 is out of range");
  expect_one_error(text("1.5"), 2, 50, "wrong type for endpoint weight: a decimal number");
  expect_one_error(text("\"2\""), 2, 50, "wrong type for endpoint weight: a string");
  SUBCASE("mixed string and table endpoints") {
    const LoadResult r = load(text("3"));
    REQUIRE(r.config.has_value());
    const VersionSpec& v = r.config->functions[0].versions.at(1);
    REQUIRE(v.endpoints.size() == 1);
    CHECK(v.endpoints[0].weight == 3);
    CHECK(v.endpoints[0].address.port == 1);
  }
}

TEST_CASE("sticky must be a header or a cookie") {
  SUBCASE("both") {
    expect_one_error(with_base("sticky = { header = \"x-user\", cookie = \"uid\" }\n"), 5, 10,
                     "sticky of alias f:prod names both a header and a cookie");
  }
  SUBCASE("neither") {
    expect_one_error(with_base("sticky = {}\n"), 5, 10, "names no header or cookie");
  }
  SUBCASE("issue with a header") {
    expect_one_error(with_base("sticky = { header = \"x-user\", issue = true }\n"), 5, 39,
                     "sticky issue = ... only applies to a cookie");
  }
  SUBCASE("not a table") {
    expect_one_error(with_base("sticky = \"x-user\"\n"), 5, 10,
                     "wrong type for functions.f.aliases.prod.sticky");
  }
  SUBCASE("a misspelt key") {
    const LoadResult r = load(with_base("sticky = { heder = \"x\" }\n"));
    CHECK(r.errors.size() == 2);
    CHECK(has(r.errors, 5, 12, "(did you mean \"header\"?)"));
    CHECK(has(r.errors, 5, 10, "names no header or cookie"));
  }
  SUBCASE("a header name with a space") {
    expect_one_error(with_base("sticky = { header = \"x user\" }\n"), 5, 21,
                     "is not a valid header name");
  }
  SUBCASE("valid header and cookie forms") {
    LoadResult r = load(with_base("sticky = { header = \"X-User\" }\n"));
    REQUIRE(r.config.has_value());
    StickySpec s = r.config->functions[0].aliases[0].sticky;
    CHECK(s.kind == StickySpec::Kind::kHeader);
    CHECK(s.name == "x-user");
    r = load(with_base("sticky = { cookie = \"sluice-b\", issue = true }\n"));
    REQUIRE(r.config.has_value());
    s = r.config->functions[0].aliases[0].sticky;
    CHECK(s.kind == StickySpec::Kind::kCookie);
    CHECK(s.name == "sluice-b");
    CHECK(s.issue);
  }
}

TEST_CASE("selection is random or exact") {
  expect_one_error(
      with_base("selection = \"rand\"\n"), 5, 13,
      "unknown selection \"rand\" for alias f:prod (expected \"random\" or \"exact\")");
  LoadResult r = load(with_base("selection = \"exact\"\n"));
  REQUIRE(r.config.has_value());
  CHECK(r.config->functions[0].aliases[0].selection == Selection::kExact);
  r = load(kBase);
  REQUIRE(r.config.has_value());
  CHECK(r.config->functions[0].aliases[0].selection == Selection::kRandom);
}

TEST_CASE("a non-loopback admin address needs a token file") {
  expect_one_error("\n[admin]\naddress = \"0.0.0.0:9901\"\n", 2, 11,
                   "admin address \"0.0.0.0:9901\" is not loopback, so it needs a token");
  CHECK(load("\n[admin]\naddress = \"0.0.0.0:9901\"\ntoken_file = \"/etc/sluice/token\"\n").config);
  CHECK(load("\n[admin]\naddress = \"[::1]:9901\"\n").config);
  CHECK(load("\n[admin]\naddress = \"localhost:9901\"\n").config);
  CHECK(load("\n[admin]\naddress = \"127.0.0.2:9901\"\n").config);
}

TEST_CASE("admin read_token_file is read, needs token_file, and must be a string") {
  const LoadResult r =
      load("\n[admin]\naddress = \"10.0.0.1:9901\"\ntoken_file = \"t\"\nread_token_file = \"r\"\n");
  REQUIRE(r.config);
  CHECK(r.config->admin.read_token_file == "r");
  CHECK(load("").config->admin.read_token_file.empty());
  expect_one_error("\n[admin]\n  read_token_file = \"r\"\n", 2, 21,
                   "admin.read_token_file needs admin.token_file too");
  expect_one_error("\n[admin]\ntoken_file = \"t\"\nread_token_file = 3\n", 3, 19,
                   "wrong type for admin.read_token_file: an integer (expected a string)");
}

TEST_CASE("listen accepts one table or an array of tables, with or without tls") {
  SUBCASE("an array of tables") {
    const LoadResult r = load(R"(
[[listen]]
address = "127.0.0.1:8080"
[[listen]]
address = "127.0.0.1:8443"
)");
    CAPTURE(test::all_messages(r.errors));
    REQUIRE(r.config.has_value());
    REQUIRE(r.config->listen.size() == 2);
    CHECK(r.config->listen[1].address.text == "127.0.0.1:8443");
  }
  SUBCASE("tls with one pair, paths relative to the config file") {
    const LoadResult r = load(std::string(R"(
[[listen]]
address = "127.0.0.1:8443"
tls = { cert = "c.pem", key = "/etc/k.pem", min_version = "TLSv1.3" })") +
                              kBase + "[[routes]]\ntarget = \"f:prod\"\n");
    CAPTURE(test::all_messages(r.errors));
    REQUIRE(r.config.has_value());
    REQUIRE(r.config->listen[0].tls.has_value());
    const config::TlsSpec& t = *r.config->listen[0].tls;
    REQUIRE(t.certificates.size() == 1);
    CHECK(t.certificates[0].key == "/etc/k.pem");
    CHECK(t.certificates[0].cert == "c.pem");  // "t.toml" has no directory
    CHECK(t.certificates[0].cert_pos.line == 3);
    CHECK(t.min_version == "TLSv1.3");
  }
  SUBCASE("tls without a key names the missing key") {
    expect_one_error("\n[listen]\naddress = \"127.0.0.1:8443\"\ntls = { cert = \"c.pem\" }\n", 3, 7,
                     "listen.tls.key is missing");
  }
  SUBCASE("tls that is not a table") {
    expect_one_error("\n[listen]\naddress = \"127.0.0.1:8443\"\n  tls = 1\n", 3, 9,
                     "wrong type for listen.tls");
  }
  SUBCASE("tls with both forms, or an old version") {
    expect_one_error(
        "\n[listen]\naddress = \"127.0.0.1:8443\"\ntls = { cert = \"c\", key = \"k\", "
        "certificates = [{ cert = \"c\", key = \"k\" }] }\n",
        3, 47, "both certificates and cert/key");
    expect_one_error(
        "\n[listen]\naddress = \"127.0.0.1:8443\"\ntls = { cert = \"c\", key = \"k\", "
        "min_version = \"TLSv1.0\" }\n",
        3, 46, "bad listen.tls.min_version");
  }
  SUBCASE("the same address twice") {
    expect_one_error(R"(
[[listen]]
address = "127.0.0.1:8080"
[[listen]]
address = "127.0.0.1:8080"
)",
                     4, 11,
                     "duplicate listen address \"127.0.0.1:8080\" (already listed at line 2");
  }
}

TEST_CASE("listen trusted_proxies are CIDRs, checked where they are written") {
  SUBCASE("IPv4 and IPv6 ranges per listener; default: trust nobody") {
    const LoadResult r = load(R"(
[[listen]]
address = "127.0.0.1:8080"
trusted_proxies = ["10.0.0.0/8", "::1/128", "192.168.1.7"]
[[listen]]
address = "127.0.0.1:8081"
)");
    CAPTURE(test::all_messages(r.errors));
    REQUIRE(r.config.has_value());
    REQUIRE(r.config->listen.size() == 2);
    const auto& t = r.config->listen[0].trusted_proxies;
    REQUIRE(t.size() == 3);
    CHECK(http::to_string(t[0]) == "10.0.0.0/8");
    CHECK(http::to_string(t[1]) == "::1/128");
    CHECK(http::to_string(t[2]) == "192.168.1.7/32");
    CHECK(r.config->listen[1].trusted_proxies.empty());
  }
  SUBCASE("a prefix too long is reported at its string") {
    expect_one_error("\n[listen]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n", 2, 34,
                     "bad CIDR \"10.0.0.0/33\" in listen.trusted_proxies: the prefix /33 is "
                     "longer than 32 bits");
  }
  SUBCASE("an IPv6 prefix too long") {
    expect_one_error("\n[listen]\ntrusted_proxies = [\"::1/129\"]\n", 2, 20,
                     "the prefix /129 is longer than 128 bits");
  }
  SUBCASE("not an address") {
    expect_one_error("\n[listen]\ntrusted_proxies = [\"proxy.internal/24\"]\n", 2, 20,
                     "\"proxy.internal\" is not an IPv4 or IPv6 address");
  }
  SUBCASE("host bits set") {
    expect_one_error("\n[listen]\ntrusted_proxies = [\"10.1.2.3/8\"]\n", 2, 20,
                     "host bits are set below the prefix (the network is 10.0.0.0/8)");
  }
  SUBCASE("a string instead of an array") {
    expect_one_error("\n[listen]\ntrusted_proxies = \"10.0.0.0/8\"\n", 2, 19,
                     "wrong type for listen.trusted_proxies: a string (expected an array of CIDR "
                     "strings");
  }
  SUBCASE("a number in the array") {
    expect_one_error("\n[listen]\ntrusted_proxies = [\"10.0.0.0/8\", 8]\n", 2, 34,
                     "wrong type for an entry of listen.trusted_proxies: an integer");
  }
  SUBCASE("every bad entry is reported") {
    const LoadResult r = load("\n[listen]\ntrusted_proxies = [\"a\", \"10.0.0.0/40\"]\n");
    CHECK_FALSE(r.config.has_value());
    CHECK(r.errors.size() == 2);
    CHECK(has(r.errors, 2, 20, "\"a\" is not an IPv4 or IPv6 address"));
    CHECK(has(r.errors, 2, 25, "the prefix /40"));
  }
}

TEST_CASE("an empty file gets every default") {
  const LoadResult r = load("");
  REQUIRE(r.config.has_value());
  const Config& c = *r.config;
  CHECK(c.source == "t.toml");
  CHECK(c.workers == 0);
  CHECK_FALSE(c.strict);
  REQUIRE(c.listen.size() == 1);
  CHECK(c.listen[0].address.text == "0.0.0.0:8080");
  CHECK(c.listen[0].address.port == 8080);
  CHECK(c.admin.address.text == "127.0.0.1:9901");
  CHECK(c.admin.token_file.empty());
  CHECK(c.state_dir.empty());
  CHECK(c.limits.header_timeout_ms == 10000);
  CHECK(c.limits.idle_timeout_ms == 60000);
  CHECK(c.limits.max_header_bytes == 65536);
  CHECK(c.limits.max_headers == 100);
  CHECK(c.limits.max_body_size == 0);
  CHECK(c.limits.max_connections == 10000);
  CHECK(c.limits.drain_timeout_ms == 30000);
  CHECK(c.limits.body_timeout_ms == 60000);
  CHECK(c.limits.send_timeout_ms == 60000);
  CHECK(c.limits.tunnel_idle_timeout_ms == 3600000);
  CHECK(c.limits.max_connections_per_client == 1024);
  CHECK(c.upstream.keepalive == 1024);
  CHECK(c.upstream.idle_timeout_ms == 60000);
  CHECK(c.log.access == "stdout");
  CHECK(c.functions.empty());
  CHECK(c.routes.empty());
}

TEST_CASE("every top-level section is read into the model") {
  const LoadResult r = load(R"(
workers = 3
strict = false
[listen]
address = "127.0.0.1:18080"
[admin]
address = "127.0.0.1:19901"
token_file = "/tmp/token"
[state]
dir = "/var/lib/sluice"
[limits]
header_timeout = "5s"
idle_timeout = "30s"
max_header_bytes = 8192
max_headers = 50
max_body_size = 1048576
max_connections = 100
max_connections_per_client = 7
body_timeout = "3s"
send_timeout = "4s"
tunnel_idle_timeout = "2m"
drain_timeout = "10s"
[upstream]
keepalive = 8
idle_timeout = "15s"
[log]
access = "off"
)");
  CAPTURE(test::all_messages(r.errors));
  REQUIRE(r.config.has_value());
  const Config& c = *r.config;
  CHECK(c.workers == 3);
  CHECK(c.listen[0].address.port == 18080);
  CHECK(c.admin.address.port == 19901);
  CHECK(c.admin.token_file == "/tmp/token");
  CHECK(c.state_dir == "/var/lib/sluice");
  CHECK(c.limits.header_timeout_ms == 5000);
  CHECK(c.limits.idle_timeout_ms == 30000);
  CHECK(c.limits.max_header_bytes == 8192);
  CHECK(c.limits.max_headers == 50);
  CHECK(c.limits.max_body_size == 1048576);
  CHECK(c.limits.max_connections == 100);
  CHECK(c.limits.drain_timeout_ms == 10000);
  CHECK(c.limits.max_connections_per_client == 7);
  CHECK(c.limits.body_timeout_ms == 3000);
  CHECK(c.limits.send_timeout_ms == 4000);
  CHECK(c.limits.tunnel_idle_timeout_ms == 120000);
  CHECK(c.upstream.keepalive == 8);
  CHECK(c.upstream.idle_timeout_ms == 15000);
  CHECK(c.log.access == "off");
}

TEST_CASE("upstream.resolve_interval is a duration: 0s or at least 1s, default 30s") {
  CHECK(load("").config->upstream.resolve_interval_ms == 30000);
  CHECK(load("[upstream]\nresolve_interval = \"5m\"\n").config->upstream.resolve_interval_ms ==
        300000);
  CHECK(load("[upstream]\nresolve_interval = \"0s\"\n").config->upstream.resolve_interval_ms == 0);
  expect_one_error("\n[upstream]\nresolve_interval = \"500ms\"\n", 2, 20,
                   "upstream.resolve_interval 500ms is too short (expected \"0s\" to resolve only "
                   "at start and reload, or at least \"1s\")");
  expect_one_error("\n[upstream]\nresolve_interval = 30\n", 2, 20,
                   "wrong type for upstream.resolve_interval");
  expect_one_error("\n[upstream]\nresolve_interval = \"30\"\n", 2, 20,
                   "bad duration \"30\" for upstream.resolve_interval");
}

TEST_CASE("versions inherit request settings from their function") {
  const LoadResult r = load(R"(
[functions.f]
connect_timeout = "2s"
max_concurrency = 50
version_header = "X-Served-By"
[functions.f.versions.1]
endpoints = ["127.0.0.1:1"]
[functions.f.versions.2]
endpoints = ["127.0.0.1:2"]
response_timeout = "5s"
max_concurrency = 0
[functions.f.latest]
endpoints = ["127.0.0.1:3"]
connect_timeout = "100ms"
)");
  CAPTURE(test::all_messages(r.errors));
  REQUIRE(r.config.has_value());
  const FunctionSpec& f = r.config->functions[0];
  CHECK(f.version_header == "x-served-by");
  const UpstreamSettings& v1 = f.versions.at(1).settings;
  CHECK(v1.connect_timeout_ms == 2000u);
  CHECK_FALSE(v1.response_timeout_ms.has_value());
  CHECK(v1.max_concurrency == 50u);
  const UpstreamSettings& v2 = f.versions.at(2).settings;
  CHECK(v2.connect_timeout_ms == 2000u);
  CHECK(v2.response_timeout_ms == 5000u);
  CHECK(v2.max_concurrency == 0u);
  REQUIRE(f.latest.has_value());
  CHECK(f.latest->number == "$LATEST");
  CHECK(f.latest->settings.connect_timeout_ms == 100u);
}

TEST_CASE("an empty version_header turns the header off, an invalid one is an error") {
  LoadResult r = load(with_base("[functions.f]\nversion_header = \"\"\n"));
  REQUIRE(r.config.has_value());
  CHECK(r.config->functions[0].version_header.empty());
  r = load(kBase);
  REQUIRE(r.config.has_value());
  CHECK(r.config->functions[0].version_header == "x-sluice-version");
  expect_one_error(with_base("[functions.f]\nversion_header = \"x version\"\n"), 6, 18,
                   "version_header \"x version\" is not a valid header name");
}

TEST_CASE("functions keep file order, not key order") {
  const LoadResult r = load(R"(
[functions.zeta.versions.1]
endpoints = ["127.0.0.1:1"]
[functions.alpha.versions.1]
endpoints = ["127.0.0.1:2"]
)");
  REQUIRE(r.config.has_value());
  REQUIRE(r.config->functions.size() == 2);
  CHECK(r.config->functions[0].name == "zeta");
  CHECK(r.config->functions[1].name == "alpha");
}

TEST_CASE("every error in a file is reported in one run, in file order") {
  const LoadResult r = load(R"(
workers = "two"
[listen]
adress = "0.0.0.0:80"
[limits]
header_timeout = "10x"
[functions.f.versions.1]
endpoints = ["127.0.0.1:1"]
[functions.f.aliases.prod]
traffic = { "1" = -1, "9" = 1 }
[[routes]]
target = "g:prod"
)");
  const std::string messages = test::all_messages(r.errors);
  CAPTURE(messages);
  CHECK_FALSE(r.config.has_value());
  REQUIRE(r.errors.size() == 6);
  CHECK(has(r.errors, 1, 11, "wrong type for workers"));
  CHECK(has(r.errors, 3, 1, "unknown key \"adress\""));
  CHECK(has(r.errors, 5, 18, "bad duration \"10x\""));
  CHECK(has(r.errors, 9, 19, "negative weight -1"));
  CHECK(has(r.errors, 9, 23, "sends traffic to version 9, which is not defined (defined: 1)"));
  CHECK(has(r.errors, 11, 10, "names function \"g\""));
  for (size_t i = 1; i < r.errors.size(); ++i)
    CHECK(r.errors[i - 1].pos.line <= r.errors[i].pos.line);
}

TEST_CASE("a TOML syntax error names its line and column") {
  const LoadResult r = load("\nworkers = 2\nlimits = = 3\n");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].pos.line == 2);
  CHECK(r.errors[0].pos.column == 10);
  CHECK(r.errors[0].message.find("(expected valid TOML)") != std::string::npos);
  CHECK_FALSE(r.config.has_value());
}

TEST_CASE("a missing file is one error naming the file") {
  const LoadResult r = load_file("/nonexistent/sluice.toml");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].to_string() ==
        "/nonexistent/sluice.toml: cannot read the file: No such file or directory (expected a "
        "readable TOML file)");
}

TEST_CASE("strict turns lint warnings into errors") {
  // Version 2 is unused: a lint warning.
  const std::string text = R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.versions.2]
endpoints = ["127.0.0.1:9002"]
[functions.f.aliases.prod]
traffic = { "1" = 100 }
)";
  SUBCASE("not strict: a warning, and the config loads") {
    const LoadResult r = load(text);
    REQUIRE(r.config.has_value());
    REQUIRE(r.warnings.size() == 1);
    CHECK(r.warnings[0].pos.line == 3);
    CHECK(r.warnings[0].pos.column == 23);
  }
  SUBCASE("strict = true in the file") {
    const LoadResult r = load("\nstrict = true" + text);
    CHECK_FALSE(r.config.has_value());
    CHECK(r.warnings.empty());
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].pos.line == 4);
    CHECK(r.errors[0].message.find("version f:2 is not used by any alias or route") !=
          std::string::npos);
  }
  SUBCASE("--strict from the command line") {
    const LoadResult r = load(text, true);
    CHECK_FALSE(r.config.has_value());
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].pos.line == 3);
  }
}

TEST_CASE("diagnostics format as file:line:col: message") {
  CHECK(Diagnostic{"sluice.toml", {27, 12}, "boom (expected calm)"}.to_string() ==
        "sluice.toml:27:12: boom (expected calm)");
  CHECK(Diagnostic{"sluice.toml", {}, "unreadable"}.to_string() == "sluice.toml: unreadable");
}

TEST_CASE("the example configs in config/ load cleanly") {
  SUBCASE("config/sluice.toml: every key") {
    const LoadResult r = load_file(SLUICE_SOURCE_DIR "/config/sluice.toml");
    CAPTURE(test::all_messages(r.errors));
    CAPTURE(test::all_messages(r.warnings));
    REQUIRE(r.config.has_value());
    CHECK(r.warnings.empty());
    CHECK(r.config->functions.size() == 1);
    CHECK(r.config->routes.size() == 2);
  }
  SUBCASE("config/demo.toml: the demo") {
    const LoadResult r = load_file(SLUICE_SOURCE_DIR "/config/demo.toml");
    CAPTURE(test::all_messages(r.errors));
    REQUIRE(r.config.has_value());
    const Config& c = *r.config;
    REQUIRE(c.functions.size() == 1);
    const FunctionSpec& f = c.functions[0];
    CHECK(f.name == "hello");
    REQUIRE(f.versions.size() == 3);
    CHECK(f.versions.at(1).endpoints[0].address.text == "127.0.0.1:9101");
    CHECK(f.versions.at(2).endpoints[0].address.text == "127.0.0.1:9102");
    CHECK(f.versions.at(3).endpoints[0].address.text == "127.0.0.1:9103");
    REQUIRE(f.aliases.size() == 1);
    CHECK(f.aliases[0].name == "prod");
    REQUIRE(f.aliases[0].traffic.size() == 2);
    CHECK(f.aliases[0].traffic[0].weight == 90);
    CHECK(f.aliases[0].traffic[1].weight == 10);
    REQUIRE(c.routes.size() == 1);
    CHECK(c.routes[0].path_prefix == "/");
    CHECK(c.routes[0].target == "prod");
    CHECK(c.listen[0].address.text == "127.0.0.1:8080");
    CHECK(c.admin.address.text == "127.0.0.1:9901");
    CHECK(c.log.access == "off");
    // Version 3 waits for a shift: the only lint finding.
    REQUIRE(r.warnings.size() == 1);
    CHECK(r.warnings[0].message.find("hello:3") != std::string::npos);
  }
}

TEST_CASE("a version's tls: true, a table inherited from the function, or an error at its key") {
  SUBCASE("true on the function reaches every version over TLS, verifying") {
    const LoadResult r = load(std::string(R"(
[functions.f]
tls = true)") + kBase + "[[routes]]\ntarget = \"f:prod\"\n");
    CAPTURE(test::all_messages(r.errors));
    REQUIRE(r.config.has_value());
    const auto& v = r.config->functions[0].versions.at(1);
    REQUIRE(v.settings.tls.has_value());
    CHECK(v.settings.tls->verify);
    CHECK(v.settings.tls->ca.empty());
  }
  SUBCASE("a table on the version") {
    const LoadResult r = load(std::string(R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
tls = { ca = "/etc/ca.pem", server_name = "api.internal", verify = false }
[functions.f.aliases.prod]
traffic = { "1" = 100 }
[[routes]]
target = "f:prod"
)"));
    CAPTURE(test::all_messages(r.errors));
    REQUIRE(r.config.has_value());
    const auto& tls = *r.config->functions[0].versions.at(1).settings.tls;
    CHECK(tls.ca == "/etc/ca.pem");
    CHECK(tls.server_name == "api.internal");
    CHECK_FALSE(tls.verify);
    CHECK(tls.ca_pos.line == 3);
  }
  SUBCASE("cert without key") {
    expect_one_error(with_base("[functions.f.latest]\nendpoints = [\"127.0.0.1:1\"]\n"
                               "tls = { cert = \"c.pem\" }\n"),
                     7, 1, "has cert without key");
  }
  SUBCASE("a wrong type") {
    expect_one_error(with_base("[functions.f.latest]\nendpoints = [\"127.0.0.1:1\"]\n"
                               "tls = \"yes\"\n"),
                     7, 7, "wrong type for functions.f.latest.tls");
  }
}

}  // namespace
TEST_CASE("protocol: h2 over TLS, h2c over plaintext, inherited, and wrong pairings name the key") {
  SUBCASE("h2c on the function reaches every version; grpc_error_codes set the counted codes") {
    const LoadResult r = load(std::string(R"(
[functions.f]
protocol = "h2c"
grpc_error_codes = [14, 4])") +
                              kBase + "[[routes]]\ntarget = \"f:prod\"\n");
    CAPTURE(test::all_messages(r.errors));
    REQUIRE(r.config.has_value());
    CHECK(r.config->functions[0].versions.at(1).settings.protocol == Protocol::kH2c);
    CHECK(r.config->functions[0].grpc_errors == ((1u << 14) | (1u << 4)));
  }
  SUBCASE("h2 with tls offers only h2 by ALPN (its own TLS context)") {
    const LoadResult r = load(std::string(R"(
[functions.f]
protocol = "h2"
tls = true)") + kBase + "[[routes]]\ntarget = \"f:prod\"\n");
    CAPTURE(test::all_messages(r.errors));
    REQUIRE(r.config.has_value());
    const auto& v = r.config->functions[0].versions.at(1);
    REQUIRE(v.settings.tls.has_value());
    CHECK(v.settings.tls->h2);
    CHECK(v.settings.tls->identity().find("|h2") != std::string::npos);
  }
  SUBCASE("the default: HTTP/1.1 and the default gRPC error codes") {
    const LoadResult r = load(with_base("[[routes]]\ntarget = \"f:prod\"\n"));
    REQUIRE(r.config.has_value());
    CHECK_FALSE(r.config->functions[0].versions.at(1).settings.protocol.has_value());
    CHECK(r.config->functions[0].grpc_errors ==
          ((1u << 2) | (1u << 4) | (1u << 8) | (1u << 13) | (1u << 14) | (1u << 15)));
  }
  SUBCASE("h2 without tls") {
    expect_one_error(with_base("[functions.f.latest]\nendpoints = [\"127.0.0.1:1\"]\n"
                               "protocol = \"h2\"\n"),
                     7, 12, "has protocol = \"h2\" without tls");
  }
  SUBCASE("h2c with tls") {
    expect_one_error(with_base("[functions.f.latest]\nendpoints = [\"127.0.0.1:1\"]\n"
                               "tls = true\nprotocol = \"h2c\"\n"),
                     8, 12, "has protocol = \"h2c\" with tls");
  }
  SUBCASE("an unknown protocol") {
    expect_one_error(with_base("[functions.f.latest]\nendpoints = [\"127.0.0.1:1\"]\n"
                               "protocol = \"http3\"\n"),
                     7, 12, "expected \"http1\", \"h2\" or \"h2c\"");
  }
  SUBCASE("active health checks cannot speak to an h2c version") {
    expect_one_error(with_base("[functions.f.latest]\nendpoints = [\"127.0.0.1:1\"]\n"
                               "protocol = \"h2c\"\nhealth = { path = \"/\" }\n"),
                     7, 12, "has active health checks, which speak HTTP/1.1");
  }
  SUBCASE("a gRPC code out of range") {
    expect_one_error(std::string("[functions.f]\ngrpc_error_codes = [0]\n") + kBase +
                         "[[routes]]\ntarget = \"f:prod\"\n",
                     2, 21, "grpc_error_codes");
  }
  SUBCASE("h2c on a TLS listener") {
    expect_one_error(
        with_base("[[routes]]\ntarget = \"f:prod\"\n[listen]\naddress = \"127.0.0.1:1\"\n"
                  "tls = { cert = \"c.pem\", key = \"k.pem\" }\nh2c = true\n"),
        10, 1, "listen.h2c is for plaintext listeners");
  }
}

}  // namespace sluice::config
