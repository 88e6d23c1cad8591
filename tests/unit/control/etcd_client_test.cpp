// The etcd client's state machine against a scripted fake gateway: requests on the wire,
// keep-alive reuse, error kinds, failover, watch framing and resume, cancel and teardown.
#include "control/etcd_client.h"

#include <doctest/doctest.h>

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>

#include "fake_gateway.h"

namespace sluice::control {
namespace {

using nlohmann::json;
using test::FakeGateway;
using test::FakeRequest;
using test::TestLoop;

constexpr const char* kRangeAnswer =
    R"({"header":{"revision":"7"},"kvs":[{"key":"Zm9v","mod_revision":"7","value":"YmFy"}],"count":"1"})";

std::unique_ptr<EtcdClient> make_client(TestLoop& loop, std::vector<std::string> endpoints,
                                        EtcdOptions options = {}) {
  options.endpoints = std::move(endpoints);
  auto client = std::make_unique<EtcdClient>(loop.get(), std::move(options));
  std::string error;
  REQUIRE_MESSAGE(client->start(&error), error);
  return client;
}

// A loopback port with nothing listening.
std::string refusing_url() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
}

template <typename T>
struct Slot {
  std::optional<EtcdResult<T>> result;
  EtcdClient::Callback<T> callback() {
    return [this](EtcdResult<T> r) { result = std::move(r); };
  }
};

TEST_CASE(
    "requests carry the gateway's path, headers and JSON, and share a keep-alive connection") {
  FakeGateway gateway([](const FakeRequest&, int fd) {
    FakeGateway::send(fd, FakeGateway::ok(kRangeAnswer));
    return true;
  });
  TestLoop loop;
  auto client = make_client(loop, {gateway.url()});
  for (int i = 0; i < 3; ++i) {
    Slot<etcd::RangeResponse> s;
    CHECK(client->range({.key = "foo", .serializable = i == 2}, s.callback()) != 0);
    CHECK(!s.result);  // never inside the call
    REQUIRE(loop.run_until([&] { return s.result.has_value(); }, 5000));
    REQUIRE_MESSAGE(s.result->ok(), s.result->error.message);
    CHECK(s.result->value.kvs.at(0).value == "bar");
    CHECK(s.result->value.header.revision == 7);
  }
  CHECK(gateway.connections() == 1);
  CHECK(client->connections_opened() == 1);
  auto requests = gateway.requests();
  REQUIRE(requests.size() == 3);
  CHECK(requests[0].path == "/v3/kv/range");
  CHECK(requests[0].head.find("POST /v3/kv/range HTTP/1.1\r\n") == 0);
  CHECK(requests[0].head.find("Content-Type: application/json\r\n") != std::string::npos);
  CHECK(json::parse(requests[0].body) == json{{"key", "Zm9v"}});
  // A linearizable read must not be served by a member without a leader; a serializable one may.
  CHECK(requests[0].head.find("Grpc-Metadata-hasleader: true\r\n") != std::string::npos);
  CHECK(requests[2].head.find("hasleader") == std::string::npos);
  client.reset();
}

TEST_CASE(
    "answers that are not the gateway's map to bad-response and gateway errors to their kind") {
  // The next answer; the gateway's thread takes a copy when a request arrives (the test sets it
  // before it sends the request).
  std::mutex answer_mu;
  std::string next_answer;
  FakeGateway gateway([&](const FakeRequest&, int fd) {
    std::string copy;
    {
      std::lock_guard<std::mutex> lock(answer_mu);
      copy = next_answer;
    }
    FakeGateway::send(fd, copy);
    return true;
  });
  struct {
    std::mutex& mu;
    std::string& text;
    void operator=(std::string s) {
      std::lock_guard<std::mutex> lock(mu);
      text = std::move(s);
    }
  } answer{answer_mu, next_answer};
  TestLoop loop;
  auto client = make_client(loop, {gateway.url()});
  auto range = [&] {
    Slot<etcd::RangeResponse> s;
    client->range({.key = "k"}, s.callback());
    REQUIRE(loop.run_until([&] { return s.result.has_value(); }, 5000));
    return *s.result;
  };

  answer = FakeGateway::ok("not json");
  CHECK(range().error.kind == EtcdError::Kind::kBadResponse);
  answer = FakeGateway::ok(R"({"kvs":[{"key":"%%%"}]})");
  auto bad = range();
  CHECK(bad.error.kind == EtcdError::Kind::kBadResponse);
  CHECK(bad.error.message == "unexpected answer: kvs[0].key is not base64");
  answer = "HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n";
  CHECK(range().error.kind == EtcdError::Kind::kBadResponse);
  answer = FakeGateway::ok(
      R"({"error":"etcdserver: mvcc: required revision has been compacted","message":"etcdserver: mvcc: required revision has been compacted","code":11})",
      400);
  CHECK(range().error.kind == EtcdError::Kind::kCompacted);
  answer = FakeGateway::ok(
      R"({"error":"etcdserver: mvcc: required revision is a future revision","code":11})", 400);
  CHECK(range().error.kind == EtcdError::Kind::kRejected);
  answer = FakeGateway::ok(R"({"error":"etcdserver: request timed out","code":14})", 503);
  auto timed_out = range();
  CHECK(timed_out.error.kind == EtcdError::Kind::kUnavailable);
  CHECK(timed_out.error.grpc_code == 14);
  CHECK(!timed_out.error.maybe_committed);  // a read commits nothing
  answer = FakeGateway::ok("", 502);
  CHECK(range().error.kind == EtcdError::Kind::kUnavailable);

  SUBCASE("a write whose outcome etcd could not tell is maybe committed") {
    answer = FakeGateway::ok(R"({"error":"etcdserver: request timed out","code":14})", 503);
    Slot<etcd::PutResponse> s;
    client->put({.key = "k", .value = "v"}, s.callback());
    REQUIRE(loop.run_until([&] { return s.result.has_value(); }, 5000));
    CHECK(s.result->error.kind == EtcdError::Kind::kUnavailable);
    CHECK(s.result->error.maybe_committed);
  }
  SUBCASE("a failed txn is a conflict that still carries the failure branch") {
    answer = FakeGateway::ok(
        R"({"header":{"revision":"9"},"responses":[{"response_range":{"kvs":[{"key":"aw==","value":"dg=="}]}}]})");
    Slot<etcd::TxnResponse> s;
    client->txn({.compare = {etcd::Compare::mod_revision("k", 3)}, .success = {}, .failure = {}},
                s.callback());
    REQUIRE(loop.run_until([&] { return s.result.has_value(); }, 5000));
    CHECK(s.result->error.kind == EtcdError::Kind::kConflict);
    CHECK(std::get<etcd::RangeResponse>(s.result->value.responses.at(0)).kvs.at(0).value == "v");
  }
  SUBCASE("a lease keepalive reads its streamed result; a lease gone is not-found") {
    answer = FakeGateway::chunked_head() +
             FakeGateway::chunk(R"({"result":{"header":{},"ID":"5","TTL":"10"}})"
                                "\n") +
             FakeGateway::chunk("");
    Slot<etcd::LeaseKeepAliveResponse> s;
    client->lease_keepalive(5, s.callback());
    REQUIRE(loop.run_until([&] { return s.result.has_value(); }, 5000));
    REQUIRE_MESSAGE(s.result->ok(), s.result->error.message);
    CHECK(s.result->value.ttl_s == 10);
    answer = FakeGateway::chunked_head() +
             FakeGateway::chunk(R"({"result":{"header":{},"ID":"5"}})"
                                "\n") +
             FakeGateway::chunk("");
    s.result.reset();
    client->lease_keepalive(5, s.callback());
    REQUIRE(loop.run_until([&] { return s.result.has_value(); }, 5000));
    CHECK(s.result->error.kind == EtcdError::Kind::kNotFound);
    CHECK(json::parse(gateway.requests().back().body) == json{{"ID", "5"}});
  }
  client.reset();
}

TEST_CASE("a member without a leader sends even a write to the next endpoint") {
  FakeGateway leaderless([](const FakeRequest&, int fd) {
    FakeGateway::send(fd, FakeGateway::ok(R"({"error":"etcdserver: no leader","code":14})", 503));
    return true;
  });
  FakeGateway healthy([](const FakeRequest&, int fd) {
    FakeGateway::send(fd, FakeGateway::ok(R"({"header":{"revision":"3"}})"));
    return true;
  });
  TestLoop loop;
  auto client = make_client(loop, {refusing_url(), leaderless.url(), healthy.url()});
  Slot<etcd::PutResponse> s;
  client->put({.key = "k", .value = "v"}, s.callback());
  REQUIRE(loop.run_until([&] { return s.result.has_value(); }, 5000));
  REQUIRE_MESSAGE(s.result->ok(), s.result->error.message);
  CHECK(s.result->value.header.revision == 3);
  CHECK(client->preferred_endpoint() == 2);

  SUBCASE("with no endpoint left, the error lists what each said") {
    auto lonely = make_client(loop, {refusing_url(), leaderless.url()});
    Slot<etcd::PutResponse> f;
    lonely->put({.key = "k", .value = "v"}, f.callback());
    REQUIRE(loop.run_until([&] { return f.result.has_value(); }, 5000));
    CHECK(f.result->error.kind == EtcdError::Kind::kUnavailable);
    CHECK(!f.result->error.maybe_committed);
    CHECK(f.result->error.message.find("connection refused") != std::string::npos);
    CHECK(f.result->error.message.find("etcdserver: no leader") != std::string::npos);
  }
  client.reset();
}

TEST_CASE("a connection closed before the answer: a read moves on, a write may have committed") {
  FakeGateway hangup([](const FakeRequest&, int) { return false; });
  FakeGateway healthy([](const FakeRequest&, int fd) {
    FakeGateway::send(fd, FakeGateway::ok(kRangeAnswer));
    return true;
  });
  TestLoop loop;
  auto client = make_client(loop, {hangup.url(), healthy.url()});
  Slot<etcd::RangeResponse> read;
  client->range({.key = "k"}, read.callback());
  REQUIRE(loop.run_until([&] { return read.result.has_value(); }, 5000));
  CHECK_MESSAGE(read.result->ok(), read.result->error.message);

  auto writer = make_client(loop, {hangup.url(), healthy.url()});
  Slot<etcd::PutResponse> write;
  writer->put({.key = "k", .value = "v"}, write.callback());
  REQUIRE(loop.run_until([&] { return write.result.has_value(); }, 5000));
  CHECK(write.result->error.kind == EtcdError::Kind::kUnavailable);
  CHECK(write.result->error.maybe_committed);
  CHECK(healthy.requests().size() == 1);  // the write was not sent twice
}

TEST_CASE(
    "a watch survives odd chunking and a broken stream, resuming from the last revision + 1") {
  auto event = [](int rev, const std::string& value) {
    return R"({"kv":{"key":"aw==","mod_revision":")" + std::to_string(rev) + R"(","value":")" +
           etcd::base64_encode(value) + R"("}})";
  };
  FakeGateway gateway([&](const FakeRequest& r, int fd) {
    if (r.connection == 0) {
      // Created, then revisions 5 and 6 in one message and 7 in the next, cut at odd places;
      // then the connection breaks.
      std::string stream = R"({"result":{"header":{"revision":"4"},"created":true}})"
                           "\n"
                           R"({"result":{"header":{"revision":"6"},"events":[)" +
                           event(5, "five") + "," + event(6, "six") + "]}}\n" +
                           R"({"result":{"header":{"revision":"7"},"events":[)" +
                           event(7, "seven") + "]}}\n";
      std::string out = FakeGateway::chunked_head();
      for (size_t at = 0; at < stream.size(); at += 37)
        out += FakeGateway::chunk(stream.substr(at, 37));
      FakeGateway::send(fd, out);
      return false;
    }
    // The resumed watch: etcd would resend nothing below the start revision, but the client
    // must not rely on it.
    FakeGateway::send(
        fd, FakeGateway::chunked_head() +
                FakeGateway::chunk(R"({"result":{"header":{"revision":"8"},"created":true}})"
                                   "\n") +
                FakeGateway::chunk(R"({"result":{"header":{"revision":"8"},"events":[)" +
                                   event(7, "seven") + "," + event(8, "eight") + "]}}\n"));
    return true;
  });
  TestLoop loop;
  auto client = make_client(loop, {gateway.url()}, {.watch_retry_min_ms = 10});
  std::vector<std::string> values;
  std::vector<int64_t> revisions;
  int connected = 0;
  std::vector<EtcdError> errors;
  auto id = client->watch({.key = "k", .start_revision = 5},
                          {.on_connected = [&](size_t, int64_t) { ++connected; },
                           .on_events =
                               [&](std::vector<etcd::Event>&& events, int64_t) {
                                 for (auto& e : events) {
                                   values.push_back(e.kv.value);
                                   revisions.push_back(e.kv.mod_revision);
                                 }
                               },
                           .on_error = [&](const EtcdError& e) { errors.push_back(e); }});
  REQUIRE(id != 0);
  REQUIRE(loop.run_until([&] { return values.size() >= 4; }, 5000));
  loop.run_for(20);
  CHECK(values == std::vector<std::string>{"five", "six", "seven", "eight"});
  CHECK(revisions == std::vector<int64_t>{5, 6, 7, 8});
  CHECK(connected == 2);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].kind == EtcdError::Kind::kUnavailable);  // transient
  CHECK(client->watch_duplicates_dropped(id) == 1);
  CHECK(client->watch_next_revision(id) == 9);
  auto requests = gateway.requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[0].path == "/v3/watch");
  CHECK(json::parse(requests[0].body) ==
        json{{"create_request", {{"key", "aw=="}, {"start_revision", "5"}}}});
  CHECK(json::parse(requests[1].body)["create_request"]["start_revision"] == "8");
  CHECK(requests[1].head.find("Grpc-Metadata-hasleader: true\r\n") != std::string::npos);

  SUBCASE("cancel_watch closes the stream and no callback follows") {
    CHECK(client->cancel_watch(id));
    CHECK(!client->cancel_watch(id));
    loop.run_for(30);
    CHECK(values.size() == 4);
    CHECK(client->open_connections() == 0);
  }
  client.reset();
}

