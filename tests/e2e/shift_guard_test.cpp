// e2e tests of what a shift may and may not do: percentages are never ambiguous (CLI, API and
// file), min_requests holds back every verdict, versions other than stable and candidate are
// never changed silently, `sluice status` shows running shifts, and a hook's bad answer (not
// JSON, not UTF-8) ends a shift cleanly instead of the process.
#include <poll.h>

#include <map>
#include <string>

#include "shift_test_util.h"

namespace sluice::e2e {

using namespace shift_test;

TEST_CASE("a bare rate of 1 or more is refused as ambiguous by the CLI, the API and the file") {
  ScriptedUpstream stable("stable"), cand("cand");
  Sluice s(shift_config(stable.address(), cand.address()));
  REQUIRE_STARTED(s);
  uint16_t port = admin::admin_port(s);
  const std::string adm = " --admin 127.0.0.1:" + std::to_string(port);
  CurlClient curl;

  admin::CliRun r = admin::run_cli("shift shop:live --to 2 --max-error-rate 1" + adm);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--max-error-rate: 1 is ambiguous (1% or 100%?): write 1% or 0.01 for 1 "
                   "percent") != std::string::npos);
  r = admin::run_cli("shift shop:live --to 2 --max-throttle-rate 5" + adm);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--max-throttle-rate: 5 is ambiguous") != std::string::npos);
  r = admin::run_cli("shift shop:live --to 2 --compare-to-stable --margin 1" + adm);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--margin: 1 is ambiguous") != std::string::npos);
  CHECK(api(curl, port, "GET", kShiftPath).status == 404);  // nothing was started

  ApiReply a = api(curl, port, "POST", kShiftPath, R"({"to":"2","guard":{"max_error_rate":1}})");
  CHECK(a.status == 400);
  CHECK(a.body["field"] == "guard.max_error_rate");
  CHECK(a.body["error"].get<std::string>().find("write \"1%\" or 0.01") != std::string::npos);
  a = api(curl, port, "POST", kShiftPath, R"({"to":"2","guard":{"min_breach_requests":10}})");
  CHECK(a.status == 400);
  CHECK(a.body["field"] == "guard.min_breach_requests");

  SUBCASE("1% and 0.01 start the same guard") {
    for (const char* rate : {"1%", "0.01"}) {
      CAPTURE(rate);
      r = admin::run_cli(std::string("shift shop:live --to 2 --every 1m --max-error-rate ") + rate +
                         " --json" + adm);
      CAPTURE(r.err);
      REQUIRE(r.exit_code == 0);
      json started = json::parse(r.out, nullptr, false);
      CHECK(started["plan"]["guard"]["max_error_rate"] == 0.01);
      REQUIRE(api(curl, port, "DELETE", kShiftPath).status == 200);
    }
  }
  SUBCASE("the file's shift table is checked the same way") {
    TempDir dir;
    std::string bad = dir.write("bad.toml", shift_config(stable.address(), cand.address()) +
                                                "[functions.shop.aliases.live.shift]\nto = \"2\"\n"
                                                "guard = { max_error_rate = 1 }\n");
    admin::CliRun check = admin::run_cli("check -c " + bad);
    CHECK(check.exit_code != 0);
    CHECK((check.out + check.err)
              .find("bad.toml:18:28: shift of alias shop:live: guard.max_error_rate: 1 is "
                    "ambiguous") != std::string::npos);
  }
  SUBCASE("and shift --help says how rates and min_requests read") {
    admin::CliRun help = admin::run_cli("shift --help");
    CHECK(help.exit_code == 0);
    CHECK(help.out.find("--max-error-rate 1%") != std::string::npos);
    CHECK(help.out.find("a bare 1 is\nrefused as ambiguous") != std::string::npos);
    CHECK(help.out.find("no verdict (advance, promotion or rollback) until the candidate") !=
          std::string::npos);
    CHECK(help.out.find("min-breach") == std::string::npos);
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a failing candidate is not rolled back before min_requests, then is") {
  ScriptedUpstream stable("stable"), cand("cand");
  cand.status = 500;
  // The guard's floor is what is tested: passive ejection (which would take the failing
  // candidate out after five 5xx in a row and roll the shift back at once) is off.
  Sluice s(shift_config(stable.address(), cand.address(), "", "{ \"1\" = 100 }", "",
                        "outlier = { consecutive_5xx = 0 }\n"));
  REQUIRE_STARTED(s);
  uint16_t port = admin::admin_port(s);
  CurlClient curl;
  ApiReply r = api(curl, port, "POST", kShiftPath,
                   R"({"to":"2","steps":[50,100],"every":"30s",
                       "guard":{"max_error_rate":"1%","min_requests":40}})");
  REQUIRE_MESSAGE(r.status == 200, r.raw);
  // Far fewer than 40 candidate requests, all failing: held, and saying what it sees so far.
  admin::who_answers(s, 30);
  ::poll(nullptr, 0, 1500);  // at least one check after the requests
  ApiReply g = api(curl, port, "GET", kShiftPath);
  CAPTURE(g.raw);
  CHECK(g.body["state"] == "running");
  const std::string reason = g.body["reason"].get<std::string>();
  CHECK(reason.find("step 1 interval: ") == 0);
  CHECK(reason.find("; so far the candidate error rate 100.0% is over the 1.0% limit") !=
        std::string::npos);
  const uint64_t held_at = g.body["window"]["candidate"]["requests"].get<uint64_t>();
  CHECK(held_at > 0);
  CHECK(held_at < 40);
  // Enough requests: rolled back, over at least min_requests.
  admin::who_answers(s, 150);
  json done = wait_finished(curl, port, 10000);
  CAPTURE(done.dump());
  CHECK(done["state"] == "rolled_back");
  CHECK(done["history"][0]["candidate"]["requests"].get<uint64_t>() >= 40);
  CHECK(done["reason"].get<std::string>().find("candidate error rate 100.0% > limit 1.0% over ") ==
        0);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a shift is refused while a third version has traffic, and leaves it alone") {
  ScriptedUpstream v1("v1"), v2("v2"), v3("v3");
  Sluice s(shift_config(v1.address(), v2.address(), "", R"({ "1" = 90, "3" = 10 })",
                        "[functions.shop.versions.3]\nendpoints = [\"" + v3.address() + "\"]\n"));
  REQUIRE_STARTED(s);
  uint16_t port = admin::admin_port(s);
  CurlClient curl;
  ApiReply r = api(curl, port, "POST", kShiftPath, R"({"to":"2","every":"1m"})");
  CHECK(r.status == 409);
  CHECK(r.body["field"] == "to");
  CHECK(r.body["error"] ==
        "alias shop:live also sends traffic to version 3 (10.0%); a shift only moves traffic "
        "between the stable version 1 and the candidate 2. Move the other share first (e.g. "
        "sluice alias set shop:live 1=100 3=0), then start the shift");
  ApiReply st = api(curl, port, "GET", "/admin/status");
  CHECK(st.body["functions"][0]["aliases"][0]["traffic"] == json({{"1", 90}, {"3", 10}}));

  SUBCASE("with the third at weight 0 the shift runs and keeps it listed at 0") {
    REQUIRE(api(curl, port, "PUT", "/admin/functions/shop/aliases/live",
                R"({"traffic":{"1":100,"3":0}})")
                .status == 200);
    r = api(curl, port, "POST", kShiftPath, R"({"to":"2","steps":[25,100],"every":"1m"})");
    REQUIRE_MESSAGE(r.status == 200, r.raw);
    st = api(curl, port, "GET", "/admin/status");
    CHECK(st.body["functions"][0]["aliases"][0]["traffic"] ==
          json({{"1", 75}, {"2", 25}, {"3", 0}}));
    std::map<std::string, int> hits = admin::who_answers(s, 100);
    CHECK(hits["v3"] == 0);
    CHECK(hits["v1"] + hits["v2"] == 100);
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("sluice status prints each running shift under its alias") {
  ScriptedUpstream stable("stable"), cand("cand");
  Sluice s(shift_config(stable.address(), cand.address()));
  REQUIRE_STARTED(s);
  uint16_t port = admin::admin_port(s);
  const std::string adm = " --admin 127.0.0.1:" + std::to_string(port);
  admin::CliRun st = admin::run_cli("status" + adm);
  CHECK(st.exit_code == 0);
  CHECK(st.out.find("shifts: none running") != std::string::npos);

  CurlClient curl;
  REQUIRE(api(curl, port, "POST", kShiftPath,
              R"({"to":"2","steps":[10,100],"every":"1m","guard":{"min_requests":1000}})")
              .status == 200);
  admin::who_answers(s, 20);
  st = admin::run_cli("status" + adm);
  CAPTURE(st.out);
  CHECK(st.exit_code == 0);
  const size_t alias_line = st.out.find("shop:live  1=90 2=10");
  const size_t shift_line = st.out.find("      shift to 2 from 1: running, step 1/2 at 10%: ");
  CHECK(alias_line != std::string::npos);
  CHECK(shift_line != std::string::npos);
  CHECK(shift_line > alias_line);
  CHECK(st.out.find("        window: candidate ") != std::string::npos);
  CHECK(st.out.find("shifts: 1 running") != std::string::npos);

  REQUIRE(api(curl, port, "DELETE", kShiftPath).status == 200);
  st = admin::run_cli("status" + adm);
  CHECK(st.out.find("shift to 2") == std::string::npos);
  CHECK(st.out.find("shifts: none running") != std::string::npos);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a hook answering malformed JSON that is not UTF-8 ends the shift, not the process") {
  ScriptedUpstream stable("stable"), cand("cand"), hook("hook");
  TempDir state;
  Sluice s(shift_config(stable.address(), cand.address(), state.path()));
  REQUIRE_STARTED(s);
  uint16_t port = admin::admin_port(s);
  CurlClient curl;
  const std::string url = "http://" + hook.address() + "/hook";
  hook.status = 403;
  hook.set_body("\xff\xfe{\"reason\": \"no\x01\xc3(");
  ApiReply r = api(curl, port, "POST", kShiftPath,
                   json{{"to", "2"}, {"every", "1m"}, {"pre_traffic", url}}.dump());
  REQUIRE_MESSAGE(r.status == 202, r.raw);
  json done = wait_finished(curl, port, 5000);
  CAPTURE(done.dump());
  CHECK(done["state"] == "not_started");
  // The hook's words are kept, made valid UTF-8 (U+FFFD for the bad bytes), on one line.
  CHECK(done["reason"] == "pre_traffic hook " + url +
                              " answered 403 (2xx needed): \xef\xbf\xbd\xef\xbf\xbd{\"reason\": "
                              "\"no \xef\xbf\xbd(; the shift did not start");
  CHECK(api(curl, port, "GET", "/admin/status").status == 200);
  CHECK(admin::who_answers(s, 10)["stable"] == 10);

  SUBCASE("a post_traffic hook answering the same garbage changes nothing") {
    hook.status = 200;
    r = api(curl, port, "POST", kShiftPath,
            json{{"to", "2"}, {"every", "1m"}, {"post_traffic", url}}.dump());
    REQUIRE_MESSAGE(r.status == 200, r.raw);
    REQUIRE(api(curl, port, "DELETE", kShiftPath).status == 200);
    REQUIRE(poll_until([&] { return hook.requests() >= 2; }, 5000));
    ::poll(nullptr, 0, 200);
    CHECK(api(curl, port, "GET", kShiftPath).body["state"] == "aborted");
    CHECK(s.running());
  }
  CHECK_CLEAN_STOP(s);
}

}  // namespace sluice::e2e
