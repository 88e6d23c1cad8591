// End-to-end: the control plane never takes the data plane down. Bad admin input (bytes that are
// not UTF-8, malformed or deep JSON, huge bodies, bad weights) answers 4xx and the proxy keeps
// serving; slow admin clients cannot lock the operator out; the audit log misses no applied
// change across SIGKILL; reload says which changes need a restart; endpoint names resolve off
// the control loop.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "admin_test_util.h"

using namespace sluice::e2e;
using namespace sluice::e2e::admin;

namespace {

// Sends `bytes` on a fresh connection to the admin port and reads one response.
std::optional<Response> raw_admin(uint16_t port, const std::string& bytes, int timeout_ms = 10000) {
  RawClient c(port);
  if (!c.connected() || !c.send(bytes)) return std::nullopt;
  return c.read_response(timeout_ms);
}

json json_of(const Response& r) {
  return json::parse(r.body, nullptr, false);
}

// Keeps `count` connections to 127.0.0.1:`port` open, each sending the next byte of a request
// head every `dribble_ms`, reopening any the server closes (no sooner than 100 ms later), until
// stop() or `limit_ms`. Non-blocking sockets, one thread.
class SlowClients {
 public:
  SlowClients(uint16_t port, size_t count, int dribble_ms, int limit_ms)
      : port_(port), fds_(count, -1), next_byte_(count, 0), closed_at_(count) {
    thread_ = std::thread([this, dribble_ms, limit_ms] { run(dribble_ms, limit_ms); });
  }
  ~SlowClients() { stop(); }
  void stop() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }
  size_t opened() const { return opened_.load(); }
  size_t open_now() const { return open_now_.load(); }
  size_t closed_by_server() const { return closed_by_server_.load(); }

 private:
  int open_one() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port_);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 &&
        errno != EINPROGRESS) {
      ::close(fd);
      return -1;
    }
    ++opened_;
    return fd;
  }
  void run(int dribble_ms, int limit_ms) {
    static const std::string kHead =
        "GET /admin/status HTTP/1.1\r\nHost: slow\r\nX-Pad: " + std::string(200, 'x') + "\r\n\r\n";
    auto start = std::chrono::steady_clock::now();
    auto last_dribble = start - std::chrono::hours(1);
    while (!done_ && elapsed_ms(start) < limit_ms) {
      // At most 32 new connections per round, so the listen backlog (128) never overflows:
      // a dropped SYN would only come back a second later.
      size_t open = 0, opened_now = 0;
      for (size_t i = 0; i < fds_.size(); ++i) {
        if (fds_[i] < 0 && opened_now < 32 && elapsed_ms(closed_at_[i]) >= 100) {
          fds_[i] = open_one();
          next_byte_[i] = 0;
          ++opened_now;
        }
        open += fds_[i] >= 0;
      }
      open_now_ = open;
      const bool dribble =
          std::chrono::steady_clock::now() - last_dribble >= std::chrono::milliseconds(dribble_ms);
      if (dribble) last_dribble = std::chrono::steady_clock::now();
      std::vector<pollfd> pfds;
      std::vector<size_t> slots;
      for (size_t i = 0; i < fds_.size(); ++i) {
        if (fds_[i] < 0) continue;
        if (dribble) {
          char c = kHead[next_byte_[i] % (kHead.size() - 4)];  // never completes the head
          if (::send(fds_[i], &c, 1, MSG_NOSIGNAL) == 1) ++next_byte_[i];
        }
        pfds.push_back({fds_[i], POLLIN, 0});
        slots.push_back(i);
      }
      ::poll(pfds.data(), pfds.size(), 20);
      for (size_t k = 0; k < pfds.size(); ++k) {
        if (!(pfds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[4096];
        ssize_t n = ::recv(pfds[k].fd, buf, sizeof buf, 0);
        if (n > 0 || (n < 0 && errno == EAGAIN)) continue;  // a 408 arrives before the close
        ::close(pfds[k].fd);
        fds_[slots[k]] = -1;
        closed_at_[slots[k]] = std::chrono::steady_clock::now();
        ++closed_by_server_;
      }
    }
    for (int& fd : fds_)
      if (fd >= 0) ::close(fd);
  }

  uint16_t port_;
  std::vector<int> fds_;
  std::vector<size_t> next_byte_;
  std::vector<std::chrono::steady_clock::time_point> closed_at_;
  std::atomic<bool> done_{false};
  std::atomic<size_t> opened_{0}, open_now_{0}, closed_by_server_{0};
  std::thread thread_;
};

}  // namespace