TEST_CASE("a watch cancelled for compaction ends with compacted and its revision, and no retry") {
  FakeGateway gateway([](const FakeRequest&, int fd) {
    FakeGateway::send(
        fd,
        FakeGateway::chunked_head() +
            FakeGateway::chunk(R"({"result":{"header":{"revision":"50"},"created":true}})"
                               "\n"
                               R"({"result":{"header":{},"canceled":true,"compact_revision":"42"}})"
                               "\n"));
    return true;
  });
  TestLoop loop;
  auto client = make_client(loop, {gateway.url()}, {.watch_retry_min_ms = 5});
  std::vector<EtcdError> errors;
  auto id =
      client->watch({.key = "k", .start_revision = 3},
                    {.on_connected = {}, .on_events = {}, .on_error = [&](const EtcdError& e) {
                       errors.push_back(e);
                     }});
  REQUIRE(loop.run_until([&] { return !errors.empty(); }, 5000));
  loop.run_for(50);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].kind == EtcdError::Kind::kCompacted);
  CHECK(errors[0].compact_revision == 42);
  CHECK(gateway.connections() == 1);
  CHECK(!client->cancel_watch(id));  // it ended by itself
  client.reset();
}

TEST_CASE("deadlines: a silent gateway times a write out, and queued requests time out too") {
  FakeGateway silent([](const FakeRequest&, int) { return true; });  // reads, never answers
  TestLoop loop;
  auto client =
      make_client(loop, {silent.url()},
                  {.request_timeout_ms = 150, .attempt_timeout_ms = 1000, .max_connections = 1});
  Slot<etcd::PutResponse> first;
  Slot<etcd::RangeResponse> queued;
  client->put({.key = "k", .value = "v"}, first.callback());
  client->range({.key = "k"}, queued.callback());
  auto start = std::chrono::steady_clock::now();
  REQUIRE(loop.run_until([&] { return first.result && queued.result; }, 5000));
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(took >= std::chrono::milliseconds(140));
  CHECK(took < std::chrono::milliseconds(2000));
  CHECK(first.result->error.kind == EtcdError::Kind::kTimeout);
  CHECK(first.result->error.maybe_committed);
  CHECK(queued.result->error.kind == EtcdError::Kind::kTimeout);
  CHECK(!queued.result->error.maybe_committed);
  client.reset();
}

