// End-to-end: gRPC through sluice (issue 13) with Debian's python3-grpcio on both sides: a test
// service with unary and streaming methods (tests/e2e/grpc_service.py) as two versions behind
// HTTP/2 upstreams, and a real gRPC client (tests/e2e/grpc_probe.py). Calls over h2c and TLS, the
// version in the metadata, trailers intact, grpc-status judged per version (metrics, the shift
// guard), and mixed protocols: HTTP/1.1 clients to h2 upstreams.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "admin_test_util.h"
#include "e2e.h"
#include "h2_test_util.h"
#include "shift_test_util.h"
#include "skip.h"
#include "tls_test_certs.h"

using namespace sluice::e2e;
using namespace sluice::e2e::h2;
using nlohmann::json;
using sluice::e2e::admin::admin_port;
using sluice::e2e::admin::api;
using sluice::e2e::admin::ApiReply;
using sluice::test::skip_test;
using sluice::test::tls_asset;

namespace {

// tests/e2e/grpc_service.py, started on a free port and stopped by PID.
class GrpcService {
 public:
  GrpcService(const std::string& py, const std::string& name, int fail_every = 0, bool tls = false,
              int max_streams = 0) {
    int out[2];
    if (::pipe(out) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::vector<std::string> args = {py,
                                     script("grpc_service.py"),
                                     "--name",
                                     name,
                                     "--fail-every",
                                     std::to_string(fail_every),
                                     "--max-streams",
                                     std::to_string(max_streams)};
    if (tls) {
      for (const std::string& a : {std::string("--tls-cert"), tls_asset("ip.pem"),
                                   std::string("--tls-key"), tls_asset("ip.key")})
        args.push_back(a);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawnp(&pid_, py.c_str(), &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    std::string line;
    char ch;
    while (pid_ > 0 && ::read(out[0], &ch, 1) == 1 && ch != '\n') line += ch;
    ::close(out[0]);
    if (line.rfind("listening on ", 0) == 0) port_ = uint16_t(std::stoi(line.substr(13)));
  }
  ~GrpcService() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 150 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
  }
  GrpcService(const GrpcService&) = delete;
  GrpcService& operator=(const GrpcService&) = delete;
  bool up() const { return port_ != 0; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

// Function echo: versions 1 and 2 at `a` and `b` speaking `protocol` (tls lines for h2), alias
// live = `traffic`, routed by the gRPC service path; the listener takes h2c, or TLS when
// `tls_listener`.
std::string grpc_config(const std::string& a, const std::string& b, const std::string& protocol,
                        const std::string& traffic, bool tls_listener = false,
                        const std::string& state_dir = "") {
  std::string out = "workers = 2\n[listen]\naddress = \"127.0.0.1:0\"\n";
  if (tls_listener)
    out += rsa_listener_tls();
  else
    out += "h2c = true\n";
  out += "[admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n";
  if (!state_dir.empty()) out += "[state]\ndir = \"" + state_dir + "\"\n";
  out += "[functions.shop]\nprotocol = \"" + protocol + "\"\n";
  if (protocol == "h2") out += "tls = { ca = \"" + tls_asset("ca.pem") + "\" }\n";
  out += "[functions.shop.versions.1]\nendpoints = [\"" + a + "\"]\n";
  out += "outlier = { consecutive_5xx = 0, consecutive_failures = 0 }\n";
  out += "[functions.shop.versions.2]\nendpoints = [\"" + b + "\"]\n";
  out += "outlier = { consecutive_5xx = 0, consecutive_failures = 0 }\n";
  out += "[functions.shop.aliases.live]\ntraffic = " + traffic + "\nallow_override = true\n";
  out += "[[routes]]\npath_prefix = \"/test.Echo/\"\ntarget = \"shop:live\"\n";
  return out;
}

}  // namespace

TEST_CASE("gRPC unary and streaming calls pass through h2c and TLS with trailers intact") {
  const std::string py = grpc_python();
  if (py.empty()) return skip_test("python3-grpcio is not installed");
  for (const bool tls : {false, true}) {
    CAPTURE(tls);
    GrpcService g1(py, "g1", 0, tls), g2(py, "g2", 0, tls);
    REQUIRE(g1.up());
    REQUIRE(g2.up());
    Sluice s(grpc_config(g1.address(), g2.address(), tls ? "h2" : "h2c",
                         R"({ "1" = 50, "2" = 50 })", tls));
    REQUIRE_MESSAGE(s.started(), s.error());
    std::string probe = py + " " + script("grpc_probe.py") + " --target ";
    probe += tls ? "127.0.0.1:" + std::to_string(s.port()) + " --tls-ca " + tls_asset("ca.pem") +
                       " --authority example.test"
                 : "127.0.0.1:" + std::to_string(s.port());
    struct Kind {
      const char* kind;
      const char* method;
      const char* response;
    };
    for (const Kind& k : {Kind{"unary", "Unary", "[\"g1:ping\"]"},
                          Kind{"server-stream", "ServerStream", "[\"g1:0\", \"g1:1\", \"g1:2\"]"},
                          Kind{"client-stream", "ClientStream", "[\"g1:3:12\"]"},
                          Kind{"bidi", "Bidi", "[\"g1:ping0\", \"g1:ping1\", \"g1:ping2\"]"}}) {
      CAPTURE(k.kind);
      const std::string out = run(probe + " --kind " + k.kind + " --method /test.Echo/" + k.method +
                                  " --metadata x-sluice-version=1");
      INFO(out);
      CHECK(json_field(out, "code") == "OK");
      CHECK(out.find("\"responses\": " + std::string(k.response)) != std::string::npos);
      CHECK(json_field(out, "x-sluice-version") == "shop:1");  // the version, in the metadata
      CHECK(json_field(out, "x-served-by") == "g1");
      CHECK(json_field(out, "x-trailer-bin") == "00016731");  // binary trailing metadata, intact
    }
    // Unpinned calls are split between the versions.
    const std::string many = run(probe + " --method /test.Echo/Unary --calls 40");
    INFO(many);
    CHECK(many.find("\"codes\": {\"OK\": 40}") != std::string::npos);
    const size_t served = many.find("\"served\": {");
    REQUIRE(served != std::string::npos);
    CHECK(many.find("\"g1\": ", served) != std::string::npos);  // both versions answered
    CHECK(many.find("\"g2\": ", served) != std::string::npos);
  }
}

TEST_CASE("a version failing 20% of gRPC calls UNAVAILABLE shows a 20% error rate") {
  const std::string py = grpc_python();
  if (py.empty()) return skip_test("python3-grpcio is not installed");
  GrpcService g1(py, "g1"), g2(py, "g2", 5);
  REQUIRE(g1.up());
  REQUIRE(g2.up());
  Sluice s(grpc_config(g1.address(), g2.address(), "h2c", R"({ "1" = 50, "2" = 50 })"));
  REQUIRE(s.started());
  const std::string out =
      run(py + " " + script("grpc_probe.py") + " --target 127.0.0.1:" + std::to_string(s.port()) +
          " --method /test.Echo/Unary --calls 100 --metadata x-sluice-version=2");
  INFO(out);
  CHECK(out.find("\"codes\": {\"OK\": 80, \"UNAVAILABLE\": 20}") != std::string::npos);
  CurlClient curl;
  const std::string metrics =
      curl.get("http://127.0.0.1:" + std::to_string(admin_port(s)) + "/metrics").body;
  CHECK(metrics.find("sluice_upstream_failures_total{function=\"shop\",alias=\"live\",version="
                     "\"2\",kind=\"grpc_error\"} 20") != std::string::npos);
  CHECK(metrics.find("sluice_requests_total{function=\"shop\",alias=\"live\",version=\"2\","
                     "class=\"2xx\"} 100") != std::string::npos);
  ApiReply st = api(curl, admin_port(s), "GET", "/admin/status");
  bool seen = false;
  for (const auto& fn : st.body["functions"])
    for (const auto& alias : fn["aliases"])
      for (const auto& v : alias["versions"])
        if (v["version"] == "2") {
          seen = true;
          CHECK(v["error_rate"].get<double>() == doctest::Approx(0.2));
        }
  CHECK(seen);
}

TEST_CASE("a progressive shift to a version failing gRPC calls rolls back") {
  const std::string py = grpc_python();
  if (py.empty()) return skip_test("python3-grpcio is not installed");
  GrpcService g1(py, "g1"), g2(py, "g2", 5);
  REQUIRE(g1.up());
  REQUIRE(g2.up());
  Sluice s(grpc_config(g1.address(), g2.address(), "h2c", R"({ "1" = 100 })"));
  REQUIRE(s.started());
  CurlClient curl;
  const uint16_t port = admin_port(s);
  ApiReply r = api(curl, port, "POST", shift_test::kShiftPath,
                   R"({"to":"2","steps":[50,100],"every":"30s",
                       "guard":{"max_error_rate":"5%","min_requests":20}})");
  REQUIRE_MESSAGE(r.status == 200, r.raw);
  const std::string out =
      run(py + " " + script("grpc_probe.py") + " --target 127.0.0.1:" + std::to_string(s.port()) +
          " --method /test.Echo/Unary --calls 200");
  INFO(out);
  const json done = shift_test::wait_finished(curl, port, 15000);
  CAPTURE(done.dump());
  CHECK(done["state"] == "rolled_back");
  CHECK(done["reason"].get<std::string>().find("candidate error rate") == 0);
}

TEST_CASE("mixed protocols: an HTTP/1.1 client reaches an h2c gRPC upstream, trailers included") {
  const std::string py = grpc_python();
  if (py.empty()) return skip_test("python3-grpcio is not installed");
  GrpcService g1(py, "g1"), g2(py, "g2");
  REQUIRE(g1.up());
  Sluice s(grpc_config(g1.address(), g2.address(), "h2c", R"({ "1" = 100 })"));
  REQUIRE(s.started());
  // One gRPC message "ping" (5-byte frame header), over HTTP/1.1 with curl.
  const std::string body = s.dir().write("msg.bin", std::string("\0\0\0\0\4ping", 9));
  const std::string out =
      run("curl -s -i --raw --max-time 10 -H 'content-type: application/grpc' -H 'te: trailers' "
          "--data-binary @" +
          body + " http://127.0.0.1:" + std::to_string(s.port()) + "/test.Echo/Unary");
  INFO(out);
  CHECK(out.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(out.find("x-served-by: g1") != std::string::npos);
  CHECK(out.find("g1:ping") != std::string::npos);
  CHECK(out.find("\r\n0\r\ngrpc-status: 0\r\n") != std::string::npos);  // the trailers
}

TEST_CASE("sluice's own failures reach gRPC clients as gRPC statuses") {
  const std::string py = grpc_python();
  if (py.empty()) return skip_test("python3-grpcio is not installed");
  GrpcService g1(py, "g1");
  REQUIRE(g1.up());
  // Version 2 refuses connections.
  Sluice s(grpc_config(g1.address(), "127.0.0.1:1", "h2c", R"({ "1" = 100 })"));
  REQUIRE(s.started());
  const std::string probe =
      py + " " + script("grpc_probe.py") + " --target 127.0.0.1:" + std::to_string(s.port()) + " ";
  std::string out = run(probe + "--method /other.Svc/Call");
  INFO(out);
  CHECK(json_field(out, "code") == "NOT_FOUND");
  CHECK(json_field(out, "x-sluice-error") == "no-route");
  out = run(probe + "--method /test.Echo/Unary --metadata x-sluice-version=2");
  INFO(out);
  CHECK(json_field(out, "code") == "UNAVAILABLE");
  CHECK(json_field(out, "x-sluice-error") == "connect-failed");
  out = run(probe + "--method /test.Echo/Unary --metadata x-sluice-version=9");
  INFO(out);
  CHECK(json_field(out, "code") == "NOT_FOUND");
  CHECK(json_field(out, "x-sluice-error") == "unknown-version");
}

TEST_CASE("an upstream allowing 2 concurrent streams gets more sessions, not a queue") {
  const std::string py = grpc_python();
  if (py.empty()) return skip_test("python3-grpcio is not installed");
  GrpcService g1(py, "g1", 0, false, 2), g2(py, "g2");
  REQUIRE(g1.up());
  std::string cfg = grpc_config(g1.address(), g2.address(), "h2c", R"({ "1" = 100 })");
  cfg.replace(cfg.find("workers = 2"), 11, "workers = 1");  // one worker: one pool
  Sluice s(cfg);
  REQUIRE(s.started());
  // One call first: the pool learns the endpoint's limit from its SETTINGS.
  const std::string probe =
      py + " " + script("grpc_probe.py") + " --target 127.0.0.1:" + std::to_string(s.port());
  CHECK(json_field(run(probe + " --method /test.Echo/Unary"), "code") == "OK");
  // 6 calls of 600 ms at once: on one session limited to 2 streams they would take 1.8 s.
  const std::string out =
      run(py + " " + script("grpc_probe.py") + " --target 127.0.0.1:" + std::to_string(s.port()) +
          " --method /test.Echo/Sleep --payload 600 --parallel 6");
  INFO(out);
  CHECK(out.find("\"codes\": {\"OK\": 6}") != std::string::npos);
  const std::string seconds = json_field(out, "seconds");
  REQUIRE(!seconds.empty());
  CHECK(std::stod(seconds) < 1.5);
}
