// End-to-end: graceful stop. SIGTERM/SIGINT stop accepting, let in-flight requests finish up to
// drain_timeout, and exit 0.
#include <signal.h>

#include <cmath>
#include <map>
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

TEST_CASE("sluice demo serves hello:prod at 90/10 on 127.0.0.1:8080") {
  // The demo uses fixed ports; skip (with a message) if something else holds them.
  for (uint16_t port : {8080, 9101, 9102, 9103, 9901}) {
    RawClient probe(port);
    if (probe.connected()) {
      MESSAGE("port " << port << " is busy; the demo test cannot run here");
      return;
    }
  }
  SluiceOptions opts;
  opts.args = {"demo"};
  Sluice s("# unused\n", opts);
  REQUIRE_STARTED(s);
  CHECK(s.port() == 8080);
  CurlClient curl;
  std::map<std::string, int> bodies;
  std::map<std::string, int> versions;
  constexpr int kRequests = 2000;
  for (int i = 0; i < kRequests; ++i) {
    HttpResult r = curl.get(s.url("/"));
    ++bodies[r.body];
    ++versions[r.header("x-sluice-version")];
  }
  CAPTURE(bodies["hello from v1\n"]);
  CAPTURE(bodies["hello from v2\n"]);
  CHECK(bodies["hello from v1\n"] + bodies["hello from v2\n"] == kRequests);
  CHECK(versions["hello:1"] == bodies["hello from v1\n"]);
  CHECK(std::abs(100.0 * versions["hello:1"] / kRequests - 90.0) <= 2.5);
  CHECK(s.stdout_text().find("curl") != std::string::npos);  // it prints what to try
  CHECK_CLEAN_STOP(s);
}
