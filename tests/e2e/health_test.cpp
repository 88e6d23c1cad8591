// End-to-end: health, retries and version-aware failover (issue 11). A dead endpoint or a dead
// version costs clients nothing: retries on another endpoint or version, passive ejection,
// active checks that take an endpoint out and bring it back, and a progressive shift that rolls
// back when its candidate has no healthy endpoint.
#include <atomic>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "admin_test_util.h"
#include "e2e.h"
#include "shift_test_util.h"

using namespace sluice::e2e;
using nlohmann::json;
using sluice::e2e::admin::admin_port;
using sluice::e2e::admin::api;
using sluice::e2e::admin::ApiReply;
using sluice::e2e::shift_test::kShiftPath;
using sluice::e2e::shift_test::ScriptedUpstream;
using sluice::e2e::shift_test::shift_config;
using sluice::e2e::shift_test::wait_finished;

namespace {

std::string metrics(const Sluice& s) {
  CurlClient curl;
  return curl.get("http://127.0.0.1:" + std::to_string(admin_port(s)) + "/metrics").body;
}

// Sum of the values of `family` lines that contain every one of `labels`.
double metric(const std::string& text, const std::string& family,
              const std::vector<std::string>& labels = {}) {
  std::istringstream in(text);
  std::string line;
  double sum = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.rfind(family, 0) != 0) continue;
    const char next = line.size() > family.size() ? line[family.size()] : ' ';
    if (next != '{' && next != ' ') continue;
    bool all = true;
    for (const auto& l : labels) all = all && line.find(l) != std::string::npos;
    if (all) sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

std::string endpoint_label(uint16_t port) {
  return "endpoint=\"127.0.0.1:" + std::to_string(port) + "\"";
}

// GETs in a loop on its own keep-alive connection until stopped, bounded by `max_ms`; counts
// answers by upstream name and failures, with their times.
class Load {
 public:
  Load(const Sluice& s, int max_ms = 20000) {
    thread_ = std::thread([this, &s, max_ms] {
      CurlClient curl;
      auto start = std::chrono::steady_clock::now();
      while (!stop_ && elapsed_ms(start) < max_ms) {
        HttpResult r = curl.get(s.url("/"));
        std::lock_guard<std::mutex> lock(mu_);
        if (r.status == 200) {
          ++by_upstream_[r.header("x-upstream")];
        } else {
          ++errors_;
          error_times_.push_back(std::chrono::steady_clock::now());
        }
        ++total_;
      }
    });
  }
  ~Load() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::map<std::string, long> by_upstream() {
    std::lock_guard<std::mutex> lock(mu_);
    return by_upstream_;
  }
  long errors() {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }
  long total() {
    std::lock_guard<std::mutex> lock(mu_);
    return total_;
  }
  // Errors after `t`.
  long errors_after(std::chrono::steady_clock::time_point t) {
    std::lock_guard<std::mutex> lock(mu_);
    long n = 0;
    for (auto e : error_times_) n += e > t;
    return n;
  }
  void reset() {
    std::lock_guard<std::mutex> lock(mu_);
    by_upstream_.clear();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, long> by_upstream_;
  long errors_ = 0, total_ = 0;
  std::vector<std::chrono::steady_clock::time_point> error_times_;
};

const char* kFastChecks =
    "health = { path = \"/\", interval = \"200ms\", timeout = \"150ms\", healthy = 2, "
    "unhealthy = 2 }\n";

}  // namespace

TEST_CASE("one dead endpoint of two: no client errors, and it stops being tried once ejected") {
  Upstream alive("alive");
  const uint16_t dead = unused_port();
  ConfigText cfg;
  cfg.workers = 2;
  cfg.function("shop", {{"1", {alive.address(), loopback(dead)}, ""}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  CurlClient curl;
  int errors = 0;
  for (int i = 0; i < 1000; ++i) errors += curl.get(s.url("/")).status != 200;
  const std::string m = metrics(s);
  const double failed = metric(m, "sluice_upstream_failures_total", {"kind=\"connect_failed\""});
  MESSAGE("1000 requests: " << errors << " client errors; " << failed
                            << " connect failures to the dead endpoint before its ejection");
  CHECK(errors == 0);
  CHECK(alive.requests() == 1000);
  CHECK(failed >= 1);
  CHECK(failed <= 10);  // five in a row eject it (shared by the workers), not one per request
  CHECK(metric(m, "sluice_upstream_ejections_total", {endpoint_label(dead)}) >= 1);
  CHECK(metric(m, "sluice_endpoint_up", {endpoint_label(dead)}) == 0);
  CHECK(metric(m, "sluice_endpoint_up", {endpoint_label(alive.port())}) == 1);
  CHECK(metric(m, "sluice_upstream_retries_total") == failed);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an endpoint killed under load: no client errors, ejected fast, back after its checks") {
  Upstream a("a");
  auto b = std::make_unique<Upstream>("b");
  const uint16_t b_port = b->port();
  ConfigText cfg;
  cfg.workers = 2;
  cfg.function("shop", {{"1", {a.address(), b->address()}, kFastChecks}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  Load load(s);
  REQUIRE(poll_until([&] { return load.by_upstream()["b"] > 20; }, 5000));

  auto killed = std::chrono::steady_clock::now();
  b->stop();  // resets its open connections, stops listening
  REQUIRE(poll_until(
      [&] { return metric(metrics(s), "sluice_endpoint_up", {endpoint_label(b_port)}) == 0; },
      5000));
  const long down_ms = elapsed_ms(killed);
  ::poll(nullptr, 0, 500);
  load.reset();
  ::poll(nullptr, 0, 500);
  CHECK(load.by_upstream()["b"] == 0);  // nothing reaches it any more

  auto revived_at = std::chrono::steady_clock::now();
  b = std::make_unique<Upstream>("b", b_port);
  REQUIRE(poll_until(
      [&] { return metric(metrics(s), "sluice_endpoint_up", {endpoint_label(b_port)}) == 1; },
      5000));
  const long up_ms = elapsed_ms(revived_at);
  REQUIRE(poll_until([&] { return b->requests() > 20; }, 5000));  // it takes traffic again
  load.stop();
  MESSAGE("killed under load: marked down after " << down_ms << " ms; revived: up after " << up_ms
                                                  << " ms; " << load.errors() << " errors in "
                                                  << load.total() << " requests");
  CHECK(load.errors() == 0);  // GETs without a body are retried on the other endpoint
  CHECK(down_ms < 1000);
  CHECK(up_ms < 2000);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("every endpoint of a 10% candidate dies: its share goes to stable, and comes back") {
  Upstream stable("stable");
  auto cand = std::make_unique<Upstream>("cand");
  const uint16_t cand_port = cand->port();
  ConfigText cfg;
  cfg.workers = 2;
  cfg.function("shop", {{"1", {stable.address()}, ""}, {"2", {cand->address()}, kFastChecks}})
      .alias("shop", "prod", R"({ "1" = 90, "2" = 10 })")
      .route("shop:prod");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  Load load(s);
  REQUIRE(poll_until([&] { return load.by_upstream()["cand"] > 10; }, 5000));

  const auto killed = std::chrono::steady_clock::now();
  cand->stop();
  ::poll(nullptr, 0, 1000);
  const auto after_first_second = std::chrono::steady_clock::now();
  load.reset();
  ::poll(nullptr, 0, 1000);
  auto dead = load.by_upstream();
  CHECK(dead["cand"] == 0);
  CHECK(dead["stable"] > 50);
  const long errors_after = load.errors_after(after_first_second);

  cand = std::make_unique<Upstream>("cand", cand_port);
  REQUIRE(poll_until([&] { return cand->requests() > 0; }, 5000));
  ::poll(nullptr, 0, 300);
  load.reset();
  ::poll(nullptr, 0, 1500);
  auto back = load.by_upstream();
  load.stop();
  const double share = 100.0 * back["cand"] / double(back["cand"] + back["stable"]);
  MESSAGE("candidate killed: " << load.errors() << " client errors in all (" << errors_after
                               << " after the first second); revived: " << share
                               << "% to it again");
  (void)killed;
  CHECK(errors_after == 0);
  CHECK(load.errors() ==
        0);  // connect failures are retried on stable: not even in the first second
  CHECK(share > 4);
  CHECK(share < 20);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a shift whose candidate dies rolls back on its health within 2 s") {
  ScriptedUpstream stable("stable"), cand("cand");
  Sluice s(shift_config(stable.address(), cand.address(), "", "{ \"1\" = 100 }", "", kFastChecks));
  REQUIRE_STARTED(s);
  const uint16_t port = admin_port(s);
  CurlClient curl;
  Load load(s);
  ApiReply r = api(curl, port, "POST", kShiftPath,
                   R"({"to":"2","steps":[50,100],"every":"30s","guard":{"min_requests":10}})");
  REQUIRE_MESSAGE(r.status == 200, r.raw);
  REQUIRE(poll_until([&] { return load.by_upstream()["cand"] > 5; }, 5000));
  const auto killed = std::chrono::steady_clock::now();
  cand.stop();
  json done = wait_finished(curl, port, 10000);
  const long took_ms = elapsed_ms(killed);
  load.stop();
  CAPTURE(done.dump());
  MESSAGE("candidate killed mid-shift: rolled back after " << took_ms << " ms; " << load.errors()
                                                           << " client errors");
  CHECK(done["state"] == "rolled_back");
  CHECK(done["reason"].get<std::string>().find("candidate 2 cannot serve: no healthy endpoint") ==
        0);
  CHECK(took_ms < 2000);
  CHECK(load.errors() == 0);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE(
    "drain: an endpoint gets no new requests, finishes its own, and no client sees an error") {
  Upstream a("a"), b("b");
  TempDir state;
  ConfigText cfg;
  cfg.workers = 2;
  cfg.body = "[state]\ndir = \"" + state.path() + "\"\n\n";
  cfg.function("shop", {{"1", {a.address(), b.address()}, ""}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  const std::string config_text = cfg.str();
  auto s = std::make_unique<Sluice>(config_text);
  REQUIRE_STARTED(*s);
  const std::string admin = " --admin 127.0.0.1:" + std::to_string(admin_port(*s));
  Load load(*s);
  // Requests in flight on b when it is drained: they finish with their answers.
  std::vector<std::unique_ptr<RawClient>> slow;
  for (int i = 0; i < 4; ++i) {
    slow.push_back(std::make_unique<RawClient>(s->port()));
    REQUIRE(slow.back()->send(raw_request("GET", "/slow?ms=800")));
  }
  REQUIRE(poll_until([&] { return b.count_target("/slow") >= 1; }, 5000));
  const std::string b_endpoint = b.address();

  admin::CliRun drained = admin::run_cli("endpoint drain shop:1 " + b_endpoint + admin);
  CAPTURE(drained.err);
  REQUIRE(drained.exit_code == 0);
  CHECK(drained.out == "shop:1 " + b_endpoint + " now drain (was ready)\n");
  ::poll(nullptr, 0, 200);
  const size_t b_after_drain = b.requests();
  ::poll(nullptr, 0, 1000);
  CHECK(b.requests() == b_after_drain);  // nothing new reaches it
  for (auto& c : slow) {
    auto r = c->read_response(5000);
    REQUIRE(r);
    CHECK(r->status == 200);  // the ones it had finished
  }
  CHECK(poll_until([&] { return b.open_connections() == 0; }, 5000));  // no keep-alive kept
  admin::CliRun status = admin::run_cli("status" + admin);
  CHECK(status.out.find("endpoint shop:1 " + b_endpoint + ": drain") != std::string::npos);
  CHECK(metric(metrics(*s), "sluice_endpoint_up", {endpoint_label(b.port())}) == 0);
  load.stop();
  MESSAGE("drained under load: " << load.errors() << " errors in " << load.total()
                                 << " requests; b took " << b_after_drain << " in all");
  CHECK(load.errors() == 0);

  SUBCASE("the state survives a restart, and ready puts it back") {
    REQUIRE(s->stop() == 0);
    s = std::make_unique<Sluice>(config_text);
    REQUIRE_STARTED(*s);
    const std::string admin2 = " --admin 127.0.0.1:" + std::to_string(admin_port(*s));
    CurlClient curl;
    for (int i = 0; i < 20; ++i) REQUIRE(curl.get(s->url("/")).status == 200);
    CHECK(b.requests() == b_after_drain);  // still drained
    admin::CliRun ready = admin::run_cli("endpoint ready shop:1 " + b_endpoint + admin2);
    CHECK(ready.exit_code == 0);
    for (int i = 0; i < 20; ++i) REQUIRE(curl.get(s->url("/")).status == 200);
    CHECK(b.requests() > b_after_drain);
    std::string audit;
    {
      std::ifstream in(state.path() + "/audit.jsonl");
      audit.assign(std::istreambuf_iterator<char>(in), {});
    }
    CHECK(audit.find("\"event\":\"endpoint\"") != std::string::npos);
  }
  SUBCASE("a bad call names what is wrong") {
    admin::CliRun bad = admin::run_cli("endpoint drain shop:1 10.9.9.9:1" + admin);
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find("has no endpoint 10.9.9.9:1") != std::string::npos);
    admin::CliRun usage = admin::run_cli("endpoint off shop:1 " + b_endpoint + admin);
    CHECK(usage.exit_code == 2);
  }
  CHECK_CLEAN_STOP(*s);
}
