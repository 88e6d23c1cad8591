// Tests for the JSON-lines access log: line format, "off", and exact counts across a reopen.
#include <doctest/doctest.h>

#include <unistd.h>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "observe/access_log.h"

using namespace sluice::observe;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with its files at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "sluice_access_XXXXXX").string();
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    path = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::vector<std::string> read_lines(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("each access log line is one JSON object with every field") {
  TempDir dir;
  fs::path file = dir.path / "access.log";
  std::string error;
  auto log = AccessLog::open(file.string(), 1, &error);
  REQUIRE(log != nullptr);
  REQUIRE(log->enabled());
  AccessLogBuffer& buf = log->worker(0);

  AccessRecord r;
  r.unix_ms = 1'700'000'000'123;  // 2023-11-14T22:13:20.123Z
  r.client = "127.0.0.1:50000";
  r.method = "GET";
  r.path = "/hello?q=\"a\\b\"\n\x01\xc3\xbc\xff";  // quote, backslash, controls, ü, a bad byte
  r.status = 200;
  r.bytes = 1234;
  r.duration_us = 12'345;
  r.upstream_us = 10'007;
  r.function = "hello";
  r.alias = "live";
  r.version = "2";
  r.endpoint = "127.0.0.1:9001";
  r.request_id = "req-1";
  r.retried = true;
  buf.append(r);
  r.unix_ms = 1'700'000'001'005;
  r.upstream_us = UINT64_MAX;
  r.retried = false;
  r.path = "/";
  r.status = 503;
  buf.append(r);
  log->stop();

  auto lines = read_lines(file);
  REQUIRE(lines.size() == 2);
  auto j = nlohmann::json::parse(lines[0]);
  CHECK(j.size() == 14);
  CHECK(j["time"] == "2023-11-14T22:13:20.123Z");
  CHECK(j["client"] == "127.0.0.1:50000");
  CHECK(j["method"] == "GET");
  CHECK(j["path"] == "/hello?q=\"a\\b\"\n\x01\xc3\xbc\xef\xbf\xbd");
  CHECK(j["status"] == 200);
  CHECK(j["bytes"] == 1234);
  CHECK(j["duration_ms"].get<double>() == doctest::Approx(12.345));
  CHECK(j["upstream_ms"].get<double>() == doctest::Approx(10.007));
  CHECK(j["function"] == "hello");
  CHECK(j["alias"] == "live");
  CHECK(j["version"] == "2");
  CHECK(j["endpoint"] == "127.0.0.1:9001");
  CHECK(j["request_id"] == "req-1");
  CHECK(j["retried"] == true);
  auto k = nlohmann::json::parse(lines[1]);
  CHECK(k["time"] == "2023-11-14T22:13:21.005Z");
  CHECK(k["upstream_ms"].is_null());
  CHECK(k["retried"] == false);
  CHECK(k["status"] == 503);
  CHECK(log->dropped_lines() == 0);
  CHECK(log->write_errors() == 0);
}

TEST_CASE("an access log that is off does nothing") {
  std::string error;
  auto log = AccessLog::open("off", 2, &error);
  REQUIRE(log != nullptr);
  CHECK_FALSE(log->enabled());
  CHECK_FALSE(log->worker(1).enabled());
  log->worker(1).append(AccessRecord{});
  log->worker(1).flush();
  log->reopen();
  log->sync();
  log->stop();
}

TEST_CASE("opening an access log in a missing directory fails with a message") {
  std::string error;
  auto log = AccessLog::open("/nonexistent-dir/sluice/access.log", 1, &error);
  CHECK(log == nullptr);
  CHECK(error.find("/nonexistent-dir/sluice/access.log") != std::string::npos);
}

TEST_CASE("access log lines count exactly across a rename and reopen under load") {
  TempDir dir;
  fs::path file = dir.path / "access.log";
  fs::path rotated = dir.path / "access.log.1";
  std::string error;
  constexpr int kWorkers = 2;
  constexpr int kPerPhase = 2500;  // ~0.6 MB per phase per worker: ~10 hand-offs of 64 KiB
  auto log = AccessLog::open(file.string(), kWorkers, &error);
  REQUIRE(log != nullptr);

  std::atomic<int> phases_done{0};
  std::atomic<int> go{1};  // the phase workers may start
  auto wait_for = [](const std::atomic<int>& v, int at_least) {
    while (v.load(std::memory_order_acquire) < at_least) std::this_thread::yield();
  };
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      AccessLogBuffer& buf = log->worker(static_cast<size_t>(w));
      std::string id;
      std::string path = "/f/" + std::string(100, 'x');
      for (int phase = 1; phase <= 3; ++phase) {
        wait_for(go, phase);
        for (int i = 0; i < kPerPhase; ++i) {
          id = std::to_string(w) + "-" + std::to_string(phase) + "-" + std::to_string(i);
          AccessRecord r;
          r.unix_ms = AccessLog::wall_clock_ms();
          r.client = "127.0.0.1:1";
          r.method = "POST";
          r.path = path;
          r.status = 200;
          r.request_id = id;
          buf.append(r);
          if (i % 997 == 0) buf.flush();  // the periodic flush timer, interleaved
        }
        buf.flush();
        phases_done.fetch_add(1, std::memory_order_acq_rel);
      }
    });
  }

  wait_for(phases_done, kWorkers);  // phase 1 handed off
  go.store(2, std::memory_order_release);
  // Rotate while phase 2 is being written.
  fs::rename(file, rotated);
  log->reopen();
  wait_for(phases_done, 2 * kWorkers);
  log->sync();  // the reopen has happened: phase 3 goes to the new file only
  go.store(3, std::memory_order_release);
  for (auto& t : workers) t.join();
  log->stop();

  auto old_lines = read_lines(rotated);
  auto new_lines = read_lines(file);
  CAPTURE(old_lines.size());
  CAPTURE(new_lines.size());
  CHECK(old_lines.size() >= size_t{kWorkers} * kPerPhase);
  CHECK(new_lines.size() >= size_t{kWorkers} * kPerPhase);
  CHECK(old_lines.size() + new_lines.size() == size_t{3} * kWorkers * kPerPhase);

  std::set<std::string> ids;
  size_t bad = 0;
  for (const auto* lines : {&old_lines, &new_lines})
    for (const auto& line : *lines) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.contains("request_id")) {
        ++bad;
        continue;
      }
      ids.insert(j["request_id"].get<std::string>());
    }
  CHECK(bad == 0);
  CHECK(ids.size() == size_t{3} * kWorkers * kPerPhase);  // none lost, none twice
  CHECK(log->dropped_lines() == 0);
  CHECK(log->write_errors() == 0);
}
