// End-to-end: GET /metrics counts exactly what concurrent clients sent and received, per
// function × alias × version (2 workers; upstream failures and throttles included), passes
// `promtool check metrics`, and GET /admin/status shows per-version weight, rate, error rate and
// p50/p99 once requests have flowed.
#include <sys/wait.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "admin_test_util.h"
#include "skip.h"

using namespace sluice::e2e;
using namespace sluice::e2e::admin;

namespace {

// One Prometheus sample: metric name, labels, value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the text exposition format (no escapes in our label values). Comment lines are skipped;
// a line that does not parse makes `ok` false.
std::vector<Sample> parse_prometheus(const std::string& text, bool& ok) {
  std::vector<Sample> out;
  ok = true;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    size_t brace = line.find('{');
    size_t space = line.rfind(' ');
    if (space == std::string::npos) {
      ok = false;
      continue;
    }
    if (brace != std::string::npos && brace < space) {
      s.name = line.substr(0, brace);
      size_t close = line.rfind('}');
      std::string labels = line.substr(brace + 1, close - brace - 1);
      size_t at = 0;
      while (at < labels.size()) {
        size_t eq = labels.find('=', at);
        size_t q1 = labels.find('"', eq);
        size_t q2 = labels.find('"', q1 + 1);
        if (eq == std::string::npos || q1 != eq + 1 || q2 == std::string::npos) {
          ok = false;
          break;
        }
        s.labels[labels.substr(at, eq - at)] = labels.substr(q1 + 1, q2 - q1 - 1);
        at = q2 + 1;
        if (at < labels.size() && labels[at] == ',') ++at;
      }
    } else {
      s.name = line.substr(0, space);
    }
    try {
      s.value = std::stod(line.substr(space + 1));
    } catch (...) {
      ok = false;
      continue;
    }
    out.push_back(std::move(s));
  }
  return out;
}

// Sum of the samples named `name` whose labels include every pair of `want`.
double sum_of(const std::vector<Sample>& samples, const std::string& name,
              const std::map<std::string, std::string>& want) {
  double total = 0;
  for (const Sample& s : samples) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : want) {
      auto it = s.labels.find(k);
      match = match && it != s.labels.end() && it->second == v;
    }
    if (match) total += s.value;
  }
  return total;
}

std::string status_class(long status) {
  return std::to_string(status / 100) + "xx";
}

// The four-alias setup: live (1=70, 2=30), odd (1, /bad answers), broken (3: nothing listens),
// narrow (4, max_concurrency = 1). Routes by Host.
std::string four_alias_config(const Upstream& a, const Upstream& b, const Upstream& n) {
  ConfigText c;
  c.workers = 2;
  // Passive ejection off where failures are on purpose: this test counts each failure as it
  // happens (ejection would turn later ones into 503 no-healthy-version; tested elsewhere).
  const std::string keep = "outlier = { consecutive_failures = 0, consecutive_5xx = 0 }\n";
  c.function("shop", {{"1", {a.address()}, keep},
                      {"2", {b.address()}, ""},
                      {"3", {loopback(unused_port())}, keep},
                      {"4", {n.address()}, "max_concurrency = 1\n"}});
  c.alias("shop", "live", R"({ "1" = 70, "2" = 30 })");
  c.alias("shop", "odd", R"({ "1" = 100 })");
  c.alias("shop", "broken", R"({ "3" = 100 })");
  c.alias("shop", "narrow", R"({ "4" = 100 })");
  c.route("shop:live");
  c.route("shop:odd", "/", "odd.test");
  c.route("shop:broken", "/", "broken.test");
  c.route("shop:narrow", "/", "narrow.test");
  return c.str();
}

// What the clients saw, keyed by (alias, version, status class).
using Tally = std::map<std::tuple<std::string, std::string, std::string>, long>;

// `threads` clients, each sending `per_thread` requests over keep-alive in a fixed mix:
// 10% broken, 10% odd /bad, 20% narrow /slow, 10% live /status/500, 10% live /status/404, 40%
// live /. Every answer is attributed to its series by what was asked (x-sluice-version for live).
Tally run_mix(const Sluice& s, int threads, int per_thread, long& unattributed) {
  Tally tally;
  std::mutex mu;
  std::atomic<long> lost{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < threads; ++t) {
    clients.emplace_back([&, t] {
      CurlClient curl;
      Tally mine;
      for (int i = 0; i < per_thread; ++i) {
        const int kind = (i + t) % 10;
        std::string alias = "live", version, path = "/", host = "e2e.test";
        if (kind == 0) {
          alias = "broken", version = "3", host = "broken.test";
        } else if (kind == 1) {
          alias = "odd", version = "1", host = "odd.test", path = "/bad";
        } else if (kind == 2 || kind == 3) {
          alias = "narrow", version = "4", host = "narrow.test", path = "/slow?ms=15";
        } else if (kind == 4) {
          path = "/status/500";
        } else if (kind == 5) {
          path = "/status/404";
        }
        HttpResult r = curl.get(s.url(path), {"Host: " + host});
        if (alias == "live") {  // x-sluice-version: shop:N
          version = r.header("x-sluice-version");
          version = version.rfind("shop:", 0) == 0 ? version.substr(5) : "";
        }
        if (r.status == 0 || version.empty()) {
          lost.fetch_add(1);
          continue;
        }
        ++mine[{alias, version, status_class(r.status)}];
      }
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [k, v] : mine) tally[k] += v;
    });
  }
  for (auto& c : clients) c.join();
  unattributed = lost.load();
  return tally;
}