TEST_CASE("GET /admin/status with a config path that is not UTF-8 answers, the proxy serves on") {
  Upstream a("a"), b("b");
  TempDir dir;
  // The directory name holds bytes that are not UTF-8: json::dump threw on them and the
  // uncaught exception ended the whole process, data plane included.
  const std::string odd = dir.path() + "/conf-\xff\xfe";
  REQUIRE(std::filesystem::create_directory(odd));
  const std::string config = odd + "/sluice.toml";
  write_file(config, shop_config(a, b, R"({ "1" = 100 })"));
  Sluice s("", {1, {"run", "-c", config}});
  REQUIRE_STARTED(s);
  uint16_t port = admin_port(s);
  REQUIRE(port != 0);
  CurlClient adm;
  for (int i = 0; i < 3; ++i) {
    ApiReply r = api(adm, port, "GET", "/admin/status");
    CHECK(r.status == 200);
    REQUIRE_FALSE(r.body.is_discarded());
    CHECK(r.body["config"].get<std::string>().find("conf-\xEF\xBF\xBD\xEF\xBF\xBD") !=
          std::string::npos);
  }
  // A reload error quoting the path is shown too.
  write_file(config, "workers = \"two\"\n");
  ApiReply reload = api(adm, port, "POST", "/admin/reload");
  CHECK(reload.status == 400);
  CHECK_FALSE(reload.body.is_discarded());
  CHECK(api(adm, port, "GET", "/admin/status").status == 200);
  CHECK(who_answers(s, 10)["a"] == 10);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("bad admin requests answer 4xx with a JSON error and sluice keeps serving") {
  Upstream a("a"), b("b");
  Sluice s(shop_config(a, b, R"({ "1" = 100 })"));
  REQUIRE_STARTED(s);
  uint16_t port = admin_port(s);
  REQUIRE(port != 0);
  const std::string alias = "/admin/functions/shop/aliases/live";
  struct Case {
    const char* what;
    std::string request;
    int status;
    const char* field;
  };
  const std::string big(2 << 20, ' ');
  for (const Case& k : {
           Case{"target not UTF-8", raw_request("GET", "/admin/functions/\xff\xfe"), 400, "target"},
           Case{"body not UTF-8", raw_request("PUT", alias, "", "{\"traffic\":{\"1\xff\":1}}"), 400,
                "body"},
           Case{"malformed JSON", raw_request("PUT", alias, "", "{\"traffic\":"), 400, "body"},
           Case{"JSON nested 100000 deep",
                raw_request("PUT", alias, "", std::string(100000, '[') + std::string(100000, ']')),
                400, "body"},
           Case{"a weight of the wrong type",
                raw_request("PUT", alias, "", R"({"traffic":{"1":"all"}})"), 400, "traffic.1"},
           Case{"an unknown field", raw_request("PUT", alias, "", R"({"traffic":{"1":1},"x":1})"),
                400, "x"},
           Case{"a weight the file loader refuses",
                raw_request("PUT", alias, "", R"({"traffic":{"1":1e13,"2":1e12}})"), 400,
                "traffic.1"},
           Case{"1e308", raw_request("PUT", alias, "", R"({"traffic":{"1":1e308}})"), 400,
                "traffic.1"},
           Case{"a 2 MiB body", raw_request("PUT", alias, "", big), 413, "body"},
       }) {
    const std::string what = k.what;
    CAPTURE(what);
    std::optional<Response> r = raw_admin(port, k.request);
    REQUIRE(r);
    CHECK(r->status == k.status);
    json j = json_of(*r);
    REQUIRE_FALSE(j.is_discarded());
    CHECK(j["field"] == k.field);
    CHECK(j["error"].is_string());
  }
  CurlClient adm;
  json st = api(adm, port, "GET", "/admin/status").body;
  CHECK(st["functions"][0]["aliases"][0]["traffic"] == json{{"1", 100}});
  CHECK(who_answers(s, 20)["a"] == 20);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an admin request whose head does not arrive in 5 s is answered 408 and closed") {
  Upstream a("a"), b("b");
  Sluice s(shop_config(a, b, R"({ "1" = 100 })"));
  REQUIRE_STARTED(s);
  uint16_t port = admin_port(s);
  REQUIRE(port != 0);
  RawClient slow(port), silent(port);
  REQUIRE(slow.connected());
  REQUIRE(silent.connected());
  auto start = std::chrono::steady_clock::now();
  // Bytes keep coming, but the head is never complete: the deadline counts from the accept.
  const std::string head = "GET /admin/status HTTP/1.1\r\nX-Pad: " + std::string(100, 'x');
  std::optional<Response> r;
  for (size_t i = 0; i < head.size() && !r; ++i) {
    slow.send(head.substr(i, 1));
    r = slow.read_response(250);
  }
  const long took_ms = elapsed_ms(start);
  REQUIRE(r);
  CHECK(r->status == 408);
  CHECK(json_of(*r)["field"] == "head");
  CHECK(took_ms >= 4500);
  CHECK(took_ms < 9000);
  CHECK(slow.wait_closed(2000));
  // A connection that sent nothing is closed without an answer, at the same deadline.
  CHECK(silent.wait_closed(std::max(100L, 9000 - elapsed_ms(start))));
  CHECK(silent.buffer().empty());
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("256 slow admin connections cannot lock out status and rollback") {
  Upstream a("a"), b("b");
  Sluice s(shop_config(a, b, R"({ "1" = 100 })"));
  REQUIRE_STARTED(s);
  uint16_t port = admin_port(s);
  REQUIRE(port != 0);
  CurlClient adm;
  REQUIRE(
      api(adm, port, "PUT", "/admin/functions/shop/aliases/live", traffic_body("2", 100)).status ==
      200);

  // The lockout seen before: 256 connections dribbling one byte every 5 s held every slot, and
  // every status and rollback call failed for 22 s.
  SlowClients slow(port, 256, 5000, 60000);
  REQUIRE(poll_until([&] { return slow.opened() >= 256; }, 10000));
  ::poll(nullptr, 0, 300);  // let sluice accept them all

  const long limit_ms = kSanitized ? 5000 : 2000;
  long worst_ms = 0;
  int failures = 0;
  auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    CurlClient fresh;  // a new connection each time, as the CLI makes
    auto t0 = std::chrono::steady_clock::now();
    ApiReply st = api(fresh, port, "GET", "/admin/status");
    ApiReply change = api(fresh, port, "PUT", "/admin/functions/shop/aliases/live",
                          traffic_body("1", i + 1, "2", 1));
    ApiReply rb = api(fresh, port, "POST", "/admin/functions/shop/aliases/live/rollback");
    const long ms = elapsed_ms(t0);
    worst_ms = std::max(worst_ms, ms);
    CAPTURE(i);
    CAPTURE(st.raw);
    failures += st.status != 200 || change.status != 200 || rb.status != 200;
    CHECK(st.status == 200);
    CHECK(change.status == 200);
    CHECK(rb.status == 200);
    CHECK(ms < limit_ms);
  }
  const long all_ms = elapsed_ms(started);
  MESSAGE("30 admin calls among 256 slow connections in "
          << all_ms << " ms (worst round " << worst_ms << " ms); slow clients: " << slow.opened()
          << " opened, " << slow.closed_by_server() << " closed by sluice");
  CHECK(failures == 0);
  CHECK(slow.closed_by_server() > 0);  // shed to make room, or cut at the head deadline
  slow.stop();
  CHECK(who_answers(s, 10).size() == 1);
  CHECK_CLEAN_STOP(s);
}

namespace {

// new["1"] of every audit record, and whether their sequence numbers are unique and ascending.
std::set<int> audited_weights(const std::string& path, bool* seq_ok) {
  std::ifstream in(path);
  std::set<int> out;
  std::string line;
  uint64_t last = 0;
  *seq_ok = true;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j["new"].is_object() || !j["new"].contains("1")) continue;
    out.insert(j["new"]["1"].get<int>());
    if (j.contains("seq")) {
      *seq_ok = *seq_ok && j["seq"].get<uint64_t>() > last;
      last = j["seq"].get<uint64_t>();
    }
  }
  return out;
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str(), nullptr, false);
}

}  // namespace

