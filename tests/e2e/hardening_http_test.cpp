// End-to-end regressions for the HTTP layer's edge hardening (issue 9): Connection can never
// remove framing, Host or x-request-id; h2c is never forwarded; strict request lines and heads;
// Host is never lost; X-Forwarded-* are believed only from trusted proxies.
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "e2e.h"

using namespace sluice::e2e;

namespace {

// One function "shop" with version 1 at `address`, alias prod = 100% v1, route "/" -> shop:prod.
// One worker, so every client shares one upstream pool (what a smuggled request would abuse).
std::string config_for(const std::string& address, const std::string& listen_extra = "") {
  ConfigText cfg;
  cfg.workers = 1;
  cfg.function("shop", {{"1", {address}}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  std::string text = cfg.str();
  if (!listen_extra.empty()) {
    const std::string listen = "[listen]\naddress = \"127.0.0.1:0\"\n";
    const size_t at = text.find(listen);
    REQUIRE(at != std::string::npos);
    text.insert(at + listen.size(), listen_extra);
  }
  return text;
}

// Sends `bytes` on a fresh connection and returns the first response.
std::optional<Response> one_shot(RawClient& c, const std::string& bytes, int timeout_ms = 5000) {
  if (!c.connected() || !c.send(bytes)) return std::nullopt;
  return c.read_response(timeout_ms);
}

// An upstream that answers every request head with the same canned bytes (for response headers
// the test upstream does not send). Thread per connection; stopped and joined on destruction.
class CannedUpstream {
 public:
  explicit CannedUpstream(std::string response) : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0 && ::listen(fd_, 64) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~CannedUpstream() {
    stop_ = true;
    acceptor_.join();
    for (std::thread& t : conns_) t.join();
    ::close(fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_.load(); }

 private:
  bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 50) > 0;
  }
  void accept_loop() {
    while (!stop_) {
      if (!readable(fd_)) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0) conns_.emplace_back([this, c] { serve(c); });
    }
  }
  void serve(int c) {
    std::string buf;
    char tmp[4096];
    while (!stop_) {
      size_t end = buf.find("\r\n\r\n");
      if (end != std::string::npos) {
        buf.erase(0, end + 4);
        ++requests_;
        if (::send(c, response_.data(), response_.size(), MSG_NOSIGNAL) < 0) break;
        continue;
      }
      if (!readable(c)) continue;
      ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
      if (n <= 0) break;
      buf.append(tmp, static_cast<size_t>(n));
    }
    ::close(c);
  }

  std::string response_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread acceptor_;
  std::vector<std::thread> conns_;
};

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

}  // namespace