std::string get_metrics(const Sluice& s, long* status = nullptr) {
  CurlClient curl;
  HttpResult r = curl.get("http://127.0.0.1:" + std::to_string(admin_port(s)) + "/metrics");
  if (status) *status = r.status;
  return r.body;
}

}  // namespace

TEST_CASE("per-version counts in /metrics equal exactly what concurrent clients sent and got") {
  Upstream a("a"), b("b"), n("n");
  Sluice s(four_alias_config(a, b, n));
  REQUIRE_STARTED(s);
  REQUIRE(admin_port(s) != 0);

  const int threads = 3, per_thread = kSanitized ? 200 : 500;
  long unattributed = 0;
  Tally tally = run_mix(s, threads, per_thread, unattributed);
  REQUIRE(unattributed == 0);

  // The client saw every kind of outcome it was meant to provoke.
  long sent = 0, throttled = 0;
  for (const auto& [k, v] : tally) sent += v;
  REQUIRE(sent == threads * per_thread);
  throttled = tally[{"narrow", "4", "4xx"}];
  CHECK(throttled > 0);
  CHECK(tally[{"narrow", "4", "2xx"}] > 0);
  CHECK(tally[{"broken", "3", "5xx"}] == threads * per_thread / 10);
  CHECK(tally[{"odd", "1", "5xx"}] == threads * per_thread / 10);
  CHECK(tally[{"live", "1", "2xx"}] > 0);
  CHECK(tally[{"live", "2", "2xx"}] > 0);

  // A request is recorded once its last byte is handed to the kernel, which may be a moment
  // after the client has read it: scrape until nothing is in flight (bounded), then compare.
  long metrics_status = 0;
  bool parsed = false;
  std::vector<Sample> m;
  bool settled = poll_until(
      [&] {
        m = parse_prometheus(get_metrics(s, &metrics_status), parsed);
        return metrics_status == 200 && parsed && sum_of(m, "sluice_in_flight", {}) == 0;
      },
      5000);
  REQUIRE(metrics_status == 200);
  REQUIRE(parsed);
  CHECK(settled);

  // Every (alias, version, class) the clients saw, and nothing else.
  const std::array<std::pair<const char*, const char*>, 5> series = {
      {{"live", "1"}, {"live", "2"}, {"odd", "1"}, {"broken", "3"}, {"narrow", "4"}}};
  for (const auto& [alias_text, version_text] : series) {
    const std::string alias = alias_text, version = version_text;
    for (const std::string cls : {"1xx", "2xx", "3xx", "4xx", "5xx"}) {
      CAPTURE(alias);
      CAPTURE(version);
      CAPTURE(cls);
      long want = tally.count({alias, version, cls}) ? tally[{alias, version, cls}] : 0;
      CHECK(
          sum_of(m, "sluice_requests_total",
                 {{"function", "shop"}, {"alias", alias}, {"version", version}, {"class", cls}}) ==
          static_cast<double>(want));
    }
    long requests = 0;
    for (const auto& [k, v] : tally)
      if (std::get<0>(k) == alias && std::get<1>(k) == version) requests += v;
    CAPTURE(alias);
    CAPTURE(version);
    // The histogram counts each request once too, and nothing is left in flight.
    CHECK(sum_of(m, "sluice_request_duration_seconds_count",
                 {{"alias", alias}, {"version", version}}) == static_cast<double>(requests));
    CHECK(sum_of(m, "sluice_request_duration_seconds_bucket",
                 {{"alias", alias}, {"version", version}, {"le", "+Inf"}}) ==
          static_cast<double>(requests));
    CHECK(sum_of(m, "sluice_in_flight", {{"alias", alias}, {"version", version}}) == 0);
  }
  CHECK(sum_of(m, "sluice_requests_total", {}) == static_cast<double>(sent));

  // Failures by kind, on the series that caused them.
  CHECK(sum_of(m, "sluice_upstream_failures_total",
               {{"alias", "broken"}, {"version", "3"}, {"kind", "connect_failed"}}) ==
        static_cast<double>(tally[{"broken", "3", "5xx"}]));
  CHECK(sum_of(m, "sluice_upstream_failures_total",
               {{"alias", "odd"}, {"version", "1"}, {"kind", "bad_response"}}) ==
        static_cast<double>(tally[{"odd", "1", "5xx"}]));
  CHECK(sum_of(m, "sluice_upstream_failures_total", {{"alias", "live"}}) ==
        sum_of(m, "sluice_upstream_retries_total", {{"alias", "live"}}));
  // Throttles: exactly the 429s, all on the narrow version.
  CHECK(sum_of(m, "sluice_throttles_total", {{"alias", "narrow"}, {"version", "4"}}) ==
        static_cast<double>(throttled));
  CHECK(sum_of(m, "sluice_throttles_total", {}) == static_cast<double>(throttled));
  // Weights of the configured aliases.
  CHECK(sum_of(m, "sluice_alias_weight", {{"alias", "live"}, {"version", "1"}}) == 70);
  CHECK(sum_of(m, "sluice_alias_weight", {{"alias", "live"}, {"version", "2"}}) == 30);
  // What reached the upstreams agrees: narrow's upstream saw every non-throttled request.
  CHECK(n.requests() == static_cast<size_t>(tally[{"narrow", "4", "2xx"}]));
  MESSAGE(sent << " requests: " << throttled << " throttled, retries "
               << sum_of(m, "sluice_upstream_retries_total", {}));
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("promtool check metrics passes on the live /metrics output") {
  if (!sluice::test::have_tool("promtool")) {
    sluice::test::skip_test("promtool not installed (Debian package prometheus)");
    return;
  }
  Upstream a("a"), b("b"), n("n");
  Sluice s(four_alias_config(a, b, n));
  REQUIRE_STARTED(s);
  REQUIRE(admin_port(s) != 0);
  long unattributed = 0;
  run_mix(s, 2, 100, unattributed);

  long status = 0;
  std::string text = get_metrics(s, &status);
  REQUIRE(status == 200);
  REQUIRE(text.find("sluice_request_duration_seconds_bucket") != std::string::npos);
  std::string path = s.dir().write("metrics.txt", text);
  CliRun r;
  {
    std::string cmd = "promtool check metrics < " + path + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[4096];
    size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, got);
    int st = ::pclose(p);
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }
  CAPTURE(r.out);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("error") == std::string::npos);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("admin status shows per-version weight, rate, error rate and p50/p99 after requests") {
  Upstream a("a"), b("b"), n("n");
  Sluice s(four_alias_config(a, b, n));
  REQUIRE_STARTED(s);
  uint16_t port = admin_port(s);
  REQUIRE(port != 0);

  CurlClient adm;
  // Before any request: weights are there, rates are zero.
  ApiReply before = api(adm, port, "GET", "/admin/status");
  REQUIRE(before.status == 200);
  CHECK(before.body.value("live_figures", false));

  long unattributed = 0;
  Tally tally = run_mix(s, 3, kSanitized ? 100 : 300, unattributed);
  REQUIRE(unattributed == 0);

  // Scrape until nothing is in flight (a request is recorded just after its last byte is sent).
  ApiReply st;
  auto settled = [&] {
    st = api(adm, port, "GET", "/admin/status");
    if (st.status != 200) return false;
    for (const json& f : st.body["functions"])
      for (const json& al : f["aliases"])
        for (const json& v : al["versions"])
          if (v.value("in_flight", 0) != 0) return false;
    return true;
  };
  CHECK(poll_until(settled, 5000));
  REQUIRE(st.status == 200);
  std::map<std::string, json> by_alias;
  for (const json& f : st.body["functions"])
    for (const json& al : f["aliases"]) by_alias[al["name"].get<std::string>()] = al;
  REQUIRE(by_alias.count("live"));
  const json& live = by_alias["live"];
  REQUIRE(live["versions"].size() == 2);
  for (const json& v : live["versions"]) {
    const std::string version = v["version"];
    CAPTURE(version);
    CAPTURE(v.dump());
    CHECK(v["weight"] == (version == "1" ? 70 : 30));
    CHECK(v["share"].get<double>() == doctest::Approx(version == "1" ? 0.7 : 0.3));
    long requests = 0, errors = 0;
    for (const auto& [k, count] : tally)
      if (std::get<0>(k) == "live" && std::get<1>(k) == version) {
        requests += count;
        if (std::get<2>(k) == "5xx") errors += count;
      }
    REQUIRE(requests > 0);
    // The whole run fits in the 60 s window, so window figures cover every request.
    CHECK(v["requests_total"] == requests);
    CHECK(v["requests_per_second"].get<double>() > 0);
    CHECK(v["error_rate"].get<double>() ==
          doctest::Approx(static_cast<double>(errors) / static_cast<double>(requests)));
    CHECK(v["p50_ms"].get<double>() > 0);
    CHECK(v["p99_ms"].get<double>() >= v["p50_ms"].get<double>());
    CHECK(v["in_flight"] == 0);
  }
  // A version whose every request failed shows an error rate of 1.
  REQUIRE(by_alias.count("broken"));
  CHECK(by_alias["broken"]["versions"][0]["error_rate"].get<double>() == doctest::Approx(1.0));
  // The 15 ms upstream delay shows in the narrow version's median.
  REQUIRE(by_alias.count("narrow"));
  const json& narrow = by_alias["narrow"]["versions"][0];
  CAPTURE(narrow.dump());
  CHECK(narrow["p99_ms"].get<double>() >= 15.0);
  CHECK_CLEAN_STOP(s);
}
