// End-to-end: graceful stop. SIGTERM/SIGINT stop accepting, let in-flight requests finish up to
// drain_timeout, and exit 0.
#include <signal.h>

#include <string>

#include "e2e.h"

using namespace sluice::e2e;

namespace {

std::string config_for(const Upstream& up, const std::string& limits = "") {
  ConfigText cfg;
  cfg.limits = limits;
  cfg.function("shop", {{"1", {up.address()}}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  return cfg.str();
}

}  // namespace

TEST_CASE("SIGTERM lets an in-flight slow request finish and exits 0") {
  Upstream v1("v1");
  Sluice s(config_for(v1));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send(raw_request("GET", "/slow?ms=1000")));
  REQUIRE(poll_until([&] { return v1.requests() == 1; }, 5000));
  auto start = std::chrono::steady_clock::now();
  REQUIRE(s.signal(SIGTERM));

  // New connections are no longer served (refused, or closed without an answer).
  bool refusing = poll_until(
      [&] {
        RawClient n(s.port());
        if (!n.connected() || !n.send(raw_request("GET", "/new"))) return true;
        auto r = n.read_response(300);
        return !r;
      },
      2000);
  CHECK(refusing);

  auto r = c.read_response(5000);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "slow v1");
  auto status = s.wait_exit(10000);
  REQUIRE(status);
  CHECK(*status == 0);
  CHECK(elapsed_ms(start) >= 700);  // it waited for the request
}

TEST_CASE("SIGTERM exits 0 once drain_timeout passes even with a request still running") {
  Upstream v1("v1");
  Sluice s(config_for(v1, "drain_timeout = \"500ms\"\n"));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send(raw_request("GET", "/slow?ms=20000")));
  REQUIRE(poll_until([&] { return v1.requests() == 1; }, 5000));
  auto start = std::chrono::steady_clock::now();
  REQUIRE(s.signal(SIGTERM));
  auto status = s.wait_exit(5000);
  REQUIRE(status);
  CHECK(*status == 0);
  long ms = elapsed_ms(start);
  CHECK(ms >= 400);
  CHECK(ms < 3000);
  CHECK(c.wait_closed(2000));
}

TEST_CASE("SIGINT stops sluice gracefully too") {
  Upstream v1("v1");
  Sluice s(config_for(v1));
  REQUIRE_STARTED(s);
  CurlClient curl;
  CHECK(curl.get(s.url("/")).status == 200);
  REQUIRE(s.signal(SIGINT));
  auto status = s.wait_exit(10000);
  REQUIRE(status);
  CHECK(*status == 0);
}

TEST_CASE("an idle keep-alive client does not hold up SIGTERM") {
  Upstream v1("v1");
  Sluice s(config_for(v1));
  REQUIRE_STARTED(s);
  RawClient idle(s.port());
  REQUIRE(idle.send(raw_request("GET", "/")));
  REQUIRE(idle.read_response());
  auto start = std::chrono::steady_clock::now();
  REQUIRE(s.signal(SIGTERM));
  auto status = s.wait_exit(10000);
  REQUIRE(status);
  CHECK(*status == 0);
  CHECK(elapsed_ms(start) < 3000);  // far below the 30 s default drain timeout
  CHECK(idle.wait_closed(2000));
}
