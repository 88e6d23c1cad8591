// The etcd client's KV, txn and lease operations against a real 3-member etcd cluster.
#include <string>
#include <variant>

#include "etcd_test.h"

namespace sluice::e2e {

using etcd::Compare;

TEST_CASE("every KV operation reads and writes a real etcd cluster") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  TestLoop loop;
  auto client = make_client(loop, cluster.client_urls());

  auto put = [&](std::string key, std::string value, bool prev_kv = false) {
    return await<etcd::PutResponse>(
        loop, [&](auto cb) { client->put({.key = key, .value = value, .prev_kv = prev_kv}, cb); });
  };
  auto range = [&](etcd::RangeRequest r) {
    return await<etcd::RangeResponse>(loop, [&](auto cb) { client->range(r, cb); });
  };

  auto first = put("/t/a", "1");
  REQUIRE_MESSAGE(first.ok(), first.error.message);
  const int64_t r1 = first.value.header.revision;
  CHECK(r1 > 0);
  CHECK(first.value.header.cluster_id != 0);
  CHECK(!first.value.prev_kv);

  auto second = put("/t/a", "2", true);
  REQUIRE(second.ok());
  const int64_t r2 = second.value.header.revision;
  CHECK(r2 == r1 + 1);
  REQUIRE(second.value.prev_kv);
  CHECK(second.value.prev_kv->value == "1");
  CHECK(second.value.prev_kv->mod_revision == r1);

  // One cluster per test case (a start costs seconds), so the parts run in sequence, not as
  // SUBCASEs (doctest would start the cluster again for each).
  {  // a single key with its revisions and version
    auto r = range({.key = "/t/a"});
    REQUIRE(r.ok());
    REQUIRE(r.value.kvs.size() == 1);
    CHECK(r.value.kvs[0].key == "/t/a");
    CHECK(r.value.kvs[0].value == "2");
    CHECK(r.value.kvs[0].create_revision == r1);
    CHECK(r.value.kvs[0].mod_revision == r2);
    CHECK(r.value.kvs[0].version == 2);
    CHECK(r.value.count == 1);
    CHECK(r.value.header.revision == r2);
  }

  {  // a historical read at an older revision
    auto r = range({.key = "/t/a", .revision = r1});
    REQUIRE(r.ok());
    REQUIRE(r.value.kvs.size() == 1);
    CHECK(r.value.kvs[0].value == "1");
  }

  {  // a missing key reads as no kvs and count 0
    auto r = range({.key = "/t/missing"});
    REQUIRE(r.ok());
    CHECK(r.value.kvs.empty());
    CHECK(r.value.count == 0);
  }

  {  // binary keys and values round-trip
    std::string key = "/bin/", value;
    for (int b = 0; b < 256; ++b) value += char(b);
    key += std::string("\x00\xff\x80", 3);
    REQUIRE(put(key, value).ok());
    auto r = range({.key = key});
    REQUIRE(r.ok());
    REQUIRE(r.value.kvs.size() == 1);
    CHECK(r.value.kvs[0].key == key);
    CHECK(r.value.kvs[0].value == value);
  }

  {  // one keep-alive connection serves sequential requests
    const uint64_t opened = client->connections_opened();
    for (int i = 0; i < 20; ++i) REQUIRE(range({.key = "/t/a"}).ok());
    CHECK(client->connections_opened() == opened);
    CHECK(client->idle_connections() >= 1);
  }

