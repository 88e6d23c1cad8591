// EtcdStore (proxy/control/etcd_store.h) in-process against a real 3-member etcd cluster: two
// stores on one prefix see each other's commits and never their own, compare-and-swap conflicts,
// the audit sequence shared by concurrent writers, quorum loss and recovery, start-up calls made
// long after load(), starting from the local snapshot while etcd is down, a watch below a
// compaction, leadership (election, drop, graceful detach, a holder that stops answering) and
// published figures.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/etcd_codec.h"
#include "control/etcd_store.h"
#include "etcd_test.h"
#include "net/tls_context.h"
#include "tls_test_certs.h"

namespace sluice::e2e {

using control::AuditEntry;
using control::Change;
using control::CommitResult;
using control::Document;
using control::EtcdStore;
using control::EtcdStoreOptions;
using control::Put;
using nlohmann::json;

namespace {

// Upper bounds leave room for a loaded 2-core machine (three etcd members fsyncing).
constexpr long kSlackMs = 1500;

// A private temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sluice-store-test-XXXXXX";
    const char* made = ::mkdtemp(tmpl);
    REQUIRE(made != nullptr);
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

EtcdStoreOptions store_options(const EtcdCluster& cluster, const std::string& prefix,
                               const std::string& node, std::string snapshot_path = "") {
  EtcdStoreOptions o;
  o.endpoints = cluster.client_urls();
  o.prefix = prefix;
  o.node = node;
  o.timeout_ms = 1000;
  o.lease_ttl_ms = 2000;
  o.snapshot_path = std::move(snapshot_path);
  return o;
}

// A store that has read the prefix (load() must succeed).
std::unique_ptr<EtcdStore> loaded_store(EtcdStoreOptions options) {
  auto store = std::make_unique<EtcdStore>(std::move(options));
  std::string error;
  std::vector<std::string> notes;
  REQUIRE_MESSAGE(store->load(&error, &notes), error);
  CHECK(store->up());
  return store;
}

// What load() says when it must refuse (it must).
std::string load_refusal(EtcdStoreOptions options) {
  EtcdStore store(std::move(options));
  std::string error;
  std::vector<std::string> notes;
  CHECK_FALSE(store.load(&error, &notes));
  return error;
}

// load() and attach() to `loop`.
std::unique_ptr<EtcdStore> attached_store(TestLoop& loop, EtcdStoreOptions options) {
  auto store = loaded_store(std::move(options));
  REQUIRE(store->attach(loop.get()) == 0);
  return store;
}

AuditEntry audit(const std::string& function) {
  AuditEntry e;
  e.actor = "test";
  e.cause = "api";
  e.function = function;
  e.alias = "checkout";
  e.old_value = nullptr;
  e.new_value = function;
  return e;
}

Change put_change(const std::string& key, json value, control::Version expected, int audits = 0) {
  Change c;
  c.puts.push_back(Put{key, std::move(value), expected});
  for (int i = 0; i < audits; ++i) c.audits.push_back(audit(key + "-" + std::to_string(i)));
  return c;
}

// A commit before attach(): answered before commit() returns.
CommitResult commit_now(EtcdStore& store, Change change) {
  auto out = std::make_shared<std::optional<CommitResult>>();
  store.commit(std::move(change), [out](CommitResult r) { *out = std::move(r); });
  REQUIRE_MESSAGE(out->has_value(), "a commit before attach() returned before answering");
  return std::move(**out);
}

// Starts a commit on an attached store; the result lands in the returned slot.
std::shared_ptr<std::optional<CommitResult>> commit_async(EtcdStore& store, Change change) {
  auto out = std::make_shared<std::optional<CommitResult>>();
  store.commit(std::move(change), [out](CommitResult r) { *out = std::move(r); });
  return out;
}

// A commit on an attached store, awaited on `loop`.
CommitResult commit_on(TestLoop& loop, EtcdStore& store, Change change, int timeout_ms = 10000) {
  auto out = commit_async(store, std::move(change));
  REQUIRE_MESSAGE(loop.run_until([&] { return out->has_value(); }, timeout_ms),
                  "no commit answer within " << timeout_ms << " ms");
  return std::move(**out);
}

std::string status_name(CommitResult::Status s) {
  switch (s) {
    case CommitResult::Status::kCommitted:
      return "committed";
    case CommitResult::Status::kConflict:
      return "conflict";
    case CommitResult::Status::kUnavailable:
      return "unavailable";
    case CommitResult::Status::kFailed:
      return "failed";
  }
  return "?";
}

// Every key/value under `prefix`, read through the gateway of the first member that answers
// (not through the client under test).
std::map<std::string, std::string> raw_range(EtcdCluster& cluster, const std::string& prefix) {
  const json body = {{"key", etcd::base64_encode(prefix)},
                     {"range_end", etcd::base64_encode(etcd::prefix_range_end(prefix))}};
  for (size_t i = 0; i < cluster.size(); ++i) {
    if (!cluster.running(i)) continue;
    std::optional<std::string> answer = cluster.post(i, "/v3/kv/range", body.dump());
    if (!answer) continue;
    json j = json::parse(*answer, nullptr, false);
    REQUIRE(j.is_object());
    std::map<std::string, std::string> out;
    for (const json& kv : j.value("kvs", json::array())) {
      std::optional<std::string> k = etcd::base64_decode(kv.value("key", ""));
      std::optional<std::string> v = etcd::base64_decode(kv.value("value", ""));
      REQUIRE(k);
      REQUIRE(v);
      out[*k] = *v;
    }
    return out;
  }
  FAIL("no etcd member answered a range of " << prefix);
  return {};
}

// Counts a store's watcher calls and keeps the documents they carried.
struct WatchLog {
  std::vector<Document> seen;
  control::Store::Watcher watcher() {
    return [this](const Document& d) { seen.push_back(d); };
  }
};

}  // namespace

TEST_CASE("store: two stores on one prefix see each other's commits and never their own") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  TestLoop loop;
  WatchLog a_seen, b_seen;  // outlive the stores
  auto a = attached_store(loop, store_options(cluster, "/t-see/", "a"));
  auto b = attached_store(loop, store_options(cluster, "/t-see/", "b"));
  a->watch("state", a_seen.watcher());
  b->watch("state", b_seen.watcher());
  CHECK(a->get("state").version == 0);
  CHECK(a->get("state").value.is_null());

