// Tests for the state directory store: atomic documents, versions that refuse a stale writer,
// audit records with one sequence, and the repair of a crash between a write and its audit.
#include "control/local_store.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "control/state.h"

namespace sluice::control {
namespace {

using nlohmann::json;

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/sluice-store-unit-XXXXXX";
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

// The records of audit.jsonl as JSON, skipping lines that do not parse.
std::vector<json> audit_lines(const std::string& path) {
  std::istringstream lines(read(path));
  std::string line;
  std::vector<json> out;
  while (std::getline(lines, line)) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(j);
  }
  return out;
}

// audit.jsonl without its last `n` lines: what a crash after the documents' rename and before
// the append leaves.
std::string without_last_lines(const std::string& text, size_t n) {
  size_t end = text.size();
  for (size_t i = 0; i < n; ++i) end = text.rfind('\n', end - 2) + 1;
  return text.substr(0, end);
}

// The State as the Control keeps it in a store: the "state" document.
bool load_state(LocalStore& store, State& out, std::string* error) {
  out = State{};
  if (!store.load(error, nullptr)) return false;
  const Document d = store.get(kStateDoc);
  if (!d.unreadable.empty()) {
    *error = d.origin + ": " + d.unreadable;
    return false;
  }
  return d.value.is_null() || from_json(d.value, out, error);
}

bool commit_state(LocalStore& store, const State& s, std::vector<AuditEntry> audits,
                  std::string* error) {
  CommitResult r = store.commit_now(
      {{{kStateDoc, to_json(s), store.get(kStateDoc).version}}, std::move(audits)});
  if (!r.committed()) *error = r.error;
  return r.committed();
}

AuditEntry shift_event(const std::string& event) {
  AuditEntry e{"shift", "shift", "checkout", "prod", json{{"3", 100}}, json{{"3", 90}, {"4", 10}}};
  e.extra = {{"event", event}};
  return e;
}

}  // namespace

TEST_CASE("the store writes state atomically and reads it back") {
  TempDir tmp;
  LocalStore store(tmp.path + "/state");
  State s;
  std::string error;
  REQUIRE(load_state(store, s, &error));  // creates the directory; no file yet: empty state
  CHECK(s.functions.empty());
  CHECK(store.get(kStateDoc).version == 0);
  s.functions["checkout"].next_number = 5;
  s.functions["checkout"].aliases["prod"].override_traffic = TrafficMap{{"4", 100}};
  REQUIRE(commit_state(store, s, {}, &error));
  CHECK(list_dir(tmp.path + "/state") == std::vector<std::string>{"state.json"});
  State back;
  REQUIRE(load_state(store, back, &error));
  CHECK(back == s);

  SUBCASE("a leftover temp file from a crash does not affect the state") {
    std::ofstream(tmp.path + "/state/state.json.tmp") << "{\"format\": 1, \"functi";
    State again;
    REQUIRE(load_state(store, again, &error));
    CHECK(again == s);
    s.functions["checkout"].next_number = 6;
    REQUIRE(commit_state(store, s, {}, &error));  // replaces the stale temp file, renames it away
    CHECK(list_dir(tmp.path + "/state") == std::vector<std::string>{"state.json"});
  }
  SUBCASE("audit lines are appended one JSON object per line") {
    REQUIRE(commit_state(store, s,
                         {{"api:127.0.0.1", "api", "checkout", "prod", traffic_json({{"3", 100}}),
                           traffic_json({{"3", 90}, {"4", 10}})},
                          {"file", "file", "checkout", "prod", traffic_json({{"3", 90}, {"4", 10}}),
                           traffic_json({{"3", 100}})}},
                         &error));
    std::vector<json> docs = audit_lines(tmp.path + "/state/audit.jsonl");
    REQUIRE(docs.size() == 2);
    CHECK(docs[0]["cause"] == "api");
    CHECK(docs[0]["actor"] == "api:127.0.0.1");
    CHECK(docs[0]["old"] == json{{"3", 100}});
    CHECK(docs[0]["new"] == json{{"3", 90}, {"4", 10}});
    CHECK(docs[1]["cause"] == "file");
    CHECK(docs[1]["time"].get<std::string>().size() == 24);
    CHECK(docs[0]["seq"] == 1);
    CHECK(docs[1]["seq"] == 2);
  }
  SUBCASE("an unparsable state file stops the load with its path") {
    std::ofstream(tmp.path + "/state/state.json") << "{not json";
    State broken;
    CHECK_FALSE(load_state(store, broken, &error));
    CHECK(error.find("state.json") != std::string::npos);
    // The store reads it as there but unreadable; what to do is the reader's call.
    const Document d = store.get(kStateDoc);
    CHECK(d.version == 1);
    CHECK(d.unreadable == "not valid JSON");
    CHECK(d.origin == tmp.path + "/state/state.json");
  }
}

