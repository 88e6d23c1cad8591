// Tests for the runtime-change state: JSON round trip, atomic writes, history bound, override
// precedence by file hash, immutability diagnostics, version numbering and the token compare.
#include <dirent.h>
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "admin/server.h"
#include "admin/state.h"
#include "config/loader.h"

namespace sluice::admin {
namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/sluice-admin-unit-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

config::Config load(const std::string& text) {
  config::LoadResult r = config::load_string(text, "sluice.toml");
  std::string errs;
  for (const auto& e : r.errors) errs += e.to_string() + "\n";
  CAPTURE(errs);
  REQUIRE(r.config.has_value());
  return *r.config;
}

// Version 3 sits in the table opened on line 5.
std::string checkout_toml(const std::string& v3_extra = "",
                          const std::string& prod = "\"3\" = 100") {
  return "[listen]\naddress = \"127.0.0.1:0\"\n"
         "[functions.checkout.latest]\nendpoints = [\"127.0.0.1:7004\"]\n"
         "[functions.checkout.versions.3]\nendpoints = [\"127.0.0.1:7003\"]\n" +
         v3_extra +
         "[functions.checkout.versions.4]\nendpoints = [\"127.0.0.1:7004\"]\n"
         "[functions.checkout.aliases.prod]\ntraffic = { " +
         prod + " }\n[[routes]]\ntarget = \"checkout:prod\"\n";
}

const config::AliasSpec& prod_of(const config::Config& cfg) {
  return cfg.functions.at(0).aliases.at(0);
}

}  // namespace

TEST_CASE("a state survives a JSON round trip unchanged") {
  State s;
  FunctionState& fs = s.functions["checkout"];
  fs.next_number = 7;
  PublishedVersion pv;
  config::Endpoint ep;
  ep.address = {"127.0.0.1:7004", "127.0.0.1", 7004};
  ep.weight = 2;
  pv.endpoints = {ep};
  pv.settings.response_timeout_ms = 5000;
  pv.time = "2026-01-01T00:00:00.000Z";
  fs.published[6] = pv;
  fs.fingerprints[3] = {{"connect_timeout", "1000ms"}};
  AliasState& as = fs.aliases["prod"];
  as.override_traffic = TrafficMap{{"3", 90}, {"4", 10.5}};
  as.override_file_hash = "abc";
  as.history = {{{"3", 100}}, {{"$LATEST", 1}}};

  State back;
  std::string error;
  REQUIRE(from_json(nlohmann::json::parse(to_json(s).dump()), back, &error));
  CHECK(back == s);
  const PublishedVersion& got = back.functions["checkout"].published.at(6);
  CHECK(got.endpoints.at(0).address.host == "127.0.0.1");
  CHECK(got.endpoints.at(0).address.port == 7004);
  CHECK(got.endpoints.at(0).weight == 2);
  CHECK(got.settings.response_timeout_ms == 5000u);
  CHECK_FALSE(got.settings.connect_timeout_ms.has_value());
  CHECK(*back.functions["checkout"].aliases["prod"].override_traffic ==
        TrafficMap{{"3", 90}, {"4", 10.5}});

  SUBCASE("a malformed document is refused with a reason") {
    State none;
    CHECK_FALSE(
        from_json(nlohmann::json::parse(R"({"format":1,"functions":{"f":{}}})"), none, &error));
    CHECK(error.find("malformed state") != std::string::npos);
    CHECK_FALSE(from_json(nlohmann::json::parse(R"({"format":9})"), none, &error));
  }
}