  CommitResult r = commit_on(loop, *a, put_change("state", {{"n", 1}}, 0));
  REQUIRE_MESSAGE(r.committed(), status_name(r.status) << ": " << r.error);
  REQUIRE(r.versions.count("state") == 1);
  const control::Version v1 = r.versions["state"];
  CHECK(v1 > 0);
  CHECK(r.first_seq == 0);  // no audit records
  CHECK(r.last_seq == 0);
  CHECK(a->get("state").version == v1);
  CHECK(a->get("state").value == json{{"n", 1}});
  CHECK(a->revision() >= static_cast<int64_t>(v1));

  REQUIRE_MESSAGE(loop.run_until([&] { return !b_seen.seen.empty(); }, 5000),
                  "B's watcher was not called within 5 s");
  REQUIRE(b_seen.seen.size() == 1);
  CHECK(b_seen.seen[0].key == "state");
  CHECK(b_seen.seen[0].version == v1);
  CHECK(b_seen.seen[0].value == json{{"n", 1}});
  CHECK(b_seen.seen[0].unreadable.empty());
  CHECK(b->get("state").version == v1);
  CHECK(b->get("state").value == json{{"n", 1}});
  CHECK(b->revision() >= static_cast<int64_t>(v1));

  // And the other way round, on the version B now holds.
  CommitResult r2 = commit_on(loop, *b, put_change("state", {{"n", 2}}, v1));
  REQUIRE_MESSAGE(r2.committed(), status_name(r2.status) << ": " << r2.error);
  const control::Version v2 = r2.versions["state"];
  CHECK(v2 > v1);
  REQUIRE(loop.run_until([&] { return !a_seen.seen.empty(); }, 5000));
  CHECK(a_seen.seen.back().version == v2);
  CHECK(a_seen.seen.back().value == json{{"n", 2}});

  // Own commits never come back through the watch: give both watches time to deliver them.
  loop.run_for(500);
  CHECK(a_seen.seen.size() == 1);  // only B's commit
  CHECK(b_seen.seen.size() == 1);  // only A's commit
  CHECK(a->up());
  CHECK(b->up());
  CHECK(a->describe()["up"] == true);
  CHECK(a->describe()["node"] == "a");
}

TEST_CASE("store: a commit on a version another writer moved is a conflict and writes nothing") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  std::optional<int64_t> seeded = cluster.put("/t-conflict/docs/state", R"({"n":0})");
  REQUIRE(seeded);
  TestLoop loop;
  auto a = attached_store(loop, store_options(cluster, "/t-conflict/", "a"));
  auto b = attached_store(loop, store_options(cluster, "/t-conflict/", "b"));
  const control::Version v = a->get("state").version;
  CHECK(v == static_cast<control::Version>(*seeded));
  CHECK(b->get("state").version == v);
  CHECK(b->get("state").value == json{{"n", 0}});

  CommitResult ra = commit_on(loop, *a, put_change("state", {{"n", "a"}}, v, 1));
  REQUIRE_MESSAGE(ra.committed(), status_name(ra.status) << ": " << ra.error);
  const control::Version va = ra.versions["state"];

  CommitResult rb = commit_on(loop, *b, put_change("state", {{"n", "b"}}, v, 1));
  CHECK_MESSAGE(rb.status == CommitResult::Status::kConflict, status_name(rb.status)
                                                                  << ": " << rb.error);
  CHECK(rb.conflict_key == "state");
  CHECK(!rb.error.empty());
  CHECK(rb.versions.empty());
  CHECK(rb.first_seq == 0);

  // etcd holds A's document and A's one audit record, nothing of B's.
  auto kv = raw_range(cluster, "/t-conflict/");
  REQUIRE(kv.count("/t-conflict/docs/state") == 1);
  CHECK(json::parse(kv["/t-conflict/docs/state"]) == json{{"n", "a"}});
  CHECK(kv["/t-conflict/audit_seq"] == "1");
  CHECK(kv.count("/t-conflict/audit/0000000000000001") == 1);
  CHECK(kv.count("/t-conflict/audit/0000000000000002") == 0);

  // A third store reads the same; B catches up through its watch.
  auto c = loaded_store(store_options(cluster, "/t-conflict/", "c"));
  CHECK(c->get("state").value == json{{"n", "a"}});
  CHECK(c->get("state").version == va);
  REQUIRE(loop.run_until([&] { return b->get("state").version == va; }, 5000));
  CHECK(b->get("state").value == json{{"n", "a"}});

  // B, on the version it now holds, commits.
  CommitResult rb2 = commit_on(loop, *b, put_change("state", {{"n", "b"}}, va, 1));
  CHECK_MESSAGE(rb2.committed(), status_name(rb2.status) << ": " << rb2.error);
  CHECK(rb2.first_seq == 2);
}

