// Lint tests: each warning, where it points, and what stays quiet.
#include <doctest/doctest.h>

#include "config/lint.h"
#include "test_util.h"

namespace sluice::config {
namespace {

using test::has;
using test::load;

TEST_CASE("an alias named prod, production or live sending traffic to $LATEST is a warning") {
  for (const char* name : {"prod", "production", "live"}) {
    const std::string shown = name;
    CAPTURE(shown);
    const LoadResult r = load(std::string(R"(
[functions.f.latest]
endpoints = ["127.0.0.1:9000"]
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.aliases.)") + name +
                              R"(]
traffic = { "1" = 90, "$LATEST" = 10 }
)");
    REQUIRE(r.config.has_value());
    const std::string messages = test::all_messages(r.warnings);
    CAPTURE(messages);
    REQUIRE(r.warnings.size() == 1);
    CHECK(has(r.warnings, 6, 23, "alias f:" + shown + " sends traffic to $LATEST"));
  }
}

TEST_CASE("other aliases may send traffic to $LATEST, and prod may list it at 0") {
  const LoadResult r = load(R"(
[functions.f.latest]
endpoints = ["127.0.0.1:9000"]
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.aliases.dev]
traffic = { "$LATEST" = 100 }
[functions.f.aliases.prod]
traffic = { "1" = 100 }
)");
  REQUIRE(r.config.has_value());
  CHECK(r.warnings.empty());
}

TEST_CASE("a published version no alias or route uses is a warning at its table") {
  const LoadResult r = load(R"(
[functions.f.latest]
endpoints = ["127.0.0.1:9000"]
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.versions.2]
endpoints = ["127.0.0.1:9002"]
[functions.f.versions.3]
endpoints = ["127.0.0.1:9003"]
[functions.f.aliases.prod]
traffic = { "1" = 100 }
[[routes]]
target = "f:3"
)");
  REQUIRE(r.config.has_value());
  const std::string messages = test::all_messages(r.warnings);
  CAPTURE(messages);
  // Version 1 is in an alias, 3 is pinned by a route, $LATEST is exempt: only 2 is unused.
  REQUIRE(r.warnings.size() == 1);
  CHECK(has(r.warnings, 5, 23, "version f:2 is not used by any alias or route"));
}

TEST_CASE("an alias with all traffic on one version that lists others at 0 is a warning") {
  const LoadResult r = load(R"(
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.versions.2]
endpoints = ["127.0.0.1:9002"]
[functions.f.versions.3]
endpoints = ["127.0.0.1:9003"]
[functions.f.aliases.prod]
traffic = { "1" = 0, "2" = 100, "3" = 0 }
)");
  REQUIRE(r.config.has_value());
  const std::string messages = test::all_messages(r.warnings);
  CAPTURE(messages);
  REQUIRE(r.warnings.size() == 1);
  CHECK(
      has(r.warnings, 8, 11,
          "alias f:prod sends 100% of its traffic to version 2 but still lists 1, 3 at weight 0"));
}

TEST_CASE("lint findings come out in file order and name the file") {
  const LoadResult r = load(R"(
[functions.f.latest]
endpoints = ["127.0.0.1:9000"]
[functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.versions.2]
endpoints = ["127.0.0.1:9002"]
[functions.f.aliases.live]
traffic = { "$LATEST" = 100, "2" = 0 }
)");
  REQUIRE(r.config.has_value());
  const std::string messages = test::all_messages(r.warnings);
  CAPTURE(messages);
  REQUIRE(r.warnings.size() == 3);
  CHECK(r.warnings[0].pos.line == 3);  // version 1 unused
  CHECK(r.warnings[1].pos.line == 8);  // 100% on $LATEST, 2 listed at 0 (traffic table, col 11)
  CHECK(r.warnings[1].pos.column == 11);
  CHECK(r.warnings[2].pos.line == 8);  // live -> $LATEST (the key, col 13)
  CHECK(r.warnings[2].pos.column == 13);
  for (const Diagnostic& d : r.warnings) CHECK(d.file == "t.toml");
}

}  // namespace
}  // namespace sluice::config
