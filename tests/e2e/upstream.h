// The e2e test upstream: an in-process, thread-per-connection, blocking HTTP/1.1 server on
// 127.0.0.1:0 that names itself in `x-upstream`, records every request head it receives and
// counts requests and connections, so tests can check who answered and what reached it.
//
// Paths (the query string is ignored for dispatch; every response carries x-upstream: NAME,
// x-target: <request-target> and x-conn: <connection ordinal, from 1>):
//   /                 200 "hello from NAME\n" (also any path not listed here)
//   /echo             200 chunked, echoes the request body as it streams in
//   /count-body       reads the whole body streaming; 200 "bytes=N hash=H" (FNV-1a 64, hex).
//                     ?delay_ms=N waits before reading the body (back-pressure tests)
//   /download?bytes=N 200 with content-length N, streaming pattern_byte() bytes
//   /status/N         status N; 204 and 304 without body (304 still says content-length: 12)
//   /slow?ms=N        waits N ms, then 200 "slow NAME"
//   /close            closes the connection without answering
//   /early            200 "early NAME" at once without reading the request body, then closes
//   /stall-body       200 with content-length 1000 but only 10 body bytes, then silence
//   /close-if-reused  on a connection's first request: 200 "fresh"; on a later one: closes
//                     without answering (a pooled connection dying under a request)
//   /bad              answers with an invalid status line, then closes
//   /ws               with Upgrade: websocket: 101, then echoes raw bytes until EOF
//                     (?close_after=N: closes once it has echoed N bytes)
//   /headers          200, body = the raw request head as received
//   /early-hints      103 Early Hints, then 200 "after hints"
//   /hop-response     200 with hop-by-hop headers (Connection: x-up-hop, x-up-hop, Keep-Alive)
//   /close-after      200 "closing" (keep-alive framing), then closes the connection silently
//   /resp-te-cl       200 with both transfer-encoding: chunked and content-length (invalid)
//   /resp-dup-cl      200 with two differing content-length headers (invalid)
//   /eof-body         200 with neither content-length nor chunked: the body ends at close
//   /truncated        200 with content-length 1000 but only 9 body bytes, then closes
//   /bad-chunked      200 chunked: one good chunk, then an invalid chunk size, then closes
// A request with Expect: 100-continue first gets "HTTP/1.1 100 Continue".
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "wire.h"

namespace sluice::e2e {

// One request head as the upstream received it.
struct ReceivedRequest {
  std::string head;  // raw bytes up to and including the blank line
  std::string method;
  std::string target;
  std::string version;  // "HTTP/1.1"
  Headers headers;
  size_t connection = 0;  // ordinal of the connection it came on, from 1
};

class Upstream {
 public:
  // Binds 127.0.0.1:`port` (0: a free one) and starts accepting. `name` goes into every
  // x-upstream header. A given port lets a test bring a stopped upstream back where it was.
  explicit Upstream(std::string name, uint16_t port = 0);
  // Stops accepting, shuts every open connection down, joins all threads.
  ~Upstream();
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  const std::string& name() const { return name_; }
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  size_t requests() const { return requests_.load(); }        // request heads parsed
  size_t connections() const { return connections_.load(); }  // connections accepted
  size_t open_connections() const;
  std::vector<ReceivedRequest> received() const;  // copy of every recorded head, in order
  // Number of recorded requests whose target starts with `prefix`.
  size_t count_target(const std::string& prefix) const;
  void reset_counts();  // forgets recorded requests and zeroes both counters

  // Stops the server (idempotent); called by the destructor.
  void stop();

 private:
  struct Conn {
    int fd = -1;
    bool closed = false;  // guarded by mu_
  };

  void accept_loop();
  void serve(std::shared_ptr<Conn> conn, size_t ordinal);
  // Waits up to `ms`; false if the server is stopping.
  bool wait_ms(int ms);

  std::string name_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd that wakes accept_loop on stop
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> requests_{0};
  std::atomic<size_t> connections_{0};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Conn>> conns_;
  std::vector<std::thread> threads_;
  std::vector<ReceivedRequest> received_;
  std::thread acceptor_;
};

// A loopback port with nothing listening on it (bound then closed), for connect-refused tests.
uint16_t unused_port();

// A listening socket that never accepts and whose accept queue is full, so a connect to it
// hangs (SYNs are dropped) until the connector times out. For connect-timeout tests.
class BlackholeListener {
 public:
  BlackholeListener();
  ~BlackholeListener();
  uint16_t port() const { return port_; }

 private:
  int listen_fd_ = -1;
  std::vector<int> fillers_;
  uint16_t port_ = 0;
};

}  // namespace sluice::e2e