TEST_CASE("store: concurrent audited changes of different documents both commit, one sequence") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  TestLoop loop;
  const std::string prefix = "/t-audit/";
  auto a = attached_store(loop, store_options(cluster, prefix, "a"));
  auto b = attached_store(loop, store_options(cluster, prefix, "b"));

  // Both on the wire at once, both having read audit_seq 0.
  auto ra = commit_async(*a, put_change("state", {{"n", 1}}, 0, 2));
  auto rb = commit_async(*b, put_change("shifts", {{"s", 1}}, 0, 1));
  REQUIRE(loop.run_until([&] { return ra->has_value() && rb->has_value(); }, 15000));
  const CommitResult& A = **ra;
  const CommitResult& B = **rb;
  REQUIRE_MESSAGE(A.committed(), status_name(A.status) << ": " << A.error);
  REQUIRE_MESSAGE(B.committed(), status_name(B.status) << ": " << B.error);
  CHECK(A.last_seq - A.first_seq == 1);  // two records
  CHECK(B.last_seq == B.first_seq);      // one record
  // 1..3 without a gap or an overlap: either A took 1-2 and B 3, or B took 1 and A 2-3.
  const bool a_first = A.first_seq == 1 && A.last_seq == 2 && B.first_seq == 3;
  const bool b_first = B.first_seq == 1 && A.first_seq == 2 && A.last_seq == 3;
  CHECK_MESSAGE((a_first || b_first), "A " << A.first_seq << ".." << A.last_seq << ", B "
                                           << B.first_seq << ".." << B.last_seq);

  auto kv = raw_range(cluster, prefix);
  CHECK(kv[prefix + "audit_seq"] == "3");
  std::map<uint64_t, json> records;
  for (const auto& [k, v] : kv)
    if (k.rfind(prefix + "audit/", 0) == 0)
      records[std::stoull(k.substr(prefix.size() + 6))] = json::parse(v, nullptr, false);
  REQUIRE(records.size() == 3);
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    REQUIRE(records.count(seq) == 1);
    CHECK(records[seq].value("seq", uint64_t{0}) == seq);
    const bool of_a = seq >= A.first_seq && seq <= A.last_seq;
    CHECK(records[seq].value("function", "").rfind(of_a ? "state-" : "shifts-", 0) == 0);
  }
  CHECK(json::parse(kv[prefix + "docs/state"]) == json{{"n", 1}});
  CHECK(json::parse(kv[prefix + "docs/shifts"]) == json{{"s", 1}});

  // Each store follows the counter: the next record of either is 4.
  loop.run_for(300);
  CommitResult next =
      commit_on(loop, *b, put_change("shifts", {{"s", 2}}, B.versions.at("shifts"), 1));
  REQUIRE_MESSAGE(next.committed(), status_name(next.status) << ": " << next.error);
  CHECK(next.first_seq == 4);
  CommitResult after =
      commit_on(loop, *a, put_change("state", {{"n", 2}}, A.versions.at("state"), 1));
  REQUIRE_MESSAGE(after.committed(), status_name(after.status) << ": " << after.error);
  CHECK(after.first_seq == 5);
}

