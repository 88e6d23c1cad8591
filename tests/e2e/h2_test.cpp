// End-to-end: HTTP/2 clients (issue 13). Real clients -- the curl CLI, h2load, and the raw-frame
// attack client tests/e2e/h2_attacks.py -- against the real binary: h2 chosen by ALPN on a TLS
// listener, h2c with prior knowledge on a plaintext one, per-stream routing and the weighted
// split, bodies both ways, the attack budgets, drain with GOAWAY, and sluice's own errors
// answered to gRPC clients as gRPC statuses.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "admin_test_util.h"
#include "e2e.h"
#include "h2_test_util.h"
#include "skip.h"
#include "tls_test_certs.h"

using namespace sluice::e2e;
using namespace sluice::e2e::h2;
using sluice::test::have_tool;
using sluice::test::skip_test;
using sluice::test::tls_asset;

namespace {

std::string attacks_script() {
  return script("h2_attacks.py");
}

// "<http_version> <status>" and the body, from one curl CLI run.
struct CurlRun {
  std::string version;
  int status = 0;
  std::string headers, body;
};

CurlRun curl(const std::string& args) {
  const std::string out =
      run("curl -sS --max-time 10 -D - -w '\\n%{http_version} %{http_code}' " + args);
  CurlRun r;
  const size_t last = out.rfind('\n');
  if (last == std::string::npos) return r;
  const std::string tail = out.substr(last + 1);
  const size_t sp = tail.find(' ');
  if (sp == std::string::npos) return r;
  r.version = tail.substr(0, sp);
  r.status = std::atoi(tail.c_str() + sp + 1);
  const std::string rest = out.substr(0, last);
  const size_t split = rest.find("\r\n\r\n");
  r.headers = rest.substr(0, split);
  if (split != std::string::npos) r.body = rest.substr(split + 4);
  return r;
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A config with one plaintext listener (h2c on) in front of function shop (1 = 90, 2 = 10).
ConfigText h2c_config(const Upstream& v1, const Upstream& v2, const std::string& limits = "") {
  ConfigText c;
  c.listen_extra = "h2c = true\n";
  c.limits = limits;
  c.function("shop", {{"1", {v1.address()}}, {"2", {v2.address()}}})
      .alias("shop", "live", R"({ "1" = 90, "2" = 10 })", "allow_override = true\n")
      .route("shop:live");
  return c;
}

std::string tls_args(uint16_t port) {
  return "--cacert " + tls_asset("ca.pem") + " --resolve example.test:" + std::to_string(port) +
         ":127.0.0.1 https://example.test:" + std::to_string(port);
}

}  // namespace

TEST_CASE("HTTP/2 over TLS by ALPN and h2c with prior knowledge reach the weighted versions") {
  Upstream v1{"v1"}, v2{"v2"};
  ConfigText tls = h2c_config(v1, v2);
  tls.listen_extra = rsa_listener_tls();
  Sluice s_tls(tls.str());
  Sluice s_h2c(h2c_config(v1, v2, "max_header_bytes = 16384\n").str());
  REQUIRE(s_tls.started());
  REQUIRE(s_h2c.started());

  SUBCASE("GET: HTTP/2 both ways, the version named, the upstream spoken to in HTTP/1.1") {
    const CurlRun a = curl("--http2 " + tls_args(s_tls.port()) + "/hello-tls");
    CHECK(a.version == "2");
    CHECK(a.status == 200);
    const CurlRun b =
        curl("--http2-prior-knowledge http://127.0.0.1:" + std::to_string(s_h2c.port()) + "/hello");
    CHECK(b.version == "2");
    CHECK(b.status == 200);
    for (const CurlRun* r : {&a, &b}) {
      const std::string h = lower(r->headers);
      CHECK(h.find("x-sluice-version: shop:") != std::string::npos);
      CHECK(h.find("connection:") == std::string::npos);  // no hop-by-hop header over HTTP/2
      CHECK(r->body.rfind("hello from v", 0) == 0);
    }
    std::vector<ReceivedRequest> seen = v1.received();
    for (const ReceivedRequest& r : v2.received()) seen.push_back(r);
    const auto tls_one = std::find_if(seen.begin(), seen.end(), [](const ReceivedRequest& r) {
      return r.target == "/hello-tls";
    });
    REQUIRE(tls_one != seen.end());
    CHECK(tls_one->version == "HTTP/1.1");
    CHECK(tls_one->headers.get("host").find("example.test") == 0);
    CHECK(tls_one->headers.get("x-forwarded-proto") == "https");
  }
  SUBCASE("bodies: content-length and unknown length, up and down, HEAD, cookies joined") {
    const std::string body_file = s_h2c.dir().write("body.bin", std::string(300000, 'x'));
    const std::string h2c =
        "--http2-prior-knowledge http://127.0.0.1:" + std::to_string(s_h2c.port());
    const CurlRun sized = curl("--data-binary @" + body_file + " " + h2c + "/count-body");
    CHECK(sized.status == 200);
    CHECK(sized.body.rfind("bytes=300000 ", 0) == 0);
    // From a pipe: no content-length, DATA frames until END_STREAM (chunked upstream).
    const CurlRun piped = curl("-T - -X POST " + h2c + "/count-body < " + body_file);
    CHECK(piped.status == 200);
    CHECK(piped.body.rfind("bytes=300000 ", 0) == 0);
    const CurlRun down = curl("--http2 " + tls_args(s_tls.port()) + "/download?bytes=1000000");
    CHECK(down.status == 200);
    CHECK(down.body.size() == 1000000);
    const CurlRun head = curl("-I " + h2c + "/download?bytes=5000");
    CHECK(head.status == 200);
    CHECK(lower(head.headers).find("content-length: 5000") != std::string::npos);
    const CurlRun cookies = curl("-H 'cookie: a=1' -H 'cookie: b=2' " + h2c + "/headers");
    CHECK(cookies.status == 200);
    CHECK(lower(cookies.body).find("cookie: a=1; b=2\r\n") != std::string::npos);
  }
  SUBCASE("sluice's own answers keep their status and reason over HTTP/2") {
    const std::string h2c =
        "--http2-prior-knowledge http://127.0.0.1:" + std::to_string(s_h2c.port());
    const CurlRun pinned = curl("-H 'x-sluice-version: 9' " + h2c + "/");
    CHECK(pinned.status == 404);
    CHECK(lower(pinned.headers).find("x-sluice-error: unknown-version") != std::string::npos);
    // Over max_header_bytes (16 KiB here): 431, as the same head over HTTP/1.1 gets.
    const std::string half(10000, 'a');
    const CurlRun big = curl("-H 'x-big1: " + half + "' -H 'x-big2: " + half + "' " + h2c + "/");
    CHECK(big.status == 431);
  }
}

TEST_CASE("h2c is off by default: a plaintext listener answers the preface as HTTP/1.1 did") {
  Upstream v1{"v1"}, v2{"v2"};
  ConfigText c = h2c_config(v1, v2);
  c.listen_extra = "";
  Sluice s(c.str());
  REQUIRE(s.started());
  RawClient raw(s.port());
  REQUIRE(raw.connected());
  raw.send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  raw.wait_closed(3000);
  CHECK(raw.buffer().rfind("HTTP/1.1 4", 0) == 0);
  CHECK(v1.requests() + v2.requests() == 0);
}

TEST_CASE("h2load: many streams per connection with 0 errors and a 90/10 split within 1.5 points") {
  if (!have_tool("h2load")) return skip_test("h2load (nghttp2-client) is not installed");
  Upstream v1{"v1"}, v2{"v2"};
  Sluice s(h2c_config(v1, v2).str());
  REQUIRE(s.started());
  const int n = kSanitized ? 4000 : 10000;
  const std::string out = run("h2load -n " + std::to_string(n) + " -c 4 -m 32 http://127.0.0.1:" +
                                  std::to_string(s.port()) + "/split",
                              true);
  INFO(out);
  CHECK(out.find("requests: " + std::to_string(n) + " total, " + std::to_string(n) + " started, " +
                 std::to_string(n) + " done, " + std::to_string(n) +
                 " succeeded, 0 failed, 0 errored") != std::string::npos);
  const double share = 100.0 * double(v1.requests()) / double(v1.requests() + v2.requests());
  INFO("v1 " << v1.requests() << " v2 " << v2.requests());
  CHECK(v1.requests() + v2.requests() == size_t(n));
  CHECK(std::abs(share - 90.0) <= 1.5);
}

namespace {

// GETs over a fresh HTTP/2 connection and over HTTP/1.1 while an attack runs; the slowest
// answer's time and the failures.
struct Bystander {
  std::vector<double> ms;
  int failures = 0;
};

void bystander(uint16_t port, int requests, Bystander& out) {
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/bystander";
  for (int i = 0; i < requests; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string mode = i % 2 ? "--http2-prior-knowledge " : "";
    const std::string code =
        run("curl -s -o /dev/null --max-time 5 -w '%{http_code}' " + mode + url);
    out.ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (code != "200") ++out.failures;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

double p99(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(double(v.size()) * 0.99))];
}

}  // namespace

TEST_CASE("HTTP/2 attacks are cut off and other clients are served meanwhile, p99 < 1 s") {
  if (!have_tool("python3")) return skip_test("python3 is not installed");
  Upstream v1{"v1"}, v2{"v2"};
  Sluice s(h2c_config(v1, v2).str());
  REQUIRE(s.started());
  const std::string base =
      "python3 " + attacks_script() + " --timeout 20 --port " + std::to_string(s.port()) + " ";
  // attack, what proves it was cut off
  const std::vector<std::string> attacks = {"rapid-reset", "continuation-flood", "hpack-bomb",
                                            "settings-flood", "ping-flood"};
  for (const std::string& attack : attacks) {
    CAPTURE(attack);
    // The attacker reconnects and attacks again, over and over, while a bystander makes 30
    // requests (HTTP/1.1 and HTTP/2 in turn) on fresh connections.
    std::atomic<bool> stop{false};
    std::vector<std::string> outs;
    std::thread attacker([&] {
      const auto t0 = std::chrono::steady_clock::now();
      while (!stop.load() && elapsed_ms(t0) < 60000) {
        outs.push_back(run(base + attack + " --count 200000"));
        // A pause between attacks: the CI machine runs another test beside this one.
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
    Bystander b;
    bystander(s.port(), 30, b);
    stop = true;
    attacker.join();
    REQUIRE(!outs.empty());
    INFO(outs.size() << " attacks; the last: " << outs.back());
    for (const std::string& out : outs) {
      // Cut off: GOAWAY ENHANCE_YOUR_CALM (11), or PROTOCOL_ERROR (1) for a header block
      // nghttp2 itself refuses, and the connection closed -- long before the attack's own count
      // ran out.
      CHECK(json_field(out, "closed") == "true");
      CHECK(json_field(out, "goaway") == "true");
      const std::string code = json_field(out, "goaway_error");
      CHECK((code == "11" || code == "1"));
      if (attack == "rapid-reset") CHECK(std::stoi(json_field(out, "streams_sent")) < 200000);
    }
    CHECK(b.failures == 0);
    CHECK(p99(b.ms) < 1000.0);
    CHECK(s.running());
  }
  // Still serving, over both protocols.
  CHECK(curl("--http2-prior-knowledge http://127.0.0.1:" + std::to_string(s.port()) + "/").status ==
        200);
  CHECK(curl("http://127.0.0.1:" + std::to_string(s.port()) + "/").status == 200);
}

TEST_CASE("a stream whose client never opens its window is reset after send_timeout") {
  if (!have_tool("python3")) return skip_test("python3 is not installed");
  Upstream v1{"v1"}, v2{"v2"};
  Sluice s(h2c_config(v1, v2, "send_timeout = \"1s\"\n").str());
  REQUIRE(s.started());
  const auto t0 = std::chrono::steady_clock::now();
  const std::string out =
      run("python3 " + attacks_script() + " --port " + std::to_string(s.port()) +
          " --path '/download?bytes=100000' --wait 10 zero-window");
  INFO(out);
  CHECK(json_field(out, "headers") == "true");
  CHECK(json_field(out, "rst") != "null");
  CHECK(json_field(out, "rst") != "");
  CHECK(elapsed_ms(t0) < 8000);
  // The upstream connection was given up with the stream; the version is not charged.
  CHECK(curl("--http2-prior-knowledge http://127.0.0.1:" + std::to_string(s.port()) + "/").status ==
        200);
}

TEST_CASE("a graceful stop sends GOAWAY and lets the HTTP/2 streams in flight finish") {
  Upstream v1{"v1"}, v2{"v2"};
  Sluice s(h2c_config(v1, v2).str());
  REQUIRE(s.started());
  CurlRun slow;
  std::thread t([&] {
    slow = curl("--http2-prior-knowledge 'http://127.0.0.1:" + std::to_string(s.port()) +
                "/slow?ms=1500'");
  });
  // Wait until the request reached an upstream, then stop.
  for (int i = 0; i < 200 && v1.requests() + v2.requests() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(v1.requests() + v2.requests() == 1);
  CHECK(s.signal(SIGTERM));
  t.join();
  CHECK(slow.version == "2");
  CHECK(slow.status == 200);
  CHECK(slow.body.rfind("slow v", 0) == 0);
  CHECK(s.wait_exit(10000) == 0);
}

TEST_CASE(
    "gRPC clients get sluice's own failures as gRPC statuses, and grpc-timeout bounds the wait") {
  const std::string py = grpc_python();
  if (py.empty()) return skip_test("python3-grpcio is not installed");
  Upstream v1{"v1"};
  ConfigText c;
  c.listen_extra = "h2c = true\n";
  c.function("shop", {{"1", {v1.address()}}, {"2", {"127.0.0.1:1"}}})
      .alias("shop", "live", R"({ "1" = 100 })", "allow_override = true\n")
      .route("shop:live", "/shop.")
      .route("shop:live", "/slow");
  Sluice s(c.str());
  REQUIRE(s.started());
  const std::string probe =
      py + " " + std::string(SLUICE_SOURCE_DIR) +
      "/tests/e2e/grpc_probe.py --target 127.0.0.1:" + std::to_string(s.port()) + " ";
  // No route for the service: NOT_FOUND.
  std::string out = run(probe + "--method /other.Svc/Call");
  INFO(out);
  CHECK(json_field(out, "code") == "NOT_FOUND");
  CHECK(json_field(out, "x-sluice-error") == "no-route");
  // Version 2 refuses connections: UNAVAILABLE.
  out = run(probe + "--method /shop.Svc/Call --metadata x-sluice-version=2");
  INFO(out);
  CHECK(json_field(out, "code") == "UNAVAILABLE");
  CHECK(json_field(out, "x-sluice-error") == "connect-failed");
  // grpc-timeout 300m on a call its upstream takes 3 s over (response_timeout is 30 s): sluice
  // stops waiting after 300 ms and answers DEADLINE_EXCEEDED. curl keeps no deadline itself.
  // The client's deadline is not the version's failure: a 499 in its series, no timeout.
  const auto t0 = std::chrono::steady_clock::now();
  out =
      run("curl -s -i --max-time 10 --http2-prior-knowledge -H 'content-type: application/grpc' "
          "-H 'grpc-timeout: 300m' 'http://127.0.0.1:" +
          std::to_string(s.port()) + "/slow?ms=3000'");
  INFO(out);
  CHECK(elapsed_ms(t0) < 2000);
  CHECK(out.find("grpc-status: 4\r\n") != std::string::npos);
  CHECK(out.find("x-sluice-error: grpc-deadline\r\n") != std::string::npos);
  const std::string metrics =
      run("curl -s http://127.0.0.1:" + std::to_string(admin::admin_port(s)) + "/metrics");
  const std::string version1 = "{function=\"shop\",alias=\"live\",version=\"1\"";
  CHECK(metrics.find("sluice_requests_total" + version1 + ",class=\"4xx\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.find("sluice_requests_total" + version1 + ",class=\"5xx\"} 0\n") !=
        std::string::npos);
  CHECK(metrics.find("sluice_upstream_failures_total" + version1 + ",kind=\"timeout\"} 0\n") !=
        std::string::npos);
}

TEST_CASE("a stream whose upstream reads its body slowly does not hold up the others") {
  Upstream v1{"v1"}, v2{"v2"};
  ConfigText c = h2c_config(v1, v2);
  c.listen_extra = rsa_listener_tls();
  Sluice s(c.str());
  REQUIRE(s.started());
  const std::string body = s.dir().write("big.bin", std::string(size_t{4} << 20, 'x'));
  const std::string port = std::to_string(s.port());
  const std::string base = "https://example.test:" + port;
  // curl multiplexes both transfers on one connection (--parallel; over TLS: curl 7.88 fails a
  // second multiplexed transfer with prior-knowledge h2c whatever the server). The upload's
  // upstream reads nothing for 3 s: its stream's window stays shut, the connection's does not.
  const std::string out =
      run("curl -s --http2 --parallel --parallel-max 2 --cacert " + tls_asset("ca.pem") +
          " --resolve example.test:" + port + ":127.0.0.1 -X POST " +
          "-w '%{url_effective} %{http_code} %{time_total} %{num_connects}\\n' -o /dev/null -T " +
          body + " '" + base + "/count-body?delay_ms=3000' -o /dev/null '" + base + "/quick'");
  INFO(out);
  double slow_s = 0, quick_s = 99;
  int connects = 0, ok = 0;
  for (size_t at = 0; at < out.size();) {
    const size_t nl = out.find('\n', at);
    const std::string line = out.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
    at = nl == std::string::npos ? out.size() : nl + 1;
    char url[512] = {};
    int code = 0, conns = 0;
    double t = 0;
    if (std::sscanf(line.c_str(), "%511s %d %lf %d", url, &code, &t, &conns) != 4) continue;
    ok += code == 200;
    connects += conns;
    (std::string(url).find("/quick") != std::string::npos ? quick_s : slow_s) = t;
  }
  CHECK(ok == 2);
  CHECK(connects == 1);  // one connection, two streams
  CHECK(slow_s >= 2.5);
  CHECK(quick_s < 1.5);
}

TEST_CASE("an upload answered before it ends gets the answer, then RST_STREAM NO_ERROR") {
  if (!have_tool("nghttp")) return skip_test("nghttp (nghttp2-client) is not installed");
  Upstream v1{"v1"}, v2{"v2"};
  Sluice s(h2c_config(v1, v2).str());
  REQUIRE(s.started());
  const std::string body = s.dir().write("big.bin", std::string(size_t{8} << 20, 'x'));
  // /early answers at once without reading the body: the client gets the whole answer, then
  // RST_STREAM NO_ERROR in a write of its own (as nginx does), and stops sending (RFC 9113 §8.1).
  // nghttp, not curl: curl 7.88 fails an upload answered early with 200 against nginx too.
  for (int i = 0; i < 3; ++i) {
    const std::string out =
        run("timeout 20 nghttp -v -d " + body + " http://127.0.0.1:" + std::to_string(s.port()) +
                "/early; echo rc=$?",
            true);
    INFO(out);
    CHECK(out.find(":status: 200") != std::string::npos);
    CHECK(out.find("early v") != std::string::npos);
    const size_t rst = out.find("recv RST_STREAM");
    REQUIRE(rst != std::string::npos);
    CHECK(out.find("error_code=NO_ERROR", rst) != std::string::npos);
    CHECK(out.find("rc=0") != std::string::npos);
  }
}
