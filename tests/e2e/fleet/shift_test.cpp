// A progressive shift runs on one node per alias (a lease-backed lock in etcd); when that node
// dies, another takes over within the lease TTL and ends the shift, and every node agrees.
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fleet_util.h"

namespace sluice::e2e::fleet {
namespace {

bool running_state(const std::string& s) {
  return s == "running" || s == "pre_traffic";
}

}  // namespace

TEST_CASE("shift leader killed mid-shift: another node takes over within the lease TTL") {
  EtcdCluster etcd;
  REQUIRE_ETCD(etcd);
  constexpr long kLeaseTtlMs = 3000;
  Fleet f(etcd, {.nodes = 3, .prefix = "/fleet/shift/", .timeout = "2s", .lease_ttl = "3s"});
  std::string error;
  REQUIRE_MESSAGE(f.start_all(&error), error);
  LogsOnFailure dump_logs(f, etcd);

  std::vector<std::string> urls;
  for (size_t i = 0; i < f.size(); ++i) urls.push_back(f.url(i, "/"));
  FleetLoad load(urls, 2, 60000, 100000);
  sleep_ms(200);

  ApiReply r = f.call(0, "POST", kShiftPath,
                      R"({"to":"2","steps":[10,25,50,75,100],"every":"1s",
                          "guard":{"max_error_rate":"1%","min_requests":5}})");
  REQUIRE_MESSAGE(r.status == 200, r.raw);
  CHECK(str_of(r.body, "state") == "running");

  // Never two leaders: a sampler reads every node's status ("store": {"leads": [...]}) every
  // 20 ms until the shift ends; no sample may find two nodes leading the alias's shift. (A killed
  // node does not answer, so it leads in no sample.)
  std::atomic<int> samples{0}, led_samples{0}, double_led{0};
  std::string double_led_example;
  std::vector<uint16_t> admin_ports;
  for (size_t i = 0; i < f.size(); ++i) admin_ports.push_back(f.admin(i));
  std::jthread sampler([&](std::stop_token stop) {
    std::vector<std::unique_ptr<CurlClient>> curls;
    for (size_t i = 0; i < admin_ports.size(); ++i) curls.push_back(std::make_unique<CurlClient>());
    auto start = std::chrono::steady_clock::now();
    while (!stop.stop_requested() && elapsed_ms(start) < 60000) {
      std::string leaders;
      int n = 0;
      for (size_t i = 0; i < admin_ports.size(); ++i) {
        json leads = field(
            field(api(*curls[i], admin_ports[i], "GET", "/admin/status").body, "store"), "leads");
        if (!leads.is_array()) continue;
        for (const json& l : leads)
          if (l == "shift/shop/live") {
            ++n;
            leaders += f.name(i) + " ";
          }
      }
      ++samples;
      if (n > 0) ++led_samples;
      if (n > 1 && double_led++ == 0) double_led_example = leaders;
      sleep_ms(20);
    }
  });

  // Every node shows the shift.
  for (size_t i = 0; i < f.size(); ++i) {
    CAPTURE(f.name(i));
    CHECK(poll_until(
        [&] {
          ApiReply g = f.call(i, "GET", kShiftPath);
          return g.status == 200 && g.body.is_object() && str_of(g.body, "candidate") == "2";
        },
        2000));
  }

  // The leader: the node the records name (any node may take the lock, not only the one that
  // took the POST); if none names one within the lease TTL + 2 s, the node that took the POST.
  size_t leader = 0;
  bool named = poll_until(
      [&] {
        for (size_t i = 0; i < f.size(); ++i) {
          const std::string name = str_of(f.call(i, "GET", kShiftPath).body, "leader");
          for (size_t k = 0; k < f.size() && !name.empty(); ++k)
            if (name == f.name(k)) {
              leader = k;
              return true;
            }
        }
        return false;
      },
      kLeaseTtlMs + 2000);
  MESSAGE("shift leader: node " << f.name(leader)
                                << std::string(named ? " (named by the record's \"leader\")"
                                                     : " (assumed: no record names a leader)"));
  CHECK_MESSAGE(named, "no node's GET .../shift names the leader");
  std::vector<size_t> rest;
  for (size_t i = 0; i < f.size(); ++i)
    if (i != leader) rest.push_back(i);

  // The shift reaches its second step on the leader; every other node shows that step too (each
  // step is committed to etcd) within a second, as an alias change would be.
  REQUIRE(poll_until([&] { return int_of(f.call(leader, "GET", kShiftPath).body, "step") >= 2; },
                     10000));
  auto stepped = std::chrono::steady_clock::now();
  for (size_t i : rest) {
    CAPTURE(f.name(i));
    bool shown =
        poll_until([&] { return int_of(f.call(i, "GET", kShiftPath).body, "step") >= 2; }, 5000);
    const long lag_ms = elapsed_ms(stepped);
    MESSAGE("node " << f.name(i) << " showed step 2 " << lag_ms << " ms after the leader");
    CHECK_MESSAGE((shown && lag_ms <= 1000),
                  "node " << f.name(i) << " shows "
                          << shift_brief(f.call(i, "GET", kShiftPath).body) << " " << lag_ms
                          << " ms after the leader showed step 2");
  }