TEST_CASE("store: without quorum a commit is unavailable in time, and after recovery one commits") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  TestLoop loop;
  auto a = attached_store(loop, store_options(cluster, "/t-quorum/", "a"));
  CommitResult first = commit_on(loop, *a, put_change("state", {{"n", 1}}, 0));
  REQUIRE_MESSAGE(first.committed(), status_name(first.status) << ": " << first.error);
  const control::Version v1 = first.versions["state"];
  REQUIRE(loop.run_until([&] { return a->lease() != 0; }, 5000));

  // Members 0 and 1: the store's watch, on the first endpoint, has to move to member 2, which
  // is up but has no leader.
  REQUIRE(cluster.kill(0));
  REQUIRE(cluster.kill(1));
  uv_update_time(loop.get());  // the test blocked the loop's thread; a real loop would not

  // up() as sampled after every loop turn from here on: once it said false, it must not say
  // true again while there is no quorum.
  bool was_up = a->up();
  int falls = 0, rises = 0;
  auto sample = [&] {
    const bool up = a->up();
    if (up != was_up) (up ? rises : falls) += 1;
    was_up = up;
  };

  // Two commits: the first may meet a kept-alive connection to a killed member (unavailable
  // at once), the second reaches member 2, which cannot commit (unavailable at its timeout).
  // Of another document than the one committed after recovery: a write that timed out may
  // still be applied once quorum is back.
  for (int i = 0; i < 2; ++i) {
    const double start = now_ms();
    auto lost_slot = commit_async(*a, put_change("shifts", {{"s", i}}, 0));
    REQUIRE(loop.run_until(
        [&] {
          sample();
          return lost_slot->has_value();
        },
        10000));
    const double took = now_ms() - start;
    const CommitResult& lost = **lost_slot;
    CHECK_MESSAGE(lost.status == CommitResult::Status::kUnavailable, status_name(lost.status)
                                                                         << ": " << lost.error);
    CHECK(!lost.error.empty());
    CHECK(lost.versions.empty());
    CHECK_MESSAGE(took <= 1000 + kSlackMs, "the commit answered after " << took << " ms");
    MESSAGE("unavailable commit " << i << " answered after " << took << " ms: " << lost.error);
  }

  REQUIRE_MESSAGE(loop.run_until(
                      [&] {
                        sample();
                        return !a->up();
                      },
                      5000),
                  "up() still true after 5 s");
  loop.run_until(
      [&] {
        sample();
        return false;
      },
      2500);
  CHECK(falls >= 1);
  CHECK_MESSAGE(rises == 0, "up() said true again " << rises << " time(s) while 2 of 3 members "
                                                    << "were dead (it went false " << falls
                                                    << " time(s))");
  CHECK(!a->up());
  json d = a->describe();
  CHECK(d["up"] == false);
  CHECK(d.contains("error"));
  CHECK(d.contains("down_since"));
  // The last applied state is still served.
  CHECK(a->get("state").version == v1);
  CHECK(a->get("state").value == json{{"n", 1}});

  REQUIRE(cluster.restart(0));
  REQUIRE(cluster.restart(1));
  REQUIRE_MESSAGE(cluster.wait_all_healthy(30000),
                  "member 0: " << cluster.log_tail(0) << "\nmember 1: " << cluster.log_tail(1));
  uv_update_time(loop.get());

  // A commit right after the cluster reports healthy may still meet an election in progress:
  // retry kUnavailable for a few seconds, nothing else.
  CommitResult again;
  int tries = 0;
  const double recovered = now_ms();
  do {
    ++tries;
    const double t0 = now_ms();
    again = commit_on(loop, *a, put_change("state", {{"n", 2}}, v1), 10000);
    MESSAGE("attempt " << tries << " at +" << t0 - recovered << " ms: " << status_name(again.status)
                       << " after " << now_ms() - t0 << " ms " << again.error);
    if (again.status != CommitResult::Status::kUnavailable) break;
    loop.run_for(200);
  } while (now_ms() - recovered < 5000);
  REQUIRE_MESSAGE(again.committed(), status_name(again.status) << ": " << again.error);
  CHECK(again.versions["state"] > v1);
  REQUIRE(loop.run_until([&] { return a->up(); }, 3000));
  CHECK(a->describe()["up"] == true);
  CHECK(!a->describe().contains("error"));
}

TEST_CASE("store: start-up calls long after load() still get their full timeout") {
  // Before attach(), load() and commit() run the store's private loop only while they block.
  // sluice does other blocking work between them (name resolution, TLS files: Control::init()),
  // and calls load() again after a start-up conflict: the store must not count that time
  // against a request's deadline.
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  const std::string prefix = "/t-startup/";
  auto a = loaded_store(store_options(cluster, prefix, "a"));  // timeout_ms 1000
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const double start = now_ms();
  CommitResult r = commit_now(*a, put_change("state", {{"n", 1}}, 0, 1));
  CHECK_MESSAGE(r.committed(),
                "a start-up commit 1.5 s after load(): " << status_name(r.status) << " after "
                                                         << now_ms() - start << " ms: " << r.error);
  CHECK(a->get("state").value == (r.committed() ? json{{"n", 1}} : json(nullptr)));
  if (!r.committed())
    MESSAGE("after the refused commit, etcd has the document: "
            << raw_range(cluster, prefix).count(prefix + "docs/state"));

  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::string error;
  std::vector<std::string> notes;
  const bool again = a->load(&error, &notes);
  CHECK_MESSAGE(again, "a second load() 1.5 s after the first: " << error);
  CHECK(a->up());
}

