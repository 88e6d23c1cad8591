// etcd compaction below a stopped node's revision: the node, restarted, cannot watch from its
// snapshot's revision; it re-reads the prefix and converges on the fleet's state.
#include <string>

#include "fleet_util.h"

namespace sluice::e2e::fleet {

TEST_CASE("compaction below a stopped node's revision: the node re-reads and converges") {
  EtcdCluster etcd;
  REQUIRE_ETCD(etcd);
  Fleet f(etcd, {.nodes = 3, .prefix = "/fleet/compaction/"});
  std::string error;
  REQUIRE_MESSAGE(f.start_all(&error), error);
  LogsOnFailure dump_logs(f, etcd);

  const json first = {{"1", 70}, {"2", 30}};
  ApiReply set = f.set_traffic(0, first);
  REQUIRE_MESSAGE(set.status == 200, set.raw);
  REQUIRE(f.wait_traffic(2, first, 2000));
  const double c_revision = num_of(f.store(2), "revision");
  CHECK(f.stop(2) == 0);

  // 20 changes C does not see, then compaction at the current revision.
  json last;
  for (int i = 0; i < 20; ++i) {
    last = json{{"1", 200 + i}, {"2", 800 - i}};
    ApiReply r = f.set_traffic(0, last);
    REQUIRE_MESSAGE(r.status == 200, r.raw);
  }
  REQUIRE(f.wait_traffic(1, last, 2000));
  std::optional<int64_t> revision = etcd.revision();
  REQUIRE(revision.has_value());
  CHECK(static_cast<double>(*revision) >= c_revision + 20);
  REQUIRE(etcd.compact(*revision));

  // C starts on its old snapshot and converges: map and history as A's.
  auto t = std::chrono::steady_clock::now();
  REQUIRE_MESSAGE(f.start(2, &error), error);
  std::optional<double> took = f.wait_traffic(2, last, 5000);
  CHECK(took.has_value());
  MESSAGE("node c converged " << elapsed_ms(t) << " ms after its start (compacted at revision "
                              << *revision << ", its snapshot at " << c_revision << ")");
  json history_a = field(alias_entry(f.status(0)), "history");
  CHECK(field(alias_entry(f.status(2)), "history") == history_a);
  json store = f.store(2);
  CAPTURE(store.dump());
  CHECK(field(store, "up") == true);
  CHECK(num_of(store, "revision") >= static_cast<double>(*revision));

  // And its watch works from there: the next change through A is live on C.
  const json next = {{"1", 1}, {"2", 1}};
  ApiReply r = f.set_traffic(0, next);
  REQUIRE_MESSAGE(r.status == 200, r.raw);
  CHECK(f.wait_traffic(2, next, 1000));
  CHECK(f.wait_traffic(1, next, 1000));
  for (size_t i = 0; i < f.size(); ++i) CHECK_MESSAGE(f.stop(i) == 0, "node " << f.name(i));
}

}  // namespace sluice::e2e::fleet