  // Kill the leader with SIGKILL, mid-shift.
  json at_kill = f.call(leader, "GET", kShiftPath).body;
  // The clock starts at the signal, and the survivors are watched at once: the dying process is
  // reaped only after the takeover (see below: its exit may take seconds).
  auto killed = std::chrono::steady_clock::now();
  REQUIRE(f.proc(leader).signal(SIGKILL));
  MESSAGE("killed the leader, node " << f.name(leader) << ", at step " << int_of(at_kill, "step")
                                     << " of " << int_of(at_kill, "steps_total") << " ("
                                     << str_of(at_kill, "state") << ")");
  CHECK(str_of(at_kill, "state") == "running");

  // The step the survivors saw just after the kill (an advance made just before it may still be
  // on its way): a later one is the new leader's work.
  sleep_ms(200);
  int base_step = std::max(2, int_of(at_kill, "step"));
  for (size_t i : rest) {
    json g = f.call(i, "GET", kShiftPath).body;
    if (g.is_object()) base_step = std::max(base_step, int_of(g, "step"));
  }

  // Takeover: a survivor's GET names another leader, shows a later step, or the shift ended.
  // The survivors' views as they change, and the slowest GET, go in the report.
  std::string how, timeline;
  std::map<size_t, std::string> last_view;
  long slowest_get_ms = 0;
  bool took = poll_until(
      [&] {
        for (size_t i : rest) {
          auto asked = std::chrono::steady_clock::now();
          ApiReply reply = f.call(i, "GET", kShiftPath);
          const long get_ms = elapsed_ms(asked);
          slowest_get_ms = std::max(slowest_get_ms, get_ms);
          const json& g = reply.body;
          const std::string view =
              reply.status == 200 ? shift_brief(g) : "status " + std::to_string(reply.status);
          if (last_view[i] != view) {
            last_view[i] = view;
            timeline += "\n  +" + std::to_string(elapsed_ms(killed)) + " ms node " + f.name(i) +
                        ": " + view + " (GET " + std::to_string(get_ms) + " ms)";
          }
          if (!g.is_object()) continue;
          if (g.contains("leader") && g["leader"].is_string() && g["leader"] != f.name(leader) &&
              !g["leader"].get<std::string>().empty()) {
            how = "leader " + g["leader"].get<std::string>();
            return true;
          }
          if (int_of(g, "step") > base_step) {
            how = "step " + std::to_string(int_of(g, "step")) + " on node " + f.name(i);
            return true;
          }
          if (!running_state(str_of(g, "state"))) {
            how = "state " + str_of(g, "state") + " on node " + f.name(i);
            return true;
          }
        }
        return false;
      },
      20000);
  const long takeover_ms = elapsed_ms(killed);
  std::printf("fleet leader takeover ms=%ld (%s)\n", takeover_ms,
              took ? how.c_str() : "no takeover within 20 s");
  std::fflush(stdout);
  MESSAGE("leader takeover after " << takeover_ms << " ms: " << (took ? how : "none")
                                   << "; slowest GET " << slowest_get_ms
                                   << " ms; the survivors' views:" << timeline);
  // (The kernel may take seconds to finish a killed process: closing its inotify descriptor
  // waits for fsnotify's work queue, slow on a loaded machine. Not sluice's doing: not judged.)
  std::optional<int> exit_status = f.proc(leader).wait_exit(30000);
  CHECK(exit_status == 128 + SIGKILL);
  MESSAGE("the killed leader's process was gone " << elapsed_ms(killed) << " ms after SIGKILL");
  REQUIRE(took);
  CHECK(takeover_ms <= kLeaseTtlMs + 3000);

  // The shift ends, promoted or rolled back, the same on both survivors.
  json done;
  REQUIRE(poll_until(
      [&] {
        json g = f.call(rest[0], "GET", kShiftPath).body;
        if (!g.is_object() || running_state(str_of(g, "state"))) return false;
        done = g;
        return true;
      },
      30000));
  load.stop();
  sampler.request_stop();
  sampler.join();
  MESSAGE("leader samples: " << samples.load() << ", with a leader: " << led_samples.load()
                             << ", with two: " << double_led.load());
  CHECK(led_samples.load() > 0);
  CHECK_MESSAGE(double_led.load() == 0, "two nodes led the shift at once: " << double_led_example);
  const std::string state = str_of(done, "state");
  CHECK_MESSAGE((state == "promoted" || state == "rolled_back"), shift_brief(done));
  MESSAGE("the shift ended " << state << ": " << done.value("reason", json()).dump());
  const json final_map = state == "promoted" ? json{{"2", 100}} : done.value("before", json());
  for (size_t i : rest) {
    CAPTURE(f.name(i));
    CHECK(f.wait_traffic(i, final_map, 2000));
    json g = f.call(i, "GET", kShiftPath).body;
    CHECK(str_of(g, "state") == state);
  }
  // The survivors served throughout.
  for (size_t i : rest) {
    CAPTURE(f.name(i));
    FleetLoad::Counts c = load.counts(i);
    CHECK_MESSAGE(c.failed == 0, FleetLoad::describe(c));
  }

  // The killed node, restarted, agrees.
  REQUIRE_MESSAGE(f.start(leader, &error), error);
  CHECK(f.wait_traffic(leader, final_map, 5000));
  CHECK(str_of(f.call(leader, "GET", kShiftPath).body, "state") == state);
  for (size_t i = 0; i < f.size(); ++i) CHECK_MESSAGE(f.stop(i) == 0, "node " << f.name(i));
}

}  // namespace sluice::e2e::fleet
