// Tests for the ShiftManager without a loop: a real Control over a temp config and state dir,
// an observe::Registry fed by hand, and tick() driven with injected times.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <uv.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "admin/control.h"
#include "shift/manager.h"

namespace sluice::shift {
namespace {

using nlohmann::json;

struct Fixture {
  std::string dir, path;
  observe::Registry registry{1};
  uint64_t t0 = uv_hrtime() / 1000000;  // the manager's clock without a loop

  Fixture() {
    char tmpl[] = "/tmp/sluice-shift-unit-XXXXXX";
    dir = ::mkdtemp(tmpl);
    path = dir + "/sluice.toml";
    std::ofstream(path) << "[listen]\naddress = \"127.0.0.1:0\"\n[state]\ndir = \"" + dir +
                               "/state\"\n"
                               "[functions.shop.versions.1]\nendpoints = [\"127.0.0.1:7001\"]\n"
                               "[functions.shop.versions.2]\nendpoints = [\"127.0.0.1:7002\"]\n"
                               "[functions.shop.aliases.live]\ntraffic = { \"1\" = 100 }\n"
                               "[[routes]]\ntarget = \"shop:live\"\n";
  }
  ~Fixture() { std::filesystem::remove_all(dir); }

  std::string state_dir() const { return dir + "/state"; }
  ShiftManager::RegistryGetter getter() {
    return [this]() -> const observe::Registry* { return &registry; };
  }
  // `ok` 200s and `failed` 500s of `us` each for `version` of shop:live.
  void serve(const std::string& version, int ok, int failed, uint64_t us = 2000) {
    observe::Series* s = registry.worker(0).series("shop", "live", version);
    for (int i = 0; i < ok + failed; ++i) {
      s->begin();
      s->end(i < ok ? 200 : 500, us, us, observe::FailureKind::kNone, 0, t0);
    }
  }
  std::vector<std::string> events() const {
    std::vector<std::string> out;
    std::ifstream in(state_dir() + "/audit.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      json j = json::parse(line);
      if (j.contains("event")) out.push_back(j["event"]);
    }
    return out;
  }
};

std::string traffic(const admin::Control& c) {
  return admin::traffic_text(admin::traffic_of(c.table()->config().functions[0].aliases[0]));
}

const json kPlan = json::parse(
    R"({"to":"2","steps":[10,50,100],"every":"10s","guard":{"max_error_rate":0.05,"min_requests":20}})");

}  // namespace

TEST_CASE("a shift walks every step on enough healthy requests and promotes") {
  Fixture fx;
  admin::Control control(fx.path);
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter(), fx.state_dir());
  m.set_clock([&fx] { return fx.t0; });
  admin::ApiResult r = m.begin("shop", "live", kPlan, "api:test");
  REQUIRE(r.status == 200);
  CHECK(r.body["stable"] == "1");
  CHECK(traffic(control) == "1=90 2=10");

  SUBCASE("a second shift on the alias gets 409") {
    CHECK(m.begin("shop", "live", kPlan, "api:test").status == 409);
  }

  fx.serve("2", 30, 0);
  fx.serve("1", 270, 0);
  m.tick(fx.t0 + 5000);  // mid-interval: holds
  CHECK(m.get("shop", "live").body["step"] == 1);
  CHECK(m.get("shop", "live").body["reason"] == "step 1 interval: 5000ms left");
  m.tick(fx.t0 + 10000);
  CHECK(m.get("shop", "live").body["step"] == 2);
  CHECK(traffic(control) == "1=50 2=50");
  json h = m.get("shop", "live").body["history"][0];
  CHECK(h["outcome"] == "passed");
  CHECK(h["candidate"]["requests"] == 30);
  CHECK(h["stable"]["requests"] == 270);

