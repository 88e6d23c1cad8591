// The demo upstreams of `sluice demo` on loopback: they answer over keep-alive and pipelined
// requests, close after Connection: close, and a port that is taken fails start() cleanly.
#include "app/demo.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <string>

namespace sluice::app {
namespace {

// A listening socket on 127.0.0.1:0 that holds its port while the test runs.
struct HeldPort {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  uint16_t port = 0;
  HeldPort() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 1) == 0);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
  }
  ~HeldPort() { ::close(fd); }
};

// Sends `request` to 127.0.0.1:port and reads until the server closes (10 s at most).
std::string exchange(uint16_t port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  std::string got;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == ssize_t(request.size())) {
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) got.append(buf, size_t(n));
  }
  ::close(fd);
  return got;
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

TEST_CASE("demo upstreams answer pipelined keep-alive requests, HEAD without a body, then close") {
  uint16_t port = 0;
  {
    HeldPort probe;  // a port that was free a moment ago
    port = probe.port;
  }
  Upstreams upstreams;
  std::string error;
  REQUIRE_MESSAGE(upstreams.start({{"v7", port, 0, 0}}, &error), error);
  const std::string got = exchange(port,
                                   "GET / HTTP/1.1\r\nHost: demo\r\n\r\n"
                                   "HEAD / HTTP/1.1\r\nHost: demo\r\n\r\n"
                                   "GET /x HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n");
  CHECK(count(got, "HTTP/1.1 200 OK\r\n") == 3);
  CHECK(count(got, "x-demo-upstream: v7\r\n") == 3);
  CHECK(count(got, "hello from v7\n") == 2);  // not after the HEAD
  CHECK(count(got, "Connection: close\r\n") == 1);
  REQUIRE(got.size() >= 14);
  CHECK(got.substr(got.size() - 14) == "hello from v7\n");  // the last answer, then the close
  upstreams.stop();
}

TEST_CASE("a demo upstream whose port is taken fails start() with the port named") {
  HeldPort taken;
  Upstreams upstreams;
  std::string error;
  // The first listener is open when the second fails: both are closed before start() returns.
  CHECK_FALSE(upstreams.start({{"first", 0, 0, 0}, {"second", taken.port, 0, 0}}, &error));
  CHECK(error.find("demo upstream second cannot listen on 127.0.0.1:" +
                   std::to_string(taken.port)) != std::string::npos);
  upstreams.stop();  // nothing runs: harmless
}

}  // namespace
}  // namespace sluice::app