TEST_CASE("a write on a stale version is refused and changes nothing") {
  TempDir tmp;
  LocalStore store(tmp.path);
  std::string error;
  REQUIRE(store.load(&error, nullptr));
  CommitResult first = store.commit_now({{{kStateDoc, {{"n", 1}}, 0}}, {shift_event("a")}});
  REQUIRE(first.committed());
  CHECK(first.versions.at(kStateDoc) == 1);
  CHECK(first.first_seq == 1);
  const std::string state_text = read(tmp.path + "/state.json");
  const std::string audit_text = read(tmp.path + "/audit.jsonl");

  // A second writer read version 0 (before the first commit): it must not overwrite.
  CommitResult stale = store.commit_now({{{kStateDoc, {{"n", 2}}, 0}}, {shift_event("b")}});
  CHECK(stale.status == CommitResult::Status::kConflict);
  CHECK(stale.conflict_key == kStateDoc);
  CHECK(stale.error == "document state is at version 1, not 0 as read");
  CHECK(read(tmp.path + "/state.json") == state_text);
  CHECK(read(tmp.path + "/audit.jsonl") == audit_text);
  CHECK(store.get(kStateDoc).value == json{{"n", 1}});

  SUBCASE("one stale document refuses the whole change") {
    CommitResult mixed =
        store.commit_now({{{kShiftsDoc, {{"s", 1}}, 0}, {kStateDoc, {{"n", 3}}, 0}}, {}});
    CHECK(mixed.status == CommitResult::Status::kConflict);
    CHECK(mixed.conflict_key == kStateDoc);
    CHECK(store.get(kShiftsDoc).version == 0);
    CHECK_FALSE(std::filesystem::exists(tmp.path + "/shifts.json"));
  }
  SUBCASE("the current version is accepted, and the refused record took no number") {
    CommitResult next = store.commit_now({{{kStateDoc, {{"n", 2}}, 1}}, {shift_event("b")}});
    REQUIRE(next.committed());
    CHECK(next.versions.at(kStateDoc) == 2);
    CHECK(next.first_seq == 2);
    CHECK(audit_lines(tmp.path + "/audit.jsonl").back()["seq"] == 2);
  }
  SUBCASE("a restart reads versions afresh: a file found is version 1") {
    LocalStore again(tmp.path);
    REQUIRE(again.load(&error, nullptr));
    CHECK(again.get(kStateDoc).version == 1);
    CHECK(again.get(kShiftsDoc).version == 0);
  }
}

TEST_CASE("a change whose state was written but whose audit record was not is audited at load") {
  TempDir tmp;
  const std::string dir = tmp.path + "/state";
  const std::string audit = dir + "/audit.jsonl";
  std::string error;
  State s;
  {
    LocalStore store(dir);
    REQUIRE(load_state(store, s, &error));
    for (int w : {10, 20, 30}) {
      s.functions["checkout"].aliases["prod"].override_traffic = TrafficMap{{"3", w}};
      REQUIRE(commit_state(
          store, s, {{"api:t", "api", "checkout", "prod", nullptr, traffic_json({{"3", w}})}},
          &error));
    }
  }
  REQUIRE(audit_lines(audit).size() == 3);
  // The process died after state.json's rename and before the append: the log lacks the last
  // record (what SIGKILL did to 2 of 30 applied changes).
  std::string text = read(audit);
  const std::string without_last = without_last_lines(text, 1);

  SUBCASE("the missing record is appended, once") {
    std::ofstream(audit, std::ios::trunc) << without_last;
    LocalStore again(dir);
    State back;
    REQUIRE(load_state(again, back, &error));
    CHECK(again.repaired() == 1);
    std::vector<json> lines = audit_lines(audit);
    REQUIRE(lines.size() == 3);
    CHECK(lines[2]["seq"] == 3);
    CHECK(lines[2]["new"] == json{{"3", 30}});
    REQUIRE(load_state(again, back, &error));
    CHECK(again.repaired() == 0);
    CHECK(audit_lines(audit).size() == 3);
    // Numbering continues after the repaired record.
    REQUIRE(commit_state(again, back, {{"api:t", "api", "checkout", "prod", nullptr, nullptr}},
                         &error));
    CHECK(audit_lines(audit).back()["seq"] == 4);
  }
  SUBCASE("a torn last line is ended before the repair, and records without seq are skipped") {
    std::ofstream(audit, std::ios::trunc)
        << without_last << R"({"event":"shift step","seq_less":true})"
        << "\n"
        << R"({"seq":3,"time":"2026-)";
    LocalStore again(dir);
    State back;
    REQUIRE(load_state(again, back, &error));
    CHECK(again.repaired() == 1);
    std::vector<json> lines = audit_lines(audit);
    REQUIRE(lines.size() == 4);  // 2 records, the line without seq, the repaired record
    CHECK(lines[3]["seq"] == 3);
    CHECK(lines[3]["new"] == json{{"3", 30}});
  }
  SUBCASE("nothing is repeated when the log is complete") {
    LocalStore again(dir);
    State back;
    REQUIRE(load_state(again, back, &error));
    CHECK(again.repaired() == 0);
    CHECK(read(audit) == text);
  }
}

