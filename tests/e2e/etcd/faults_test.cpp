// The etcd client under faults: dead and silent endpoints, quorum loss and recovery.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "etcd_test.h"

namespace sluice::e2e {

namespace {

// A loopback socket: listening (the kernel completes connects, nobody ever answers) or only
// bound (connects are refused). Closed on destruction.
class FakeEndpoint {
 public:
  explicit FakeEndpoint(bool listen) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    if (listen) REQUIRE(::listen(fd_, 64) == 0);
    port_ = ntohs(a.sin_port);
  }
  ~FakeEndpoint() { ::close(fd_); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

}  // namespace

TEST_CASE("requests fail over from a refusing endpoint and stay on the one that works") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  TestLoop loop;
  FakeEndpoint refusing(false);
  std::vector<std::string> endpoints = {refusing.url()};
  for (const std::string& u : cluster.client_urls()) endpoints.push_back(u);
  auto client = make_client(loop, endpoints);

  auto put = await<etcd::PutResponse>(
      loop, [&](auto cb) { client->put({.key = "/f", .value = "1"}, cb); });
  REQUIRE_MESSAGE(put.ok(), put.error.message);  // nothing was sent to the refusing one
  CHECK(client->preferred_endpoint() == 1);
  for (int i = 0; i < 10; ++i)
    REQUIRE(
        await<etcd::RangeResponse>(loop, [&](auto cb) { client->range({.key = "/f"}, cb); }).ok());
  CHECK(client->connections_opened() == 2);  // the refused one, then one kept alive
  client.reset();
}

TEST_CASE("a silent endpoint: reads move on after the attempt timeout, writes time out") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  TestLoop loop;
  FakeEndpoint silent(true);
  EtcdOptions options{.request_timeout_ms = 1500, .attempt_timeout_ms = 300};
  // Upper bounds allow the shared, loaded test machine to stall the process for seconds.
  constexpr double kSlackMs = 3000;

  {  // a read waits one attempt timeout, then the next endpoint answers
    auto client = make_client(loop, {silent.url(), cluster.client_url(0)}, options);
    const double start = now_ms();
    auto r = await<etcd::RangeResponse>(loop, [&](auto cb) { client->range({.key = "/s"}, cb); });
    const double took = now_ms() - start;
    CHECK_MESSAGE(r.ok(), r.error.message);
    CHECK(took >= 290);
    CHECK(took < 1500 + kSlackMs);
    CHECK(client->preferred_endpoint() == 1);
  }
  {  // a write sent to the silent endpoint stays there: its outcome would otherwise be unknown
    auto client = make_client(loop, {silent.url(), cluster.client_url(0)}, options);
    const double start = now_ms();
    auto w = await<etcd::PutResponse>(
        loop, [&](auto cb) { client->put({.key = "/s", .value = "x"}, cb); });
    const double took = now_ms() - start;
    CHECK(w.error.kind == EtcdError::Kind::kTimeout);
    CHECK(w.error.maybe_committed);
    CHECK(took >= 1490);
    CHECK(took < 1500 + kSlackMs);
  }
}

TEST_CASE(
    "quorum loss: writes fail as unavailable within the timeout, serializable reads go on, "
    "and restarting the members recovers") {
  EtcdCluster cluster;
  REQUIRE_CLUSTER(cluster);
  TestLoop loop;
  EtcdOptions options{.request_timeout_ms = 2000,
                      .connect_timeout_ms = 300,
                      .attempt_timeout_ms = 1000,
                      .watch_retry_max_ms = 500};
  auto client = make_client(loop, cluster.client_urls(), options);
  REQUIRE(await<etcd::PutResponse>(loop, [&](auto cb) {
            client->put({.key = "/q", .value = "before"}, cb);
          }).ok());
  std::vector<std::string> watched;
  int watch_connected = 0;
  client->watch({.key = "/q"}, {.on_connected = [&](size_t, int64_t) { ++watch_connected; },
                                .on_events =
                                    [&](std::vector<etcd::Event>&& events, int64_t) {
                                      for (auto& e : events) watched.push_back(e.kv.value);
                                    },
                                .on_error = {}});
  REQUIRE(loop.run_until([&] { return watch_connected == 1; }, 10000));

  REQUIRE(cluster.kill(1));
  REQUIRE(cluster.kill(2));
  const double killed_at = now_ms();

  // Every write fails within the request timeout (plus scheduling slack); once the survivor
  // notices it has no leader, writes fail as unavailable at once.
  double fast_at = 0;
  int writes = 0, maybe_committed = 0;
  while (now_ms() - killed_at < 15000 && fast_at == 0) {
    const double start = now_ms();
    auto w = await<etcd::PutResponse>(
        loop, [&](auto cb) { client->put({.key = "/q", .value = "lost"}, cb); });
    const double took = now_ms() - start;
    ++writes;
    maybe_committed += w.error.maybe_committed;
    CAPTURE(writes);
    CAPTURE(w.error.message);
    CHECK((w.error.kind == EtcdError::Kind::kUnavailable ||
           w.error.kind == EtcdError::Kind::kTimeout));
    CHECK(took < 2000 + 3000);  // slack: the shared test machine can stall the process
    if (w.error.kind == EtcdError::Kind::kUnavailable && took < 500) fast_at = now_ms();
  }
  REQUIRE(fast_at > 0);
  MESSAGE("quorum lost: " << writes << " writes failed; unavailable at once from "
                          << (fast_at - killed_at) << " ms after the kill");

  {  // reads: serializable ones are served by the survivor, linearizable ones fail
    auto local = await<etcd::RangeResponse>(
        loop, [&](auto cb) { client->range({.key = "/q", .serializable = true}, cb); });
    REQUIRE_MESSAGE(local.ok(), local.error.message);
    REQUIRE(local.value.kvs.size() == 1);
    CHECK(local.value.kvs[0].value == "before");
    auto linear =
        await<etcd::RangeResponse>(loop, [&](auto cb) { client->range({.key = "/q"}, cb); });
    CHECK((linear.error.kind == EtcdError::Kind::kUnavailable ||
           linear.error.kind == EtcdError::Kind::kTimeout));
  }

  REQUIRE(cluster.restart(1));
  REQUIRE(cluster.restart(2));
  REQUIRE_MESSAGE(cluster.wait_all_healthy(30000), cluster.log_tail(1));
  const double restored_at = now_ms();
  bool written = false;
  int after_maybe_committed = 0;  // failed tries of "after" that may still have been applied
  while (!written && now_ms() - restored_at < 10000) {
    auto w = await<etcd::PutResponse>(
        loop, [&](auto cb) { client->put({.key = "/q", .value = "after"}, cb); });
    written = w.ok();
    after_maybe_committed += w.error.maybe_committed;
    if (!written) loop.run_for(100);
  }
  REQUIRE(written);
  REQUIRE(loop.run_until([&] { return !watched.empty() && watched.back() == "after"; }, 10000));
  // A write that failed without maybe_committed never happened; one that timed out after
  // reaching the survivor may have been committed once the quorum came back.
  size_t lost = 0, after = 0;
  for (const std::string& v : watched) (v == "lost" ? lost : after)++;
  CHECK(after >= 1);
  CHECK(lost <= size_t(maybe_committed));
  CHECK(after <= size_t(1 + after_maybe_committed));
  MESSAGE("after restart: first write succeeded " << (now_ms() - restored_at)
                                                  << " ms after the members were healthy");
  client.reset();
}

}  // namespace sluice::e2e