TEST_CASE(
    "the attempt timeout moves a read to an untried endpoint; the last one gets the deadline") {
  FakeGateway slow([](const FakeRequest&, int fd) {
    ::poll(nullptr, 0, 150);
    FakeGateway::send(fd, FakeGateway::ok(kRangeAnswer));
    return true;
  });
  TestLoop loop;
  auto client =
      make_client(loop, {slow.url()}, {.request_timeout_ms = 5000, .attempt_timeout_ms = 30});
  Slot<etcd::RangeResponse> read;
  client->range({.key = "k"}, read.callback());
  REQUIRE(loop.run_until([&] { return read.result.has_value(); }, 5000));
  CHECK_MESSAGE(read.result->ok(), read.result->error.message);
  CHECK(slow.requests().size() == 1);
  client.reset();
}

TEST_CASE("cancel() drops a request's callback, the connection stays usable") {
  FakeGateway slow([](const FakeRequest&, int fd) {
    ::poll(nullptr, 0, 50);
    FakeGateway::send(fd, FakeGateway::ok(kRangeAnswer));
    return true;
  });
  TestLoop loop;
  auto client = make_client(loop, {slow.url()});
  bool called = false;
  auto id = client->range({.key = "k"}, [&](EtcdResult<etcd::RangeResponse>) { called = true; });
  loop.run_for(10);
  CHECK(client->cancel(id));
  CHECK(!client->cancel(id));
  // The cancelled exchange finishes on its connection (its answer is dropped), which then
  // serves the next request.
  REQUIRE(loop.run_until([&] { return client->idle_connections() == 1; }, 5000));
  Slot<etcd::RangeResponse> next;
  client->range({.key = "k"}, next.callback());
  REQUIRE(loop.run_until([&] { return next.result.has_value(); }, 5000));
  CHECK(next.result->ok());
  CHECK(!called);
  CHECK(slow.connections() == 1);
  client.reset();
}

