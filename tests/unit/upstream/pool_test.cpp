// Loop-level tests of upstream::Connection and Pool against a loopback server on the test's own
// loop: connect, lend, exchange, release to idle and reuse, idle timeout, close_all, refused
// connects and response timeouts. Each ends with uv_loop_close() == 0 (no handle leaked).
#include <doctest/doctest.h>
#include <uv.h>

#include <optional>
#include <string>

#include "loop_server.h"
#include "net/loop_context.h"
#include "upstream/connection.h"

namespace sluice::upstream {
namespace {

using test::LoopServer;

// A test loop with the LoopContext that connections find through loop->data.
struct TestLoop {
  uv_loop_t loop{};
  net::LoopContext ctx;
  TestLoop() {
    REQUIRE(uv_loop_init(&loop) == 0);
    loop.data = &ctx;
    ctx.loop = &loop;
  }
  // Runs the loop until `done` holds or nothing is left to run (bounded by a 10 s timer, so a
  // broken connection fails the test instead of hanging it).
  template <typename Done>
  bool run_until(Done done) {
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    bool timed_out = false;
    guard.data = &timed_out;
    uv_timer_start(
        &guard, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; }, 10000, 0);
    uv_unref(reinterpret_cast<uv_handle_t*>(&guard));
    while (!done() && !timed_out && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&guard), nullptr);
    uv_run(&loop, UV_RUN_NOWAIT);
    return done();
  }
  int close() {
    uv_run(&loop, UV_RUN_DEFAULT);  // every close callback
    return uv_loop_close(&loop);
  }
};

// Records one exchange; releases the connection (reusable) once the response has ended, as a
// client connection does at its flush point.
struct Recorder : Borrower {
  Connection* conn = nullptr;
  int status = 0;
  std::string body;
  bool ended = false;
  std::optional<Failure> failure;
  bool failed_after_response_started = false, failed_reused = false;

  void start(Connection* c, const std::string& request, uint32_t response_timeout_ms = 5000) {
    conn = c;
    c->lend(this, response_timeout_ms, false);
    c->out().copy(request);
    c->end_of_request();
    c->flush();
  }
  int on_upstream_head(http::Parser& p) override {
    status = p.status_code();
    return 0;
  }
  int on_upstream_body(const char* data, size_t len) override {
    body.append(data, len);
    return 0;
  }
  bool on_upstream_end(http::Parser&) override {
    ended = true;
    return true;
  }
  void on_upstream_raw(const char*, size_t) override {}
  void on_upstream_flush() override {
    if (ended && conn) std::exchange(conn, nullptr)->release(true);
  }
  void on_upstream_failed(Failure kind, bool response_started, bool reused,
                          std::string* unsent_bytes) override {
    conn = nullptr;
    failure = kind;
    failed_after_response_started = response_started;
    failed_reused = reused;
    if (unsent_bytes) unsent = *unsent_bytes;
    nothing_sent = unsent_bytes != nullptr;
  }
  std::string unsent;
  bool nothing_sent = false;
  void on_upstream_drained() override {}
  void on_upstream_eof() override {
    conn = nullptr;
    eof = true;
  }
  bool eof = false;
};

const std::string kGet = "GET / HTTP/1.1\r\nHost: pool.test\r\n\r\n";

}  // namespace