  {  // a prefix, keys_only, count_only, limit and a serializable read
    REQUIRE(put("/t/b", "bee").ok());
    REQUIRE(put("/t/c", "sea").ok());
    REQUIRE(put("/t0", "outside the prefix").ok());  // '0' follows '/': the range must end before
    const std::string end = etcd::prefix_range_end("/t/");
    CHECK(end == "/t0");

    auto all = range({.key = "/t/", .range_end = end});
    REQUIRE(all.ok());
    REQUIRE(all.value.kvs.size() == 3);
    CHECK(all.value.kvs[0].key == "/t/a");
    CHECK(all.value.kvs[1].key == "/t/b");
    CHECK(all.value.kvs[2].key == "/t/c");
    CHECK(all.value.kvs[2].value == "sea");

    auto keys = range({.key = "/t/", .range_end = end, .keys_only = true});
    REQUIRE(keys.ok());
    REQUIRE(keys.value.kvs.size() == 3);
    CHECK(keys.value.kvs[1].value.empty());
    CHECK(keys.value.kvs[1].mod_revision > r2);

    auto count = range({.key = "/t/", .range_end = end, .count_only = true});
    REQUIRE(count.ok());
    CHECK(count.value.kvs.empty());
    CHECK(count.value.count == 3);

    auto limited = range({.key = "/t/", .range_end = end, .limit = 2});
    REQUIRE(limited.ok());
    CHECK(limited.value.kvs.size() == 2);
    CHECK(limited.value.more);
    CHECK(limited.value.count == 3);

    auto local = range({.key = "/t/", .range_end = end, .serializable = true});
    REQUIRE(local.ok());
    CHECK(local.value.kvs.size() == 3);
  }

  {  // delete one key with prev_kv, then a prefix
    auto one = await<etcd::DeleteResponse>(
        loop, [&](auto cb) { client->delete_range({.key = "/t/a", .prev_kv = true}, cb); });
    REQUIRE(one.ok());
    CHECK(one.value.deleted == 1);
    REQUIRE(one.value.prev_kvs.size() == 1);
    CHECK(one.value.prev_kvs[0].value == "2");
    auto prefix = await<etcd::DeleteResponse>(loop, [&](auto cb) {
      client->delete_range({.key = "/t/", .range_end = etcd::prefix_range_end("/t/")}, cb);
    });
    REQUIRE(prefix.ok());
    CHECK(prefix.value.deleted == 2);
    auto none = await<etcd::DeleteResponse>(
        loop, [&](auto cb) { client->delete_range({.key = "/t/a"}, cb); });
    REQUIRE(none.ok());
    CHECK(none.value.deleted == 0);
  }

  client.reset();
}

TEST_CASE("a txn runs its success or failure branch by its compares") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  TestLoop loop;
  auto client = make_client(loop, cluster.client_urls());
  auto txn = [&](etcd::TxnRequest t) {
    return await<etcd::TxnResponse>(loop, [&](auto cb) { client->txn(t, cb); });
  };

  // Create-if-absent: mod_revision 0 means the key does not exist.
  auto create = txn({.compare = {Compare::mod_revision("/x", 0)},
                     .success = {etcd::PutRequest{.key = "/x", .value = "v1"}},
                     .failure = {}});
  REQUIRE_MESSAGE(create.ok(), create.error.message);
  CHECK(create.value.succeeded);
  REQUIRE(create.value.responses.size() == 1);
  const int64_t created = create.value.header.revision;
  CHECK(std::holds_alternative<etcd::PutResponse>(create.value.responses[0]));

  {  // a second create-if-absent conflicts and sees the current value
    auto again = txn({.compare = {Compare::mod_revision("/x", 0)},
                      .success = {etcd::PutRequest{.key = "/x", .value = "v2"}},
                      .failure = {etcd::RangeRequest{.key = "/x"}}});
    CHECK(again.error.kind == EtcdError::Kind::kConflict);
    CHECK(!again.value.succeeded);
    REQUIRE(again.value.responses.size() == 1);
    auto* current = std::get_if<etcd::RangeResponse>(&again.value.responses[0]);
    REQUIRE(current);
    REQUIRE(current->kvs.size() == 1);
    CHECK(current->kvs[0].value == "v1");
    CHECK(current->kvs[0].mod_revision == created);
  }

  {  // value and greater/less compares (the value is still v1)
    auto by_value =
        txn({.compare = {Compare::value_is("/x", "v1"),
                         Compare::version("/x", 0, Compare::Result::kGreater),
                         Compare::mod_revision("/x", created + 1000, Compare::Result::kLess)},
             .success = {etcd::RangeRequest{.key = "/x"}},
             .failure = {}});
    REQUIRE_MESSAGE(by_value.ok(), by_value.error.message);
    auto wrong = txn({.compare = {Compare::value_is("/x", "nope")}, .success = {}, .failure = {}});
    CHECK(wrong.error.kind == EtcdError::Kind::kConflict);
  }
  {  // compare-and-swap on mod_revision, version and create_revision
    auto cas = txn({.compare = {Compare::mod_revision("/x", created), Compare::version("/x", 1),
                                Compare::create_revision("/x", created)},
                    .success = {etcd::PutRequest{.key = "/x", .value = "v2", .prev_kv = true},
                                etcd::RangeRequest{.key = "/x"}, etcd::DeleteRequest{.key = "/y"}},
                    .failure = {}});
    REQUIRE_MESSAGE(cas.ok(), cas.error.message);
    REQUIRE(cas.value.responses.size() == 3);
    auto* put = std::get_if<etcd::PutResponse>(&cas.value.responses[0]);
    REQUIRE(put);
    REQUIRE(put->prev_kv);
    CHECK(put->prev_kv->value == "v1");
    auto* read = std::get_if<etcd::RangeResponse>(&cas.value.responses[1]);
    REQUIRE(read);
    REQUIRE(read->kvs.size() == 1);
    CHECK(read->kvs[0].value == "v2");
    CHECK(read->kvs[0].version == 2);
    CHECK(std::holds_alternative<etcd::DeleteResponse>(cas.value.responses[2]));

    auto stale = txn({.compare = {Compare::mod_revision("/x", created)},
                      .success = {etcd::PutRequest{.key = "/x", .value = "v3"}},
                      .failure = {}});
    CHECK(stale.error.kind == EtcdError::Kind::kConflict);
    CHECK(stale.value.responses.empty());
  }

  client.reset();
}

