// Tests for the ShiftManager without a loop: a real Control over a temp config and state dir,
// an observe::Registry fed by hand, and tick() driven with injected times.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <uv.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "control/control.h"
#include "control/memory_store.h"
#include "control/shift_manager.h"

namespace sluice::control {
namespace {

using nlohmann::json;

struct Fixture {
  std::string dir, path;
  observe::Registry registry{1};
  uint64_t t0 = uv_hrtime() / 1000000;  // the manager's clock without a loop

  // shop with versions 1 to 4; alias live with `traffic`; `extra` appended to the file.
  explicit Fixture(const std::string& traffic = "{ \"1\" = 100 }", const std::string& extra = "") {
    char tmpl[] = "/tmp/sluice-shift-unit-XXXXXX";
    dir = ::mkdtemp(tmpl);
    path = dir + "/sluice.toml";
    write_config(traffic, extra);
  }
  void write_config(const std::string& traffic, const std::string& extra) const {
    std::ofstream(path) << "[listen]\naddress = \"127.0.0.1:0\"\n[state]\ndir = \"" + dir +
                               "/state\"\n"
                               "[functions.shop.versions.1]\nendpoints = [\"127.0.0.1:7001\"]\n"
                               "[functions.shop.versions.2]\nendpoints = [\"127.0.0.1:7002\"]\n"
                               "[functions.shop.versions.3]\nendpoints = [\"127.0.0.1:7003\"]\n"
                               "[functions.shop.versions.4]\nendpoints = [\"127.0.0.1:7004\"]\n"
                               "[[routes]]\ntarget = \"shop:live\"\n"
                               "[functions.shop.aliases.live]\ntraffic = " +
                               traffic + "\n" + extra;
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
  // Every record of audit.jsonl.
  std::vector<json> audit() const {
    std::vector<json> out;
    std::ifstream in(state_dir() + "/audit.jsonl");
    std::string line;
    while (std::getline(in, line)) out.push_back(json::parse(line));
    return out;
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

std::string traffic(const control::Control& c) {
  return control::traffic_text(control::traffic_of(c.table()->config().functions[0].aliases[0]));
}

const json kPlan = json::parse(
    R"({"to":"2","steps":[10,50,100],"every":"10s","guard":{"max_error_rate":0.05,"min_requests":20}})");

}  // namespace

TEST_CASE("a shift walks every step on enough healthy requests and promotes") {
  Fixture fx;
  control::Control control(fx.path);
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter());
  m.set_clock([&fx] { return fx.t0; });
  control::ApiResult r = m.begin("shop", "live", kPlan, "api:test");
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
  control::Control control(fx.path);
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter());
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
  control::Control control(fx.path);
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter());
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
    control::Control control(fx.path);
    REQUIRE(control.init());
    ShiftManager m(control, fx.getter());
    m.set_clock([&fx] { return fx.t0; });
    REQUIRE(m.begin("shop", "live", kPlan, "api:test").status == 200);
    fx.serve("2", 30, 0);
    m.tick(fx.t0 + 10000);
    REQUIRE(m.get("shop", "live").body["step"] == 2);
  }
  control::Control control(fx.path);
  REQUIRE(control.init());
  CHECK(traffic(control) == "1=50 2=50");
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    ShiftManager m(control, fx.getter());
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
  control::Control control(fx.path);
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter());
  m.set_clock([&fx] { return fx.t0; });
  CHECK(m.begin("nope", "live", kPlan, "t").status == 404);
  CHECK(m.begin("shop", "nope", kPlan, "t").status == 404);
  control::ApiResult r = m.begin("shop", "live", json{{"to", "9"}}, "t");
  CHECK(r.status == 400);
  CHECK(r.body["field"] == "to");
  r = m.begin("shop", "live", json{{"to", "1"}}, "t");
  CHECK(r.status == 409);  // 1 already has all the traffic
  CHECK(m.handle("PUT", "shop", "live", "{}", "t").status == 405);
  CHECK(m.handle("POST", "shop", "live", "{", "t").status == 400);
  CHECK(m.get("shop", "live").status == 404);
  CHECK(m.abort("shop", "live", "t").status == 404);
}