  m.tick(fx.t0 + 20000);  // no new requests in step 2's window
  CHECK(m.get("shop", "live").body["reason"] ==
        "waiting for min_requests: 0 of 20 candidate requests in the window");
  fx.serve("2", 20, 0);
  m.tick(fx.t0 + 20500);
  CHECK(m.get("shop", "live").body["step"] == 3);
  CHECK(traffic(control) == "1=0 2=100");
  fx.serve("2", 20, 0);
  m.tick(fx.t0 + 30500);
  json done = m.get("shop", "live").body;
  CHECK(done["state"] == "promoted");
  CHECK(traffic(control) == "2=100");
  CHECK(fx.events() == std::vector<std::string>{"start", "advance", "advance", "promote"});
  CHECK(m.status()["running"] == 0);
}

TEST_CASE("a breach rolls back to the pre-shift map mid-step") {
  Fixture fx;
  admin::Control control(fx.path);
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter(), fx.state_dir());
  m.set_clock([&fx] { return fx.t0; });
  REQUIRE(m.begin("shop", "live", kPlan, "api:test").status == 200);
  fx.serve("2", 16, 4);  // 20% errors
  fx.serve("1", 100, 0);
  m.tick(fx.t0 + 1000);
  json s = m.get("shop", "live").body;
  CHECK(s["state"] == "rolled_back");
  CHECK(s["reason"] == "candidate error rate 20.0% > limit 5.0% over 20 requests (stable 0.0%)");
  CHECK(traffic(control) == "1=100");
  CHECK(fx.events() == std::vector<std::string>{"start", "rollback"});
}

TEST_CASE("a change to the alias outside the shift interrupts it and leaves traffic alone") {
  Fixture fx;
  admin::Control control(fx.path);
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter(), fx.state_dir());
  m.set_clock([&fx] { return fx.t0; });
  REQUIRE(m.begin("shop", "live", kPlan, "api:test").status == 200);
  REQUIRE(control.set_alias("shop", "live", json{{"traffic", {{"1", 70}, {"2", 30}}}}, "api:x")
              .status == 200);
  m.tick(fx.t0 + 1000);
  CHECK(m.get("shop", "live").body["state"] == "interrupted");
  CHECK(traffic(control) == "1=70 2=30");
}

TEST_CASE("a restarted manager resumes a running shift at its step with a fresh window") {
  Fixture fx;
  {
    admin::Control control(fx.path);
    REQUIRE(control.init());
    ShiftManager m(control, fx.getter(), fx.state_dir());
    m.set_clock([&fx] { return fx.t0; });
    REQUIRE(m.begin("shop", "live", kPlan, "api:test").status == 200);
    fx.serve("2", 30, 0);
    m.tick(fx.t0 + 10000);
    REQUIRE(m.get("shop", "live").body["step"] == 2);
  }
  admin::Control control(fx.path);
  REQUIRE(control.init());
  CHECK(traffic(control) == "1=50 2=50");
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    ShiftManager m(control, fx.getter(), fx.state_dir());
    m.set_clock([&fx] { return fx.t0; });
    REQUIRE(m.start(&loop) == 0);
    json s = m.get("shop", "live").body;
    CHECK(s["state"] == "running");
    CHECK(s["step"] == 2);
    CHECK(s["reason"] == "resumed after restart at step 2 with a fresh window");
    CHECK(fx.events().back() == "resume");
    m.close();
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("a start is refused with the field named") {
  Fixture fx;
  admin::Control control(fx.path);
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter(), fx.state_dir());
  m.set_clock([&fx] { return fx.t0; });
  CHECK(m.begin("nope", "live", kPlan, "t").status == 404);
  CHECK(m.begin("shop", "nope", kPlan, "t").status == 404);
  admin::ApiResult r = m.begin("shop", "live", json{{"to", "9"}}, "t");
  CHECK(r.status == 400);
  CHECK(r.body["field"] == "to");
  r = m.begin("shop", "live", json{{"to", "1"}}, "t");
  CHECK(r.status == 409);  // 1 already has all the traffic
  CHECK(m.handle("PUT", "shop", "live", "{}", "t").status == 405);
  CHECK(m.handle("POST", "shop", "live", "{", "t").status == 400);
  CHECK(m.get("shop", "live").status == 404);
  CHECK(m.abort("shop", "live", "t").status == 404);
}

}  // namespace sluice::shift