TEST_CASE("Connection: content-length cannot smuggle a request body onto a pooled connection") {
  Upstream v1("v1");
  Sluice s(config_for(v1.address()));
  REQUIRE_STARTED(s);
  const std::string smuggled = "GET /smuggled HTTP/1.1\r\nHost: e2e.test\r\n\r\n";
  RawClient c(s.port());
  REQUIRE(
      c.send("POST /count-body HTTP/1.1\r\nHost: e2e.test\r\nConnection: content-length\r\n"
             "Content-Length: " +
             std::to_string(smuggled.size()) + "\r\n\r\n" + smuggled));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body.rfind("bytes=" + std::to_string(smuggled.size()) + " ", 0) == 0);

  // Another client on the same pooled upstream connection gets its own answer, and so does the
  // first client's next request.
  RawClient other(s.port());
  auto o = one_shot(other, raw_request("GET", "/other"));
  REQUIRE(o);
  CHECK(o->header("x-target") == "/other");
  REQUIRE(c.send(raw_request("GET", "/next")));
  auto n = c.read_response();
  REQUIRE(n);
  CHECK(n->header("x-target") == "/next");
  CHECK(!c.read_response(300));  // nothing else arrives

  CHECK(v1.count_target("/smuggled") == 0);
  auto seen = v1.received();
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].target == "/count-body");
  CHECK(seen[0].headers.get("content-length") == std::to_string(smuggled.size()));
  CHECK(seen[0].headers.count("content-length") == 1);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("Connection: transfer-encoding still forwards a chunked body re-chunked") {
  Upstream v1("v1");
  Sluice s(config_for(v1.address()));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  auto r = one_shot(c,
                    "POST /count-body HTTP/1.1\r\nHost: e2e.test\r\n"
                    "Connection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n0\r\n\r\n");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body.rfind("bytes=5 ", 0) == 0);
  auto seen = v1.received();
  REQUIRE(seen.size() == 1);
  CHECK(to_lower(seen[0].headers.get("transfer-encoding")) == "chunked");
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("Connection: host and Connection: x-request-id do not strip them") {
  Upstream v1("v1");
  Sluice s(config_for(v1.address()));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  REQUIRE(c.send("GET /headers HTTP/1.1\r\nHost: shop.example\r\nConnection: host\r\n\r\n"));
  REQUIRE(c.read_response());
  REQUIRE(
      c.send("GET /headers HTTP/1.1\r\nHost: shop.example\r\nConnection: x-request-id\r\n"
             "X-Request-Id: abc-123\r\n\r\n"));
  REQUIRE(c.read_response());
  auto seen = v1.received();
  REQUIRE(seen.size() == 2);
  CAPTURE(seen[0].head);
  CHECK(seen[0].headers.count("host") == 1);
  CHECK(seen[0].headers.get("host") == "shop.example");
  CAPTURE(seen[1].head);
  CHECK(seen[1].headers.count("x-request-id") == 1);
  CHECK(seen[1].headers.get("x-request-id") == "abc-123");
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an upstream's Connection: content-length does not break the client's framing") {
  CannedUpstream up(
      "HTTP/1.1 200 OK\r\nConnection: content-length, x-up-hop\r\nx-up-hop: 1\r\n"
      "Content-Length: 5\r\n\r\nhello");
  Sluice s(config_for(up.address()));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  for (int i = 0; i < 2; ++i) {  // keep-alive: the second answer is framed as well
    CAPTURE(i);
    REQUIRE(c.send(raw_request("GET", "/")));
    auto r = c.read_response(5000);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->header("content-length") == "5");
    CHECK(r->body == "hello");
    CHECK(!r->headers.has("x-up-hop"));
  }
  CHECK(up.requests() == 2);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an HTTP/1.0 request without Host reaches the upstream with the endpoint's address") {
  Upstream v1("v1");
  Sluice s(config_for(v1.address()));
  REQUIRE_STARTED(s);
  RawClient c(s.port());
  auto r = one_shot(c, "GET /headers HTTP/1.0\r\n\r\n");
  REQUIRE(r);
  CHECK(r->status == 200);
  auto seen = v1.received();
  REQUIRE(seen.size() == 1);
  CAPTURE(seen[0].head);
  CHECK(seen[0].version == "HTTP/1.1");
  CHECK(seen[0].headers.count("host") == 1);
  CHECK(seen[0].headers.get("host") == v1.address());
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("an h2c upgrade offer is served as HTTP/1.1 and never forwarded") {
  Upstream v1("v1");
  Sluice s(config_for(v1.address()));
  REQUIRE_STARTED(s);

  SUBCASE("raw, with a pipelined request after it") {
    RawClient c(s.port());
    REQUIRE(
        c.send("GET /headers HTTP/1.1\r\nHost: e2e.test\r\nConnection: Upgrade, HTTP2-Settings"
               "\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n" +
               raw_request("GET", "/after-h2c")));
    auto r = c.read_response(5000);
    REQUIRE(r);
    CHECK(r->status == 200);
    auto next = c.read_response(5000);
    REQUIRE(next);
    CHECK(next->header("x-target") == "/after-h2c");
    auto seen = v1.received();
    REQUIRE(seen.size() == 2);
    CAPTURE(seen[0].head);
    CHECK(!seen[0].headers.has("upgrade"));
    CHECK(!seen[0].headers.has("http2-settings"));
    CHECK(!seen[0].headers.has("connection"));
  }
  SUBCASE("curl --http2 on http:// (Upgrade: h2c), twice on one connection") {
    CURL* easy = curl_easy_init();
    REQUIRE(easy);
    std::string body;
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, long(CURL_HTTP_VERSION_2_0));
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &collect);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 5000L);
    long connects = 0;
    for (int i = 0; i < 2; ++i) {
      CAPTURE(i);
      body.clear();
      const std::string url = s.url("/h2c-" + std::to_string(i));
      curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
      CHECK(curl_easy_perform(easy) == CURLE_OK);
      long status = 0, version = 0, n = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version);
      curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &n);
      connects += n;
      CHECK(status == 200);
      CHECK(version == CURL_HTTP_VERSION_1_1);
      CHECK(body == "hello from v1\n");
    }
    CHECK(connects == 1);
    curl_easy_cleanup(easy);
    for (const ReceivedRequest& req : v1.received()) {
      CAPTURE(req.head);
      CHECK(!req.headers.has("upgrade"));
      CHECK(!req.headers.has("http2-settings"));
    }
  }
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a request line without an HTTP version is answered 400 at once and closed") {
  Upstream v1("v1");
  Sluice s(config_for(v1.address()));
  REQUIRE_STARTED(s);
  for (const std::string bytes : {"GET /path\r\n\r\n", "GET /\r\n"}) {
    CAPTURE(bytes);
    RawClient c(s.port());
    const auto start = std::chrono::steady_clock::now();
    auto r = one_shot(c, bytes);
    REQUIRE(r);
    // header_timeout is 10 s: the answer must not wait for it.
    CHECK(elapsed_ms(start) < 2000);
    check_generated_error(*r, 400, "missing-http-version");
    CHECK(c.wait_closed(5000));
  }
  CHECK(v1.requests() == 0);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("heads that RFC 9112 lets a proxy reject are rejected and not repaired") {
  Upstream v1("v1");
  Sluice s(config_for(v1.address()));
  REQUIRE_STARTED(s);
  struct Case {
    std::string name;
    std::string bytes;
    int status;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"obs-fold", "GET / HTTP/1.1\r\nHost: e2e.test\r\nX-A: b\r\n c\r\n\r\n", 400, "obs-fold"},
      {"two spaces after the method", "GET  / HTTP/1.1\r\nHost: e2e.test\r\n\r\n", 400,
       "bad-whitespace"},
      {"two spaces before the version", "GET /  HTTP/1.1\r\nHost: e2e.test\r\n\r\n", 400,
       "bad-whitespace"},
      {"gzip before chunked",
       "POST /count-body HTTP/1.1\r\nHost: e2e.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
       "5\r\nhello\r\n0\r\n\r\n",
       501, "unsupported-transfer-coding"},
      {"bare LF ending the head", "GET / HTTP/1.1\r\nHost: e2e.test\r\n\n", 400, "bare-lf"},
      {"HTTP/2.0 in a request line", "GET / HTTP/2.0\r\nHost: e2e.test\r\n\r\n", 505,
       "unsupported-http-version"},
  };
  for (const Case& k : cases) {
    CAPTURE(k.name);
    RawClient c(s.port());
    auto r = one_shot(c, k.bytes);
    REQUIRE(r);
    check_generated_error(*r, k.status, k.reason);
    CHECK(c.wait_closed(5000));
  }
  CHECK(v1.requests() == 0);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("X-Forwarded-* are overwritten unless the peer is a trusted proxy") {
  Upstream v1("v1");
  const std::string request =
      "GET /headers HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 10.1.2.3\r\n"
      "X-Forwarded-Proto: https\r\nX-Forwarded-Host: public.example\r\n\r\n";

  SUBCASE("by default nobody is trusted") {
    Sluice s(config_for(v1.address()));
    REQUIRE_STARTED(s);
    RawClient c(s.port());
    REQUIRE(one_shot(c, request));
    auto seen = v1.received();
    REQUIRE(seen.size() == 1);
    CAPTURE(seen[0].head);
    CHECK(seen[0].headers.get("x-forwarded-for") == "127.0.0.1");
    CHECK(seen[0].headers.get("x-forwarded-proto") == "http");
    CHECK(seen[0].headers.get("x-forwarded-host") == "shop.example");
    CHECK(seen[0].headers.count("x-forwarded-for") == 1);
    CHECK_CLEAN_STOP(s);
  }
  SUBCASE("a peer in trusted_proxies is appended to and believed") {
    Sluice s(config_for(v1.address(), "trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.0/8\"]\n"));
    REQUIRE_STARTED(s);
    RawClient c(s.port());
    REQUIRE(one_shot(c, request));
    auto seen = v1.received();
    REQUIRE(seen.size() == 1);
    CAPTURE(seen[0].head);
    CHECK(seen[0].headers.get("x-forwarded-for") == "10.1.2.3, 127.0.0.1");
    CHECK(seen[0].headers.get("x-forwarded-proto") == "https");
    CHECK(seen[0].headers.get("x-forwarded-host") == "public.example");
    CHECK(seen[0].headers.count("x-forwarded-proto") == 1);
    CHECK_CLEAN_STOP(s);
  }
  SUBCASE("a reload applies trusted_proxies to the next connection") {
    Sluice s(config_for(v1.address()));
    REQUIRE_STARTED(s);
    std::ofstream(s.config_path(), std::ios::trunc)
        << config_for(v1.address(), "trusted_proxies = [\"127.0.0.0/8\"]\n");
    REQUIRE(s.signal(SIGHUP));
    CHECK(poll_until(
        [&] {
          RawClient c(s.port());
          auto r = one_shot(c, request);
          return r && r->body.find("X-Forwarded-For: 10.1.2.3, 127.0.0.1\r\n") != std::string::npos;
        },
        10000));
    CHECK_CLEAN_STOP(s);
  }
  SUBCASE("trusting another range does not trust this peer") {
    Sluice s(config_for(v1.address(), "trusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]\n"));
    REQUIRE_STARTED(s);
    RawClient c(s.port());
    REQUIRE(one_shot(c, request));
    auto seen = v1.received();
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].headers.get("x-forwarded-for") == "127.0.0.1");
    CHECK(seen[0].headers.get("x-forwarded-proto") == "http");
    CHECK_CLEAN_STOP(s);
  }
}
