// End-to-end: the JSON access log writes one parseable line per request, exactly, across a
// rename + SIGUSR1 reopen under concurrent load (2 workers): no line lost, split or doubled.
#include <signal.h>

#include <array>
#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "admin_test_util.h"

using namespace sluice::e2e;
using namespace sluice::e2e::admin;

namespace {

struct LogFile {
  long lines = 0;
  long bad_lines = 0;  // not a JSON object, or a field missing or of the wrong type
  std::string first_bad;
  bool ends_with_newline = true;
  std::vector<json> records;
};

LogFile read_log(const std::string& path) {
  LogFile out;
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  out.ends_with_newline = text.empty() || text.back() == '\n';
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++out.lines;
    json j = json::parse(line, nullptr, false);
    bool ok = !j.is_discarded() && j.is_object();
    // The fields of DESIGN.md §6, with their types.
    for (const char* f : {"time", "client", "method", "path", "function", "alias", "version",
                          "endpoint", "request_id"})
      ok = ok && j.contains(f) && j[f].is_string();
    for (const char* f : {"status", "bytes"}) ok = ok && j.contains(f) && j[f].is_number_integer();
    ok = ok && j.contains("duration_ms") && j["duration_ms"].is_number();
    ok = ok && j.contains("upstream_ms") &&
         (j["upstream_ms"].is_number() || j["upstream_ms"].is_null());
    ok = ok && j.contains("retried") && j["retried"].is_boolean();
    if (!ok) {
      if (out.bad_lines++ == 0) out.first_bad = line;
      continue;
    }
    out.records.push_back(std::move(j));
  }
  return out;
}

long count_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  long n = 0;
  std::string line;
  while (std::getline(in, line)) ++n;
  return n;
}

}  // namespace

