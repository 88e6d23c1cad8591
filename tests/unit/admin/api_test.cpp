// Admin API routing over a real Control: the bearer token on every mutating endpoint, the
// loopback rule, and a reload answered once its names resolved.
#include <doctest/doctest.h>
#include <uv.h>

#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "admin/server.h"
#include "control_fixture.h"
#include "fake_dns.h"
#include "net/loop_context.h"

namespace sluice::admin {
namespace {

using control::test::DnsFixture;
using control::test::Fixture;
using nlohmann::json;

}  // namespace

TEST_CASE("every mutating admin endpoint answers 401 without the right token") {
  Fixture fx;
  std::ofstream(fx.dir + "/token") << "s3cret\n";
  Control c(fx.path);
  REQUIRE(c.init());
  fx.attach(c);
  config::AdminSpec spec{{"127.0.0.1:0", "127.0.0.1", 0}, "token"};
  AdminServer admin(c, spec, fx.dir);
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  net::LoopContext ctx;  // as on the control loop: the listener's streams find it in loop.data
  ctx.loop = &loop;
  loop.data = &ctx;
  std::string error;
  REQUIRE(admin.start(&loop, &error));

  const std::vector<std::pair<std::string, std::string>> calls = {
      {"PUT", "/admin/functions/checkout/aliases/prod"},
      {"POST", "/admin/functions/checkout/aliases/prod/rollback"},
      {"POST", "/admin/functions/checkout/versions"},
      {"POST", "/admin/reload"},
  };
  for (const auto& [method, target] : calls) {
    for (const std::string auth : {"", "Bearer wrong", "Bearer s3cre", "Basic s3cret"}) {
      CAPTURE(method);
      CAPTURE(target);
      CAPTURE(auth);
      AdminServer::Reply rep =
          admin.handle({method, target, auth, R"({"traffic":{"4":100}})", "127.0.0.1"});
      CHECK(rep.status == 401);
      CHECK(rep.unauthorized);
    }
  }
  CHECK(fx.publishes == 0);
  AdminServer::Reply ok = admin.handle({"PUT", "/admin/functions/checkout/aliases/prod",
                                        "Bearer s3cret", R"({"traffic":{"4":100}})", "127.0.0.1"});
  CHECK(ok.status == 200);
  CHECK(admin.handle({"GET", "/admin/status", "", "", "127.0.0.1"}).status == 200);
  AdminServer::Reply metrics = admin.handle({"GET", "/metrics", "", "", "127.0.0.1"});
  CHECK(metrics.status == 200);
  CHECK(metrics.body.find(
            "sluice_alias_weight{function=\"checkout\",alias=\"prod\",version=\"4\"} 100") !=
        std::string::npos);
  CHECK(admin.handle({"GET", "/admin/nope", "", "", "127.0.0.1"}).status == 404);
  CHECK(admin.handle({"DELETE", "/admin/status", "Bearer s3cret", "", "127.0.0.1"}).status == 405);

  admin.close();
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("a non-loopback admin address without a token refuses to start") {
  Fixture fx;
  Control c(fx.path);
  REQUIRE(c.init());
  AdminServer admin(c, config::AdminSpec{{"0.0.0.0:0", "0.0.0.0", 0}, ""}, fx.dir);
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  net::LoopContext ctx;  // as on the control loop: the listener's streams find it in loop.data
  ctx.loop = &loop;
  loop.data = &ctx;
  std::string error;
  CHECK_FALSE(admin.start(&loop, &error));
  CHECK(error.find("not loopback") != std::string::npos);
  admin.close();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("POST /admin/reload waits for its names and then answers") {
  DnsFixture fx;
  auto c = fx.control();
  REQUIRE(c->init());
  AdminServer admin(*c, config::AdminSpec{});
  std::optional<AdminServer::Reply> reply;
  admin.handle_async({"POST", "/admin/reload", "", "", "127.0.0.1"},
                     [&](AdminServer::Reply r) { reply = std::move(r); });
  CHECK_FALSE(reply);
  // Other calls answer at once meanwhile.
  std::optional<AdminServer::Reply> status;
  admin.handle_async({"GET", "/admin/status", "", "", "127.0.0.1"},
                     [&](AdminServer::Reply r) { status = std::move(r); });
  REQUIRE(status);
  CHECK(status->status == 200);
  fx.dns.answer();
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(json::parse(reply->body)["result"] == "ok");
}

}  // namespace sluice::admin