TEST_CASE("store: load() starts from the snapshot while etcd has no quorum, fails without one") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  TempDir dir;
  const std::string prefix = "/t-snap/";
  const std::string snapshot = dir.file("state/etcd-snapshot.json");  // the dir does not exist
  control::Version version = 0;
  int64_t revision = 0;
  {
    auto a = loaded_store(store_options(cluster, prefix, "a", snapshot));
    CommitResult r = commit_now(*a, put_change("state", {{"n", 5}}, 0, 1));
    REQUIRE_MESSAGE(r.committed(), status_name(r.status) << ": " << r.error);
    version = r.versions["state"];
    revision = a->revision();
    CHECK(revision >= static_cast<int64_t>(version));
  }
  REQUIRE(std::filesystem::exists(snapshot));

  REQUIRE(cluster.kill(1));
  REQUIRE(cluster.kill(2));

  {  // the snapshot stands in for etcd
    auto b = std::make_unique<EtcdStore>(store_options(cluster, prefix, "b", snapshot));
    std::string error;
    std::vector<std::string> notes;
    const double start = now_ms();
    const bool ok = b->load(&error, &notes);
    const double took = now_ms() - start;
    REQUIRE_MESSAGE(ok, error);
    CHECK_MESSAGE(took < 2000 + kSlackMs, "load() took " << took << " ms");
    CHECK(!b->up());
    CHECK(b->revision() == revision);
    CHECK(b->get("state").version == version);
    CHECK(b->get("state").value == json{{"n", 5}});
    REQUIRE(notes.size() == 1);
    CHECK(notes[0].find("snapshot") != std::string::npos);
    json d = b->describe();
    CHECK(d["up"] == false);
    CHECK(d["snapshot"] == snapshot);
  }
  {  // a snapshot path with no file there
    auto c = std::make_unique<EtcdStore>(
        store_options(cluster, prefix, "c", dir.file("elsewhere/none.json")));
    std::string error;
    std::vector<std::string> notes;
    CHECK(!c->load(&error, &notes));
    CHECK_MESSAGE(error.find("cannot be reached") != std::string::npos, error);
    CHECK_MESSAGE(error.find("no snapshot") != std::string::npos, error);
  }
  {  // no snapshot configured
    auto d = std::make_unique<EtcdStore>(store_options(cluster, prefix, "d"));
    std::string error;
    std::vector<std::string> notes;
    CHECK(!d->load(&error, &notes));
    CHECK_MESSAGE(error.find("cannot be reached") != std::string::npos, error);
    CHECK_MESSAGE(error.find("snapshot") != std::string::npos, error);
  }
  {  // a snapshot of another prefix is not used
    auto e = std::make_unique<EtcdStore>(store_options(cluster, "/t-other/", "e", snapshot));
    std::string error;
    std::vector<std::string> notes;
    CHECK(!e->load(&error, &notes));
    CHECK_MESSAGE(error.find("prefix") != std::string::npos, error);
  }
}

TEST_CASE("store: a watch below a compaction re-reads and hands on only what changed, once") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  const std::string prefix = "/t-compact/";
  auto w = loaded_store(store_options(cluster, prefix, "w"));
  CommitResult s0 = commit_now(*w, put_change("shifts", {{"s", 0}}, 0));
  REQUIRE(s0.committed());
  CommitResult st = commit_now(*w, put_change("state", {{"n", 0}}, 0));
  REQUIRE(st.committed());

  TestLoop loop;
  WatchLog state_seen, shifts_seen;  // outlive the store
  auto c = loaded_store(store_options(cluster, prefix, "c"));
  const int64_t r0 = c->revision();
  CHECK(c->get("state").value == json{{"n", 0}});

  control::Version v = st.versions["state"];
  for (int n = 1; n <= 5; ++n) {
    CommitResult r = commit_now(*w, put_change("state", {{"n", n}}, v, 1));
    REQUIRE_MESSAGE(r.committed(), status_name(r.status) << ": " << r.error);
    v = r.versions["state"];
  }
  std::optional<int64_t> now = cluster.revision();
  REQUIRE(now);
  REQUIRE(*now > r0 + 1);
  REQUIRE(cluster.compact(*now));

  c->watch("state", state_seen.watcher());
  c->watch("shifts", shifts_seen.watcher());
  REQUIRE(c->resyncs() == 0);
  REQUIRE(c->attach(loop.get()) == 0);
  REQUIRE_MESSAGE(
      loop.run_until([&] { return c->resyncs() >= 1 && !state_seen.seen.empty(); }, 8000),
      "resyncs " << c->resyncs() << ", watcher calls " << state_seen.seen.size());
  loop.run_for(700);  // nothing more comes
  CHECK(c->resyncs() == 1);
  REQUIRE(state_seen.seen.size() == 1);
  CHECK(state_seen.seen[0].value == json{{"n", 5}});
  CHECK(state_seen.seen[0].version == v);
  CHECK(shifts_seen.seen.empty());  // its content did not change
  CHECK(c->get("state").value == json{{"n", 5}});
  CHECK(c->get("state").version == v);
  CHECK(c->revision() >= *now);
  CHECK(c->up());

  // The watch resumed after the re-read: a later change arrives as usual. (Written through the
  // gateway, not by `w`: a store's start-up commits are not what this test is about.)
  std::optional<int64_t> later = cluster.put(prefix + "docs/state", R"({"n":6})");
  REQUIRE(later);
  REQUIRE(loop.run_until([&] { return state_seen.seen.size() == 2; }, 5000));
  CHECK(state_seen.seen[1].value == json{{"n", 6}});
  CHECK(state_seen.seen[1].version == static_cast<control::Version>(*later));
  CHECK(c->resyncs() == 1);
}