TEST_CASE("the store writes state atomically and reads it back") {
  TempDir tmp;
  Store store(tmp.path + "/state");
  State s;
  std::string error;
  REQUIRE(store.load(s, &error));  // creates the directory; no file yet: empty state
  CHECK(s.functions.empty());
  s.functions["checkout"].next_number = 5;
  s.functions["checkout"].aliases["prod"].override_traffic = TrafficMap{{"4", 100}};
  REQUIRE(store.save(s, &error));
  CHECK(list_dir(tmp.path + "/state") == std::vector<std::string>{"state.json"});
  State back;
  REQUIRE(store.load(back, &error));
  CHECK(back == s);

  SUBCASE("a leftover temp file from a crash does not affect the state") {
    std::ofstream(tmp.path + "/state/state.json.tmp") << "{\"format\": 1, \"functi";
    State again;
    REQUIRE(store.load(again, &error));
    CHECK(again == s);
    s.functions["checkout"].next_number = 6;
    REQUIRE(store.save(s, &error));  // replaces the stale temp file and renames it away
    CHECK(list_dir(tmp.path + "/state") == std::vector<std::string>{"state.json"});
  }
  SUBCASE("audit lines are appended one JSON object per line") {
    REQUIRE(store.commit(s,
                         {{"api:127.0.0.1", "api", "checkout", "prod", traffic_json({{"3", 100}}),
                           traffic_json({{"3", 90}, {"4", 10}})},
                          {"file", "file", "checkout", "prod", traffic_json({{"3", 90}, {"4", 10}}),
                           traffic_json({{"3", 100}})}},
                         &error));
    std::istringstream lines(read(tmp.path + "/state/audit.jsonl"));
    std::string line;
    std::vector<nlohmann::json> docs;
    while (std::getline(lines, line)) docs.push_back(nlohmann::json::parse(line));
    REQUIRE(docs.size() == 2);
    CHECK(docs[0]["cause"] == "api");
    CHECK(docs[0]["actor"] == "api:127.0.0.1");
    CHECK(docs[0]["old"] == nlohmann::json{{"3", 100}});
    CHECK(docs[0]["new"] == nlohmann::json{{"3", 90}, {"4", 10}});
    CHECK(docs[1]["cause"] == "file");
    CHECK(docs[1]["time"].get<std::string>().size() == 24);
    CHECK(docs[0]["seq"] == 1);
    CHECK(docs[1]["seq"] == 2);
  }
  SUBCASE("an unparsable state file stops the load with its path") {
    std::ofstream(tmp.path + "/state/state.json") << "{not json";
    State broken;
    CHECK_FALSE(store.load(broken, &error));
    CHECK(error.find("state.json") != std::string::npos);
  }
}

// The records of audit.jsonl as JSON, skipping lines that do not parse.
std::vector<nlohmann::json> audit_lines(const std::string& path) {
  std::istringstream lines(read(path));
  std::string line;
  std::vector<nlohmann::json> out;
  while (std::getline(lines, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(j);
  }
  return out;
}

TEST_CASE("a change whose state was written but whose audit record was not is audited at load") {
  TempDir tmp;
  const std::string dir = tmp.path + "/state";
  const std::string audit = dir + "/audit.jsonl";
  std::string error;
  State s;
  {
    Store store(dir);
    REQUIRE(store.load(s, &error));
    for (int w : {10, 20, 30}) {
      s.functions["checkout"].aliases["prod"].override_traffic = TrafficMap{{"3", w}};
      REQUIRE(store.commit(
          s, {{"api:t", "api", "checkout", "prod", nullptr, traffic_json({{"3", w}})}}, &error));
    }
  }
  REQUIRE(audit_lines(audit).size() == 3);
  // The process died after state.json's rename and before the append: the log lacks the last
  // record (what SIGKILL did to 2 of 30 applied changes).
  std::string text = read(audit);
  const std::string without_last = text.substr(0, text.rfind('\n', text.size() - 2) + 1);

  SUBCASE("the missing record is appended, once") {
    std::ofstream(audit, std::ios::trunc) << without_last;
    Store again(dir);
    State back;
    size_t repaired = 0;
    REQUIRE(again.load(back, &error, &repaired));
    CHECK(repaired == 1);
    std::vector<nlohmann::json> lines = audit_lines(audit);
    REQUIRE(lines.size() == 3);
    CHECK(lines[2]["seq"] == 3);
    CHECK(lines[2]["new"] == nlohmann::json{{"3", 30}});
    REQUIRE(again.load(back, &error, &repaired));
    CHECK(repaired == 0);
    CHECK(audit_lines(audit).size() == 3);
    // Numbering continues after the repaired record.
    REQUIRE(again.commit(back, {{"api:t", "api", "checkout", "prod", nullptr, nullptr}}, &error));
    CHECK(audit_lines(audit).back()["seq"] == 4);
  }
  SUBCASE("a torn last line is ended before the repair, and records without seq are skipped") {
    std::ofstream(audit, std::ios::trunc)
        << without_last << R"({"event":"shift step","seq_less":true})"
        << "\n"
        << R"({"seq":3,"time":"2026-)";
    Store again(dir);
    State back;
    size_t repaired = 0;
    REQUIRE(again.load(back, &error, &repaired));
    CHECK(repaired == 1);
    std::vector<nlohmann::json> lines = audit_lines(audit);
    REQUIRE(lines.size() == 4);  // 2 records, the line without seq, the repaired record
    CHECK(lines[3]["seq"] == 3);
    CHECK(lines[3]["new"] == nlohmann::json{{"3", 30}});
  }
  SUBCASE("nothing is repeated when the log is complete") {
    Store again(dir);
    State back;
    size_t repaired = 9;
    REQUIRE(again.load(back, &error, &repaired));
    CHECK(repaired == 0);
    CHECK(read(audit) == text);
  }
}

