// Loop-level test of one Worker: its own thread and loop serve a real request from a client on
// the test's loop through its upstream pool to a server on the test's loop; request_stop() then
// closes the client connection and the pooled upstream connection, and join() returns (the
// worker's loop ran out of handles). The test loop ends with uv_loop_close() == 0.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <string>

#include "config/loader.h"
#include "loop_server.h"
#include "routing/table.h"
#include "worker/worker.h"

namespace sluice::worker {
namespace {

// A bound, not yet listening, non-blocking socket on 127.0.0.1:0 (the Worker listens on it).
int bound_socket(uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  port = ntohs(addr.sin_port);
  return fd;
}

// One HTTP client connection on the test loop: sends `request` once connected, keeps what comes
// back, notes the peer's close.
struct Client {
  uv_tcp_t tcp{};
  uv_connect_t connect{};
  uv_write_t write{};
  std::string request, received;
  bool eof = false;
  int connect_status = 1;

  void start(uv_loop_t* loop, uint16_t port, std::string req) {
    request = std::move(req);
    uv_tcp_init(loop, &tcp);
    tcp.data = this;
    connect.data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_connect(&connect, &tcp, reinterpret_cast<const sockaddr*>(&addr), &Client::on_connect);
  }
  static void on_connect(uv_connect_t* c, int status) {
    auto* self = static_cast<Client*>(c->data);
    self->connect_status = status;
    if (status < 0) return;
    uv_buf_t buf = uv_buf_init(self->request.data(), static_cast<unsigned>(self->request.size()));
    uv_write(&self->write, reinterpret_cast<uv_stream_t*>(&self->tcp), &buf, 1, nullptr);
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&self->tcp),
        [](uv_handle_t*, size_t, uv_buf_t* b) {
          static char storage[65536];
          *b = uv_buf_init(storage, sizeof storage);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
          auto* me = static_cast<Client*>(s->data);
          if (n < 0) {
            me->eof = true;
            uv_read_stop(s);
          } else {
            me->received.append(b->base, static_cast<size_t>(n));
          }
        });
  }
};

// Runs `loop` until `done` holds, at most 10 s (a timer keeps the loop from blocking for good
// while the other side is another thread).
template <typename Done>
bool run_until(uv_loop_t* loop, Done done) {
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(
      &tick, [](uv_timer_t*) {}, 5, 5);
  const uint64_t until = uv_now(loop) + 10000;
  while (!done() && uv_now(loop) < until) uv_run(loop, UV_RUN_ONCE);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
  return done();
}

}  // namespace

TEST_CASE("a worker serves a request through its pool and closes every connection on stop") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  test::LoopServer upstream(&loop);
  REQUIRE(upstream.port() != 0);
  upstream.response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-upstream: one\r\n\r\nok";

  config::LoadResult cfg = config::load_string(
      "workers = 1\n[listen]\naddress = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n"
      "[functions.shop.versions.1]\nendpoints = [\"127.0.0.1:" +
          std::to_string(upstream.port()) +
          "\"]\n"
          "[functions.shop.aliases.live]\ntraffic = { \"1\" = 100 }\n"
          "[[routes]]\ntarget = \"shop:live\"\n",
      "worker-test.toml");
  REQUIRE(cfg.config.has_value());
  std::vector<config::Diagnostic> errors;
  std::shared_ptr<const routing::RoutingTable> table =
      routing::RoutingTable::build(*cfg.config, &errors);
  REQUIRE(table != nullptr);
  Shared shared;
  shared.table.store(table);
  shared.generation.store(1);
  std::string error;
  REQUIRE(shared.prepare(1, *cfg.config, &error));

  uint16_t port = 0;
  int fd = bound_socket(port);
  REQUIRE(fd >= 0);
  Client client;
  {
    Worker worker(shared, 0, {fd});
    worker.start();
    client.start(&loop, port, "GET / HTTP/1.1\r\nHost: worker.test\r\n\r\n");
    REQUIRE(
        run_until(&loop, [&] { return client.received.find("\r\n\r\nok") != std::string::npos; }));
    CHECK(client.received.rfind("HTTP/1.1 200", 0) == 0);
    CHECK(client.received.find("x-sluice-version: shop:1") != std::string::npos);
    CHECK(upstream.accepted == 1);
    CHECK(upstream.open == 1);  // kept alive in the worker's pool

    worker.request_stop(5000);
    // The idle client connection and the pooled upstream connection are both closed.
    CHECK(run_until(&loop, [&] { return client.eof && upstream.open == 0; }));
    worker.join();  // returns only once the worker's loop has no handle left
  }
  if (shared.access_log) shared.access_log->stop();
  uv_close(reinterpret_cast<uv_handle_t*>(&client.tcp), nullptr);
  upstream.close();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

}  // namespace sluice::worker