TEST_CASE("store: leadership: one leader, drop_lead hands over, detach hands over at once") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  TestLoop loop;
  const std::string prefix = "/t-lead/";
  const std::string job = "shift/f/a";
  auto a = attached_store(loop, store_options(cluster, prefix, "a"));
  auto b = attached_store(loop, store_options(cluster, prefix, "b"));
  REQUIRE(loop.run_until([&] { return a->lease() != 0 && b->lease() != 0; }, 5000));
  CHECK(!a->leads(job));
  CHECK(a->leader(job).empty());

  int both = 0;
  auto one_leads = [&] {
    const bool la = a->leads(job), lb = b->leads(job);
    if (la && lb) ++both;
    return la != lb;
  };
  a->want_lead(job);
  b->want_lead(job);
  double start = now_ms();
  REQUIRE_MESSAGE(loop.run_until(one_leads, 2000), "nobody leads after 2 s");
  MESSAGE("elected after " << now_ms() - start << " ms");
  EtcdStore* holder = a->leads(job) ? a.get() : b.get();
  EtcdStore* other = holder == a.get() ? b.get() : a.get();
  CHECK(holder->leader(job) == holder->node());
  REQUIRE_MESSAGE(loop.run_until([&] { return other->leader(job) == holder->node(); }, 2000),
                  "the other names '" << other->leader(job) << "'");
  // Leadership holds over several lease keepalives (ttl 2 s) without moving. (leads() may say
  // false for a moment when a keepalive answers late on a loaded machine: it stops saying so
  // before the lease could have run out. The lock itself must not move.)
  bool moved = false;
  loop.run_until(
      [&] {
        one_leads();
        moved = moved || other->leads(job) || holder->leader(job) != holder->node() ||
                other->leader(job) != holder->node();
        return moved;
      },
      2500);
  CHECK(!moved);
  REQUIRE(loop.run_until([&] { return holder->leads(job); }, 2000));
  CHECK(!other->leads(job));
  json described = holder->describe();
  CHECK(described["leads"] == json::array({job}));

  // drop_lead: the other takes over.
  holder->drop_lead(job);
  CHECK(!holder->leads(job));
  start = now_ms();
  REQUIRE_MESSAGE(loop.run_until([&] { return one_leads() && other->leads(job); }, 3000),
                  "no takeover after drop_lead");
  const double dropped_took = now_ms() - start;
  MESSAGE("takeover after drop_lead: " << dropped_took << " ms");
  CHECK(dropped_took < 1000 + kSlackMs);
  REQUIRE(loop.run_until([&] { return holder->leader(job) == other->node(); }, 2000));
  loop.run_for(300);  // the one that dropped does not ask again
  CHECK(!holder->leads(job));

  // Graceful detach of the leader: its lease is revoked, the other (asking again) takes over.
  holder->want_lead(job);
  loop.run_for(300);
  CHECK(!holder->leads(job));
  CHECK(holder->leader(job) == other->node());
  start = now_ms();
  other->detach();
  CHECK(!other->leads(job));
  const double detach_took = now_ms() - start;
  REQUIRE_MESSAGE(loop.run_until([&] { return holder->leads(job); }, 3000),
                  "no takeover after the leader detached");
  const double detached_took = now_ms() - start;
  MESSAGE("detach() took " << detach_took << " ms; takeover after " << detached_took << " ms");
  CHECK(detached_took < 1000 + kSlackMs);
  CHECK(both == 0);
}

TEST_CASE("store: leadership: a leader that stops answering loses it when its lease runs out") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  // The holder runs on its own loop, standing for another process: freezing the loop freezes
  // it (no keepalives), as a hung or crashed process. The observer runs on `loop`.
  TestLoop loop;
  TestLoop frozen;
  const std::string prefix = "/t-crash/";
  const std::string job = "shift/f/crash";
  auto h = attached_store(frozen, store_options(cluster, prefix, "h"));
  auto o = attached_store(loop, store_options(cluster, prefix, "o"));
  auto pump_both = [&](const std::function<bool()>& done, int timeout_ms) {
    return loop.run_until(
        [&] {
          uv_run(frozen.get(), UV_RUN_NOWAIT);
          return done();
        },
        timeout_ms);
  };
  REQUIRE(pump_both([&] { return h->lease() != 0 && o->lease() != 0; }, 5000));
  h->want_lead(job);
  REQUIRE(pump_both([&] { return h->leads(job); }, 3000));
  o->want_lead(job);
  REQUIRE_MESSAGE(pump_both([&] { return o->leader(job) == "h"; }, 3000),
                  "o names '" << o->leader(job) << "'");
  // A keepalive or two while both run; then freeze h at a moment it leads.
  pump_both([] { return false; }, 1000);
  REQUIRE(pump_both([&] { return h->leads(job); }, 2000));
  REQUIRE(!o->leads(job));
  REQUIRE(o->leader(job) == "h");

  // Freeze h. Its leads() is judged at its loop's current time (as its own loop would).
  const double start = now_ms();
  int both = 0;
  REQUIRE_MESSAGE(loop.run_until(
                      [&] {
                        uv_update_time(frozen.get());
                        if (o->leads(job) && h->leads(job)) ++both;
                        return o->leads(job);
                      },
                      2000 + 4000),
                  "no takeover 6 s after the leader froze");
  const double took = now_ms() - start;
  MESSAGE("takeover " << took << " ms after the leader froze (lease ttl 2000 ms)");
  CHECK(both == 0);
  CHECK(took >= 500);
  CHECK(took < 2000 + 3000);
  uv_update_time(frozen.get());
  CHECK(!h->leads(job));

  // h wakes up: it learns it lost the lease, gets a new one, and does not lead.
  const int64_t old_lease = h->lease();
  bool h_led = false;
  REQUIRE_MESSAGE(
      pump_both(
          [&] {
            h_led = h_led || h->leads(job);
            return h->lease() != 0 && h->lease() != old_lease && h->leader(job) == "o";
          },
          5000),
      "h: lease " << h->lease() << " (was " << old_lease << "), leader '" << h->leader(job) << "'");
  CHECK(!h_led);
  CHECK(o->leads(job));
  CHECK(!h->leads(job));
}