TEST_CASE("a shift is refused, naming them, while a third version has traffic") {
  Fixture fx("{ \"1\" = 80, \"2\" = 10, \"3\" = 10 }");
  control::Control control(fx.path);
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter());
  m.set_clock([&fx] { return fx.t0; });
  control::ApiResult r = m.begin("shop", "live", kPlan, "api:test");
  CHECK(r.status == 409);
  CHECK(r.body["field"] == "to");
  CHECK(r.body["error"] ==
        "alias shop:live also sends traffic to version 3 (10.0%); a shift only moves traffic "
        "between the stable version 1 and the candidate 2. Move the other share first (e.g. "
        "sluice alias set shop:live 1=90 2=10 3=0), then start the shift");
  CHECK(traffic(control) == "1=80 2=10 3=10");  // untouched
  CHECK(m.get("shop", "live").status == 404);

  SUBCASE("two others are both named") {
    REQUIRE(control
                .set_alias("shop", "live",
                           json{{"traffic", {{"1", 70}, {"2", 10}, {"3", 10}, {"4", 10}}}}, "t")
                .status == 200);
    r = m.begin("shop", "live", json{{"to", "4"}, {"every", "1s"}}, "t");
    CHECK(r.status == 409);
    CHECK(r.body["error"] ==
          "alias shop:live also sends traffic to versions 2 (10.0%) and 3 (10.0%); a shift only "
          "moves traffic between the stable version 1 and the candidate 4. Move the other share "
          "first (e.g. sluice alias set shop:live 1=90 2=0 3=0 4=10), then start the shift");
  }
}

TEST_CASE("versions at weight 0 stay in the map at 0 through every step and the promotion") {
  Fixture fx("{ \"1\" = 100, \"3\" = 0 }");
  control::Control control(fx.path);
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter());
  m.set_clock([&fx] { return fx.t0; });
  REQUIRE(m.begin("shop", "live", kPlan, "api:test").status == 200);
  CHECK(traffic(control) == "1=90 2=10 3=0");
  fx.serve("2", 30, 0);
  m.tick(fx.t0 + 10000);
  CHECK(traffic(control) == "1=50 2=50 3=0");
  CHECK(m.get("shop", "live").body["state"] == "running");  // not "changed outside the shift"
  fx.serve("2", 30, 0);
  m.tick(fx.t0 + 20000);
  fx.serve("2", 30, 0);
  m.tick(fx.t0 + 30000);
  CHECK(m.get("shop", "live").body["state"] == "promoted");
  CHECK(traffic(control) == "2=100 3=0");
}

TEST_CASE("below min_requests a failing candidate is held, not rolled back") {
  Fixture fx;
  control::Control control(fx.path);
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter());
  m.set_clock([&fx] { return fx.t0; });
  REQUIRE(m.begin("shop", "live", kPlan, "api:test").status == 200);
  fx.serve("2", 0, 19);  // min_requests is 20
  m.tick(fx.t0 + 11000);
  json s = m.get("shop", "live").body;
  CHECK(s["state"] == "running");
  CHECK(s["reason"] ==
        "waiting for min_requests: 19 of 20 candidate requests in the window; so far the "
        "candidate error rate 100.0% is over the 5.0% limit");
  fx.serve("2", 0, 1);
  m.tick(fx.t0 + 11500);
  CHECK(m.get("shop", "live").body["state"] == "rolled_back");
}

TEST_CASE("each reload is a new table generation even when a new table reuses an old address") {
  Fixture fx;
  control::Control control(fx.path);
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter());
  m.set_clock([&fx] { return fx.t0; });
  m.check_file_shifts();
  CHECK(m.table_generation() == 1);
  m.check_file_shifts();
  CHECK(m.table_generation() == 1);  // same table

  // Two reloads between checks: the first table is freed, and the third may be allocated at
  // its address. The shift table must still be seen.
  fx.write_config("{ \"1\" = 100 }",
                  "[functions.shop.aliases.live.shift]\nto = \"2\"\nevery = \"10s\"\n");
  REQUIRE(control.reload("api").status == 200);
  REQUIRE(control.reload("api").status == 200);
  m.check_file_shifts();
  CHECK(m.table_generation() == 2);  // the second reload's table (the first was never seen)
  json s = m.get("shop", "live").body;
  CHECK(s["state"] == "running");
  CHECK(s["started_by"] == "file");
  CHECK(traffic(control) == "1=90 2=10");
  m.check_file_shifts();
  CHECK(m.table_generation() == 3);  // the table of the shift's first step
}