TEST_CASE("after SIGKILL at random moments every change the state shows is in the audit log") {
  Upstream a("a"), b("b");
  TempDir dir;
  const std::string state_dir = dir.path() + "/state";
  const std::string config =
      dir.write("sluice.toml", shop_config(a, b, R"({ "1" = 100 })", state_dir));
  const int rounds = kSanitized ? 10 : 30;
  const unsigned seed = 20261127;
  std::mt19937 rng(seed);
  CAPTURE(seed);
  int k = 1000;  // the k-th change sets {"1": k, "2": 1}: every map is distinct
  int checked = 0;
  auto check_state_is_audited = [&](const char* when) {
    CAPTURE(when);
    json st = read_json(state_dir + "/state.json");
    REQUIRE_FALSE(st.is_discarded());
    json alias = st["functions"]["shop"]["aliases"]["live"];
    std::set<int> in_state;
    if (alias["override"].is_object()) in_state.insert(alias["override"]["1"].get<int>());
    for (const json& m : alias["history"])
      if (m["1"].get<int>() != 100) in_state.insert(m["1"].get<int>());  // 100: the file's map
    bool seq_ok = false;
    std::set<int> audited = audited_weights(state_dir + "/audit.jsonl", &seq_ok);
    CHECK(seq_ok);
    std::vector<int> missing;
    for (int w : in_state)
      if (!audited.count(w)) missing.push_back(w);
    CAPTURE(missing.size());
    CHECK_MESSAGE(missing.empty(), "first unaudited change: {\"1\": "
                                       << (missing.empty() ? 0 : missing.front()) << "}");
    ++checked;
  };
  for (int round = 0; round < rounds; ++round) {
    CAPTURE(round);
    Sluice s("", {1, {"run", "-c", config}});
    REQUIRE_STARTED(s);
    uint16_t port = admin_port(s);
    REQUIRE(port != 0);
    // The start repaired whatever the last kill cut off: what the state shows is audited.
    if (round > 0) check_state_is_audited("after a restart");
    const int kill_after_ms = std::uniform_int_distribution<int>(5, 150)(rng);
    std::thread killer([&s, kill_after_ms] {
      std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms));
      s.signal(SIGKILL);
    });
    CurlClient adm;
    for (int calls = 0; calls < 10000; ++calls) {
      ++k;
      if (api(adm, port, "PUT", "/admin/functions/shop/aliases/live",
              json{{"traffic", {{"1", k}, {"2", 1}}}}.dump())
              .status != 200)
        break;
    }
    killer.join();
    REQUIRE(s.wait_exit(5000).has_value());
  }
  Sluice last("", {1, {"run", "-c", config}});
  REQUIRE_STARTED(last);
  check_state_is_audited("after the last restart");
  CHECK_CLEAN_STOP(last);
  MESSAGE(rounds << " SIGKILL rounds, " << k - 1000 << " changes tried; state checked against "
                 << "audit.jsonl " << checked << " times");
}

