// End-to-end: the admin CLI (`sluice status|alias set|rollback|publish|reload`) against a running
// sluice: human output, --json output, exit codes, token handling and one-line failure reasons.
#include "admin_test_util.h"

using namespace sluice::e2e;
using namespace sluice::e2e::admin;

TEST_CASE("the CLI commands change and show a running sluice, with exit codes and --json") {
  Upstream a("a"), b("b");
  TempDir dir;
  std::string token_file = dir.write("token", "cli-t0ken\n");
  Sluice s(shop_config(a, b, R"({ "1" = 100 })", dir.path() + "/state", token_file));
  REQUIRE_STARTED(s);
  const std::string adm = "--admin 127.0.0.1:" + std::to_string(admin_port(s));
  const std::string tok = " --token-file " + token_file;

  CliRun r = run_cli("status " + adm);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("shop:live  1=100  (file, history 0)") != std::string::npos);
  CHECK(r.out.find("state: " + dir.path() + "/state") != std::string::npos);

  r = run_cli("alias set shop:live 1=90 2=10 " + adm + tok);
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "shop:live now 1=90 2=10 (was 1=100)\n");
  std::map<std::string, int> hits = who_answers(s, 200);
  CHECK(hits["a"] + hits["b"] == 200);
  CHECK(hits["b"] > 0);

  r = run_cli("alias set shop:live 2=100 --json " + adm, "SLUICE_TOKEN=cli-t0ken");
  CHECK(r.exit_code == 0);
  json j = json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  CHECK(j["new"] == json{{"2", 100}});
  CHECK(j["old"] == json{{"1", 90}, {"2", 10}});
  CHECK(who_answers(s, 20)["b"] == 20);

  r = run_cli("rollback shop:live " + adm + tok);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "shop:live rolled back to 1=90 2=10 (was 2=100)\n");

  r = run_cli("publish shop " + adm + tok);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "published shop:3\n");

  r = run_cli("reload " + adm + tok);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "configuration reloaded\n");

  r = run_cli("status --json " + adm);
  CHECK(r.exit_code == 0);
  j = json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  CHECK(j["functions"][0]["aliases"][0]["traffic"] == json{{"1", 90}, {"2", 10}});
  CHECK(j["functions"][0]["aliases"][0]["history_depth"] == 1);
  CHECK(j["functions"][0]["versions"].size() == 4);  // 1, 2, 3 (api), $LATEST

  SUBCASE("failures exit non-zero with a one-line reason") {
    CliRun bad = run_cli("alias set shop:live 7=100 " + adm + tok);
    CHECK(bad.exit_code == 1);
    CHECK(bad.out.empty());
    CHECK(bad.err ==
          "sluice alias: alias shop:live sends traffic to version 7, which is not defined "
          "(defined: 1, 2, 3, $LATEST) (HTTP 400)\n");

    bad = run_cli("rollback shop:live " + adm);  // no token
    CHECK(bad.exit_code == 1);
    CHECK(bad.err == "sluice rollback: missing bearer token (HTTP 401)\n");

    bad = run_cli("rollback shop:nope --json " + adm + tok);
    CHECK(bad.exit_code == 1);
    CHECK(json::parse(bad.out, nullptr, false)["field"] == "alias");

    bad = run_cli("alias set shop:live 1=x " + adm + tok);
    CHECK(bad.exit_code == 2);

    bad = run_cli("status --admin 127.0.0.1:" + std::to_string(unused_port()));
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find("sluice status: cannot connect to sluice admin at 127.0.0.1:") == 0);
    CHECK(std::count(bad.err.begin(), bad.err.end(), '\n') == 1);
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("sluice --help lists the client commands") {
  CliRun r = run_cli("--help");
  CHECK(r.exit_code == 0);
  for (const char* cmd : {"status", "alias set", "rollback", "publish", "reload", "--admin",
                          "--token-file", "--json"}) {
    CAPTURE(cmd);
    CHECK(r.out.find(cmd) != std::string::npos);
  }
}