TEST_CASE("two writers compare-and-swap one key: one wins, the other sees a conflict") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  TestLoop loop;
  // The writers talk to different members, as two sluice nodes would.
  auto a = make_client(loop, {cluster.client_url(0), cluster.client_url(1)});
  auto b = make_client(loop, {cluster.client_url(1), cluster.client_url(2)});
  REQUIRE(await<etcd::PutResponse>(loop, [&](auto cb) {
            a->put({.key = "/alias", .value = "start"}, cb);
          }).ok());

  constexpr int kRounds = 30;
  int a_wins = 0, b_wins = 0;
  for (int round = 0; round < kRounds; ++round) {
    CAPTURE(round);
    // Both read the same revision, then both write against it at once.
    auto read = await<etcd::RangeResponse>(loop, [&](auto cb) { b->range({.key = "/alias"}, cb); });
    REQUIRE(read.ok());
    REQUIRE(read.value.kvs.size() == 1);
    const int64_t seen = read.value.kvs[0].mod_revision;
    std::optional<EtcdResult<etcd::TxnResponse>> ra, rb;
    auto cas = [&](EtcdClient& c, std::string value, auto& out) {
      c.txn({.compare = {Compare::mod_revision("/alias", seen)},
             .success = {etcd::PutRequest{.key = "/alias", .value = value}},
             .failure = {etcd::RangeRequest{.key = "/alias"}}},
            [&out](EtcdResult<etcd::TxnResponse> r) { out = std::move(r); });
    };
    cas(*a, "a" + std::to_string(round), ra);
    cas(*b, "b" + std::to_string(round), rb);
    REQUIRE(loop.run_until([&] { return ra && rb; }, 15000));
    REQUIRE_MESSAGE((ra->ok() || ra->error.kind == EtcdError::Kind::kConflict), ra->error.message);
    REQUIRE_MESSAGE((rb->ok() || rb->error.kind == EtcdError::Kind::kConflict), rb->error.message);
    CHECK(ra->ok() != rb->ok());  // exactly one wins
    const auto& loser = ra->ok() ? *rb : *ra;
    const std::string winner_value = (ra->ok() ? "a" : "b") + std::to_string(round);
    REQUIRE(loser.value.responses.size() == 1);
    auto* now = std::get_if<etcd::RangeResponse>(&loser.value.responses[0]);
    REQUIRE(now);
    REQUIRE(now->kvs.size() == 1);
    CHECK(now->kvs[0].value == winner_value);  // the loser sees what it lost to
    (ra->ok() ? a_wins : b_wins)++;
  }
  CHECK(a_wins + b_wins == kRounds);
  MESSAGE("compare-and-swap races: a won " << a_wins << ", b won " << b_wins);
  a.reset();
  b.reset();
}

