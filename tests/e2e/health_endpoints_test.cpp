// End-to-end: the orchestrator probes GET /healthz and GET /readyz on the admin listener (no
// token even off loopback, nothing but "ok"), `sluice health [ready]` for exec probes and the
// image's HEALTHCHECK, and readiness ending as soon as a stop begins.
#include <atomic>
#include <thread>

#include "admin_test_util.h"

using namespace sluice::e2e;
using namespace sluice::e2e::admin;

namespace {

// shop:live = 100% version 1 on `up`; admin on `admin_address` with the token file, if any.
std::string probe_config(const Upstream& up, const std::string& admin_address,
                         const std::string& token_file) {
  std::string out = "workers = 2\n[listen]\naddress = \"127.0.0.1:0\"\n";
  out += "[admin]\naddress = \"" + admin_address + "\"\n";
  if (!token_file.empty()) out += "token_file = \"" + token_file + "\"\n";
  out += "[limits]\ndrain_timeout = \"20s\"\n[log]\naccess = \"off\"\n";
  out += "[functions.shop.versions.1]\nendpoints = [\"" + up.address() + "\"]\n";
  out += "[functions.shop.aliases.live]\ntraffic = { \"1\" = 100 }\n";
  out += "[[routes]]\ntarget = \"shop:live\"\n";
  return out;
}

}  // namespace

TEST_CASE("healthz and readyz answer ok without a token on a non-loopback admin listener") {
  Upstream up("v1");
  TempDir dir;
  const std::string token_file = dir.write("token", "pr0be-t0ken\n");
  Sluice s(probe_config(up, "0.0.0.0:0", token_file));
  REQUIRE_STARTED(s);
  const uint16_t port = admin_port(s);
  REQUIRE(port != 0);
  CurlClient curl;

  for (const char* path : {"/healthz", "/readyz", "/healthz/", "/readyz?verbose=1"}) {
    CAPTURE(path);
    ApiReply r = api(curl, port, "GET", path);
    CHECK(r.status == 200);
    CHECK(r.raw == "ok\n");  // nothing else: no version, no config, no topology
  }
  HttpResult head = curl.request("HEAD", "http://127.0.0.1:" + std::to_string(port) + "/readyz");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(head.header("content-type") == "text/plain; charset=utf-8");

  SUBCASE("only GET and HEAD, and the token still guards every mutating call") {
    CHECK(api(curl, port, "POST", "/healthz", "", "pr0be-t0ken").status == 405);
    CHECK(api(curl, port, "DELETE", "/readyz", "", "pr0be-t0ken").status == 405);
    CHECK(api(curl, port, "POST", "/admin/reload").status == 401);
    // Off loopback only the two probes skip the token: every other path, even a read, needs it.
    CHECK(api(curl, port, "GET", "/healthzz").status == 401);
    CHECK(api(curl, port, "GET", "/metrics").status == 401);
    CHECK(api(curl, port, "GET", "/healthzz", "", "pr0be-t0ken").status == 404);
  }

  SUBCASE("sluice health exits 0 on ok, 1 when nothing answers, 2 on a usage error") {
    const std::string adm = " --admin 127.0.0.1:" + std::to_string(port);
    CliRun r = run_cli("health" + adm);
    CHECK(r.exit_code == 0);
    CHECK(r.out == "ok\n");
    r = run_cli("health ready" + adm);
    CHECK(r.exit_code == 0);
    CHECK(r.out == "ok\n");
    r = run_cli("health ready --admin 127.0.0.1:" + std::to_string(unused_port()));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("sluice health: cannot connect to sluice admin at 127.0.0.1:") == 0);
    CHECK(run_cli("health live" + adm).exit_code == 2);
  }
  CHECK(up.requests() == 0);  // probes never reach an upstream
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("sluice health takes the admin address from -c FILE, as the image's HEALTHCHECK does") {
  Upstream up("v1");
  const uint16_t admin = unused_port();  // a fixed port: the client reads it from the file
  Sluice s(probe_config(up, "127.0.0.1:" + std::to_string(admin), ""));
  REQUIRE_STARTED(s);
  CliRun r = run_cli("health ready -c " + s.config_path());
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "ok\n");
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("readiness ends as soon as a stop begins, while requests in flight drain") {
  Upstream up("v1");
  Sluice s(probe_config(up, "127.0.0.1:0", ""));
  REQUIRE_STARTED(s);
  const std::string adm = " --admin 127.0.0.1:" + std::to_string(admin_port(s));
  REQUIRE(run_cli("health ready" + adm).exit_code == 0);

  std::atomic<long> slow_status{-1};
  std::thread client([&] {
    CurlClient curl;
    slow_status = curl.get(s.url("/slow?ms=6000")).status;
  });
  const bool in_flight = poll_until([&] { return up.count_target("/slow") == 1; }, 10000);
  CHECK(in_flight);
  REQUIRE(s.signal(SIGTERM));
  // The probe fails (nothing listens on the admin port any more) while the request still runs.
  const bool unready =
      poll_until([&] { return run_cli("health ready" + adm).exit_code == 1; }, 3000);
  CHECK(unready);
  CHECK(slow_status.load() == -1);
  client.join();
  CHECK(slow_status.load() == 200);
  std::optional<int> status = s.wait_exit(15000);
  CHECK(status == 0);
}