TEST_CASE("write_file_atomic replaces the whole file and leaves no temp file") {
  TempDir tmp;
  std::string error;
  const std::string path = tmp.path + "/f.json";
  REQUIRE(write_file_atomic(path, "first", &error));
  REQUIRE(write_file_atomic(path, "second, longer", &error));
  CHECK(read(path) == "second, longer");
  CHECK(list_dir(tmp.path) == std::vector<std::string>{"f.json"});
  CHECK_FALSE(write_file_atomic(tmp.path + "/missing/f.json", "x", &error));
  CHECK(error.find("cannot create") != std::string::npos);
}

TEST_CASE("an alias keeps its last 32 traffic maps, oldest dropped first") {
  AliasState as;
  for (int i = 0; i < 40; ++i) as.push_history({{"3", double(i)}});
  REQUIRE(as.history.size() == kHistoryDepth);
  CHECK(as.history.front() == TrafficMap{{"3", 8}});
  CHECK(as.history.back() == TrafficMap{{"3", 39}});
}

TEST_CASE("traffic maps are canonical: numbers ascending, then $LATEST") {
  TrafficMap m = canonical({{"$LATEST", 1}, {"10", 2}, {"9", 3}});
  CHECK(m == TrafficMap{{"9", 3}, {"10", 2}, {"$LATEST", 1}});
  CHECK(traffic_text({{"3", 90}, {"4", 10.5}}) == "3=90 4=10.5");
  CHECK(traffic_json({{"3", 90}}).dump() == R"({"3":90})");
}

TEST_CASE("an API override applies while the file's alias definition is unchanged") {
  config::Config file = load(checkout_toml());
  State st;
  AliasState& as = st.functions["checkout"].aliases["prod"];
  as.override_traffic = TrafficMap{{"3", 90}, {"4", 10}};
  as.override_file_hash = alias_file_hash(prod_of(file));

  std::vector<DroppedOverride> dropped;
  config::Config cfg = compose(file, st, &dropped);
  CHECK(dropped.empty());
  CHECK(traffic_of(prod_of(cfg)) == TrafficMap{{"3", 90}, {"4", 10}});

  SUBCASE("once the file's definition changes, the file wins and the override is dropped") {
    config::Config edited = load(checkout_toml("", "\"4\" = 100"));
    config::Config out = compose(edited, st, &dropped);
    CHECK(traffic_of(prod_of(out)) == TrafficMap{{"4", 100}});
    REQUIRE(dropped.size() == 1);
    CHECK(dropped[0].old_map == TrafficMap{{"3", 90}, {"4", 10}});
    CHECK(dropped[0].new_map == TrafficMap{{"4", 100}});
    CHECK_FALSE(st.functions["checkout"].aliases["prod"].override_traffic.has_value());
    CHECK(st.functions["checkout"].aliases["prod"].history.back() ==
          TrafficMap{{"3", 90}, {"4", 10}});
  }
  SUBCASE("a change elsewhere in the file keeps the override") {
    config::Config edited = load(checkout_toml("max_concurrency = 5\n"));
    CHECK(traffic_of(prod_of(compose(edited, st, &dropped))) == TrafficMap{{"3", 90}, {"4", 10}});
    CHECK(dropped.empty());
  }
  SUBCASE("an override naming a version the file removed is dropped") {
    as.override_traffic = TrafficMap{{"9", 100}};
    CHECK(traffic_of(prod_of(compose(file, st, &dropped))) == TrafficMap{{"3", 100}});
    REQUIRE(dropped.size() == 1);
    CHECK(dropped[0].why.find("version 9") != std::string::npos);
  }
  SUBCASE("a saved override the file loader would refuse is dropped, not served") {
    // e.g. written before the API shared the loader's checks: 1e13 once served as 49/51.
    as.override_traffic = TrafficMap{{"3", 1e13}, {"4", 1e12}};
    CHECK(traffic_of(prod_of(compose(file, st, &dropped))) == TrafficMap{{"3", 100}});
    REQUIRE(dropped.size() == 1);
    CHECK(dropped[0].why ==
          "out-of-range weight 10000000000000 for version 3 of alias checkout:prod (expected a "
          "number from 0 to 1000000)");
  }
}

