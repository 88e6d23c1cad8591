// Tests for the Control over its store: a refused commit (409 conflict, 503 store-unavailable)
// changes nothing and names the alias, an answer waits for a store that commits later, a change
// another writer committed becomes a new snapshot, and the store a config asks for.
#include <doctest/doctest.h>

#include <fstream>
#include <memory>
#include <string>

#include "control/control.h"
#include "control_fixture.h"
#include "fake_store.h"

namespace sluice::control {
namespace {

using nlohmann::json;
using test::FakeStore;
using test::Fixture;

// checkout:prod's traffic in the running snapshot, as "3=90 4=10".
std::string traffic(const Control& c) {
  return traffic_text(traffic_of(c.table()->config().functions.at(0).aliases.at(0)));
}

const json kSplit = {{"traffic", {{"3", 90}, {"4", 10}}}};

// A Control over a FakeStore, initialised and publishing into the fixture.
struct Faked {
  Fixture fx;
  Control c{fx.path};
  FakeStore* store = nullptr;  // owned by c

  Faked() {
    auto owned = std::make_unique<FakeStore>();
    store = owned.get();
    c.set_store(std::move(owned));
    REQUIRE(c.init());
    fx.attach(c);
  }
};

}  // namespace

TEST_CASE(
    "a write the store refuses as a conflict answers 409 naming the alias, changing nothing") {
  Faked f;
  f.store->refuse_next = CommitResult::Status::kConflict;
  ApiResult r = f.c.set_alias("checkout", "prod", kSplit, "api:t");
  CHECK(r.status == 409);
  CHECK(r.body["code"] == "conflict");
  CHECK(r.body["field"] == "alias");
  CHECK(r.body["alias"] == "checkout:prod");
  CHECK(r.body["error"] ==
        "alias checkout:prod was not changed: another writer changed the state since this sluice "
        "read it (document state is at version 7, not 1 as read); read it again and retry");
  CHECK(f.fx.publishes == 0);
  CHECK(traffic(f.c) == "3=100");
  CHECK(f.c.state().functions.at("checkout").aliases.count("prod") == 0);
  CHECK(f.store->memory.audit_log().empty());

  SUBCASE("the next write goes through") {
    r = f.c.set_alias("checkout", "prod", kSplit, "api:t");
    CHECK(r.status == 200);
    CHECK(traffic(f.c) == "3=90 4=10");
    CHECK(f.fx.publishes == 1);
  }
  SUBCASE("a rollback and a publish are refused the same way, each naming its subject") {
    REQUIRE(f.c.set_alias("checkout", "prod", kSplit, "api:t").status == 200);
    f.store->refuse_next = CommitResult::Status::kConflict;
    r = f.c.rollback("checkout", "prod", "api:t");
    CHECK(r.status == 409);
    CHECK(r.body["alias"] == "checkout:prod");
    CHECK(traffic(f.c) == "3=90 4=10");
    f.store->refuse_next = CommitResult::Status::kConflict;
    r = f.c.publish_version("checkout", "api:t");
    CHECK(r.status == 409);
    CHECK(r.body["code"] == "conflict");
    CHECK(r.body["field"] == "function");
    CHECK(r.body["function"] == "checkout");
    CHECK(f.c.state().functions.at("checkout").published.empty());
  }
}

TEST_CASE("a write while the store is unavailable answers 503 store-unavailable") {
  Faked f;
  f.store->refuse_next = CommitResult::Status::kUnavailable;
  ApiResult r = f.c.set_alias("checkout", "prod", kSplit, "api:t");
  CHECK(r.status == 503);
  CHECK(r.body["code"] == "store-unavailable");
  CHECK(r.body["alias"] == "checkout:prod");
  CHECK(r.body["error"] ==
        "alias checkout:prod was not changed: the state store is unavailable (no etcd member "
        "answered within 5000ms); retry when it is back");
  CHECK(f.fx.publishes == 0);
  CHECK(traffic(f.c) == "3=100");

  SUBCASE("a reload the store cannot take keeps the running config") {
    f.fx.write(f.fx.toml("", "\"4\" = 100"));
    f.store->refuse_next = CommitResult::Status::kUnavailable;
    r = f.c.reload("api");
    CHECK(r.status == 400);
    CHECK(r.body["error"].get<std::string>().find("the state store is unavailable") !=
          std::string::npos);
    CHECK(traffic(f.c) == "3=100");
    CHECK(f.c.reloads_error() == 1);
    CHECK(f.c.reload("api").status == 200);
    CHECK(traffic(f.c) == "4=100");
  }
}

TEST_CASE("an answer waits until a store that commits later has committed") {
  Faked f;
  const Version at_start = f.c.state_version();  // init() recorded the file's fingerprints
  REQUIRE(at_start == f.store->get(kStateDoc).version);
  f.store->hold = true;
  std::optional<ApiResult> answer;
  f.c.set_alias("checkout", "prod", kSplit, "api:t", "api",
                [&](ApiResult r) { answer = std::move(r); });
  CHECK_FALSE(answer);
  REQUIRE(f.store->held() == 1);
  CHECK(f.fx.publishes == 0);  // not live before it is durable
  CHECK(traffic(f.c) == "3=100");
  f.store->complete();
  REQUIRE(answer);
  CHECK(answer->status == 200);
  CHECK(answer->body["new"] == json{{"3", 90}, {"4", 10}});
  CHECK(f.fx.publishes == 1);
  CHECK(traffic(f.c) == "3=90 4=10");
  CHECK(f.c.state_version() == at_start + 1);

  SUBCASE("the form without a callback answers 202, and the change applies when committed") {
    ApiResult r = f.c.rollback("checkout", "prod", "api:t");
    CHECK(r.status == 202);
    CHECK(r.body["result"] == "committing");
    CHECK(traffic(f.c) == "3=90 4=10");
    f.store->complete();
    CHECK(traffic(f.c) == "3=100");
    CHECK(f.c.state_version() == at_start + 2);
  }
}

TEST_CASE("a state another writer committed becomes the running snapshot") {
  Faked f;
  State theirs;
  AliasState& as = theirs.functions["checkout"].aliases["prod"];
  as.override_traffic = TrafficMap{{"4", 100}};
  as.override_file_hash = alias_file_hash(f.c.file_config().functions.at(0).aliases.at(0));
  as.history = {{{"3", 100}}};
  const Version before = f.c.state_version();
  f.store->change_elsewhere(kStateDoc, to_json(theirs));
  CHECK(f.fx.publishes == 1);
  CHECK(traffic(f.c) == "4=100");
  CHECK(f.c.state_version() == before + 1);
  CHECK(f.c.state() == theirs);
  // This sluice's next write builds on it (and compares on its version).
  ApiResult r = f.c.rollback("checkout", "prod", "api:t");
  CHECK(r.status == 200);
  CHECK(traffic(f.c) == "3=100");

  SUBCASE("one it cannot read is not applied, and the next write here conflicts, not overwrites") {
    f.store->change_elsewhere(kStateDoc, {{"format", 9}});
    CHECK(f.fx.publishes == 2);  // only the rollback's
    CHECK(traffic(f.c) == "3=100");
    r = f.c.set_alias("checkout", "prod", kSplit, "api:t");
    CHECK(r.status == 409);
    CHECK(f.store->get(kStateDoc).value == json{{"format", 9}});
  }
}

TEST_CASE("the state directory is a local store, without one the state stays in memory") {
  Fixture fx;
  Control c(fx.path);
  REQUIRE(c.init());
  CHECK(std::string(c.store().kind()) == "local");
  CHECK(c.status(nullptr)["state"]["dir"] == fx.dir + "/state");
  CHECK(c.status(nullptr)["state"]["durable"] == true);

  SUBCASE("no [state] dir") {
    std::string text = fx.toml();
    text.erase(text.find("[state]"), text.find("[functions") - text.find("[state]"));
    fx.write(text);
    Control mem(fx.path);
    REQUIRE(mem.init());
    CHECK(std::string(mem.store().kind()) == "memory");
    CHECK(mem.status(nullptr)["state"]["durable"] == false);
    CHECK(mem.set_alias("checkout", "prod", kSplit, "api:t").status == 200);
    CHECK(traffic(mem) == "3=90 4=10");
  }
  SUBCASE("a state.json that does not parse stops the start") {
    std::ofstream(fx.dir + "/state/state.json") << "{not json";
    Control broken(fx.path);
    CHECK_FALSE(broken.init());
  }
}

}  // namespace sluice::control
