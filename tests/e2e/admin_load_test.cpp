// End-to-end: alias flips through the API every 10 ms under ~2,000 requests/s with zero failed
// requests and an exact rollback, and crash safety of the state directory under SIGKILL at
// random points (seeded, so a failing round can be replayed).
#include <signal.h>

#include <atomic>
#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "admin_test_util.h"

using namespace sluice::e2e;
using namespace sluice::e2e::admin;

TEST_CASE("flipping an alias every 10 ms under load fails no request and rollback is exact") {
  Upstream a("a"), b("b");
  TempDir state;
  Sluice s(shop_config(a, b, R"({ "1" = 100 })", state.path() + "/state"));
  REQUIRE_STARTED(s);
  uint16_t port = admin_port(s);
  REQUIRE(port != 0);

  const int flips = kSanitized ? 200 : 1000;
  constexpr int kThreads = 4;
  constexpr int kPerThreadPerSecond = 500;  // ~2,000 requests/s in all
  std::atomic<bool> done{false};
  std::atomic<long> sent{0}, failed{0};
  std::vector<std::string> first_errors;
  std::mutex mu;
  std::vector<std::thread> load;
  for (int t = 0; t < kThreads; ++t) {
    load.emplace_back([&] {
      CurlClient curl;
      auto start = std::chrono::steady_clock::now();
      long mine = 0;
      // Bounded: stops when the flips end, or after 60 s at most.
      while (!done.load() && elapsed_ms(start) < 60000) {
        HttpResult r = curl.get(s.url("/"));
        ++mine;
        sent.fetch_add(1);
        if (r.status != 200) {
          failed.fetch_add(1);
          std::lock_guard<std::mutex> lock(mu);
          if (first_errors.size() < 5)
            first_errors.push_back(std::to_string(r.status) + " " + r.error + " " + r.body);
        }
        // Pace: the mine-th request is due at mine / rate seconds.
        long due_ms = mine * 1000 / kPerThreadPerSecond;
        long ahead = due_ms - elapsed_ms(start);
        if (ahead > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ahead));
      }
    });
  }

  CurlClient adm;
  int api_failures = 0;
  auto start = std::chrono::steady_clock::now();
  double api_ms_total = 0;
  for (int i = 0; i < flips; ++i) {
    auto due = start + std::chrono::milliseconds(10 * i);
    std::this_thread::sleep_until(due);
    auto t0 = std::chrono::steady_clock::now();
    ApiReply r = api(adm, port, "PUT", "/admin/functions/shop/aliases/live",
                     traffic_body(i % 2 == 0 ? "2" : "1", 100));
    api_ms_total +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (r.status != 200) {
      ++api_failures;
      MESSAGE("flip " << i << ": " << r.status << " " << r.error << " " << r.raw);
    }
  }
  // The last flip set {"1": 100} or {"2": 100}; make it {"2": 100}, then roll back to {"1": 100}.
  ApiReply last =
      api(adm, port, "PUT", "/admin/functions/shop/aliases/live", traffic_body("2", 100));
  INFO("last flip: " << last.status << " " << last.error << " " << last.raw);
  CHECK(last.status == 200);  // CHECK, not REQUIRE: the load threads must still be joined
  ApiReply rb = api(adm, port, "POST", "/admin/functions/shop/aliases/live/rollback");
  CHECK(rb.status == 200);
  CHECK(rb.body["new"] == json{{"1", 100}});
  const long load_ms = elapsed_ms(start);
  done = true;
  for (auto& t : load) t.join();

  std::map<std::string, int> after = who_answers(s, 1000);
  CHECK(after["a"] == 1000);

  MESSAGE(flips << " flips in " << load_ms << " ms (mean API call " << api_ms_total / flips
                << " ms, state fsynced each time) under " << sent.load() * 1000 / load_ms
                << " req/s: " << failed.load() << " failed requests of " << sent.load());
  CAPTURE(first_errors.empty() ? std::string() : first_errors[0]);
  CHECK(api_failures == 0);
  CHECK(failed.load() == 0);
  CHECK(a.requests() + b.requests() >= static_cast<size_t>(sent.load()));
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("after SIGKILL at random points the state parses and holds every acknowledged change") {
  Upstream a("a"), b("b");
  TempDir dir;
  const std::string state_dir = dir.path() + "/state";
  const std::string config =
      dir.write("sluice.toml", shop_config(a, b, R"({ "1" = 100 })", state_dir));
  const int rounds = kSanitized ? 8 : 20;
  const unsigned seed = 20260127;
  std::mt19937 rng(seed);
  CAPTURE(seed);

  int k = 1000;            // weight of version 1 in the k-th change: {"1": k, "2": 1}
  std::vector<int> acked;  // every acknowledged k, in order
  std::set<int> unacked;   // calls that got no answer: applied or not, either is fine
  // The current map is the last acknowledged one, or a later call that was cut off by the kill.
  auto current_ok = [&](int w) {
    return w == acked.back() || (w > acked.back() && unacked.count(w));
  };
  for (int round = 0; round < rounds; ++round) {
    CAPTURE(round);
    Sluice s("", {1, {"run", "-c", config}});
    REQUIRE_STARTED(s);
    uint16_t port = admin_port(s);
    REQUIRE(port != 0);

    // The state restored at start holds the last acknowledged change.
    CurlClient adm;
    if (!acked.empty()) {
      json st = api(adm, port, "GET", "/admin/status").body;
      json tr = st["functions"][0]["aliases"][0]["traffic"];
      CHECK(current_ok(tr["1"].get<int>()));
    }

    const int kill_after_ms = std::uniform_int_distribution<int>(5, 120)(rng);
    std::thread killer([&s, kill_after_ms] {
      std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms));
      s.signal(SIGKILL);
    });
    for (int calls = 0; calls < 10000; ++calls) {
      ++k;
      ApiReply r = api(adm, port, "PUT", "/admin/functions/shop/aliases/live",
                       json{{"traffic", {{"1", k}, {"2", 1}}}}.dump());
      if (r.status != 200) {
        unacked.insert(k);
        break;
      }
      acked.push_back(k);
    }
    killer.join();
    REQUIRE(s.wait_exit(5000).has_value());

    // state.json parses and holds the last acknowledged map (or the one in flight when killed),
    // with the earlier acknowledged maps in its history.
    std::ifstream in(state_dir + "/state.json");
    std::stringstream ss;
    ss << in.rdbuf();
    json st = json::parse(ss.str(), nullptr, false);
    REQUIRE_FALSE(st.is_discarded());
    json alias = st["functions"]["shop"]["aliases"]["live"];
    if (acked.empty()) continue;
    int current = alias["override"]["1"].get<int>();
    CHECK(current_ok(current));
    // History keeps the 32 maps before the current one (an applied but unacknowledged change
    // takes a slot too), so every acknowledged change from the oldest one kept on is there.
    std::set<int> in_state = {current};
    int oldest = current;
    for (const json& m : alias["history"]) {
      int w = m["1"].get<int>();
      in_state.insert(w);
      if (w != 100) oldest = std::min(oldest, w);  // 100: the file's own map
    }
    if (acked.size() > 32) CHECK(alias["history"].size() == 32);
    for (int x : acked) {
      CAPTURE(x);
      if (x >= oldest) CHECK(in_state.count(x) == 1);
    }
    // audit.jsonl: every line parses; every acknowledged change has its line.
    std::ifstream audit(state_dir + "/audit.jsonl");
    std::set<int> audited;
    std::string line;
    size_t bad_lines = 0;
    while (std::getline(audit, line)) {
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded()) {
        ++bad_lines;
        continue;
      }
      if (j["new"].is_object() && j["new"].contains("1")) audited.insert(j["new"]["1"].get<int>());
    }
    CHECK(bad_lines == 0);
    size_t missing = 0;
    for (int x : acked) missing += audited.count(x) == 0;
    CHECK(missing == 0);
  }
  MESSAGE(rounds << " SIGKILL rounds, " << acked.size() << " acknowledged changes, all kept");
}