TEST_CASE("API-published versions join the composed config") {
  config::Config file = load(checkout_toml());
  State st;
  PublishedVersion pv;
  pv.endpoints = file.functions[0].latest->endpoints;
  st.functions["checkout"].published[5] = pv;
  config::Config cfg = compose(file, st, nullptr);
  REQUIRE(cfg.functions[0].versions.count(5) == 1);
  CHECK(cfg.functions[0].versions.at(5).endpoints.at(0).address.text == "127.0.0.1:7004");
}

TEST_CASE("a published version may change its endpoints but nothing else") {
  config::Config first = load(checkout_toml());
  State st;
  std::vector<config::Diagnostic> errors;
  check_immutable(first, st, &errors);
  REQUIRE(errors.empty());
  CHECK(st.functions["checkout"].fingerprints.size() == 2);
  CHECK(st.functions["checkout"].next_number == 5);

  SUBCASE("new endpoints are accepted") {
    std::string text = checkout_toml();
    text.replace(text.find("127.0.0.1:7003"), 14, "127.0.0.1:7999");
    check_immutable(load(text), st, &errors);
    CHECK(errors.empty());
  }
  SUBCASE("a changed response_timeout is refused at the version's table") {
    check_immutable(load(checkout_toml("response_timeout = \"5s\"\n")), st, &errors);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].to_string() ==
          "sluice.toml:5:1: version checkout:3 is published and immutable: response_timeout "
          "changed; publish a new version instead");
  }
  SUBCASE("every changed field is named") {
    check_immutable(load(checkout_toml("connect_timeout = \"2s\"\nmax_concurrency = 3\n")), st,
                    &errors);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].message.find("connect_timeout, max_concurrency changed") != std::string::npos);
  }
  SUBCASE("a removed and re-added version must come back unchanged") {
    std::string without = checkout_toml();
    without.replace(
        without.find("[functions.checkout.versions.3]"),
        std::string("[functions.checkout.versions.3]\nendpoints = [\"127.0.0.1:7003\"]\n").size(),
        "");
    without.replace(without.find("\"3\" = 100"), 9, "\"4\" = 100");
    check_immutable(load(without), st, &errors);
    CHECK(errors.empty());
    check_immutable(load(checkout_toml("max_concurrency = 1\n")), st, &errors);
    CHECK(errors.size() == 1);
  }
}

TEST_CASE("version numbers are never reused") {
  config::Config file = load(checkout_toml());
  FunctionState fs;
  CHECK(next_version_number(file.functions[0], fs) == 5);
  fs.fingerprints[9] = {};  // published once, since removed
  CHECK(next_version_number(file.functions[0], fs) == 10);
  fs.next_number = 12;
  CHECK(next_version_number(file.functions[0], fs) == 12);
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
