// TcpStream and Listener on a real loopback connection: connect and accept, reading, unread bytes
// (FIONREAD, for shedding), keep-alive, FIN, close -- what the admin API, the demo upstreams and
// the etcd client rely on.
#include <doctest/doctest.h>
#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "net/listener.h"
#include "net/loop_context.h"
#include "net/stream.h"

namespace sluice::net {
namespace {

// What a stream reported to its owner.
struct Recorder final : StreamEvents {
  std::string data;
  int end_status = 0;  // 0: no end yet
  int connected = 1;   // 1: no connect result yet
  int write_errors = 0;
  bool closed = false;
  void on_stream_data(const char* d, size_t len) override { data.append(d, len); }
  void on_stream_end(int status) override { end_status = status; }
  void on_stream_written(int status) override { write_errors += status < 0; }
  void on_stream_connected(int status) override { connected = status; }
  void on_stream_closed() override { closed = true; }
};

struct TestLoop {
  uv_loop_t loop{};
  LoopContext ctx;
  TestLoop() {
    REQUIRE(uv_loop_init(&loop) == 0);
    ctx.loop = &loop;
    loop.data = &ctx;
  }
  // Runs the loop until `done` holds; false after 10 s (a broken stream fails, not hangs).
  bool run_until(const std::function<bool()>& done) {
    const auto start = std::chrono::steady_clock::now();
    while (!done()) {
      if (std::chrono::steady_clock::now() - start > std::chrono::seconds(10)) return false;
      uv_run(&loop, UV_RUN_NOWAIT);
    }
    return true;
  }
};

// A connected pair: `client` (connect) and `server` (accepted from `listener`).
struct Pair {
  TestLoop& t;
  Recorder client_events, server_events;
  TcpStream client{t.ctx, client_events};
  TcpStream server{t.ctx, server_events};
  Listener listener{t.ctx, 7, [this](Listener& from, int status) {
                      CHECK(from.index() == 7);  // no REQUIRE: this runs inside libuv
                      accepted = status < 0 ? status : from.accept(server);
                    }};
  int accepted = 1;  // 1: no connection yet

  explicit Pair(TestLoop& loop) : t(loop) {
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", 0, &addr);
    REQUIRE(listener.bind(reinterpret_cast<const sockaddr*>(&addr), 16) == 0);
    REQUIRE(listener.port() != 0);
    uv_ip4_addr("127.0.0.1", listener.port(), &addr);
    REQUIRE(client.connect(reinterpret_cast<const sockaddr*>(&addr)) == 0);
    REQUIRE(t.run_until([&] { return client_events.connected != 1 && accepted != 1; }));
    REQUIRE(client_events.connected == 0);
    REQUIRE(accepted == 0);
  }
  // Closes everything and checks that the close callbacks came and nothing is left on the loop.
  void close() {
    bool listener_closed = false;
    listener.close([&] { listener_closed = true; });
    client.close();
    server.close();
    client.close();  // twice: harmless
    CHECK(t.run_until(
        [&] { return listener_closed && client_events.closed && server_events.closed; }));
    CHECK(uv_loop_close(&t.loop) == 0);
  }
  void send(TcpStream& s, const std::string& bytes) {
    Outbox out;
    out.copy(bytes);
    REQUIRE(s.write(out) == 0);
    CHECK(out.empty());
  }
};

TEST_CASE("context_of finds the LoopContext in the loop's data, from the loop or a handle") {
  TestLoop t;
  uv_timer_t timer;
  REQUIRE(uv_timer_init(&t.loop, &timer) == 0);
  CHECK(&context_of(&t.loop) == &t.ctx);
  CHECK(&context_of(reinterpret_cast<uv_handle_t*>(&timer)) == &t.ctx);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
  uv_run(&t.loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&t.loop) == 0);
}

TEST_CASE("a stream that was never opened refuses reading and keep-alive, and closes silently") {
  TestLoop t;
  Recorder events;
  TcpStream s(t.ctx, events);
  CHECK_FALSE(s.open());
  CHECK(s.start_reading() == UV_EBADF);
  CHECK_FALSE(s.reading());
  CHECK(s.keepalive(30) == UV_EBADF);
  CHECK(s.unread_bytes() == 0);
  s.close();
  uv_run(&t.loop, UV_RUN_DEFAULT);
  CHECK_FALSE(events.closed);  // nothing was opened: no close callback (stream.h)
  CHECK(uv_loop_close(&t.loop) == 0);
}

TEST_CASE("unread_bytes counts what waits in the kernel until the owner reads it") {
  TestLoop t;
  Pair p(t);
  p.send(p.client, "hello, admin");
  // The server is not reading: the bytes wait in its socket, where FIONREAD sees them.
  CHECK(t.run_until([&] { return p.server.unread_bytes() == 12; }));
  CHECK(p.server_events.data.empty());
  CHECK(p.server.start_reading() == 0);
  CHECK(p.server.reading());
  CHECK(p.server.start_reading() == 0);  // already reading: fine
  CHECK(t.run_until([&] { return p.server_events.data == "hello, admin"; }));
  CHECK(p.server.unread_bytes() == 0);
  p.close();
}

TEST_CASE("keep-alive on a connected stream, then FIN: the peer reads to the end and may answer") {
  TestLoop t;
  Pair p(t);
  CHECK(p.client.keepalive(30) == 0);
  REQUIRE(p.server.start_reading() == 0);
  REQUIRE(p.client.start_reading() == 0);
  p.send(p.client, "request");
  REQUIRE(p.client.shutdown() == 0);
  CHECK(t.run_until([&] { return p.server_events.end_status != 0; }));
  CHECK(p.server_events.end_status == UV_EOF);
  CHECK(p.server_events.data == "request");
  CHECK_FALSE(p.server.reading());  // the end stops reading
  p.send(p.server, "answer");       // half-closed: the other way still works
  CHECK(t.run_until([&] { return p.client_events.data == "answer"; }));
  CHECK(p.client_events.write_errors == 0);
  CHECK(p.server_events.write_errors == 0);
  p.close();
}

}  // namespace
}  // namespace sluice::net
