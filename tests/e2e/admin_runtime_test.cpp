// End-to-end: runtime changes through the admin API and the config file — alias set and
// rollback take effect on the next request; reloads by rename-save, in-place write, symlink and
// Kubernetes ..data swaps and SIGHUP; invalid files and changed published versions are refused
// while the old snapshot serves; the token guards every mutating endpoint.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "admin_test_util.h"

using namespace sluice::e2e;
using namespace sluice::e2e::admin;

namespace {

// Polls GET / until `who` answers; returns ms waited, or -1.
long until_answered_by(const Sluice& s, const std::string& who, int timeout_ms) {
  CurlClient curl;
  auto start = std::chrono::steady_clock::now();
  while (elapsed_ms(start) < timeout_ms) {
    if (curl.get(s.url("/")).header("x-upstream") == who) return elapsed_ms(start);
    ::poll(nullptr, 0, 1);
  }
  return -1;
}

json status_of(uint16_t port) {
  CurlClient c;
  return api(c, port, "GET", "/admin/status").body;
}

}  // namespace

TEST_CASE("an alias change and its rollback route the very next request") {
  Upstream a("a"), b("b");
  Sluice s(shop_config(a, b, R"({ "1" = 100 })"));
  REQUIRE_STARTED(s);
  uint16_t port = admin_port(s);
  REQUIRE(port != 0);
  CurlClient adm, client;
  CHECK(client.get(s.url("/")).header("x-upstream") == "a");

  // Baseline: one proxied request on the warm keep-alive connection.
  std::vector<double> plain_us, after_us;
  auto timed_get = [&](std::vector<double>& into) {
    auto t0 = std::chrono::steady_clock::now();
    HttpResult r = client.get(s.url("/"));
    into.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    return r;
  };
  for (int i = 0; i < 100; ++i) timed_get(plain_us);
  const int rounds = kSanitized ? 20 : 100;
  for (int round = 0; round < rounds; ++round) {
    CAPTURE(round);
    ApiReply r =
        api(adm, port, "PUT", "/admin/functions/shop/aliases/live", traffic_body("2", 100));
    REQUIRE(r.status == 200);
    // The first request after the call returned, on the same keep-alive connection as before.
    HttpResult next = timed_get(after_us);
    CHECK(next.header("x-upstream") == "b");
    CHECK(r.body["old"] == json{{"1", 100}});
    CHECK(r.body["new"] == json{{"2", 100}});

    r = api(adm, port, "POST", "/admin/functions/shop/aliases/live/rollback");
    REQUIRE(r.status == 200);
    CHECK(r.body["old"] == json{{"2", 100}});
    CHECK(r.body["new"] == json{{"1", 100}});
    CHECK(timed_get(after_us).header("x-upstream") == "a");
  }
  std::sort(plain_us.begin(), plain_us.end());
  std::sort(after_us.begin(), after_us.end());
  MESSAGE("API return -> first request routed by the new map: always the very next request ("
          << after_us.size() << "/" << after_us.size() << "); its round trip median "
          << after_us[after_us.size() / 2] << " us, max " << after_us.back()
          << " us (a plain request: median " << plain_us[plain_us.size() / 2] << " us, max "
          << plain_us.back() << " us)");

  json st = status_of(port);
  CHECK(st["functions"][0]["aliases"][0]["traffic"] == json{{"1", 100}});
  CHECK(st["state"]["durable"] == false);
  CHECK(st["state"]["note"].get<std::string>().find("in memory only") != std::string::npos);

  SUBCASE("bad input answers 400 naming the field and unknown names 404") {
    ApiReply r = api(adm, port, "PUT", "/admin/functions/shop/aliases/live", traffic_body("7", 1));
    CHECK(r.status == 400);
    CHECK(r.body["field"] == "traffic.7");
    r = api(adm, port, "PUT", "/admin/functions/shop/aliases/live", "{not json");
    CHECK(r.status == 400);
    CHECK(r.body["field"] == "body");
    CHECK(
        api(adm, port, "PUT", "/admin/functions/nope/aliases/live", traffic_body("1", 1)).status ==
        404);
    CHECK(api(adm, port, "POST", "/admin/functions/shop/aliases/nope/rollback").status == 404);
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE(
    "a saved config file is live after rename-save, in-place write, symlink and ..data swaps") {
  Upstream a("a"), b("b");
  TempDir cfgdir;
  const std::string v1 = shop_config(a, b, R"({ "1" = 100 })");
  const std::string v2 = shop_config(a, b, R"({ "2" = 100 })");

  SUBCASE("rename-save (editors)") {
    std::string path = cfgdir.write("sluice.toml", v1);
    Sluice s(v1, {1, {"run", "-c", path}});
    REQUIRE_STARTED(s);
    REQUIRE(until_answered_by(s, "a", 2000) >= 0);
    long total_ms = 0;
    for (int i = 0; i < 5; ++i) {
      const bool to_b = i % 2 == 0;
      write_file(path + ".swp", to_b ? v2 : v1);
      auto start = std::chrono::steady_clock::now();
      std::filesystem::rename(path + ".swp", path);
      long ms = until_answered_by(s, to_b ? "b" : "a", 5000);
      CHECK(ms >= 0);
      total_ms += elapsed_ms(start);
    }
    json last = status_of(admin_port(s))["reloads"]["last"];
    CHECK(last["cause"] == "watch");
    MESSAGE("file rename -> new snapshot live (100 ms debounce included), mean of 5: "
            << total_ms / 5 << " ms; the reload itself (read, validate, build, publish) took "
            << last["duration_ms"].get<double>() << " ms");
    CHECK_CLEAN_STOP(s);
  }
  SUBCASE("in-place write") {
    std::string path = cfgdir.write("sluice.toml", v1);
    Sluice s(v1, {1, {"run", "-c", path}});
    REQUIRE_STARTED(s);
    write_file(path, v2);
    CHECK(until_answered_by(s, "b", 5000) >= 0);
    CHECK_CLEAN_STOP(s);
  }
  SUBCASE("symlink swap") {
    cfgdir.write("one.toml", v1);
    cfgdir.write("two.toml", v2);
    std::string path = cfgdir.path() + "/sluice.toml";
    std::filesystem::create_symlink("one.toml", path);
    Sluice s(v1, {1, {"run", "-c", path}});
    REQUIRE_STARTED(s);
    std::filesystem::create_symlink("two.toml", path + ".new");
    std::filesystem::rename(path + ".new", path);
    CHECK(until_answered_by(s, "b", 5000) >= 0);
    CHECK_CLEAN_STOP(s);
  }
  SUBCASE("Kubernetes ConfigMap ..data swap") {
    const std::string d = cfgdir.path();
    std::filesystem::create_directory(d + "/..2026_01");
    std::filesystem::create_directory(d + "/..2026_02");
    write_file(d + "/..2026_01/sluice.toml", v1);
    write_file(d + "/..2026_02/sluice.toml", v2);
    std::filesystem::create_directory_symlink("..2026_01", d + "/..data");
    std::filesystem::create_symlink("..data/sluice.toml", d + "/sluice.toml");
    Sluice s(v1, {1, {"run", "-c", d + "/sluice.toml"}});
    REQUIRE_STARTED(s);
    REQUIRE(until_answered_by(s, "a", 2000) >= 0);
    std::filesystem::create_directory_symlink("..2026_02", d + "/..data_tmp");
    std::filesystem::rename(d + "/..data_tmp", d + "/..data");
    CHECK(until_answered_by(s, "b", 5000) >= 0);
    CHECK_CLEAN_STOP(s);
  }
}

TEST_CASE("SIGHUP and POST /admin/reload re-read the file, upstream pools survive") {
  Upstream a("a"), b("b");
  Sluice s(shop_config(a, b, R"({ "1" = 100, "2" = 0 })"));
  REQUIRE_STARTED(s);
  uint16_t port = admin_port(s);
  // One client connection (so one worker): its pooled upstream connection to `a` is reused.
  CurlClient client;
  for (int i = 0; i < 10; ++i) REQUIRE(client.get(s.url("/")).header("x-upstream") == "a");
  REQUIRE(a.connections() == 1);
  write_file(s.config_path(), shop_config(a, b, R"({ "1" = 50, "2" = 50 })"));
  REQUIRE(s.signal(SIGHUP));
  CHECK(poll_until([&] { return client.get(s.url("/")).header("x-upstream") == "b"; }, 5000));
  for (int i = 0; i < 40; ++i) REQUIRE(client.get(s.url("/")).status == 200);
  CHECK(a.connections() == 1);  // the endpoint is unchanged: its pool outlived the reload
  json st = status_of(port);
  CHECK(st["reloads"]["last"]["cause"] == "sighup");
  CHECK(st["reloads"]["last"]["result"] == "ok");

  CurlClient adm;
  ApiReply r = api(adm, port, "POST", "/admin/reload");
  CHECK(r.status == 200);
  CHECK(status_of(port)["reloads"]["last"]["cause"] == "api");
  HttpResult head = adm.request("HEAD", "http://127.0.0.1:" + std::to_string(port) + "/metrics");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an invalid file or a changed published version is refused and the old config serves") {
  Upstream a("a"), b("b");
  Sluice s(shop_config(a, b, R"({ "1" = 100 })"));
  REQUIRE_STARTED(s);
  uint16_t port = admin_port(s);
  CurlClient adm;

  SUBCASE("invalid file") {
    write_file(s.config_path(), shop_config(a, b, R"({ "9" = 100 })"));
    ApiReply r = api(adm, port, "POST", "/admin/reload");
    CHECK(r.status == 400);
    json st = status_of(port);
    CHECK(st["reloads"]["last"]["result"] == "error");
    std::string err = st["reloads"]["last"]["errors"][0];
    CHECK(err.find(s.config_path() + ":") == 0);
    CHECK(err.find("version 9") != std::string::npos);
  }
  SUBCASE("published version changed") {
    write_file(s.config_path(),
               shop_config(a, b, R"({ "1" = 100 })", "", "", "response_timeout = \"5s\"\n"));
    ApiReply r = api(adm, port, "POST", "/admin/reload");
    CHECK(r.status == 400);
    std::string err = status_of(port)["reloads"]["last"]["errors"][0];
    // [functions.shop.versions.1] is line 10 of shop_config's text.
    CHECK(err == s.config_path() +
                     ":10:1: version shop:1 is published and immutable: response_timeout "
                     "changed; publish a new version instead");
  }
  std::map<std::string, int> hits = who_answers(s, 50);
  CHECK(hits["a"] == 50);
  // Saving the same bad file again through the watch is counted once more, never applied.
  CHECK(status_of(port)["reloads"]["error"].get<int>() >= 1);
  CHECK(s.stderr_text().find("rejected; the running configuration stays") != std::string::npos);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("every mutating endpoint answers 401 without the right token") {
  Upstream a("a"), b("b");
  TempDir dir;
  std::string token_file = dir.write("token", "t0ken-e2e\n");
  Sluice s(shop_config(a, b, R"({ "1" = 100 })", "", token_file));
  REQUIRE_STARTED(s);
  uint16_t port = admin_port(s);
  CurlClient adm;
  const std::vector<std::pair<std::string, std::string>> calls = {
      {"PUT", "/admin/functions/shop/aliases/live"},
      {"POST", "/admin/functions/shop/aliases/live/rollback"},
      {"POST", "/admin/functions/shop/versions"},
      {"POST", "/admin/reload"},
  };
  for (const auto& [method, path] : calls) {
    for (const std::string token : {"", "wrong", "t0ken-e2", "t0ken-e2e2"}) {
      CAPTURE(method);
      CAPTURE(path);
      CAPTURE(token);
      ApiReply r = api(adm, port, method, path, traffic_body("2", 100), token);
      CHECK(r.status == 401);
    }
  }
  CHECK(who_answers(s, 10)["a"] == 10);
  CHECK(api(adm, port, "GET", "/admin/status").status == 200);
  ApiReply ok = api(adm, port, "PUT", "/admin/functions/shop/aliases/live", traffic_body("2", 100),
                    "t0ken-e2e");
  CHECK(ok.status == 200);
  CHECK(who_answers(s, 10)["b"] == 10);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a non-loopback admin address without a token refuses to start") {
  Upstream a("a"), b("b");
  std::string text = shop_config(a, b, R"({ "1" = 100 })");
  const std::string loopback_admin = "[admin]\naddress = \"127.0.0.1:0\"";
  text.replace(text.find(loopback_admin), loopback_admin.size(),
               "[admin]\naddress = \"0.0.0.0:0\"");
  REQUIRE(text.find("[admin]\naddress = \"0.0.0.0:0\"") != std::string::npos);
  SluiceOptions opts;
  opts.start_timeout_ms = 3000;
  Sluice s(text, opts);
  CHECK_FALSE(s.started());
  std::optional<int> code = s.wait_exit(5000);
  REQUIRE(code.has_value());
  CHECK(*code == 1);
  CHECK(s.stderr_text().find("is not loopback") != std::string::npos);
}

TEST_CASE("publish snapshots $LATEST as the next number and the alias can move to it") {
  Upstream a("a"), b("b");
  Sluice s(shop_config(a, b, R"({ "1" = 100 })"));
  REQUIRE_STARTED(s);
  uint16_t port = admin_port(s);
  CurlClient adm;
  ApiReply r = api(adm, port, "POST", "/admin/functions/shop/versions");
  REQUIRE(r.status == 200);
  CHECK(r.body["version"] == "3");
  CHECK(
      api(adm, port, "PUT", "/admin/functions/shop/aliases/live", traffic_body("3", 100)).status ==
      200);
  CurlClient c;
  HttpResult got = c.get(s.url("/"));
  CHECK(got.header("x-upstream") == "b");
  CHECK(got.header("x-sluice-version") == "shop:3");
  CHECK(api(adm, port, "POST", "/admin/functions/shop/versions").body["version"] == "4");
  CHECK_CLEAN_STOP(s);
}