TEST_CASE("access log lines parse as JSON and count exactly the requests across a SIGUSR1 reopen") {
  Upstream a("a"), b("b");
  TempDir logs;
  const std::string log_path = logs.path() + "/access.log";
  const std::string rotated = logs.path() + "/access.log.1";
  ConfigText c;
  c.workers = 2;
  c.access_log = log_path;
  c.function("shop", {{"1", {a.address()}, ""}, {"2", {b.address()}, ""}});
  c.alias("shop", "live", R"({ "1" = 50, "2" = 50 })");
  c.route("shop:live");
  Sluice s(c.str());
  REQUIRE_STARTED(s);

  // Each client loads until the rotation, then sends `after` more, so both files must get lines
  // whatever the machine's speed. Bounded: the rotation happens within 30 s or the test fails.
  constexpr int threads = 3;
  const int after = kSanitized ? 300 : 1000;
  std::atomic<long> sent{0}, answered{0};
  std::atomic<bool> rotated_flag{false}, give_up{false};
  std::array<int, threads> per_client{};
  std::vector<std::thread> clients;
  for (int t = 0; t < threads; ++t) {
    clients.emplace_back([&, t] {
      CurlClient curl;
      int remaining = after;
      for (int i = 0; remaining > 0 && !give_up.load(); ++i) {
        // Our own request id, so every line can be matched to exactly one request. Every fifth
        // request is a 404 from the upstream, every seventh a HEAD.
        std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        std::string path = i % 5 == 0 ? "/status/404" : "/?i=" + std::to_string(i);
        HttpResult r =
            curl.request(i % 7 == 0 ? "HEAD" : "GET", s.url(path), {"x-request-id: " + id});
        sent.fetch_add(1);
        per_client[t] = i + 1;
        if (r.status != 0) answered.fetch_add(1);
        if (rotated_flag.load()) --remaining;
      }
    });
  }
  // Rotate mid-load, the way logrotate does: rename, then SIGUSR1 to reopen the path. First wait
  // until the file holds lines (the workers flush every 200 ms), so the old file is not empty.
  bool loaded = poll_until([&] { return sent.load() >= 300 && count_lines(log_path) > 0; }, 30000);
  give_up = !loaded;
  bool renamed = loaded && std::rename(log_path.c_str(), rotated.c_str()) == 0;
  const long sent_at_rotation = sent.load();
  bool signalled = renamed && s.signal(SIGUSR1);
  rotated_flag = true;
  give_up = !signalled;
  for (auto& t : clients) t.join();
  REQUIRE(loaded);
  REQUIRE(renamed);
  REQUIRE(signalled);
  const long total = sent.load();
  REQUIRE(answered.load() == total);

  // Lines reach the files within the flush period; wait (bounded) for all of them.
  bool all =
      poll_until([&] { return count_lines(rotated) + count_lines(log_path) >= total; }, 10000);
  CHECK(all);
  CHECK_CLEAN_STOP(s);  // the final flush happens at stop; nothing more may appear

  LogFile old_file = read_log(rotated), new_file = read_log(log_path);
  CAPTURE(old_file.first_bad);
  CAPTURE(new_file.first_bad);
  CHECK(old_file.bad_lines == 0);
  CHECK(new_file.bad_lines == 0);
  CHECK(old_file.ends_with_newline);
  CHECK(new_file.ends_with_newline);
  CHECK(old_file.lines + new_file.lines == total);
  // Both files got a share: the old one what was flushed before the reopen (it held lines before
  // the rename), the new one the rest, including every request sent after the signal.
  CHECK(old_file.lines > 0);
  CHECK(new_file.lines > 0);
  MESSAGE("rotated after " << sent_at_rotation << " of " << total << " requests: " << old_file.lines
                           << " lines in the old file, " << new_file.lines << " in the new one");

  // Every request id appears exactly once, with what was asked and what came back.
  std::map<std::string, int> seen;
  std::map<std::string, long> by_version;
  long head = 0, not_found = 0;
  long mismatched = 0;  // lines whose fields disagree with the request their id names
  std::string first_mismatch;
  for (const LogFile* f : {&old_file, &new_file}) {
    for (const json& r : f->records) {
      const std::string id = r["request_id"];
      ++seen[id];
      ++by_version[r["version"].get<std::string>()];
      size_t dash = id.find('-');
      int i = dash == std::string::npos ? -1 : std::atoi(id.c_str() + dash + 1);
      bool ok = i >= 0 && r["function"] == "shop" && r["alias"] == "live" &&
                r["client"].get<std::string>().rfind("127.0.0.1", 0) == 0 &&
                r["method"] == (i % 7 == 0 ? "HEAD" : "GET") &&
                r["status"] == (i % 5 == 0 ? 404 : 200) &&
                r["path"] == (i % 5 == 0 ? "/status/404" : "/?i=" + std::to_string(i)) &&
                r["endpoint"] == (r["version"] == "1" ? a.address() : b.address()) &&
                r["upstream_ms"].is_number() && r["retried"] == false;
      if (!ok && mismatched++ == 0) first_mismatch = r.dump();
      head += r["method"] == "HEAD";
      not_found += r["status"] == 404;
    }
  }
  CAPTURE(first_mismatch);
  CHECK(mismatched == 0);
  long duplicates = 0;
  for (const auto& [id, n] : seen) duplicates += n > 1;
  CHECK(seen.size() == static_cast<size_t>(total));
  CHECK(duplicates == 0);
  CHECK(by_version["1"] + by_version["2"] == total);
  CHECK(static_cast<size_t>(by_version["1"]) == a.requests());
  CHECK(static_cast<size_t>(by_version["2"]) == b.requests());
  long want_head = 0, want_404 = 0;
  for (int t = 0; t < threads; ++t)
    for (int i = 0; i < per_client[t]; ++i) {
      want_head += i % 7 == 0;
      want_404 += i % 5 == 0;
    }
  CHECK(head == want_head);
  CHECK(not_found == want_404);
}

TEST_CASE("access log off writes nothing and stdout writes JSON lines to stdout") {
  Upstream a("a");
  ConfigText c;
  c.workers = 2;
  c.access_log = "stdout";
  c.function("shop", {{"1", {a.address()}, ""}});
  c.alias("shop", "live", R"({ "1" = 100 })");
  c.route("shop:live");
  Sluice s(c.str());
  REQUIRE_STARTED(s);
  CurlClient curl;
  for (int i = 0; i < 50; ++i) REQUIRE(curl.get(s.url("/")).status == 200);
  CHECK_CLEAN_STOP(s);
  std::string out = s.stdout_text();
  long lines = 0, parsed = 0;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t eol = out.find('\n', pos);
    if (eol == std::string::npos) eol = out.size();
    json j = json::parse(out.substr(pos, eol - pos), nullptr, false);
    ++lines;
    parsed += !j.is_discarded() && j.is_object() && j.value("version", "") == "1";
    pos = eol + 1;
  }
  CHECK(lines == 50);
  CHECK(parsed == 50);
}