TEST_CASE("a reload that changes workers or the access log says they need a restart") {
  Upstream a("a"), b("b");
  TempDir dir;
  const std::string config_text = shop_config(a, b, R"({ "1" = 100 })");
  const std::string config = dir.write("sluice.toml", config_text);
  Sluice s("", {1, {"run", "-c", config}});
  REQUIRE_STARTED(s);
  uint16_t port = admin_port(s);
  REQUIRE(port != 0);
  std::string changed = config_text;
  auto replace = [&](const std::string& from, const std::string& to) {
    REQUIRE(changed.find(from) != std::string::npos);
    changed.replace(changed.find(from), from.size(), to);
  };
  replace("workers = 2", "workers = 3");
  replace("access = \"off\"", "access = \"stdout\"");
  replace(R"({ "1" = 100 })", R"({ "2" = 100 })");
  write_file(config, changed);
  REQUIRE(s.signal(SIGHUP));
  CurlClient adm;
  json last;
  REQUIRE(poll_until(
      [&] {
        json st = api(adm, port, "GET", "/admin/status").body;
        last = st["reloads"]["last"];
        return st["reloads"]["ok"].get<int>() >= 1;
      },
      10000));
  CHECK(last["needs_restart"] == json{"workers", "[log] access"});
  CHECK(last["note"] == "needs a restart: workers, [log] access");
  CHECK(poll_until(
      [&] {
        return s.stderr_text().find("needs a restart: workers, [log] access") != std::string::npos;
      },
      5000));
  // The rest of the file applied live; the access log stays off as it started.
  CHECK(who_answers(s, 10)["b"] == 10);
  CHECK(s.stdout_text().empty());
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("endpoint names resolve off the control loop: localhost serves, reloads and refreshes") {
  Upstream a("a"), b("b");
  TempDir dir;
  std::string text = shop_config(a, b, R"({ "1" = 100 })");
  // Version 1 by name (from /etc/hosts), re-resolved every second.
  text.replace(text.find(a.address()), a.address().size(), "localhost:" + std::to_string(a.port()));
  text += "[upstream]\nresolve_interval = \"1s\"\n";
  const std::string config = dir.write("sluice.toml", text);
  Sluice s("", {1, {"run", "-c", config}});
  REQUIRE_STARTED(s);
  uint16_t port = admin_port(s);
  REQUIRE(port != 0);
  CHECK(who_answers(s, 10)["a"] == 10);
  CurlClient adm;
  json st = api(adm, port, "GET", "/admin/status").body;
  CHECK(st["resolution"]["hosts"]["localhost"]["address"] == "127.0.0.1");
  CHECK(st["resolution"]["every"] == "1s");

  // A reload resolves the names again before it answers; a request pipelined behind it on the
  // same connection is answered after it, in order.
  RawClient c(port);
  REQUIRE(c.connected());
  REQUIRE(c.send(raw_request("POST", "/admin/reload") + raw_request("GET", "/admin/status")));
  std::optional<Response> reload = c.read_response();
  REQUIRE(reload);
  CHECK(reload->status == 200);
  CHECK(json_of(*reload)["result"] == "ok");
  std::optional<Response> after = c.read_response();
  REQUIRE(after);
  CHECK(after->status == 200);
  CHECK(json_of(*after)["reloads"]["ok"] == 1);

  // Refreshes (every second) find the same address: nothing changes, nothing fails.
  ::poll(nullptr, 0, 2500);
  CHECK(who_answers(s, 10)["a"] == 10);
  CHECK(
      api(adm, port, "PUT", "/admin/functions/shop/aliases/live", traffic_body("2", 100)).status ==
      200);
  CHECK(who_answers(s, 10)["b"] == 10);
  CHECK(s.stderr_text().find("cannot re-resolve") == std::string::npos);
  CHECK_CLEAN_STOP(s);
}
