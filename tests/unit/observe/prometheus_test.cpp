// Tests for the Prometheus text rendering, including a `promtool check metrics` run.
#include <doctest/doctest.h>

#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "observe/prometheus.h"
#include "skip.h"

using namespace sluice::observe;

namespace {

Snapshot populated_snapshot() {
  Registry reg(2, WindowSpec{6000, 10});
  Series* stable = reg.worker(0).series("hello", "live", "1");
  Series* canary = reg.worker(1).series("hello", "live", "2");
  Series* odd = reg.worker(1).series("we\"ird\\fn\nx", "live", "$LATEST");
  for (int i = 0; i < 3; ++i) {
    stable->begin();
    stable->end(200, 150 + i, 100, FailureKind::kNone, 0, 1000);
  }
  canary->begin();
  canary->end(504, 2'000'000, 1'999'000, FailureKind::kTimeout, 1, 1000);
  canary->begin();
  canary->throttled(1000);
  odd->end(404, 300, kNoUpstream, FailureKind::kNone, 0, 1000);
  return reg.merged(2000);
}

bool contains_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

}  // namespace

TEST_CASE("rendered metrics have HELP, TYPE and the expected samples") {
  std::string text = render_prometheus(populated_snapshot(), [](PrometheusWriter& w) {
    w.family("sluice_build_info", "gauge", "Build information.");
    w.sample("sluice_build_info", {{"version", "0.1.0"}}, uint64_t{1});
  });
  CAPTURE(text);
  CHECK(text.rfind("# HELP sluice_requests_total ", 0) == 0);
  CHECK(contains_line(text, "# TYPE sluice_requests_total counter"));
  CHECK(contains_line(
      text, R"(sluice_requests_total{function="hello",alias="live",version="1",class="2xx"} 3)"));
  CHECK(contains_line(
      text, R"(sluice_requests_total{function="hello",alias="live",version="2",class="5xx"} 1)"));
  CHECK(contains_line(
      text, R"(sluice_requests_total{function="hello",alias="live",version="2",class="2xx"} 0)"));
  CHECK(contains_line(
      text,
      R"(sluice_upstream_failures_total{function="hello",alias="live",version="2",kind="timeout"} 1)"));
  CHECK(contains_line(text,
                      R"(sluice_throttles_total{function="hello",alias="live",version="2"} 1)"));
  CHECK(contains_line(
      text, R"(sluice_upstream_retries_total{function="hello",alias="live",version="2"} 1)"));
  CHECK(contains_line(text, "# TYPE sluice_in_flight gauge"));
  CHECK(contains_line(text, R"(sluice_in_flight{function="hello",alias="live",version="2"} 1)"));
  CHECK(contains_line(text, "# TYPE sluice_request_duration_seconds histogram"));
  CHECK(contains_line(
      text,
      R"(sluice_request_duration_seconds_bucket{function="hello",alias="live",version="1",le="0.0001"} 0)"));
  CHECK(contains_line(
      text,
      R"(sluice_request_duration_seconds_bucket{function="hello",alias="live",version="1",le="0.00025"} 3)"));
  CHECK(contains_line(
      text,
      R"(sluice_request_duration_seconds_bucket{function="hello",alias="live",version="2",le="1"} 0)"));
  CHECK(contains_line(
      text,
      R"(sluice_request_duration_seconds_bucket{function="hello",alias="live",version="2",le="2.5"} 1)"));
  CHECK(contains_line(
      text,
      R"(sluice_request_duration_seconds_bucket{function="hello",alias="live",version="1",le="+Inf"} 3)"));
  CHECK(contains_line(
      text,
      R"(sluice_request_duration_seconds_sum{function="hello",alias="live",version="1"} 0.000453)"));
  CHECK(contains_line(
      text,
      R"(sluice_request_duration_seconds_count{function="hello",alias="live",version="1"} 3)"));
  CHECK(contains_line(text, "# TYPE sluice_upstream_duration_seconds histogram"));
  CHECK(contains_line(
      text,
      R"(sluice_upstream_duration_seconds_count{function="we\"ird\\fn\nx",alias="live",version="$LATEST"} 0)"));
  CHECK(contains_line(text, R"(sluice_build_info{version="0.1.0"} 1)"));
  CHECK(text.back() == '\n');
}

TEST_CASE("rendered metrics pass promtool check metrics") {
  if (!sluice::test::have_tool("promtool")) {
    sluice::test::skip_test("promtool not installed (Debian package prometheus)");
    return;
  }
  auto dir = std::filesystem::temp_directory_path();
  std::string path = (dir / ("sluice_metrics_" + std::to_string(::getpid()) + ".txt")).string();
  std::string out_path = path + ".out";
  {
    std::ofstream out(path, std::ios::binary);
    out << render_prometheus(populated_snapshot(), [](PrometheusWriter& w) {
      w.family("sluice_config_reloads_total", "counter", "Configuration reloads, by result.");
      w.sample("sluice_config_reloads_total", {{"result", "ok"}}, uint64_t{2});
      w.family("sluice_alias_weight", "gauge", "Current traffic weight of a version in an alias.");
      w.sample("sluice_alias_weight", {{"function", "hello"}, {"alias", "live"}, {"version", "2"}},
               0.1);
    });
  }
  int rc = std::system(("promtool check metrics < " + path + " > " + out_path + " 2>&1").c_str());
  std::ifstream in(out_path);
  std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CAPTURE(output);
  CHECK(rc == 0);
  std::filesystem::remove(path);
  std::filesystem::remove(out_path);

  // An empty snapshot (no traffic yet) must pass too.
  {
    std::ofstream out(path, std::ios::binary);
    out << render_prometheus(Snapshot{});
  }
  int empty_rc = std::system(("promtool check metrics < " + path + " >/dev/null 2>&1").c_str());
  CHECK(empty_rc == 0);
  std::filesystem::remove(path);
}
