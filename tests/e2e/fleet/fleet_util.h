// Helpers for the fleet e2e tests (issue 14): N real sluice processes on loopback whose state
// store is one real etcd cluster (tests/e2e/etcd_cluster), each with its own config file (the same
// functions on every node, upstreams in-process) and its own state directory, which survives a
// restart of the node; admin calls, the alias map and store state a node shows, a bounded load
// through the nodes' listeners, and direct reads of what the fleet keeps in etcd.
//
// Every process is started from the test's main thread (a child's parent-death signal follows the
// thread that forked it) and stopped or killed by its PID only (Sluice, EtcdCluster).
#pragma once

#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "admin_test_util.h"
#include "etcd_cluster.h"

namespace sluice::e2e::fleet {

using admin::api;
using admin::ApiReply;
using nlohmann::json;

inline constexpr const char* kAliasPath = "/admin/functions/shop/aliases/live";
inline constexpr const char* kShiftPath = "/admin/functions/shop/aliases/live/shift";

// Every fleet test starts an etcd cluster and requires that it came up.
#define REQUIRE_ETCD(c) REQUIRE_MESSAGE((c).started(), (c).error())

inline void sleep_ms(int ms) {
  ::poll(nullptr, 0, ms);
}

inline double ms_between(std::chrono::steady_clock::time_point from,
                         std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

inline double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(p / 100.0 * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

// {"traffic": traffic}
inline std::string traffic_body(const json& traffic) {
  return json{{"traffic", traffic}}.dump();
}

// The alias shop:live as GET /admin/status shows it ({name, traffic, history, ...}), or null.
inline json alias_entry(const json& status) {
  if (!status.is_object() || !status.contains("functions") || !status["functions"].is_array())
    return nullptr;
  for (const json& fn : status["functions"]) {
    if (!fn.is_object() || fn.value("name", "") != "shop" || !fn.contains("aliases")) continue;
    for (const json& al : fn["aliases"])
      if (al.is_object() && al.value("name", "") == "live") return al;
  }
  return nullptr;
}

// The traffic map of shop:live in a status answer, or null.
inline json alias_traffic(const json& status) {
  json al = alias_entry(status);
  return al.is_object() && al.contains("traffic") ? al["traffic"] : json(nullptr);
}

struct FleetOptions {
  size_t nodes = 3;
  std::string prefix = "/sluice/";
  std::string timeout = "2s";
  std::string lease_ttl = "3s";
  std::string traffic = "{ \"1\" = 100 }";  // shop:live in every node's file
};

// The test upstreams: version 1 answers as "v1", version 2 as "v2" (x-upstream).
inline const json kFileTraffic = json{{"1", 100}};

// A private directory for a node's state (etcd-snapshot.json), removed on destruction. On tmpfs
// (/dev/shm) when there is one, as the etcd members' data (etcd_cluster.cpp): sluice fsyncs the
// snapshot each time it applies a revision, and on a disk shared with a build those fsyncs stall
// for seconds. SLUICE_FLEET_STATE_BASE=/tmp puts them on the disk instead.
class StateDir {
 public:
  StateDir() {
    std::string base = "/dev/shm";
    if (const char* env = std::getenv("SLUICE_FLEET_STATE_BASE"); env && *env)
      base = env;
    else if (::access(base.c_str(), W_OK) != 0)
      base = std::filesystem::temp_directory_path().string();
    std::string tmpl = base + "/sluice-fleet-XXXXXX";
    if (char* p = ::mkdtemp(tmpl.data())) path_ = p;
  }
  ~StateDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  StateDir(const StateDir&) = delete;
  StateDir& operator=(const StateDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// One sluice node: a name, a state directory kept across restarts, the running process.
struct Node {
  std::string name;
  StateDir state;
  std::unique_ptr<Sluice> proc;
  uint16_t admin = 0;
  std::unique_ptr<CurlClient> curl = std::make_unique<CurlClient>();
};

// N sluice nodes on one etcd cluster. Nodes are destroyed (SIGKILL if still running) before the
// upstreams; the test declares the cluster before the fleet, so it outlives the nodes.
class Fleet {
 public:
  Fleet(EtcdCluster& etcd, FleetOptions options) : etcd_(etcd), options_(std::move(options)) {
    static const char* kNames[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j",
                                   "k", "l", "m", "n", "o", "p", "q", "r", "s", "t"};
    for (size_t i = 0; i < options_.nodes; ++i) {
      auto node = std::make_unique<Node>();
      node->name = i < std::size(kNames) ? kNames[i] : "n" + std::to_string(i);
      nodes_.push_back(std::move(node));
    }
  }
  ~Fleet() { nodes_.clear(); }
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  size_t size() const { return nodes_.size(); }
  const FleetOptions& options() const { return options_; }
  Node& node(size_t i) { return *nodes_[i]; }
  const std::string& name(size_t i) const { return nodes_[i]->name; }
  Sluice& proc(size_t i) { return *nodes_[i]->proc; }
  uint16_t admin(size_t i) const { return nodes_[i]->admin; }
  std::string state_dir(size_t i) const { return nodes_[i]->state.path(); }
  bool running(size_t i) const { return nodes_[i]->proc && nodes_[i]->proc->running(); }
  std::string url(size_t i, const std::string& path = "/") const {
    return nodes_[i]->proc->url(path);
  }

  // Node i's config file: workers = 1, its state dir, the etcd store, shop versions 1 and 2.
  std::string config(size_t i, const std::string& state_dir) const {
    std::string eps;
    for (const std::string& u : etcd_.client_urls())
      eps += (eps.empty() ? "\"" : ", \"") + u + "\"";
    std::string out = "# sluice fleet e2e test config, node " + nodes_[i]->name + "\n";
    out += "workers = 1\n[listen]\naddress = \"127.0.0.1:0\"\n";
    out += "[admin]\naddress = \"127.0.0.1:0\"\n";
    out += "[state]\ndir = \"" + state_dir + "\"\n";
    out += "[store]\nkind = \"etcd\"\nendpoints = [" + eps + "]\n";
    out += "prefix = \"" + options_.prefix + "\"\nnode = \"" + nodes_[i]->name + "\"\n";
    out += "timeout = \"" + options_.timeout + "\"\nlease_ttl = \"" + options_.lease_ttl + "\"\n";
    out += "[log]\naccess = \"off\"\n";
    out += "[functions.shop.versions.1]\nendpoints = [\"" + v1.address() + "\"]\n";
    out += "[functions.shop.versions.2]\nendpoints = [\"" + v2.address() + "\"]\n";
    out += "[functions.shop.aliases.live]\ntraffic = " + options_.traffic + "\n";
    out += "[[routes]]\ntarget = \"shop:live\"\n";
    return out;
  }

  // Starts node i (again) on its state dir. False with `error` (sluice's stderr) if it did not
  // come up; the process, if it exited, is reaped.
  bool start(size_t i, std::string* error = nullptr) {
    Node& n = *nodes_[i];
    n.proc.reset();
    n.proc = std::make_unique<Sluice>(config(i, n.state.path()));
    n.admin = n.proc->started() ? admin::admin_port(*n.proc) : 0;
    if (n.proc->started() && n.admin != 0) return true;
    if (error) *error = "node " + n.name + ": " + n.proc->error();
    return false;
  }
  bool start_all(std::string* error) {
    for (size_t i = 0; i < size(); ++i)
      if (!start(i, error)) return false;
    return true;
  }
  // SIGTERM; the exit status (0: clean).
  int stop(size_t i) { return nodes_[i]->proc ? nodes_[i]->proc->stop() : -1; }
  // SIGKILL and reap.
  bool kill(size_t i) {
    Sluice& s = *nodes_[i]->proc;
    if (!s.signal(SIGKILL)) return false;
    return s.wait_exit(10000).has_value();
  }

  // One admin call to node i on the node's own keep-alive client (main thread only).
  ApiReply call(size_t i, const std::string& method, const std::string& path,
                const std::string& body = "") {
    return api(*nodes_[i]->curl, nodes_[i]->admin, method, path, body);
  }
  ApiReply set_traffic(size_t i, const json& traffic) {
    return call(i, "PUT", kAliasPath, traffic_body(traffic));
  }
  json status(size_t i) { return call(i, "GET", "/admin/status").body; }
  json traffic(size_t i) { return alias_traffic(status(i)); }
  json store(size_t i) {
    json s = status(i);
    return s.is_object() && s.contains("store") ? s["store"] : json(nullptr);
  }
  std::string metrics(size_t i) { return call(i, "GET", "/metrics").raw; }

  // Polls node i's status until shop:live shows `expected`; the ms it took, or nullopt.
  std::optional<double> wait_traffic(size_t i, const json& expected, int timeout_ms) {
    auto start = std::chrono::steady_clock::now();
    bool ok = poll_until([&] { return traffic(i) == expected; }, timeout_ms);
    if (!ok) return std::nullopt;
    return ms_between(start, std::chrono::steady_clock::now());
  }
  // Polls node i's status until its store's "up" is `up`.
  bool wait_store_up(size_t i, bool up, int timeout_ms) {
    return poll_until(
        [&] {
          json s = store(i);
          return s.is_object() && s.contains("up") && s["up"] == up;
        },
        timeout_ms);
  }

  // The tails of every node's stderr, for failure messages.
  std::string logs(size_t bytes = 1500) const {
    std::string out;
    for (const auto& n : nodes_)
      if (n->proc) out += "--- node " + n->name + " stderr tail:\n" + stderr_tail(*n->proc, bytes);
    return out;
  }

  Upstream v1{"v1"};
  Upstream v2{"v2"};

 private:
  EtcdCluster& etcd_;
  FleetOptions options_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

// Failed assertions so far in this process (main.cpp's listener counts them).
extern std::atomic<int> g_failed_asserts;

// Prints every node's stderr tail (and the etcd members' log tails) to stdout when the scope
// ends, if an assertion failed in it: once per test, not with every failed check.
class LogsOnFailure {
 public:
  LogsOnFailure(Fleet& fleet, EtcdCluster& etcd)
      : fleet_(fleet), etcd_(etcd), at_start_(g_failed_asserts.load()) {}
  ~LogsOnFailure() {
    if (g_failed_asserts.load() == at_start_) return;
    std::string out = fleet_.logs(4000);
    for (size_t m = 0; m < etcd_.size(); ++m)
      out +=
          "--- etcd member " + std::to_string(m) + " log tail:\n" + etcd_.log_tail(m, 1000) + "\n";
    std::printf("=== a check failed: the fleet's logs\n%s=== end of the fleet's logs\n",
                out.c_str());
    std::fflush(stdout);
  }
  LogsOnFailure(const LogsOnFailure&) = delete;
  LogsOnFailure& operator=(const LogsOnFailure&) = delete;

 private:
  Fleet& fleet_;
  EtcdCluster& etcd_;
  int at_start_;
};

// ---------------------------------------------------------------------------------------------
// Load through the nodes' listeners: one thread per URL, GET / in a loop, bounded in requests
// and time, counting answers per URL by upstream (x-upstream) or status. A failed request waits
// 20 ms before the next (a killed node does not make its thread spin).

class FleetLoad {
 public:
  struct Counts {
    uint64_t total = 0;
    uint64_t failed = 0;                    // not 200 (a transfer error counts as status 0)
    std::map<std::string, uint64_t> by;     // "v1", "v2", "status-503", "status-0"
    std::map<std::string, uint64_t> wrong;  // 200s from an upstream `expect` said no to
    std::vector<std::string> samples;       // the first few failures, described
  };

  // `expect`: whether upstream NAME is right for a 200 now (null: any is).
  FleetLoad(std::vector<std::string> urls, int pause_ms = 2, int max_ms = 30000,
            uint64_t max_requests = 50000, std::function<bool(const std::string&)> expect = nullptr)
      : counts_(urls.size()), expect_(std::move(expect)) {
    for (size_t i = 0; i < urls.size(); ++i)
      threads_.emplace_back([this, i, url = urls[i], pause_ms, max_ms, max_requests] {
        CurlClient curl;
        auto start = std::chrono::steady_clock::now();
        for (uint64_t n = 0; n < max_requests && !stop_ && elapsed_ms(start) < max_ms; ++n) {
          HttpResult r = curl.get(url);
          const std::string up = r.header("x-upstream");
          bool ok = r.status == 200;
          {
            std::lock_guard lock(mu_);
            Counts& c = counts_[i];
            ++c.total;
            ++c.by[ok ? up : "status-" + std::to_string(r.status)];
            if (!ok) {
              ++c.failed;
              if (c.samples.size() < 5)
                c.samples.push_back("status " + std::to_string(r.status) + " " + r.error + " " +
                                    r.header("x-sluice-error"));
            } else if (expect_ && !expect_(up)) {
              ++c.wrong[up];
            }
          }
          if (!ok)
            sleep_ms(20);
          else if (pause_ms > 0)
            sleep_ms(pause_ms);
        }
      });
  }
  ~FleetLoad() { stop(); }
  FleetLoad(const FleetLoad&) = delete;
  FleetLoad& operator=(const FleetLoad&) = delete;

  void stop() {
    stop_ = true;
    for (std::thread& t : threads_)
      if (t.joinable()) t.join();
  }
  Counts counts(size_t i) {
    std::lock_guard lock(mu_);
    return counts_[i];
  }
  Counts sum() {
    std::lock_guard lock(mu_);
    Counts all;
    for (const Counts& c : counts_) {
      all.total += c.total;
      all.failed += c.failed;
      for (const auto& [k, v] : c.by) all.by[k] += v;
      for (const auto& [k, v] : c.wrong) all.wrong[k] += v;
      for (const std::string& s : c.samples)
        if (all.samples.size() < 10) all.samples.push_back(s);
    }
    return all;
  }

  static std::string describe(const Counts& c) {
    std::string out = "requests=" + std::to_string(c.total) + " failed=" + std::to_string(c.failed);
    for (const auto& [k, v] : c.by) out += " " + k + "=" + std::to_string(v);
    for (const auto& [k, v] : c.wrong) out += " wrong-upstream:" + k + "=" + std::to_string(v);
    for (const std::string& s : c.samples) out += "\n  failure: " + s;
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<Counts> counts_;
  std::function<bool(const std::string&)> expect_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// ---------------------------------------------------------------------------------------------
// Propagation: a change through node 0, and how long after its 200 each other node shows it.

struct Propagation {
  std::vector<double> ms;  // one per (change, follower) that showed the change
  size_t missing = 0;      // (change, follower) pairs not shown within the wait
  size_t failed_writes = 0;
  std::vector<std::string> failures;  // the first few, described
};

// Makes `changes` alias changes through node 0 (each a distinct map), and after each 200 polls
// every other node's status (one thread per node, each on its own keep-alive client) until it
// shows the new map, up to `wait_ms`; stops early after 3 missing pairs.
inline Propagation measure_propagation(Fleet& f, int changes, int wait_ms = 5000) {
  Propagation out;
  const size_t followers = f.size() - 1;
  std::mutex mu;
  std::condition_variable cv;
  uint64_t generation = 0;
  size_t done = 0;
  bool quit = false;
  std::string target;
  std::chrono::steady_clock::time_point t0;
  std::vector<std::thread> pollers;
  for (size_t k = 1; k <= followers; ++k)
    pollers.emplace_back([&, k, port = f.admin(k)] {
      CurlClient curl;
      uint64_t seen = 0;
      for (;;) {
        std::string want;
        std::chrono::steady_clock::time_point since;
        {
          std::unique_lock lock(mu);
          cv.wait(lock, [&] { return quit || generation != seen; });
          if (quit) return;
          seen = generation;
          want = target;
          since = t0;
        }
        std::optional<double> took;
        auto start = std::chrono::steady_clock::now();
        while (elapsed_ms(start) < wait_ms) {
          ApiReply r = api(curl, port, "GET", "/admin/status");
          if (alias_traffic(r.body).dump() == want) {
            took = ms_between(since, std::chrono::steady_clock::now());
            break;
          }
          sleep_ms(1);
        }
        std::lock_guard lock(mu);
        if (took)
          out.ms.push_back(*took);
        else
          ++out.missing;
        ++done;
        cv.notify_all();
      }
    });
  for (int i = 0; i < changes && out.missing < 3; ++i) {
    // Alternating about 90/10 and 50/50, never the same map twice.
    const int w1 = i % 2 == 0 ? 900 + i : 500 + i;
    const json map = {{"1", w1}, {"2", 1000 - w1}};
    ApiReply r = f.set_traffic(0, map);
    auto answered = std::chrono::steady_clock::now();
    if (r.status != 200) {
      ++out.failed_writes;
      if (out.failures.size() < 5)
        out.failures.push_back("change " + std::to_string(i) + ": " + std::to_string(r.status) +
                               " " + r.raw + r.error);
      if (out.failed_writes >= 3) break;
      continue;
    }
    std::unique_lock lock(mu);
    target = map.dump();
    t0 = answered;
    done = 0;
    ++generation;
    cv.notify_all();
    cv.wait(lock, [&] { return done == followers; });
  }
  {
    std::lock_guard lock(mu);
    quit = true;
    cv.notify_all();
  }
  for (std::thread& t : pollers) t.join();
  return out;
}

// ---------------------------------------------------------------------------------------------
// What the fleet keeps in etcd, read through the gateway (not through sluice).

inline std::string b64_encode(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16 |
                 static_cast<unsigned char>(in[i + 1]) << 8 | static_cast<unsigned char>(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (in.size() - i == 1) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (in.size() - i == 2) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1])
                                                               << 8;
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

inline std::string b64_decode(const std::string& in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = value(c);
    if (v < 0) continue;  // '=' and anything else
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

// Every key under `prefix` with its value, through the first healthy member; nullopt if none
// answered.
inline std::optional<std::vector<std::pair<std::string, std::string>>> etcd_prefix(
    EtcdCluster& etcd, const std::string& prefix) {
  std::string end = prefix;
  end.back() = static_cast<char>(end.back() + 1);
  json req = {{"key", b64_encode(prefix)}, {"range_end", b64_encode(end)}};
  for (size_t i = 0; i < etcd.size(); ++i) {
    if (!etcd.healthy(i)) continue;
    std::optional<std::string> answer = etcd.post(i, "/v3/kv/range", req.dump(), 10000);
    if (!answer) continue;
    json j = json::parse(*answer, nullptr, false);
    if (!j.is_object()) continue;
    std::vector<std::pair<std::string, std::string>> out;
    if (j.contains("kvs"))
      for (const json& kv : j["kvs"])
        out.emplace_back(b64_decode(kv.value("key", "")), b64_decode(kv.value("value", "")));
    return out;
  }
  return std::nullopt;
}

// Audit records (store.h: objects with "seq", "alias", "old" and "new") anywhere in the values
// under the prefix, whether kept one per key or as a list in one value.
inline void collect_audit(const json& j, std::vector<json>* out) {
  if (j.is_object()) {
    if (j.contains("seq") && j.contains("new") && j.contains("old") && j.contains("alias")) {
      out->push_back(j);
      return;
    }
    for (const auto& item : j.items()) collect_audit(item.value(), out);
  } else if (j.is_array()) {
    for (const json& item : j) collect_audit(item, out);
  }
}

inline std::vector<json> audit_records(
    const std::vector<std::pair<std::string, std::string>>& kvs) {
  std::vector<json> out;
  for (const auto& [key, value] : kvs) {
    json j = json::parse(value, nullptr, false);
    if (!j.is_discarded()) collect_audit(j, &out);
  }
  return out;
}

// The value of a metric line "NAME VALUE" (no labels) in Prometheus text, or nullopt.
inline std::optional<double> metric_value(const std::string& text, const std::string& name) {
  size_t at = 0;
  while ((at = text.find(name, at)) != std::string::npos) {
    bool line_start = at == 0 || text[at - 1] == '\n';
    size_t after = at + name.size();
    if (line_start && after < text.size() && text[after] == ' ')
      return std::strtod(text.c_str() + after + 1, nullptr);
    at = after;
  }
  return std::nullopt;
}

// A JSON number, or a number in a string (etcd's int64s); NaN otherwise.
inline double as_number(const json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) return std::strtod(j.get<std::string>().c_str(), nullptr);
  return std::nan("");
}

// j[key], or null when j is not an object or has no such key.
inline json field(const json& j, const char* key) {
  return j.is_object() && j.contains(key) ? j[key] : json(nullptr);
}

// j[key] as a string, "" when absent or not a string; as a number, NaN when absent or neither a
// number nor a numeric string. Never throws (a half-built answer must fail a check, not the run).
inline std::string str_of(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}
inline double num_of(const json& j, const char* key) {
  return j.is_object() && j.contains(key) ? as_number(j[key]) : std::nan("");
}
inline int int_of(const json& j, const char* key) {
  double v = num_of(j, key);
  return std::isnan(v) ? 0 : static_cast<int>(v);
}

// A shift record in one line: "step=2/5 state=running leader=b".
inline std::string shift_brief(const json& rec) {
  if (!rec.is_object()) return "(no record: " + rec.dump() + ")";
  return "step=" + std::to_string(int_of(rec, "step")) + "/" +
         std::to_string(int_of(rec, "steps_total")) + " state=" + str_of(rec, "state") +
         " leader=" + str_of(rec, "leader");
}

inline bool contains_ci(const std::string& haystack, const std::string& needle) {
  return to_lower(haystack).find(to_lower(needle)) != std::string::npos;
}

}  // namespace sluice::e2e::fleet