TEST_CASE("records carried by the shifts document are repaired too, in sequence order") {
  TempDir tmp;
  const std::string audit = tmp.path + "/audit.jsonl";
  std::string error;
  {
    LocalStore store(tmp.path);
    REQUIRE(store.load(&error, nullptr));
    // A shift step: the Control's alias change (state), then the shift's decision (shifts).
    REQUIRE(store
                .commit_now({{{kStateDoc, {{"n", 1}}, 0}},
                             {{"shift", "shift", "checkout", "prod", nullptr, nullptr}}})
                .committed());
    CommitResult shift =
        store.commit_now({{{kShiftsDoc, {{"shifts", json::array()}}, 0}}, {shift_event("start")}});
    REQUIRE(shift.committed());
    CHECK(shift.first_seq == 2);
  }
  const std::string text = read(audit);
  REQUIRE(audit_lines(audit).size() == 2);
  // shifts.json carries its record; the state document no longer has to.
  json shifts_file = json::parse(read(tmp.path + "/shifts.json"));
  CHECK(shifts_file["audit"]["last_seq"] == 2);
  REQUIRE(shifts_file["audit"]["unaudited"].size() == 1);
  CHECK(shifts_file["audit"]["unaudited"][0]["event"] == "start");

  SUBCASE("a crash before the shift's append loses nothing") {
    std::ofstream(audit, std::ios::trunc) << without_last_lines(text, 1);
    LocalStore again(tmp.path);
    REQUIRE(again.load(&error, nullptr));
    CHECK(again.repaired() == 1);
    std::vector<json> lines = audit_lines(audit);
    REQUIRE(lines.size() == 2);
    CHECK(lines[1]["seq"] == 2);
    CHECK(lines[1]["event"] == "start");
    // The document reads back without the store's bookkeeping.
    CHECK(again.get(kShiftsDoc).value == json{{"shifts", json::array()}});
  }
  SUBCASE("records both documents carry go out once each, oldest first") {
    std::ofstream(audit, std::ios::trunc) << without_last_lines(text, 2);
    LocalStore again(tmp.path);
    REQUIRE(again.load(&error, nullptr));
    CHECK(again.repaired() == 2);
    std::vector<json> lines = audit_lines(audit);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0]["seq"] == 1);
    CHECK(lines[0]["cause"] == "shift");
    CHECK(lines[1]["seq"] == 2);
    CHECK(lines[1]["event"] == "start");
    CommitResult next = again.commit_now({{}, {shift_event("advance")}});
    REQUIRE(next.committed());
    CHECK(next.first_seq == 3);
  }
}

TEST_CASE("records the log could not take stay with the next document written") {
  TempDir tmp;
  std::string error;
  LocalStore store(tmp.path);
  REQUIRE(store.load(&error, nullptr));
  // A directory where the log should be: every append fails, every document write succeeds.
  std::filesystem::create_directory(tmp.path + "/audit.jsonl");
  CommitResult r = store.commit_now({{{kStateDoc, {{"n", 1}}, 0}}, {shift_event("start")}});
  REQUIRE(r.committed());
  CHECK(r.audit_lag.find("cannot open") != std::string::npos);
  r = store.commit_now({{{kShiftsDoc, {{"shifts", json::array()}}, 0}}, {shift_event("advance")}});
  REQUIRE(r.committed());
  json carried = json::parse(read(tmp.path + "/shifts.json"))["audit"]["unaudited"];
  REQUIRE(carried.size() == 2);
  CHECK(carried[0]["seq"] == 1);
  CHECK(carried[1]["seq"] == 2);

  SUBCASE("an audit-only change with nothing to carry it fails and takes no number") {
    CommitResult lone = store.commit_now({{}, {shift_event("resume")}});
    CHECK(lone.status == CommitResult::Status::kFailed);
    r = store.commit_now({{{kShiftsDoc, {{"shifts", json::array()}}, 1}}, {shift_event("end")}});
    REQUIRE(r.committed());
    carried = json::parse(read(tmp.path + "/shifts.json"))["audit"]["unaudited"];
    REQUIRE(carried.size() == 3);
    CHECK(carried[2]["seq"] == 3);
    CHECK(carried[2]["event"] == "end");
  }
  SUBCASE("once the log is writable the next start appends them") {
    std::filesystem::remove(tmp.path + "/audit.jsonl");
    LocalStore again(tmp.path);
    REQUIRE(again.load(&error, nullptr));
    CHECK(again.repaired() == 2);
    std::vector<json> lines = audit_lines(tmp.path + "/audit.jsonl");
    REQUIRE(lines.size() == 2);
    CHECK(lines[1]["event"] == "advance");
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

}  // namespace sluice::control
