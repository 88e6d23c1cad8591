// Tests for the control plane and the admin routing: alias changes, rollback, publish, reload,
// restart from the state directory, and the bearer token on every mutating endpoint.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <uv.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "admin/control.h"
#include "admin/server.h"

namespace sluice::admin {
namespace {

using nlohmann::json;

struct Fixture {
  std::string dir;
  std::string path;
  std::shared_ptr<const routing::RoutingTable> published;
  int publishes = 0;

  Fixture() {
    char tmpl[] = "/tmp/sluice-control-unit-XXXXXX";
    dir = ::mkdtemp(tmpl);
    path = dir + "/sluice.toml";
    write(toml());
  }
  ~Fixture() { std::filesystem::remove_all(dir); }

  std::string toml(const std::string& v3_extra = "", const std::string& prod = "\"3\" = 100") {
    return "[listen]\naddress = \"127.0.0.1:0\"\n[state]\ndir = \"" + dir +
           "/state\"\n"
           "[functions.checkout.latest]\nendpoints = [\"127.0.0.1:7005\"]\n"
           "[functions.checkout.versions.3]\nendpoints = [\"127.0.0.1:7003\"]\n" +
           v3_extra +
           "[functions.checkout.versions.4]\nendpoints = [\"127.0.0.1:7004\"]\n"
           "[functions.checkout.aliases.prod]\ntraffic = { " +
           prod + " }\n[[routes]]\ntarget = \"checkout:prod\"\n";
  }
  void write(const std::string& text) { std::ofstream(path) << text; }