TEST_CASE("close() and destruction: no callback runs afterwards and every handle is freed") {
  FakeGateway silent([](const FakeRequest&, int) { return true; });
  TestLoop loop;
  int calls = 0;
  auto count = [&calls](auto) { ++calls; };

  SUBCASE("close() with requests queued, on the wire and a watch streaming") {
    auto client = make_client(loop, {silent.url()}, {.max_connections = 1});
    client->range({.key = "a"}, count);
    client->put({.key = "b", .value = "v"}, count);
    client->watch({.key = "c"}, {.on_connected = [&](size_t, int64_t) { ++calls; },
                                 .on_events = {},
                                 .on_error = [&](const EtcdError&) { ++calls; }});
    loop.run_for(30);
    client->close();
    client->close();
    CHECK(client->range({.key = "a"}, count) == 0);
    loop.run_for(30);
    CHECK(calls == 0);
  }
  SUBCASE("a callback may destroy the client; the callbacks after it do not run") {
    FakeGateway fast([](const FakeRequest&, int fd) {
      FakeGateway::send(fd, FakeGateway::ok(kRangeAnswer));
      return true;
    });
    auto client = make_client(loop, {fast.url()});
    // The answers come in any order (one connection each): whichever callback runs first
    // destroys the client, and no other may run.
    auto destroy = [&](EtcdResult<etcd::RangeResponse>) {
      ++calls;
      client.reset();
    };
    for (int i = 0; i < 3; ++i) client->range({.key = "a"}, destroy);
    REQUIRE(loop.run_until([&] { return client == nullptr; }, 5000));
    loop.run_for(50);
    CHECK(calls == 1);
  }
  SUBCASE("an exception thrown by a callback is contained") {
    FakeGateway fast([](const FakeRequest&, int fd) {
      FakeGateway::send(fd, FakeGateway::ok(kRangeAnswer));
      return true;
    });
    auto client = make_client(loop, {fast.url()});
    client->range({.key = "a"}, [](EtcdResult<etcd::RangeResponse>) -> void {
      throw std::runtime_error("from a test callback");
    });
    client->range({.key = "a"}, count);
    REQUIRE(loop.run_until([&] { return calls == 1; }, 5000));
  }
  SUBCASE("destroyed before start, and start refuses bad endpoints") {
    EtcdClient unstarted(loop.get(), {});
    std::string error;
    CHECK(!unstarted.start(&error));
    CHECK(error == "no etcd endpoints");
    EtcdClient bad(loop.get(), {.endpoints = {"https://127.0.0.1:1"}});
    CHECK(!bad.start(&error));
    CHECK(error.find("https:// needs TLS settings") != std::string::npos);
    CHECK(bad.range({.key = "a"}, count) == 0);
  }
}

}  // namespace
}  // namespace sluice::control