TEST_CASE("leases: grant, keepalive, revoke, and expiry deletes the lease's keys") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  TestLoop loop;
  auto client = make_client(loop, cluster.client_urls());

  auto grant_lease = [&](int64_t ttl_s) {
    auto grant = await<etcd::LeaseGrantResponse>(
        loop, [&](auto cb) { client->lease_grant({.ttl_s = ttl_s}, cb); });
    REQUIRE_MESSAGE(grant.ok(), grant.error.message);
    CHECK(grant.value.id != 0);
    CHECK(grant.value.ttl_s == ttl_s);
    return grant.value.id;
  };
  auto put_with = [&](const std::string& key, int64_t lease) {
    REQUIRE(await<etcd::PutResponse>(loop, [&](auto cb) {
              client->put({.key = key, .value = "figures", .lease = lease}, cb);
            }).ok());
  };
  auto read = [&](const std::string& key) {
    auto r = await<etcd::RangeResponse>(loop, [&](auto cb) { client->range({.key = key}, cb); });
    REQUIRE(r.ok());
    return r.value.kvs;
  };

  {  // revoke deletes the key at once; a second revoke finds no lease
    const int64_t revoked = grant_lease(30);
    put_with("/node/b", revoked);
    REQUIRE(read("/node/b").size() == 1);
    CHECK(read("/node/b")[0].lease == revoked);
    auto r = await<etcd::ResponseHeader>(loop, [&](auto cb) { client->lease_revoke(revoked, cb); });
    REQUIRE_MESSAGE(r.ok(), r.error.message);
    CHECK(r.value.revision > 0);
    CHECK(read("/node/b").empty());
    auto again =
        await<etcd::ResponseHeader>(loop, [&](auto cb) { client->lease_revoke(revoked, cb); });
    CHECK(again.error.kind == EtcdError::Kind::kNotFound);
  }

  // Kept alive past its TTL (every 700 ms, a quarter of it: margin for a loaded machine), the
  // key stays.
  constexpr int64_t kTtlS = 3;
  const int64_t kept = grant_lease(kTtlS);
  put_with("/node/a", kept);
  double last_keepalive = 0;
  for (int i = 0; i < 5; ++i) {
    auto k = await<etcd::LeaseKeepAliveResponse>(
        loop, [&](auto cb) { client->lease_keepalive(kept, cb); });
    REQUIRE_MESSAGE(k.ok(), k.error.message);
    CHECK(k.value.id == kept);
    CHECK(k.value.ttl_s == kTtlS);
    last_keepalive = now_ms();
    loop.run_for(700);
  }
  REQUIRE(read("/node/a").size() == 1);

  {  // left alone, the lease expires and its key is deleted
    std::optional<double> deleted_at;
    auto id =
        client->watch({.key = "/node/a"}, {.on_connected = {},
                                           .on_events =
                                               [&](std::vector<etcd::Event>&& events, int64_t) {
                                                 for (auto& e : events)
                                                   if (e.type == etcd::Event::Type::kDelete)
                                                     deleted_at = now_ms();
                                               },
                                           .on_error = {}});
    REQUIRE(loop.run_until([&] { return deleted_at.has_value(); }, 10000));
    const double expired_after = *deleted_at - last_keepalive;
    MESSAGE("lease of TTL " << kTtlS << " s: its key was deleted " << expired_after
                            << " ms after the last keepalive");
    CHECK(expired_after >= kTtlS * 1000 - 100);  // not before the TTL
    CHECK(expired_after < kTtlS * 1000 + 5000);
    CHECK(read("/node/a").empty());
    auto late = await<etcd::LeaseKeepAliveResponse>(
        loop, [&](auto cb) { client->lease_keepalive(kept, cb); });
    CHECK(late.error.kind == EtcdError::Kind::kNotFound);
    CHECK(client->cancel_watch(id));  // its callback refers to `deleted_at`
  }
  client.reset();
}

}  // namespace sluice::e2e