  void attach(Control& c) {
    c.set_publisher([this](std::shared_ptr<const routing::RoutingTable> t) {
      published = std::move(t);
      ++publishes;
    });
  }
};

// The traffic the published table's checkout:prod alias carries, as "3=90 4=10".
std::string live_traffic(const std::shared_ptr<const routing::RoutingTable>& t) {
  REQUIRE(t);
  const routing::Alias* a = t->find_function("checkout")->find_alias("prod");
  REQUIRE(a);
  TrafficMap m;
  for (const auto& s : a->shares()) m.emplace_back(s.version->number, s.weight);
  return traffic_text(canonical(m));
}

json traffic(std::initializer_list<std::pair<const std::string, json>> shares) {
  return json{{"traffic", json(std::map<std::string, json>(shares))}};
}

}  // namespace

TEST_CASE("an alias change is published and rollback returns to the previous map") {
  Fixture fx;
  Control c(fx.path);
  REQUIRE(c.init());
  fx.attach(c);

  ApiResult r = c.set_alias("checkout", "prod", traffic({{"3", 90}, {"4", 10}}), "api:t");
  REQUIRE(r.status == 200);
  CHECK(r.body["old"] == json{{"3", 100}});
  CHECK(r.body["new"] == json{{"3", 90}, {"4", 10}});
  CHECK(fx.publishes == 1);
  CHECK(live_traffic(fx.published) == "3=90 4=10");

  r = c.set_alias("checkout", "prod", traffic({{"4", 100}}), "api:t");
  REQUIRE(r.status == 200);
  CHECK(live_traffic(fx.published) == "4=100");
  CHECK(r.body["history_depth"] == 2);

  r = c.rollback("checkout", "prod", "api:t");
  REQUIRE(r.status == 200);
  CHECK(r.body["old"] == json{{"4", 100}});
  CHECK(r.body["new"] == json{{"3", 90}, {"4", 10}});
  CHECK(live_traffic(fx.published) == "3=90 4=10");
  r = c.rollback("checkout", "prod", "api:t");
  REQUIRE(r.status == 200);
  CHECK(live_traffic(fx.published) == "3=100");
  r = c.rollback("checkout", "prod", "api:t");
  CHECK(r.status == 409);
  CHECK(r.body["field"] == "alias");

  SUBCASE("a restart restores the override and the history from the state directory") {
    CHECK(c.set_alias("checkout", "prod", traffic({{"4", 100}}), "api:t").status == 200);
    Control again(fx.path);
    auto t = again.init();
    CHECK(live_traffic(t) == "4=100");
    CHECK(again.state().functions.at("checkout").aliases.at("prod").history.size() == 1);
  }
  SUBCASE("the audit log names every change with both maps") {
    std::ifstream in(fx.dir + "/state/audit.jsonl");
    std::string line;
    std::vector<json> lines;
    while (std::getline(in, line)) lines.push_back(json::parse(line));
    REQUIRE(lines.size() == 4);
    CHECK(lines[2]["old"] == json{{"4", 100}});
    CHECK(lines[2]["new"] == json{{"3", 90}, {"4", 10}});
    CHECK(lines[2]["actor"] == "api:t");
  }
}

TEST_CASE("invalid alias changes answer 400 naming the field, unknown names 404") {
  Fixture fx;
  Control c(fx.path);
  REQUIRE(c.init());
  fx.attach(c);
  struct Case {
    json body;
    const char* field;
  };
  for (const Case& k :
       {Case{traffic({{"5", 100}}), "traffic.5"}, Case{traffic({{"3", -1}}), "traffic.3"},
        Case{traffic({{"3", "ten"}}), "traffic.3"}, Case{traffic({{"3", 0}, {"4", 0}}), "traffic"},
        Case{json{{"traffic", json::object()}}, "traffic"},
        Case{json{{"trafic", {{"3", 1}}}}, "trafic"}, Case{json::array(), "body"}}) {
    CAPTURE(k.body.dump());
    ApiResult r = c.set_alias("checkout", "prod", k.body, "api:t");
    CHECK(r.status == 400);
    CHECK(r.body["field"] == k.field);
  }
  CHECK(c.set_alias("nope", "prod", traffic({{"3", 1}}), "api:t").status == 404);
  CHECK(c.set_alias("checkout", "nope", traffic({{"3", 1}}), "api:t").status == 404);
  CHECK(c.rollback("checkout", "nope", "api:t").status == 404);
  CHECK(c.publish_version("nope", "api:t").status == 404);
  CHECK(fx.publishes == 0);
  ApiResult latest = c.set_alias("checkout", "prod", traffic({{"$LATEST", 1}}), "api:t");
  CHECK(latest.status == 200);
}

TEST_CASE("the API refuses every traffic map the file loader refuses, with the same words") {
  Fixture fx;
  Control c(fx.path);
  REQUIRE(c.init());
  fx.attach(c);
  struct Case {
    const char* json_traffic;  // the API body's traffic object
    const char* toml_traffic;  // the same map in the file
    const char* field;         // the API field the error names
  };
  for (const Case& k : {
           Case{R"({"3": 1e13, "4": 1e12})", R"({ "3" = 1e13, "4" = 1e12 })", "traffic.3"},
           Case{R"({"3": 1e308})", R"({ "3" = 1e308 })", "traffic.3"},
           Case{R"({"3": 90, "4": 1000001})", R"({ "3" = 90, "4" = 1000001 })", "traffic.4"},
           Case{R"({"3": -0.5})", R"({ "3" = -0.5 })", "traffic.3"},
           Case{R"({"3": "ten"})", R"({ "3" = "ten" })", "traffic.3"},
           Case{R"({"v3": 1})", R"({ "v3" = 1 })", "traffic.v3"},
           Case{R"({"03": 1})", R"({ "03" = 1 })", "traffic.03"},
           Case{R"({"9": 1})", R"({ "9" = 1 })", "traffic.9"},
           Case{R"({"3": 0, "4": 0.0})", R"({ "3" = 0, "4" = 0.0 })", "traffic"},
           Case{R"({})", R"({})", "traffic"},
       }) {
    CAPTURE(k.json_traffic);
    ApiResult api =
        c.set_alias("checkout", "prod", json{{"traffic", json::parse(k.json_traffic)}}, "api:t");
    CHECK(api.status == 400);
    CHECK(api.body["field"] == k.field);
    fx.write(fx.toml("", std::string(k.toml_traffic).substr(2, std::strlen(k.toml_traffic) - 4)));
    ApiResult file = c.reload("api");
    REQUIRE(file.status == 400);
    const std::string file_error = file.body["errors"][0].get<std::string>();
    CAPTURE(file_error);
    // "<path>:<line>:<col>: <message>": the API says the same message, without the position.
    const std::string api_error = api.body["error"].get<std::string>();
    CHECK(file_error.size() > api_error.size());
    CHECK(file_error.substr(file_error.size() - api_error.size()) == api_error);
    CHECK(file_error.find(fx.path + ":") == 0);
    CHECK(api_error.find(fx.path) == std::string::npos);
  }
  CHECK(fx.publishes == 0);
  CHECK(c.set_alias("checkout", "prod", traffic({{"3", 1000000}, {"4", 0.5}}), "api:t").status ==
        200);
}

TEST_CASE("rollback to a map naming a version the file has since removed is refused") {
  Fixture fx;
  Control c(fx.path);
  REQUIRE(c.init());
  fx.attach(c);
  REQUIRE(c.set_alias("checkout", "prod", traffic({{"4", 100}}), "api:t").status == 200);
  REQUIRE(c.set_alias("checkout", "prod", traffic({{"3", 100}}), "api:t").status == 200);
  // Version 4 leaves the file; the override {"3": 100} survives (same alias definition).
  std::string text = fx.toml();
  text.replace(
      text.find("[functions.checkout.versions.4]"),
      std::string("[functions.checkout.versions.4]\nendpoints = [\"127.0.0.1:7004\"]\n").size(),
      "");
  fx.write(text);
  REQUIRE(c.reload("api").status == 200);
  CHECK(live_traffic(fx.published) == "3=100");
  ApiResult r = c.rollback("checkout", "prod", "api:t");
  CHECK(r.status == 409);
  CHECK(r.body["error"].get<std::string>().find("version 4 is no longer defined") !=
        std::string::npos);
  CHECK(live_traffic(fx.published) == "3=100");
}

TEST_CASE("publishing $LATEST takes the next number, never reused") {
  Fixture fx;
  Control c(fx.path);
  REQUIRE(c.init());
  fx.attach(c);
  ApiResult r = c.publish_version("checkout", "api:t");
  REQUIRE(r.status == 200);
  CHECK(r.body["version"] == "5");
  REQUIRE(fx.published);
  const routing::Version* v5 = fx.published->find_function("checkout")->find_version("5");
  REQUIRE(v5);
  CHECK(v5->endpoints.at(0).address == "127.0.0.1:7005");
  CHECK(c.set_alias("checkout", "prod", traffic({{"5", 100}}), "api:t").status == 200);
  CHECK(c.publish_version("checkout", "api:t").body["version"] == "6");

  SUBCASE("the file may not redefine an API-published number differently") {
    fx.write(fx.toml() +
             "[functions.checkout.versions.5]\nendpoints = [\"127.0.0.1:7005\"]\n"
             "response_timeout = \"1s\"\n");
    ApiResult rr = c.reload("api");
    CHECK(rr.status == 400);
    CHECK(rr.body["errors"][0].get<std::string>().find(
              "version checkout:5 is published and immutable: response_timeout changed") !=
          std::string::npos);
  }
}

TEST_CASE("an invalid reload keeps the running snapshot and is reported in status") {
  Fixture fx;
  Control c(fx.path);
  auto first = c.init();
  REQUIRE(first);
  fx.attach(c);
  fx.write(fx.toml("response_timeout = \"5s\"\n"));
  ApiResult r = c.reload("sighup");
  CHECK(r.status == 400);
  CHECK(fx.publishes == 0);
  CHECK(c.table() == first);
  CHECK(c.reloads_error() == 1);
  json st = c.status(nullptr);
  CHECK(st["reloads"]["last"]["result"] == "error");
  CHECK(st["reloads"]["last"]["cause"] == "sighup");
  CHECK(st["reloads"]["last"]["errors"][0].get<std::string>().find(fx.path + ":7:1: version "
                                                                             "checkout:3") == 0);

  fx.write(fx.toml("", "\"4\" = 100"));
  r = c.reload("watch");
  CHECK(r.status == 200);
  CHECK(c.reloads_ok() == 1);
  CHECK(live_traffic(fx.published) == "4=100");
  CHECK(c.status(nullptr)["functions"][0]["aliases"][0]["history_depth"] == 1);
}

TEST_CASE("a reload names the changes that need a restart, until the file matches again") {
  Fixture fx;
  Control c(fx.path);
  REQUIRE(c.init());
  fx.attach(c);
  const std::string base = fx.toml();
  auto needs_restart = [&] {
    return c.status(nullptr)["reloads"]["last"]["needs_restart"].get<std::vector<std::string>>();
  };
  CHECK(needs_restart().empty());

  SUBCASE("[limits] and [upstream] apply live: nothing to restart") {
    fx.write(base +
             "[limits]\nheader_timeout = \"3s\"\nmax_connections = 7\n"
             "[upstream]\nkeepalive = 3\nidle_timeout = \"5s\"\n");
    ApiResult r = c.reload("api");
    REQUIRE(r.status == 200);
    CHECK(r.body["needs_restart"].empty());
    CHECK(needs_restart().empty());
    CHECK(c.table()->config().limits.max_connections == 7);
    CHECK(c.table()->config().upstream.keepalive == 3);
  }
  SUBCASE("workers, listen, admin, state dir and the access log wait for a restart") {
    std::string text = "workers = 3\n" + base + "[log]\naccess = \"off\"\n" +
                       "[admin]\naddress = \"127.0.0.1:19901\"\n";
    text.replace(text.find("127.0.0.1:0"), 11, "127.0.0.1:18080");
    text.replace(text.find("/state\""), 7, "/state2\"");
    fx.write(text);
    ApiResult r = c.reload("sighup");
    REQUIRE(r.status == 200);
    const std::vector<std::string> expected = {"workers", "[listen] address", "[admin] address",
                                               "[state] dir", "[log] access"};
    CHECK(r.body["needs_restart"].get<std::vector<std::string>>() == expected);
    CHECK(needs_restart() == expected);
    CHECK(c.status(nullptr)["reloads"]["last"]["note"] ==
          "needs a restart: workers, [listen] address, [admin] address, [state] dir, [log] access");

    // Still pending after an unrelated reload: it is measured against what the process runs.
    fx.write(text + "[limits]\nmax_headers = 50\n");
    REQUIRE(c.reload("api").status == 200);
    CHECK(needs_restart() == expected);
    // The file back as the process started: nothing pending.
    fx.write(base);
    REQUIRE(c.reload("api").status == 200);
    CHECK(needs_restart().empty());
  }
}

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
  std::string error;
  CHECK_FALSE(admin.start(&loop, &error));
  CHECK(error.find("not loopback") != std::string::npos);
  admin.close();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

}  // namespace sluice::admin
