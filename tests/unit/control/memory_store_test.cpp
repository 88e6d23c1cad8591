// Tests for the in-memory store: versions per document, stale writers refused, one audit
// sequence, a bounded audit log.
#include "control/memory_store.h"

#include <doctest/doctest.h>

namespace sluice::control {
namespace {

using nlohmann::json;

AuditEntry record(const std::string& actor) {
  return {actor, "api", "checkout", "prod", nullptr, json{{"3", 100}}};
}

}  // namespace

TEST_CASE("a memory store versions each document and refuses a stale writer") {
  MemoryStore store;
  std::string error;
  REQUIRE(store.load(&error, nullptr));
  CHECK_FALSE(store.durable());
  CHECK(store.describe()["note"] ==
        "no [state] dir: API changes are kept in memory only and lost on restart");
  CHECK(store.get(kStateDoc).version == 0);
  CHECK(store.get(kStateDoc).value.is_null());

  std::optional<CommitResult> answer;
  store.commit({{{kStateDoc, {{"n", 1}}, 0}}, {record("a")}},
               [&](CommitResult r) { answer = std::move(r); });
  REQUIRE(answer);  // before commit() returned
  REQUIRE(answer->committed());
  CHECK(answer->versions.at(kStateDoc) == 1);
  CHECK(store.get(kStateDoc).value == json{{"n", 1}});

  CommitResult stale = store.commit_now({{{kStateDoc, {{"n", 2}}, 0}}, {record("b")}});
  CHECK(stale.status == CommitResult::Status::kConflict);
  CHECK(stale.conflict_key == kStateDoc);
  CHECK(store.get(kStateDoc).value == json{{"n", 1}});
  CHECK(store.audit_log().size() == 1);

  CommitResult shifts =
      store.commit_now({{{kShiftsDoc, {{"shifts", json::array()}}, 0}}, {record("c")}});
  REQUIRE(shifts.committed());
  CHECK(shifts.versions.at(kShiftsDoc) == 1);
  CHECK(shifts.first_seq == 2);  // one sequence over every document
  REQUIRE(store.audit_log().size() == 2);
  CHECK(store.audit_log()[0]["actor"] == "a");
  CHECK(store.audit_log()[1]["actor"] == "c");
  CHECK(store.audit_log()[1]["seq"] == 2);
}

TEST_CASE("a memory store keeps only the newest audit records") {
  MemoryStore store;
  for (size_t i = 0; i < MemoryStore::kAuditKept + 5; ++i)
    REQUIRE(store.commit_now({{}, {record("r" + std::to_string(i))}}).committed());
  CHECK(store.audit_log().size() == MemoryStore::kAuditKept);
  CHECK(store.audit_log().front()["seq"] == 6);
  CHECK(store.audit_log().back()["seq"] == MemoryStore::kAuditKept + 5);
}

}  // namespace sluice::control