TEST_CASE("a pooled connection connects, exchanges, goes idle and is reused for the next request") {
  TestLoop t;
  LoopServer server(&t.loop);
  REQUIRE(server.port() != 0);
  {
    Pool pool(t.ctx, server.endpoint(), 8, 60000);
    CHECK(pool.take_idle() == nullptr);
    Connection* c = Connection::open(pool, 1000);
    REQUIRE(c != nullptr);
    CHECK_FALSE(c->reused());
    Recorder first;
    first.start(c, kGet);
    REQUIRE(t.run_until([&] { return first.ended && !first.conn; }));
    CHECK(first.status == 200);
    CHECK(first.body == "ok");
    CHECK_FALSE(first.failure);
    CHECK(pool.idle_count() == 1);

    Connection* again = pool.take_idle();
    CHECK(again == c);
    CHECK(pool.idle_count() == 0);
    REQUIRE(again != nullptr);
    CHECK(again->reused());
    Recorder second;
    second.start(again, kGet);
    REQUIRE(t.run_until([&] { return second.ended && !second.conn; }));
    CHECK(second.status == 200);
    CHECK(server.accepted == 1);  // one TCP connection for both requests
    CHECK(server.requests == 2);

    pool.close_all();
    CHECK(pool.idle_count() == 0);
    REQUIRE(t.run_until([&] { return server.open == 0; }));  // the server saw the close
  }
  server.close();
  CHECK(t.close() == 0);
}

TEST_CASE("an idle connection is closed after the idle timeout") {
  TestLoop t;
  LoopServer server(&t.loop);
  REQUIRE(server.port() != 0);
  {
    Pool pool(t.ctx, server.endpoint(), 8, 50);
    Recorder r;
    // Loop time before the exchange: the idle timer starts later, so it cannot fire before
    // this + 50 ms (the loop clock is cached per iteration; a later reading could be late).
    const uint64_t before = uv_now(&t.loop);
    r.start(Connection::open(pool, 1000), kGet);
    REQUIRE(t.run_until([&] { return r.ended && !r.conn; }));
    REQUIRE(pool.idle_count() == 1);
    REQUIRE(t.run_until([&] { return pool.idle_count() == 0 && server.open == 0; }));
    CHECK(uv_now(&t.loop) - before >= 50);
    CHECK(pool.take_idle() == nullptr);
  }
  server.close();
  CHECK(t.close() == 0);
}

TEST_CASE("a connection the server closes while idle leaves the pool") {
  TestLoop t;
  LoopServer server(&t.loop);
  REQUIRE(server.port() != 0);
  {
    Pool pool(t.ctx, server.endpoint(), 8, 60000);
    Recorder r;
    r.start(Connection::open(pool, 1000), kGet);
    REQUIRE(t.run_until([&] { return r.ended && !r.conn; }));
    REQUIRE(pool.idle_count() == 1);
    server.close();  // the upstream restarts: its side of the idle connection closes
    REQUIRE(t.run_until([&] { return pool.idle_count() == 0; }));
    CHECK(pool.take_idle() == nullptr);
  }
  CHECK(t.close() == 0);
}

TEST_CASE("close_all closes every idle connection of a pool") {
  TestLoop t;
  LoopServer server(&t.loop);
  REQUIRE(server.port() != 0);
  {
    Pool pool(t.ctx, server.endpoint(), 8, 60000);
    Recorder a, b;
    a.start(Connection::open(pool, 1000), kGet);
    b.start(Connection::open(pool, 1000), kGet);
    REQUIRE(t.run_until([&] { return a.ended && b.ended && !a.conn && !b.conn; }));
    CHECK(server.accepted == 2);
    CHECK(pool.idle_count() >= 1);  // how many idle ones a pool keeps is its own policy
    pool.close_all();
    CHECK(pool.idle_count() == 0);
    REQUIRE(t.run_until([&] { return server.open == 0; }));
  }
  server.close();
  CHECK(t.close() == 0);
}

TEST_CASE("a refused connect reports Failure::kConnect to the borrower") {
  const uint16_t port = test::refused_port();
  REQUIRE(port != 0);
  TestLoop t;
  {
    Pool pool(t.ctx, LoopServer::endpoint_at(port), 8, 60000);
    Connection* c = Connection::open(pool, 5000);
    REQUIRE(c != nullptr);
    Recorder r;
    r.start(c, kGet);
    REQUIRE(t.run_until([&] { return r.failure.has_value(); }));
    CHECK(*r.failure == Failure::kConnect);
    // Never connected: the request's bytes come back for another attempt elsewhere.
    CHECK(r.nothing_sent);
    CHECK(r.unsent == kGet);
    CHECK_FALSE(r.failed_after_response_started);
    CHECK_FALSE(r.failed_reused);
    CHECK(pool.idle_count() == 0);
  }
  CHECK(t.close() == 0);
}