TEST_CASE("an exception while judging a shift rolls it back and never leaves tick") {
  Fixture fx;
  control::Control control(fx.path);
  REQUIRE(control.init());
  bool fail = false;
  ShiftManager m(control, [&]() -> const observe::Registry* {
    if (fail) throw std::runtime_error("figures unavailable");
    return &fx.registry;
  });
  m.set_clock([&fx] { return fx.t0; });
  REQUIRE(m.begin("shop", "live", kPlan, "api:test").status == 200);
  REQUIRE(traffic(control) == "1=90 2=10");
  fail = true;
  CHECK_NOTHROW(m.tick(fx.t0 + 1000));
  json s = m.get("shop", "live").body;
  CHECK(s["state"] == "rolled_back");
  CHECK(s["reason"] ==
        "the shift engine failed while reading the live figures (figures unavailable); rolled "
        "back to the pre-shift map");
  CHECK(traffic(control) == "1=100");
  CHECK(fx.events() == std::vector<std::string>{"start", "rollback"});
  // The outcome is durable: a new manager reads it back as finished.
  ShiftManager again(control, fx.getter());
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  REQUIRE(again.start(&loop) == 0);
  CHECK(again.get("shop", "live").body["state"] == "rolled_back");
  again.close();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("a shifts.json with wrong types is reported and skipped, never thrown") {
  Fixture fx;
  std::filesystem::create_directories(fx.state_dir());
  // Each entry has a field of the wrong type that reading it would throw on (json::value).
  std::ofstream(fx.state_dir() + "/shifts.json") << R"({"shifts":[
          {"function":"shop","alias":"live","stable":"1","state":"running","step":"two",
           "plan":{"to":"2"}},
          {"function":7,"alias":"live","stable":"1","state":"running","step":1,"plan":{"to":"2"}},
          {"function":"shop","alias":"live","stable":"1","state":"running","step":1,
           "plan":{"to":"2"},"history":[{"step":1,"candidate":{"requests":"many"}}]},
          "not an object"]})";
  control::Control control(fx.path);
  REQUIRE(control.init());
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    ShiftManager m(control, fx.getter());
    int rc = -1;
    CHECK_NOTHROW(rc = m.start(&loop));
    CHECK(rc == 0);
    CHECK(m.get("shop", "live").status == 404);
    CHECK(traffic(control) == "1=100");
    m.close();
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("a state file from before min_breach_requests was dropped still resumes") {
  Fixture fx;
  {
    control::Control control(fx.path);
    REQUIRE(control.init());
    ShiftManager m(control, fx.getter());
    m.set_clock([&fx] { return fx.t0; });
    REQUIRE(m.begin("shop", "live", kPlan, "api:test").status == 200);
  }
  std::ifstream in(fx.state_dir() + "/shifts.json");
  json doc = json::parse(in);
  doc["shifts"][0]["plan"]["guard"]["min_breach_requests"] = 10;
  std::ofstream(fx.state_dir() + "/shifts.json") << doc.dump();
  control::Control control(fx.path);
  REQUIRE(control.init());
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    ShiftManager m(control, fx.getter());
    m.set_clock([&fx] { return fx.t0; });
    REQUIRE(m.start(&loop) == 0);
    CHECK(m.get("shop", "live").body["state"] == "running");
    m.close();
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

// The records' sequence numbers, and whether each one has the next number.
std::vector<uint64_t> sequence(const std::vector<json>& records, bool* consecutive) {
  std::vector<uint64_t> out;
  *consecutive = true;
  for (const json& r : records) {
    REQUIRE(r.contains("seq"));
    out.push_back(r["seq"].get<uint64_t>());
    *consecutive = *consecutive && out.back() == out.size() + out.front() - 1;
  }
  return out;
}

TEST_CASE("the Control's records and the shift's decisions share one audit sequence") {
  Fixture fx;
  control::Control control(fx.path);
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter());
  m.set_clock([&fx] { return fx.t0; });
  REQUIRE(m.begin("shop", "live", kPlan, "api:test").status == 200);
  fx.serve("2", 30, 0);
  m.tick(fx.t0 + 10000);
  REQUIRE(control.set_alias("shop", "live", json{{"traffic", {{"1", 70}, {"2", 30}}}}, "api:x")
              .status == 200);
  m.tick(fx.t0 + 11000);  // interrupted
  REQUIRE(m.get("shop", "live").body["state"] == "interrupted");

  // The alias changes (no "event") and the decisions, in the order they were made.
  std::vector<json> records = fx.audit();
  std::vector<std::string> order;
  for (const json& r : records) order.push_back(r.value("event", r["actor"].get<std::string>()));
  CHECK(order ==
        std::vector<std::string>{"shift", "start", "shift", "advance", "api:x", "interrupted"});
  bool consecutive = false;
  std::vector<uint64_t> seqs = sequence(records, &consecutive);
  CAPTURE(seqs.size());
  CHECK(consecutive);
  CHECK(seqs.front() == 1);

  SUBCASE("a restart continues the sequence after both kinds of record") {
    control::Control again(fx.path);
    REQUIRE(again.init());
    REQUIRE(again.set_alias("shop", "live", json{{"traffic", {{"1", 100}}}}, "api:y").status ==
            200);
    CHECK(fx.audit().back()["seq"] == seqs.back() + 1);
  }
}

