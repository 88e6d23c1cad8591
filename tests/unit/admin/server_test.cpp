// Tests for the admin API's error boundary and access rules: bad bytes, bad JSON, throwing
// hooks and unknown fields answer 4xx/5xx and never throw; tokens off loopback cover reads.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "admin/server.h"
#include "control/control.h"

namespace sluice::admin {
namespace {

using nlohmann::json;

// A config in its own temporary directory, whose name may hold any bytes.
struct Dir {
  std::string root, path;
  explicit Dir(const std::string& subdir = "") {
    char tmpl[] = "/tmp/sluice-server-unit-XXXXXX";
    root = ::mkdtemp(tmpl);
    std::string dir = root + (subdir.empty() ? "" : "/" + subdir);
    std::filesystem::create_directories(dir);
    path = dir + "/sluice.toml";
    // The state directory stays outside `subdir`: TOML itself refuses bytes that are not UTF-8.
    std::ofstream(path) << "[state]\ndir = \"" << root
                        << "/state\"\n"
                           "[functions.checkout.versions.3]\nendpoints = [\"127.0.0.1:7003\"]\n"
                           "[functions.checkout.versions.4]\nendpoints = [\"127.0.0.1:7004\"]\n"
                           "[functions.checkout.aliases.prod]\ntraffic = { \"3\" = 100 }\n"
                           "[[routes]]\ntarget = \"checkout:prod\"\n";
  }
  ~Dir() { std::filesystem::remove_all(root); }
};

AdminServer::Request req(std::string method, std::string target, std::string body = "",
                         std::string auth = "") {
  return {std::move(method), std::move(target), std::move(auth), std::move(body), "127.0.0.1"};
}

json body_of(const AdminServer::Reply& r) {
  json j = json::parse(r.body, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

}  // namespace

TEST_CASE("status answers valid JSON when the config path is not UTF-8") {
  Dir dir("conf-\xff\xfe");  // the byte that made json::dump throw and end the process
  Control c(dir.path);
  REQUIRE(c.init());
  AdminServer admin(c, config::AdminSpec{});
  AdminServer::Reply r = admin.handle(req("GET", "/admin/status"));
  CHECK(r.status == 200);
  const json st = body_of(r);
  // The bad bytes read as U+FFFD; the rest of the path is intact.
  CHECK(st["config"].get<std::string>().find("conf-\xEF\xBF\xBD\xEF\xBF\xBD/sluice.toml") !=
        std::string::npos);
  CHECK(admin.handle(req("GET", "/admin/\xff")).status == 400);
  CHECK(admin.handle(req("GET", "/metrics")).status == 200);
}

TEST_CASE("bad requests answer 4xx naming the problem and the field") {
  Dir dir;
  Control c(dir.path);
  REQUIRE(c.init());
  AdminServer admin(c, config::AdminSpec{});
  const std::string alias = "/admin/functions/checkout/aliases/prod";
  const std::string deep = std::string(33, '[') + std::string(33, ']');
  struct Case {
    const char* what;
    AdminServer::Request request;
    int status;
    const char* field;
    const char* fragment;
  };
  for (const Case& k : {
           Case{"a target that is not UTF-8", req("GET", "/admin/functions/\xc3\x28"), 400,
                "target", "not valid UTF-8"},
           Case{"a body that is not UTF-8", req("PUT", alias, "{\"traffic\":{\"\xff\":1}}"), 400,
                "body", "not valid JSON"},
           Case{"malformed JSON", req("PUT", alias, "{\"traffic\": {\"3\": 1,}"), 400, "body",
                "not valid JSON"},
           Case{"JSON nested 33 deep", req("PUT", alias, deep), 400, "body",
                "deeper than 32 levels"},
           Case{"nesting inside a string does not count", req("PUT", alias, "\"" + deep + "\""),
                400, "body", "must be a JSON object"},
           Case{"an empty body", req("PUT", alias), 400, "body", "the body is empty"},
           Case{"traffic of the wrong type", req("PUT", alias, R"({"traffic": [3, 100]})"), 400,
                "traffic", "not an array"},
           Case{"a weight of the wrong type", req("PUT", alias, R"({"traffic": {"3": true}})"), 400,
                "traffic.3", "not a number: a boolean"},
           Case{"an unknown field", req("PUT", alias, R"({"traffic": {"3": 1}, "force": true})"),
                400, "force", "unknown field force"},
           Case{"a field on an endpoint that takes none",
                req("POST", alias + "/rollback", R"({"to": 2})"), 400, "to", "unknown field to"},
           Case{"a body that is not an object where none is taken",
                req("POST", "/admin/reload", "[]"), 400, "body", "takes no body"},
       }) {
    CAPTURE(k.what);
    AdminServer::Reply r = admin.handle(k.request);
    CHECK(r.status == k.status);
    const json b = body_of(r);
    CHECK(b["field"] == k.field);
    CAPTURE(b.dump());
    CHECK(b["error"].get<std::string>().find(k.fragment) != std::string::npos);
  }
  CHECK(admin.handle(req("POST", alias + "/rollback", "{}")).status == 409);  // {} is no body
  CHECK(c.table()->find_function("checkout")->find_alias("prod")->shares().size() == 1);
}

TEST_CASE("an exception in a hook answers 500 and the server keeps answering") {
  Dir dir;
  Control c(dir.path);
  REQUIRE(c.init());
  AdminServer admin(c, config::AdminSpec{});
  admin.set_extension([](const AdminServer::Request&, const std::vector<std::string>& path,
                         const std::string&) -> std::optional<ApiResult> {
    if (path.back() == "boom") throw std::runtime_error("hook failed \xff");
    if (path.back() == "int") throw 7;
    return std::nullopt;
  });
  AdminServer::Reply r = admin.handle(req("GET", "/admin/boom"));
  CHECK(r.status == 500);
  CHECK(body_of(r)["error"].get<std::string>().find("internal error: hook failed") == 0);
  CHECK(admin.handle(req("GET", "/admin/int")).status == 500);
  admin.set_status_extension([](json&) { throw std::logic_error("status hook"); });
  CHECK(admin.handle(req("GET", "/admin/status")).status == 500);
  admin.set_status_extension([](json& j) { j["shifts"] = json::array(); });
  CHECK(admin.handle(req("GET", "/admin/status")).status == 200);
}

TEST_CASE("off loopback every endpoint needs a token, a read token allows reads only") {
  Dir dir;
  std::string conf_dir = std::filesystem::path(dir.path).parent_path().string();
  std::ofstream(conf_dir + "/token") << "full-token\n";
  std::ofstream(conf_dir + "/read") << "read-token\n";
  Control c(dir.path);
  REQUIRE(c.init());
  const std::string put = "/admin/functions/checkout/aliases/prod";
  const std::string traffic = R"({"traffic":{"4":100}})";

  SUBCASE("a non-loopback listener with only token_file") {
    AdminServer admin(c, config::AdminSpec{{"10.1.2.3:9901", "10.1.2.3", 9901}, "token", ""},
                      conf_dir);
    std::string error;
    REQUIRE(admin.load_tokens(&error));
    for (const char* target : {"/admin/status", "/metrics", "/admin/nope", "/elsewhere"}) {
      CAPTURE(target);
      AdminServer::Reply r = admin.handle(req("GET", target));
      CHECK(r.status == 401);
      CHECK(r.unauthorized);
      CHECK(admin.handle(req("GET", target, "", "Bearer wrong")).status == 401);
    }
    CHECK(admin.handle(req("GET", "/admin/status", "", "Bearer full-token")).status == 200);
    CHECK(admin.handle(req("GET", "/metrics", "", "Bearer full-token")).status == 200);
    CHECK(admin.handle(req("PUT", put, traffic, "Bearer full-token")).status == 200);
  }
  SUBCASE("with read_token_file, reads take either token and changes only the full one") {
    AdminServer admin(c, config::AdminSpec{{"10.1.2.3:9901", "10.1.2.3", 9901}, "token", "read"},
                      conf_dir);
    std::string error;
    REQUIRE(admin.load_tokens(&error));
    CHECK(admin.handle(req("GET", "/admin/status", "", "Bearer read-token")).status == 200);
    CHECK(admin.handle(req("HEAD", "/metrics", "", "Bearer read-token")).status == 200);
    AdminServer::Reply r = admin.handle(req("PUT", put, traffic, "Bearer read-token"));
    CHECK(r.status == 401);
    CHECK(body_of(r)["error"] == "the read token cannot change anything");
    CHECK(admin.handle(req("POST", "/admin/reload", "", "Bearer read-token")).status == 401);
    CHECK(admin.handle(req("PUT", put, traffic, "Bearer full-token")).status == 200);
  }
  SUBCASE("on loopback, a read token makes reads need a token too") {
    AdminServer admin(c, config::AdminSpec{{"127.0.0.1:0", "127.0.0.1", 0}, "token", "read"},
                      conf_dir);
    std::string error;
    REQUIRE(admin.load_tokens(&error));
    CHECK(admin.handle(req("GET", "/admin/status")).status == 401);
    CHECK(admin.handle(req("GET", "/admin/status", "", "Bearer read-token")).status == 200);
  }
  SUBCASE("on loopback with only token_file, reads stay open") {
    AdminServer admin(c, config::AdminSpec{{"127.0.0.1:0", "127.0.0.1", 0}, "token", ""}, conf_dir);
    std::string error;
    REQUIRE(admin.load_tokens(&error));
    CHECK(admin.handle(req("GET", "/admin/status")).status == 200);
    CHECK(admin.handle(req("PUT", put, traffic)).status == 401);
  }
  SUBCASE("a read token needs the full token and must differ from it") {
    std::string error;
    AdminServer no_full(c, config::AdminSpec{{"127.0.0.1:0", "127.0.0.1", 0}, "", "read"},
                        conf_dir);
    CHECK_FALSE(no_full.load_tokens(&error));
    CHECK(error.find("needs token_file") != std::string::npos);
    AdminServer same(c, config::AdminSpec{{"127.0.0.1:0", "127.0.0.1", 0}, "token", "token"},
                     conf_dir);
    CHECK_FALSE(same.load_tokens(&error));
    CHECK(error.find("same token") != std::string::npos);
  }
}

TEST_CASE("the token compare accepts only the exact token") {
  CHECK(token_equals("s3cret", "s3cret"));
  CHECK_FALSE(token_equals("s3cres", "s3cret"));
  CHECK_FALSE(token_equals("s3cre", "s3cret"));
  CHECK_FALSE(token_equals("s3crett", "s3cret"));
  CHECK_FALSE(token_equals("", "s3cret"));
  CHECK_FALSE(token_equals("", ""));  // no token configured never matches
  CHECK(is_loopback_host("127.0.0.1"));
  CHECK(is_loopback_host("::1"));
  CHECK(is_loopback_host("localhost"));
  CHECK_FALSE(is_loopback_host("0.0.0.0"));
  CHECK_FALSE(is_loopback_host("10.0.0.1"));
}

}  // namespace sluice::admin
