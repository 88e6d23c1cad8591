// Tests for the orchestrator probes on the admin routing: /healthz always ok, /readyz following
// the readiness signal (app/serve.cpp sets it), neither asking for the token.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <uv.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "admin/server.h"
#include "control/control.h"
#include "net/loop_context.h"

namespace sluice::admin {

TEST_CASE("readyz follows the readiness signal and healthz answers ok without a token") {
  char tmpl[] = "/tmp/sluice-health-unit-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string path = dir + "/sluice.toml";
  std::ofstream(path) << "[listen]\naddress = \"127.0.0.1:0\"\n"
                         "[functions.f.versions.1]\nendpoints = [\"127.0.0.1:7001\"]\n"
                         "[functions.f.aliases.prod]\ntraffic = { \"1\" = 100 }\n"
                         "[[routes]]\ntarget = \"f:prod\"\n";
  std::ofstream(dir + "/token") << "s3cret\n";
  Control control(path);
  REQUIRE(control.init());
  AdminServer admin(control, config::AdminSpec{{"127.0.0.1:0", "127.0.0.1", 0}, "token"}, dir);
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  net::LoopContext ctx;  // as on the control loop: the listener's streams find it in loop.data
  ctx.loop = &loop;
  loop.data = &ctx;
  std::string error;
  REQUIRE(admin.start(&loop, &error));  // reads the token: mutating calls would now need it
  auto get = [&](const std::string& target) {
    return admin.handle({"GET", target, "", "", "127.0.0.1"});
  };

  SUBCASE("no readiness signal set: not ready") {
    CHECK(get("/healthz").status == 200);
    CHECK(get("/readyz").status == 503);
    CHECK(get("/readyz").body == "not ready\n");
  }
  SUBCASE("the signal decides on every call") {
    bool ready = false;
    admin.set_ready([&ready] { return ready; });
    CHECK(get("/readyz").status == 503);
    ready = true;
    AdminServer::Reply r = get("/readyz");
    CHECK(r.status == 200);
    CHECK(r.body == "ok\n");
    CHECK(r.content_type == "text/plain; charset=utf-8");
    CHECK_FALSE(r.unauthorized);
    ready = false;
    CHECK(get("/readyz").status == 503);
    CHECK(get("/healthz").body == "ok\n");
  }
  SUBCASE("only GET and HEAD") {
    CHECK(admin.handle({"HEAD", "/healthz", "", "", "127.0.0.1"}).status == 200);
    CHECK(admin.handle({"POST", "/healthz", "Bearer s3cret", "", "127.0.0.1"}).status == 405);
    CHECK(admin.handle({"PUT", "/readyz", "", "", "127.0.0.1"}).status == 405);
    CHECK(admin.handle({"POST", "/admin/reload", "", "", "127.0.0.1"}).status == 401);
  }
  admin.close();
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
  std::filesystem::remove_all(dir);
}

}  // namespace sluice::admin