TEST_CASE("an upstream that never answers is cut at the response timeout") {
  TestLoop t;
  LoopServer server(&t.loop);
  REQUIRE(server.port() != 0);
  server.answer = false;
  {
    Pool pool(t.ctx, server.endpoint(), 8, 60000);
    Recorder r;
    const uint64_t start = uv_now(&t.loop);  // not after the response timer starts
    r.start(Connection::open(pool, 1000), kGet, 100);
    REQUIRE(t.run_until([&] { return r.failure.has_value(); }));
    CHECK(*r.failure == Failure::kTimeout);
    CHECK(uv_now(&t.loop) - start >= 100);
    CHECK(server.requests == 1);
    REQUIRE(t.run_until([&] { return server.open == 0; }));  // the connection was closed
    CHECK(pool.idle_count() == 0);
  }
  server.close();
  CHECK(t.close() == 0);
}

TEST_CASE("a response cut short by the upstream reports a reset after the response started") {
  TestLoop t;
  LoopServer server(&t.loop);
  REQUIRE(server.port() != 0);
  server.response = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
  {
    Pool pool(t.ctx, server.endpoint(), 8, 60000);
    Recorder r;
    r.start(Connection::open(pool, 1000), kGet);
    REQUIRE(t.run_until([&] { return server.requests == 1 && r.body == "short"; }));
    server.close();  // closes mid-body
    REQUIRE(t.run_until([&] { return r.failure.has_value(); }));
    CHECK(*r.failure == Failure::kReset);
    CHECK(r.failed_after_response_started);
    CHECK_FALSE(r.ended);
    CHECK(pool.idle_count() == 0);
  }
  CHECK(t.close() == 0);
}

TEST_CASE("a pool keeps as many idle connections as its recent peak needed, within keepalive") {
  TestLoop t;
  LoopServer server(&t.loop);
  REQUIRE(server.port() != 0);
  {
    Pool pool(t.ctx, server.endpoint(), 8, 60000);
    Recorder r[3];
    for (Recorder& x : r) x.start(Connection::open(pool, 1000), kGet);
    CHECK(pool.busy_count() == 3);
    REQUIRE(t.run_until([&] {
      return r[0].ended && r[1].ended && r[2].ended && !r[0].conn && !r[1].conn && !r[2].conn;
    }));
    CHECK(pool.busy_count() == 0);
    CHECK(pool.recent_peak() == 3);
    CHECK(pool.idle_count() == 3);  // three at once were needed: all three are kept

    SUBCASE("a lowered keepalive closes the idle ones over it at once") {
      pool.configure(1, 60000);
      CHECK(pool.idle_count() == 1);
      REQUIRE(t.run_until([&] { return server.open == 1; }));
    }
    SUBCASE("keepalive caps what the peak would keep") {
      Pool capped(t.ctx, server.endpoint(), 2, 60000);
      Recorder q[3];
      for (Recorder& x : q) x.start(Connection::open(capped, 1000), kGet);
      REQUIRE(t.run_until([&] {
        return q[0].ended && q[1].ended && q[2].ended && !q[0].conn && !q[1].conn && !q[2].conn;
      }));
      CHECK(capped.idle_count() == 2);
      capped.close_all();
      REQUIRE(t.run_until([&] { return server.open == 3; }));  // its connections are gone
    }
    pool.close_all();
    REQUIRE(t.run_until([&] { return server.open == 0; }));
  }
  server.close();
  CHECK(t.close() == 0);
}

}  // namespace sluice::upstream
