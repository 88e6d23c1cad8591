// End-to-end regression tests for the client-connection hardening of issue 9: declined upgrades,
// early upstream answers and lingering close, back-pressure on generated answers, one instance
// per address, client faults kept off the version's figures, the timeouts (head from accept,
// body, response gaps, send, tunnel idle), connection limits that shed the idle instead of
// refusing newcomers, upstream pool reuse under load, live [limits]/[upstream] on reload, and
// generated answers logging their own request id.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "admin_test_util.h"
#include "e2e.h"

using namespace sluice::e2e;
using sluice::e2e::admin::admin_port;

namespace {

std::string one_version(const Upstream& up, const std::string& limits = "",
                        const std::string& version_extra = "", int workers = 1,
                        const std::string& top = "") {
  ConfigText cfg;
  cfg.workers = workers;
  cfg.limits = limits;
  cfg.body = top;
  cfg.function("shop", {{"1", {up.address()}, version_extra}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  return cfg.str();
}

std::string metrics_text(const Sluice& s) {
  CurlClient curl;
  return curl.get("http://127.0.0.1:" + std::to_string(admin_port(s)) + "/metrics").body;
}

// Sum of the values of `family` lines whose labels contain every one of `labels`.
double metric(const std::string& text, const std::string& family,
              const std::vector<std::string>& labels = {}) {
  std::istringstream in(text);
  std::string line;
  double sum = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind(family, 0) != 0) continue;
    const char next = line.size() > family.size() ? line[family.size()] : ' ';
    if (next != '{' && next != ' ') continue;
    bool all = true;
    for (const auto& l : labels) all = all && line.find(l) != std::string::npos;
    if (!all) continue;
    sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

// Bytes the peer sent until it closed; -1 if it did not close within `timeout_ms`.
long read_until_closed(RawClient& c, int timeout_ms) {
  long total = 0;
  auto start = std::chrono::steady_clock::now();
  char buf[65536];
  while (elapsed_ms(start) < timeout_ms) {
    pollfd p{c.fd(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::recv(c.fd(), buf, sizeof buf, 0);
    if (n <= 0) return total;
    total += n;
  }
  return -1;
}

// A connection that sends part of a request head and then nothing.
std::unique_ptr<RawClient> slowloris(uint16_t port) {
  auto c = std::make_unique<RawClient>(port);
  if (c->connected()) c->send("GET /slow-head HTTP/1.1\r\nHost: e2e.test\r\n");
  return c;
}

bool still_open(const RawClient& c) {
  if (!c.connected()) return false;
  char b;
  ssize_t n = ::recv(c.fd(), &b, 1, MSG_DONTWAIT | MSG_PEEK);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

std::vector<nlohmann::json> log_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line, nullptr, false));
  return out;
}

}  // namespace

TEST_CASE("an upgrade the upstream declines continues as plain HTTP/1.1 on the same connection") {
  Upstream v1("v1");
  Sluice s(one_version(v1));
  REQUIRE_STARTED(s);
  const std::string upgrade =
      "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
  SUBCASE("one request after the other") {
    RawClient c(s.port());
    REQUIRE(c.send(raw_request("GET", "/status/401", upgrade)));
    auto r = c.read_response(3000);
    REQUIRE(r);
    CHECK(r->status == 401);
    REQUIRE(c.send(raw_request("GET", "/after")));
    auto next = c.read_response(3000);
    REQUIRE(next);
    CHECK(next->status == 200);
    CHECK(next->header("x-target") == "/after");
  }
  SUBCASE("pipelined behind the declined upgrade") {
    RawClient c(s.port());
    REQUIRE(c.send(raw_request("GET", "/status/403", upgrade) + raw_request("GET", "/second")));
    auto r = c.read_response(3000);
    REQUIRE(r);
    CHECK(r->status == 403);
    auto next = c.read_response(3000);
    REQUIRE(next);
    CHECK(next->header("x-target") == "/second");
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("CONNECT is refused with 405 and the connection closed") {
  Upstream v1("v1");
  Sluice s(one_version(v1));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"));
  auto r = c.read_response(3000);
  REQUIRE(r);
  check_generated_error(*r, 405, "connect-not-supported");
  CHECK(c.wait_closed(3000));
  CHECK(v1.requests() == 0);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an upstream that answers an upload early: the client reads the whole answer, no reset") {
  Upstream v1("v1");
  Sluice s(one_version(v1));
  REQUIRE_STARTED(s);

  SUBCASE("curl -T of a 64 MiB file exits 0 with the early 200") {
    const std::string file = s.dir().path() + "/upload.bin";
    {
      int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
      REQUIRE(fd >= 0);
      REQUIRE(::ftruncate(fd, 64 << 20) == 0);
      ::close(fd);
    }
    const std::string body = s.dir().path() + "/body.txt";
    const std::string cmd = "curl -sS --max-time 30 -o " + body + " -w '%{http_code}' -T " + file +
                            " " + s.url("/early") + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p);
    char out[256] = {0};
    size_t n = std::fread(out, 1, sizeof out - 1, p);
    int status = ::pclose(p);
    CAPTURE(std::string(out, n));
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(std::string(out, n) == "200");
    std::ifstream in(body);
    std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(got == "early v1\n");
  }
  SUBCASE("a raw client keeps sending after the answer without being reset") {
    RawClient c(s.port());
    const size_t total = 8 << 20;
    REQUIRE(c.send("POST /early HTTP/1.1\r\nHost: e2e.test\r\nContent-Length: " +
                   std::to_string(total) + "\r\n\r\n"));
    std::string block(1 << 20, 'x');
    REQUIRE(c.send(block));
    auto r = c.read_response(5000);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "early v1\n");
    CHECK(to_lower(r->header("connection")) == "close");
    bool all_sent = true;
    for (size_t sent = block.size(); sent < total; sent += block.size())
      all_sent = all_sent && c.send(block);
    CHECK(all_sent);  // sluice kept reading (and discarding) instead of resetting
    c.shutdown_write();
    CHECK(c.wait_closed(5000));
  }
  {
    CurlClient curl;
    CHECK(curl.get(s.url("/fine")).status == 200);  // still serving
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE(
    "a client that pipelines requests and never reads the answers is not read without bound") {
  Upstream v1("v1");
  ConfigText cfg;
  cfg.workers = 1;
  cfg.function("shop", {{"1", {v1.address()}, ""}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod", "/api/");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  const long rss_before = s.proc_status_field("VmRSS");
  RawClient c(s.port());
  REQUIRE(c.connected());
  std::string block;
  while (block.size() < (1 << 20)) block += "GET /nope HTTP/1.1\r\nHost: e2e.test\r\n\r\n";
  const size_t attempt = size_t(96) << 20;
  size_t sent = 0;
  auto start = std::chrono::steady_clock::now();
  auto last_progress = start;
  while (sent < attempt && elapsed_ms(start) < 8000 && elapsed_ms(last_progress) < 1500) {
    pollfd p{c.fd(), POLLOUT, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    size_t off = sent % block.size();
    ssize_t n = ::send(c.fd(), block.data() + off, block.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += size_t(n);
      last_progress = std::chrono::steady_clock::now();
    } else if (n < 0 && errno != EAGAIN) {
      break;
    }
  }
  const long rss_after = s.proc_status_field("VmRSS");
  MESSAGE("sent " << (sent >> 20) << " MiB of pipelined unroutable requests; sluice RSS "
                  << rss_before << " -> " << rss_after << " KiB");
  CHECK(sent < (size_t(48) << 20));
  CHECK(rss_after - rss_before < 64 * 1024);
  // Reading the answers lets it go on: the first ones are complete 404s.
  auto r = c.read_response(5000);
  REQUIRE(r);
  check_generated_error(*r, 404, "no-route");
  c.close();
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a second sluice on an address a live sluice serves refuses to start") {
  Upstream v1("v1"), v2("v2");
  Sluice a(one_version(v1, "", "", 2));
  REQUIRE_STARTED(a);
  std::string second = one_version(v2, "", "", 2);
  const std::string from = "[listen]\naddress = \"127.0.0.1:0\"";
  REQUIRE(second.find(from) != std::string::npos);
  second.replace(second.find(from), from.size(),
                 "[listen]\naddress = \"127.0.0.1:" + std::to_string(a.port()) + "\"");
  SluiceOptions opts;
  opts.start_timeout_ms = 5000;
  Sluice b(second, opts);
  CHECK_FALSE(b.started());
  auto code = b.wait_exit(5000);
  REQUIRE(code);
  CHECK(*code == 1);
  CHECK(b.stderr_text().find("already in use") != std::string::npos);
  // Every request still goes to the first instance.
  for (int i = 0; i < 40; ++i) {
    RawClient c(a.port());
    REQUIRE(c.send(raw_request("GET", "/who")));
    auto r = c.read_response(3000);
    REQUIRE(r);
    CHECK(r->header("x-upstream") == "v1");
  }
  CHECK(v2.requests() == 0);
  CHECK_CLEAN_STOP(a);
}

TEST_CASE("a client too slow with its body gets 408 and is not counted against the version") {
  Upstream v1("v1");
  Sluice s(one_version(v1, "body_timeout = \"500ms\"\n", "response_timeout = \"300ms\"\n"));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send("POST /count-body HTTP/1.1\r\nHost: e2e.test\r\nContent-Length: 100\r\n\r\n"));
  REQUIRE(c.send("0123456789"));
  auto start = std::chrono::steady_clock::now();
  auto r = c.read_response(5000);
  REQUIRE(r);
  check_generated_error(*r, 408, "body-timeout");
  CHECK(elapsed_ms(start) < 3000);
  std::string m;
  REQUIRE(poll_until(
      [&] {
        m = metrics_text(s);
        return metric(m, "sluice_requests_total", {"class=\"4xx\""}) >= 1;
      },
      3000));
  CAPTURE(m);
  CHECK(metric(m, "sluice_upstream_failures_total") == 0);
  CHECK(metric(m, "sluice_requests_total", {"class=\"5xx\""}) == 0);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an upload that outlasts response_timeout while its bytes still flow is not cut") {
  Upstream v1("v1");
  Sluice s(one_version(v1, "", "response_timeout = \"300ms\"\n"));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  const int pieces = 10;
  const std::string piece(1000, 'u');
  REQUIRE(c.send("POST /count-body HTTP/1.1\r\nHost: e2e.test\r\nContent-Length: " +
                 std::to_string(pieces * piece.size()) + "\r\n\r\n"));
  for (int i = 0; i < pieces; ++i) {
    REQUIRE(c.send(piece));
    ::poll(nullptr, 0, 100);
  }
  auto r = c.read_response(5000);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body.rfind("bytes=10000 ", 0) == 0);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("header_timeout counts from the accept, not from the first byte") {
  Upstream v1("v1");
  Sluice s(one_version(v1, "header_timeout = \"2s\"\n"));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  auto start = std::chrono::steady_clock::now();
  ::poll(nullptr, 0, 1500);
  REQUIRE(c.send("GET / HTTP/1.1\r\n"));
  bool answered = false;
  while (!answered && elapsed_ms(start) < 6000) {
    c.send("X");  // a dribble that never completes the head
    pollfd p{c.fd(), POLLIN, 0};
    answered = ::poll(&p, 1, 200) > 0;
  }
  const long at = elapsed_ms(start);
  auto r = c.read_response(2000);
  REQUIRE(r);
  check_generated_error(*r, 408, "header-timeout");
  MESSAGE("408 after " << at << " ms (header_timeout 2 s, first byte at 1.5 s)");
  CHECK(at < 2900);  // from the first byte it would be 3.5 s
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("at max_connections a flood of slow heads does not keep legitimate clients out") {
  Upstream v1("v1");
  Sluice s(one_version(v1, "max_connections = 40\n"));
  REQUIRE_STARTED(s);
  std::atomic<bool> stop{false};
  std::atomic<long> reconnects{0};
  std::thread flood([&] {
    std::vector<std::unique_ptr<RawClient>> conns;
    for (int i = 0; i < 80; ++i) conns.push_back(slowloris(s.port()));
    while (!stop) {
      for (auto& c : conns)
        if (!still_open(*c)) {
          c = slowloris(s.port());
          ++reconnects;
        }
      ::poll(nullptr, 0, 10);
    }
  });
  ::poll(nullptr, 0, 300);
  int served = 0;
  const int legit = 30;
  for (int i = 0; i < legit; ++i) {
    RawClient c(s.port());
    if (c.connected() && c.send(raw_request("GET", "/legit"))) {
      auto r = c.read_response(2000);
      served += r && r->status == 200;
    }
    ::poll(nullptr, 0, 30);
  }
  stop = true;
  flood.join();
  MESSAGE(served << " of " << legit << " legitimate requests served; " << reconnects.load()
                 << " slow connections shed and reopened");
  // Under a sanitizer sluice runs several times slower while the flood keeps its pace, so more
  // newcomers land between a legitimate client's accept and its first read (24 of 30 seen).
  CHECK(served >= (kSanitized ? legit - 10 : legit - 3));
  CHECK(reconnects > 0);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("max_connections_per_client sheds that client's oldest idle connection") {
  Upstream v1("v1");
  // One worker: a newcomer can only replace a connection of its own worker.
  Sluice s(one_version(v1, "max_connections_per_client = 3\n", "", 1));
  REQUIRE_STARTED(s);
  SUBCASE("idle connections make room") {
    std::vector<std::unique_ptr<RawClient>> held;
    for (int i = 0; i < 3; ++i) {
      held.push_back(std::make_unique<RawClient>(s.port()));
      REQUIRE(held.back()->send(raw_request("GET", "/idle")));
      REQUIRE(held.back()->read_response(3000));
      ::poll(nullptr, 0, 20);  // distinct wait start times
    }
    RawClient extra(s.port());
    REQUIRE(extra.send(raw_request("GET", "/extra")));
    auto r = extra.read_response(3000);
    REQUIRE(r);
    CHECK(r->status == 200);
    // Exactly one of the held ones was closed to make room.
    REQUIRE(poll_until(
        [&] {
          int closed = 0;
          for (auto& h : held) closed += !still_open(*h);
          return closed == 1;
        },
        3000));
  }
  SUBCASE("busy connections are not shed: the newcomer is refused") {
    std::vector<std::unique_ptr<RawClient>> busy;
    for (int i = 0; i < 3; ++i) {
      busy.push_back(std::make_unique<RawClient>(s.port()));
      REQUIRE(busy.back()->send(raw_request("GET", "/slow?ms=1500")));
    }
    REQUIRE(poll_until([&] { return v1.count_target("/slow") == 3; }, 3000));
    RawClient extra(s.port());
    if (extra.connected() && extra.send(raw_request("GET", "/refused"))) {
      auto r = extra.read_response(1000);
      CHECK(!(r && r->status == 200));
    }
    CHECK(v1.count_target("/refused") == 0);
    for (auto& b : busy) {
      auto r = b->read_response(5000);
      REQUIRE(r);
      CHECK(r->status == 200);
    }
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE(
    "an upstream that stalls mid-body is cut after response_timeout and counted as a timeout") {
  Upstream v1("v1");
  Sluice s(one_version(v1, "", "response_timeout = \"500ms\"\n"));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send(raw_request("GET", "/stall-body")));
  auto head = c.read_head(3000);
  REQUIRE(head);
  CHECK(head->status == 200);
  auto start = std::chrono::steady_clock::now();
  CHECK(c.wait_closed(5000));
  CHECK(elapsed_ms(start) < 3000);
  std::string m;
  REQUIRE(poll_until(
      [&] {
        m = metrics_text(s);
        return metric(m, "sluice_upstream_failures_total", {"kind=\"timeout\""}) == 1;
      },
      3000));
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a client that stops reading a response is cut after send_timeout") {
  Upstream v1("v1");
  Sluice s(one_version(v1, "send_timeout = \"1s\"\n"));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  const long size = 256L << 20;
  REQUIRE(c.send(raw_request("GET", "/download?bytes=" + std::to_string(size))));
  ::poll(nullptr, 0, 3000);  // reads nothing meanwhile
  long got = read_until_closed(c, 10000);
  MESSAGE("read " << got << " bytes before sluice closed the connection");
  CHECK(got >= 0);  // closed
  CHECK(got < size);
  std::string m = metrics_text(s);
  CHECK(metric(m, "sluice_upstream_failures_total") == 0);
  CHECK(poll_until([&] { return v1.open_connections() == 0; }, 5000));
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an idle WebSocket tunnel is closed after tunnel_idle_timeout") {
  Upstream v1("v1");
  Sluice s(one_version(v1, "tunnel_idle_timeout = \"1s\"\n"));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send(raw_request("GET", "/ws", "Upgrade: websocket\r\nConnection: Upgrade\r\n")));
  auto r = c.read_response(3000);
  REQUIRE(r);
  REQUIRE(r->status == 101);
  REQUIRE(c.send("ping"));
  REQUIRE(c.read_at_least(4, 3000));
  auto start = std::chrono::steady_clock::now();
  CHECK(c.wait_closed(6000));
  const long idle = elapsed_ms(start);
  MESSAGE("tunnel closed after " << idle << " ms idle");
  CHECK(idle >= 800);
  CHECK(poll_until([&] { return v1.open_connections() == 0; }, 5000));
  CHECK(metric(metrics_text(s), "sluice_upstream_failures_total") == 0);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a WebSocket the upstream ends normally is not counted as an upstream reset") {
  Upstream v1("v1");
  Sluice s(one_version(v1));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send(
      raw_request("GET", "/ws?close_after=3", "Upgrade: websocket\r\nConnection: Upgrade\r\n")));
  auto r = c.read_response(3000);
  REQUIRE(r);
  REQUIRE(r->status == 101);
  REQUIRE(c.send("bye"));  // echoed, then the upstream ends the session
  CHECK(c.wait_closed(5000));
  CHECK(c.buffer() == "bye");
  std::string m;
  REQUIRE(poll_until(
      [&] {
        m = metrics_text(s);
        return metric(m, "sluice_requests_total") == 1;
      },
      3000));
  CAPTURE(m);
  CHECK(metric(m, "sluice_upstream_failures_total") == 0);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("under steady concurrency the default pool reuses upstream connections") {
  Upstream v1("v1");
  Sluice s(one_version(v1));  // default [upstream]
  REQUIRE_STARTED(s);
  const int clients = 96, per_client = 25;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t)
    threads.emplace_back([&] {
      CurlClient curl;
      for (int i = 0; i < per_client; ++i) ok += curl.get(s.url("/")).status == 200;
    });
  for (auto& t : threads) t.join();
  MESSAGE(clients << " concurrent keep-alive clients, " << ok.load()
                  << " requests: " << v1.connections() << " upstream connections opened");
  CHECK(ok == clients * per_client);
  CHECK(v1.connections() <= size_t(clients + 4));
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a reload applies [limits] and [upstream] to what comes next") {
  Upstream v1("v1");
  Sluice s(one_version(v1));
  REQUIRE_STARTED(s);
  {
    CurlClient curl;
    for (int i = 0; i < 3; ++i) REQUIRE(curl.get(s.url("/")).status == 200);
  }
  const size_t conns_before = v1.connections();
  CHECK(conns_before == 1);
  std::ofstream(s.config_path(), std::ios::trunc)
      << one_version(v1, "header_timeout = \"1s\"\n", "", 1, "[upstream]\nkeepalive = 0\n\n");
  REQUIRE(s.signal(SIGHUP));
  REQUIRE(poll_until(
      [&] {
        RawClient c(s.port());
        if (!c.send("GET / HTTP/1.1\r\n")) return false;
        auto start = std::chrono::steady_clock::now();
        auto r = c.read_response(2500);
        return r && r->status == 408 && elapsed_ms(start) < 2000;
      },
      8000));
  CurlClient curl;
  for (int i = 0; i < 3; ++i) REQUIRE(curl.get(s.url("/")).status == 200);
  CHECK(v1.connections() == conns_before + 3);  // keepalive = 0: no reuse
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("answers sluice generates itself log their own request id") {
  Upstream v1("v1");
  TempDir logs;
  const std::string log_path = logs.path() + "/access.log";
  ConfigText cfg;
  cfg.workers = 1;
  cfg.access_log = log_path;
  cfg.function("shop", {{"1", {v1.address()}, "max_concurrency = 1\n"}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod", "/", "e2e.test");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  RawClient a(s.port());
  REQUIRE(a.send(raw_request("GET", "/first")));
  REQUIRE(a.read_response(3000));
  REQUIRE(a.send(raw_request("GET", "/nope", "Host: nope.test\r\n")));  // 404, same connection
  auto r404 = a.read_response(3000);
  REQUIRE(r404);
  CHECK(r404->status == 404);
  RawClient hold(s.port());
  REQUIRE(hold.send(raw_request("GET", "/slow?ms=1500")));
  REQUIRE(poll_until([&] { return v1.count_target("/slow") == 1; }, 3000));
  REQUIRE(a.send(raw_request("GET", "/throttled")));
  auto r429 = a.read_response(3000);
  REQUIRE(r429);
  CHECK(r429->status == 429);
  REQUIRE(hold.read_response(5000));
  std::vector<nlohmann::json> lines;
  REQUIRE(poll_until(
      [&] {
        lines = log_lines(log_path);
        return lines.size() >= 4;
      },
      5000));
  std::map<std::string, std::string> id_of;
  for (const auto& l : lines) id_of[l.value("path", "")] = l.value("request_id", "");
  CAPTURE(id_of);
  const std::string first = id_of["/first"];
  CHECK(first.size() == 32);
  CHECK(id_of["/nope"].size() == 32);
  CHECK(id_of["/throttled"].size() == 32);
  CHECK(id_of["/nope"] != first);
  CHECK(id_of["/throttled"] != first);
  CHECK(id_of["/throttled"] != id_of["/nope"]);
  CHECK_CLEAN_STOP(s);
}