TEST_CASE("store: figures a node publishes reach the others and go with its lease") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  TestLoop loop;
  const std::string prefix = "/t-figures/";
  const std::string job = "shift/f/a";
  auto a = attached_store(loop, store_options(cluster, prefix, "a"));
  auto b = attached_store(loop, store_options(cluster, prefix, "b"));
  REQUIRE(loop.run_until([&] { return a->lease() != 0 && b->lease() != 0; }, 5000));

  a->publish_figures(job, {{"x", 1}});
  a->publish_figures("shift/g/a", {{"other", true}});  // another job
  const double start = now_ms();
  REQUIRE_MESSAGE(
      loop.run_until(
          [&] { return !b->peer_figures(job).empty() && !b->peer_figures("shift/g/a").empty(); },
          2000),
      "B saw no figures within 2 s");
  MESSAGE("figures arrived after " << now_ms() - start << " ms");
  auto seen = b->peer_figures(job);
  CHECK(seen.size() == 1);
  REQUIRE(seen.count("a") == 1);
  CHECK(seen["a"] == json{{"x", 1}});
  CHECK(b->peer_figures("shift/g/a").at("a") == json{{"other", true}});
  CHECK(b->peer_figures("shift/none").empty());

  // A's own figures are not among its peers'.
  loop.run_for(300);
  CHECK(a->peer_figures(job).empty());
  b->publish_figures(job, {{"x", 2}});
  REQUIRE(loop.run_until([&] { return !a->peer_figures(job).empty(); }, 2000));
  auto at_a = a->peer_figures(job);
  CHECK(at_a.size() == 1);
  CHECK(at_a["b"] == json{{"x", 2}});
  CHECK(b->peer_figures(job).size() == 1);  // still only a's

  // A new value replaces the old one.
  a->publish_figures(job, {{"x", 3}});
  REQUIRE(loop.run_until([&] { return b->peer_figures(job)["a"] == json{{"x", 3}}; }, 2000));

  // Figures live as long as their node's lease: detach revokes it.
  a->detach();
  REQUIRE_MESSAGE(loop.run_until([&] { return b->peer_figures(job).empty(); }, 2000),
                  "a's figures outlived its lease");
  CHECK(b->peer_figures("shift/g/a").empty());
}

}  // namespace sluice::e2e

namespace sluice::e2e {

TEST_CASE(
    "store: etcd authentication: a user and password file work, a forgotten token is renewed, no "
    "or wrong credentials are refused") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  // A root user with the root role, then authentication on (the gateway's auth API).
  REQUIRE(cluster.post(0, "/v3/auth/user/add", R"({"name":"root","password":"s3cret-pw"})"));
  REQUIRE(cluster.post(0, "/v3/auth/role/add", R"({"name":"root"})"));
  REQUIRE(cluster.post(0, "/v3/auth/user/grant", R"({"user":"root","role":"root"})"));
  REQUIRE(cluster.post(0, "/v3/auth/enable", "{}"));
  TempDir dir;
  {
    std::ofstream(dir.file("pw")) << "s3cret-pw\n";  // a trailing newline is not the password
    std::ofstream(dir.file("wrong")) << "guess\n";
  }