TEST_CASE("a crash between a decision's shifts.json write and its append is repaired at start") {
  Fixture fx;
  {
    control::Control control(fx.path);
    REQUIRE(control.init());
    ShiftManager m(control, fx.getter());
    m.set_clock([&fx] { return fx.t0; });
    REQUIRE(m.begin("shop", "live", kPlan, "api:test").status == 200);
    REQUIRE(m.abort("shop", "live", "api:test").status == 200);  // its last write: shifts.json
  }
  const uint64_t last = fx.audit().back()["seq"];
  // Cut the decision's record from the log, as a SIGKILL right after the rename would.
  std::ifstream in(fx.state_dir() + "/audit.jsonl");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  std::ofstream(fx.state_dir() + "/audit.jsonl", std::ios::trunc)
      << text.substr(0, text.rfind('\n', text.size() - 2) + 1);
  REQUIRE(fx.events() == std::vector<std::string>{"start"});
  control::Control again(fx.path);
  REQUIRE(again.init());
  CHECK(fx.events() == std::vector<std::string>{"start", "aborted"});
  CHECK(fx.audit().back()["seq"] == last);
}

TEST_CASE("without a state directory the decisions join the memory store's audit sequence") {
  Fixture fx;
  control::Control control(fx.path);
  control.set_store(std::make_unique<control::MemoryStore>());
  REQUIRE(control.init());
  ShiftManager m(control, fx.getter());
  m.set_clock([&fx] { return fx.t0; });
  REQUIRE(m.begin("shop", "live", kPlan, "api:test").status == 200);
  REQUIRE(m.abort("shop", "live", "api:test").status == 200);
  CHECK_FALSE(std::filesystem::exists(fx.state_dir() + "/audit.jsonl"));
  const auto& log = static_cast<const control::MemoryStore&>(control.store()).audit_log();
  std::vector<json> records(log.begin(), log.end());
  std::vector<std::string> order;
  for (const json& r : records) order.push_back(r.value("event", r["actor"].get<std::string>()));
  CHECK(order == std::vector<std::string>{"shift", "start", "shift", "aborted"});
  bool consecutive = false;
  sequence(records, &consecutive);
  CHECK(consecutive);
  CHECK(control.store().get(control::kShiftsDoc).value["shifts"][0]["state"] == "aborted");
}

}  // namespace sluice::control