  SUBCASE("no credentials: refused with what to set, not served from a snapshot") {
    auto o = store_options(cluster, "/t-auth/", "a", dir.file("snap.json"));
    const std::string error = load_refusal(o);
    CAPTURE(error);
    CHECK(error.find("username") != std::string::npos);
  }
  SUBCASE("a wrong password: refused, naming the user") {
    auto o = store_options(cluster, "/t-auth/", "a");
    o.username = "root";
    o.password_file = dir.file("wrong");
    const std::string error = load_refusal(o);
    CAPTURE(error);
    CHECK(error.find("user root") != std::string::npos);
  }
  SUBCASE("a missing password file") {
    auto o = store_options(cluster, "/t-auth/", "a");
    o.username = "root";
    o.password_file = dir.file("none");
    const std::string error = load_refusal(o);
    CAPTURE(error);
    CHECK(error.find("cannot be read") != std::string::npos);
  }
  SUBCASE(
      "the right user: reads and writes; when etcd forgets its token, changes answer unavailable "
      "until the store has a new one") {
    auto o = store_options(cluster, "/t-auth/", "a");
    o.username = "root";
    o.password_file = dir.file("pw");
    auto first = loaded_store(o);
    CommitResult r = commit_now(*first, put_change("state", {{"n", 1}}, 0, 1));
    REQUIRE_MESSAGE(r.committed(), r.error);
    TestLoop loop;
    auto b_options = o;
    b_options.node = "b";
    auto b = attached_store(loop, b_options);
    CHECK(b->get("state").value == json{{"n", 1}});
    CommitResult r2 = commit_on(loop, *b, put_change("state", {{"n", 2}}, r.versions["state"]));
    REQUIRE_MESSAGE(r2.committed(), r2.error);

    // Authentication turned off and on again: etcd forgets every token it gave (as it does
    // when a token is unused for --auth-token-ttl), so the stores' tokens are invalid now.
    std::optional<std::string> auth =
        cluster.post(0, "/v3/auth/authenticate", R"({"name":"root","password":"s3cret-pw"})");
    REQUIRE(auth);
    const std::string token = json::parse(*auth).value("token", "");
    REQUIRE(cluster.post(0, "/v3/auth/disable", "{}", 5000, token));
    REQUIRE(cluster.post(0, "/v3/auth/enable", "{}"));
    uv_update_time(loop.get());
    CommitResult again;
    const double start = now_ms();
    control::Version expected = r2.versions["state"];
    do {
      again = commit_on(loop, *b, put_change("state", {{"n", 3}}, expected), 10000);
      if (again.committed()) break;
      MESSAGE("after the tokens were forgotten: " << status_name(again.status) << " "
                                                  << again.error);
      // Not a failure of the store (a 500): unavailable until it has authenticated again.
      CHECK(again.status == CommitResult::Status::kUnavailable);
      loop.run_for(300);
    } while (now_ms() - start < 20000);
    REQUIRE_MESSAGE(again.committed(), status_name(again.status) << ": " << again.error);
    CHECK(loop.run_until([&] { return b->up(); }, 5000));
    b->detach();
  }
}

}  // namespace sluice::e2e

namespace sluice::e2e {
namespace {

// A client context for https:// endpoints, as [store] tls builds one.
std::shared_ptr<const net::ClientContext> etcd_tls(const std::string& ca, const std::string& cert,
                                                   const std::string& key) {
  net::ClientOptions o;
  o.ca = ca;
  o.cert = cert;
  o.key = key;
  o.alpn = {};
  net::ClientBuild b = net::build_client_context(o, net::unix_now_s());
  REQUIRE_MESSAGE(b.context, (b.errors.empty() ? "" : b.errors.front().message));
  return b.context;
}

}  // namespace

TEST_CASE(
    "store: over TLS: etcd's certificate is verified and the client certificate it asks for is "
    "shown, a wrong CA or no client certificate is refused") {
  using test::tls_asset;
  EtcdClusterOptions tls_cluster;
  tls_cluster.tls_cert = tls_asset("etcd-server.pem");
  tls_cluster.tls_key = tls_asset("etcd-server.key");
  tls_cluster.client_ca = tls_asset("ca.pem");  // etcd asks every client for a certificate
  tls_cluster.ca = tls_asset("ca.pem");
  tls_cluster.client_cert = tls_asset("client.pem");
  tls_cluster.client_key = tls_asset("client.key");
  EtcdCluster cluster(tls_cluster);
  REQUIRE_CLUSTER(cluster);
  REQUIRE(cluster.client_url(0).rfind("https://", 0) == 0);

  SUBCASE("the right CA and client certificate: reads, writes and watches") {
    auto o = store_options(cluster, "/t-tls/", "a");
    o.tls = etcd_tls(tls_asset("ca.pem"), tls_asset("client.pem"), tls_asset("client.key"));
    auto first = loaded_store(o);
    CommitResult r = commit_now(*first, put_change("state", {{"n", 1}}, 0, 1));
    REQUIRE_MESSAGE(r.committed(), r.error);
    TestLoop loop;
    auto b_options = o;
    b_options.node = "b";
    auto b = attached_store(loop, b_options);
    CHECK(b->get("state").value == json{{"n", 1}});
    CommitResult r2 = commit_on(loop, *b, put_change("state", {{"n", 2}}, r.versions["state"]));
    REQUIRE_MESSAGE(r2.committed(), r2.error);
    b->detach();
  }
  SUBCASE("a CA that did not sign etcd's certificate: refused, saying why") {
    auto o = store_options(cluster, "/t-tls/", "a");
    o.tls = etcd_tls(tls_asset("other-ca.pem"), tls_asset("client.pem"), tls_asset("client.key"));
    const std::string error = load_refusal(o);
    CAPTURE(error);
    CHECK(error.find("TLS handshake") != std::string::npos);
  }
  SUBCASE("no client certificate while etcd asks for one: refused") {
    auto o = store_options(cluster, "/t-tls/", "a");
    o.tls = etcd_tls(tls_asset("ca.pem"), "", "");
    const std::string error = load_refusal(o);
    CAPTURE(error);
    CHECK(error.find("TLS") != std::string::npos);
  }
  SUBCASE("https:// without TLS settings: refused at start") {
    auto o = store_options(cluster, "/t-tls/", "a");
    const std::string error = load_refusal(o);
    CAPTURE(error);
    CHECK(error.find("needs TLS settings") != std::string::npos);
  }
}

}  // namespace sluice::e2e
