// End-to-end: TLS on the listener side (issue 12). Real clients -- libcurl, the openssl CLI, a
// blocking OpenSSL client for WebSocket bytes -- against the real binary, with a test CA and
// certificates generated at test time (tests/tls_test_certs.sh).
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "admin_test_util.h"
#include "e2e.h"
#include "tls_test_certs.h"

using namespace sluice::e2e;
using sluice::e2e::admin::admin_port;
using sluice::e2e::admin::api;
using sluice::test::tls_asset;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A config whose [listen] speaks TLS with `tls` (the inside of tls = { ... }).
std::string tls_config(const Upstream& up, const std::string& tls, const std::string& limits = "",
                       const std::string& access_log = "off") {
  ConfigText c;
  c.listen_extra = "tls = { " + tls + " }\n";
  c.limits = limits;
  c.access_log = access_log;
  c.function("shop", {{"1", {up.address()}}})
      .alias("shop", "live", R"({ "1" = 100 })")
      .route("shop:live");
  return c.str();
}

std::string pair_of(const std::string& cert, const std::string& key) {
  return "cert = \"" + tls_asset(cert) + "\", key = \"" + tls_asset(key) + "\"";
}

// One HTTPS request with libcurl, verifying against the test CA, with example.test (or `name`)
// resolved to loopback. `reuse`: an easy handle kept between calls (keep-alive), else a fresh
// connection each time.
struct TlsGet {
  long status = 0;
  std::string error, body, serial, key_algorithm;
  long new_connections = 0;
};

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

TlsGet https_get(CURL* easy, uint16_t port, const std::string& path, long max_tls = 0,
                 const std::string& name = "example.test") {
  TlsGet r;
  curl_easy_reset(easy);
  const std::string url = "https://" + name + ":" + std::to_string(port) + path;
  const std::string resolve = name + ":" + std::to_string(port) + ":127.0.0.1";
  curl_slist* hosts = curl_slist_append(nullptr, resolve.c_str());
  const std::string ca = tls_asset("ca.pem");
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_RESOLVE, hosts);
  curl_easy_setopt(easy, CURLOPT_CAINFO, ca.c_str());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROXY, "");
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(easy, CURLOPT_CERTINFO, 1L);
  if (max_tls) curl_easy_setopt(easy, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2 | max_tls);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &r.body);
  const CURLcode rc = curl_easy_perform(easy);
  if (rc != CURLE_OK) r.error = curl_easy_strerror(rc);
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &r.new_connections);
  curl_certinfo* info = nullptr;
  if (curl_easy_getinfo(easy, CURLINFO_CERTINFO, &info) == CURLE_OK && info &&
      info->num_of_certs > 0) {
    for (curl_slist* s = info->certinfo[0]; s; s = s->next) {
      const std::string field = s->data;
      if (field.rfind("Serial Number:", 0) == 0) r.serial = field.substr(14);
      if (field.rfind("Public Key Algorithm:", 0) == 0) r.key_algorithm = field.substr(21);
    }
  }
  curl_slist_free_all(hosts);
  return r;
}

// The subject line openssl s_client prints for the certificate sluice served. `sni`: "" sends
// none (-noservername).
std::string served_subject(uint16_t port, const std::string& sni) {
  const std::string out = shell_output(
      "timeout 10 openssl s_client -connect 127.0.0.1:" + std::to_string(port) +
      (sni.empty() ? " -noservername" : " -servername " + sni) + " -alpn http/1.1 </dev/null");
  const size_t at = out.find("subject=");
  return at == std::string::npos ? "" : out.substr(at, out.find('\n', at) - at);
}

// A blocking TLS client over one socket (for bytes curl cannot send: a WebSocket session).
class TlsClient {
 public:
  explicit TlsClient(uint16_t port) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx_, tls_asset("ca.pem").c_str(), nullptr);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, "example.test");
    SSL_set1_host(ssl_, "example.test");
    ok_ = SSL_connect(ssl_) == 1;
  }
  ~TlsClient() {
    if (ssl_) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
    SSL_CTX_free(ctx_);
  }
  bool ok() const { return ok_; }
  bool send(const std::string& s) { return ok_ && SSL_write(ssl_, s.data(), int(s.size())) > 0; }
  // Reads until `until` appears in what was read (or EOF/timeout); returns all of it.
  std::string read_until(const std::string& until) {
    while (buf_.find(until) == std::string::npos) {
      char b[4096];
      const int n = SSL_read(ssl_, b, sizeof b);
      if (n <= 0) break;
      buf_.append(b, size_t(n));
    }
    return buf_;
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool ok_ = false;
  std::string buf_;
};

// The HTTPS upstream of tests/e2e/tls_upstream.py, started and stopped by PID.
class TlsUpstream {
 public:
  TlsUpstream(const std::string& cert, const std::string& key, const std::string& client_ca = "") {
    int out[2];
    if (::pipe(out) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::vector<std::string> args = {
        "python3", std::string(SLUICE_SOURCE_DIR) + "/tests/e2e/tls_upstream.py",
        "--cert",  tls_asset(cert),
        "--key",   tls_asset(key)};
    if (!client_ca.empty()) {
      args.push_back("--client-ca");
      args.push_back(tls_asset(client_ca));
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawnp(&pid_, "python3", &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    std::string line;
    char ch;
    while (pid_ > 0 && ::read(out[0], &ch, 1) == 1 && ch != '\n') line += ch;
    ::close(out[0]);
    if (line.rfind("port ", 0) == 0) port_ = uint16_t(std::stoi(line.substr(5)));
  }
  ~TlsUpstream() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
  }
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

// A plaintext listener in front of one version reached at `endpoint` with `tls` (the version's
// tls value: "true" or "{ ... }").
std::string upstream_tls_config(const std::string& endpoint, const std::string& tls) {
  ConfigText c;
  c.workers = 1;
  c.function("shop", {{"1", {endpoint}, "tls = " + tls + "\n"}})
      .alias("shop", "live", R"({ "1" = 100 })")
      .route("shop:live");
  return c.str();
}

std::string asset_path(const std::string& name) {
  return "\"" + tls_asset(name) + "\"";
}

}  // namespace

TEST_CASE("a TLS listener serves TLS 1.2 and 1.3 with keep-alive, ALPN http/1.1, Proto https") {
  Upstream up("v1");
  Sluice s(tls_config(up, pair_of("rsa.pem", "rsa.key")));
  REQUIRE_STARTED(s);
  CURL* easy = curl_easy_init();
  for (long max : {CURL_SSLVERSION_MAX_TLSv1_2, CURL_SSLVERSION_MAX_TLSv1_3}) {
    CAPTURE(max);
    const TlsGet r = https_get(easy, s.port(), "/headers", max);
    CHECK_MESSAGE(r.status == 200, r.error);
    CHECK(to_lower(r.body).find("x-forwarded-proto: https\r\n") != std::string::npos);
  }
  CurlClient admin;
  const std::string metrics =
      admin.get("http://127.0.0.1:" + std::to_string(admin_port(s)) + "/metrics").body;
  const std::string series =
      "sluice_tls_certificate_expiry_seconds{listener=\"127.0.0.1:0\","
      "name=\"example.test\"} ";
  const size_t at = metrics.find(series);
  REQUIRE(at != std::string::npos);
  const double left = std::stod(metrics.substr(at + series.size()));
  CHECK(left > 300 * 86400.0);  // made for 365 days
  CHECK(left < 366 * 86400.0);
  // The same handle again: the connection is reused.
  const TlsGet again = https_get(easy, s.port(), "/a", CURL_SSLVERSION_MAX_TLSv1_3);
  CHECK(again.status == 200);
  CHECK(again.new_connections == 0);
  curl_easy_cleanup(easy);
  const std::string out =
      shell_output("timeout 10 openssl s_client -connect 127.0.0.1:" + std::to_string(s.port()) +
                   " -servername example.test -alpn http/1.1 </dev/null");
  CHECK(out.find("ALPN protocol: http/1.1") != std::string::npos);
  for (const char* version : {"-tls1", "-tls1_1"}) {
    CAPTURE(version);
    const std::string old =
        shell_output("timeout 10 openssl s_client -connect 127.0.0.1:" + std::to_string(s.port()) +
                     " " + version + " </dev/null");
    CAPTURE(old);
    CHECK(old.find("Cipher is (NONE)") != std::string::npos);  // no TLS 1.0 / 1.1 session
  }
  CHECK(s.stop() == 0);
}

TEST_CASE("a session resumes on any worker, with TLS 1.3 and with TLS 1.2 tickets") {
  Upstream up("v1");
  ConfigText c;
  c.workers = 4;  // connections spread over the workers' SO_REUSEPORT sockets
  c.listen_extra = "tls = { " + pair_of("rsa.pem", "rsa.key") + " }\n";
  c.function("shop", {{"1", {up.address()}}}).alias("shop", "live", R"({ "1" = 100 })");
  c.route("shop:live");
  Sluice s(c.str());
  REQUIRE_STARTED(s);
  TempDir dir;
  for (const char* version : {"-tls1_3", "-tls1_2"}) {
    CAPTURE(version);
    const std::string session = dir.path() + "/session" + version;
    const std::string base =
        "timeout 10 openssl s_client -connect 127.0.0.1:" + std::to_string(s.port()) +
        " -servername example.test " + version;
    // TLS 1.3 tickets arrive after the handshake: give the first connection a request to read.
    shell_output(
        "printf 'GET / HTTP/1.1\\r\\nHost: example.test\\r\\nConnection: close\\r\\n\\r\\n' | " +
        base + " -ign_eof -sess_out " + session);
    int reused = 0;
    const int tries = 12;
    for (int i = 0; i < tries; ++i)
      reused += shell_output(base + " -sess_in " + session + " </dev/null").find("Reused, TLS") !=
                std::string::npos;
    CHECK(reused == tries);
  }
  CHECK(s.stop() == 0);
}

TEST_CASE("SNI picks the certificate, an unknown name and no SNI get the first") {
  Upstream up("v1");
  Sluice s(tls_config(up, "certificates = [ { " + pair_of("rsa.pem", "rsa.key") + " }, { " +
                              pair_of("cn-only.pem", "cn-only.key") + " } ]"));
  REQUIRE_STARTED(s);
  CHECK(served_subject(s.port(), "cn-only.test").find("CN = cn-only.test") != std::string::npos);
  CHECK(served_subject(s.port(), "www.example.test").find("CN = example.test") !=
        std::string::npos);
  CHECK(served_subject(s.port(), "unknown.test").find("CN = example.test") != std::string::npos);
  CHECK(served_subject(s.port(), "").find("CN = example.test") != std::string::npos);
  CHECK(s.stop() == 0);
}

TEST_CASE("plaintext, garbage and a stalled handshake are closed in time and never logged") {
  Upstream up("v1");
  Sluice s(tls_config(up, pair_of("ecdsa.pem", "ecdsa.key"), "handshake_timeout = \"300ms\"\n",
                      "stdout"));
  REQUIRE_STARTED(s);
  {  // plaintext HTTP: a clear 400 in plaintext, then the end
    RawClient c(s.port());
    REQUIRE(c.connected());
    c.send(raw_request("GET", "/"));
    auto r = c.read_response(3000);
    REQUIRE(r.has_value());
    CHECK(r->status == 400);
    CHECK(r->header("x-sluice-error") == "plaintext-on-tls-port");
    CHECK(c.wait_closed(3000));
  }
  {  // bytes that are neither TLS nor HTTP: closed at once
    RawClient c(s.port());
    c.send(std::string("\x00\x01\x02garbage\r\n\r\n", 14));
    const auto start = std::chrono::steady_clock::now();
    CHECK(c.wait_closed(3000));
    CHECK(elapsed_ms(start) < 1000);
  }
  {  // a handshake record header and then nothing: cut after handshake_timeout
    RawClient c(s.port());
    c.send(std::string("\x16\x03\x01\x00\x80", 5));
    const auto start = std::chrono::steady_clock::now();
    CHECK(c.wait_closed(5000));
    const long took = elapsed_ms(start);
    CHECK(took >= 200);
    CHECK(took < 3000);
  }
  {  // a client that connects and sends nothing: the same
    RawClient c(s.port());
    CHECK(c.wait_closed(5000));
  }
  CURL* easy = curl_easy_init();
  const TlsGet r = https_get(easy, s.port(), "/after", 0, "api.example.test");  // its SAN
  curl_easy_cleanup(easy);
  CHECK_MESSAGE(r.status == 200, r.error);
  CHECK(s.stop() == 0);
  // Only the real request was logged.
  const std::string log = s.stdout_text();
  size_t lines = 0;
  for (char ch : log) lines += ch == '\n';
  CHECK(lines == 1);
  CHECK(log.find("/after") != std::string::npos);
}

TEST_CASE("a bad certificate or key is an error at its config key, in check and at start") {
  Upstream up("v1");
  TempDir dir;
  struct Case {
    std::string tls, words;
  };
  for (const Case& k : std::vector<Case>{
           {pair_of("rsa.pem", "wrong.key"), "does not match certificate"},
           {pair_of("expired.pem", "expired.key"), "expired on"},
           {"cert = \"/nonexistent/c.pem\", key = \"" + tls_asset("rsa.key") + "\"",
            "/nonexistent/c.pem"},
       }) {
    CAPTURE(k.tls);
    const std::string path = dir.write("bad.toml", tls_config(up, k.tls));
    const std::string out =
        shell_output("sh -c '" + sluice_binary() + " check -c " + path + " 2>&1; echo exit=$?'");
    CAPTURE(out);
    CHECK(out.find("exit=1") != std::string::npos);
    CHECK(out.find(path + ":6:") != std::string::npos);  // the line of tls = { ... }
    CHECK(out.find(k.words) != std::string::npos);
  }
  Sluice s(tls_config(up, pair_of("rsa.pem", "wrong.key")),
           SluiceOptions{.start_timeout_ms = 5000});
  CHECK_FALSE(s.started());
  CHECK(s.wait_exit(5000) == 1);
}

TEST_CASE("certificate rotation under load: 20 swaps, no failed request, new serials served") {
  Upstream up("v1");
  const std::string rsa_cert = read_file(tls_asset("rsa.pem")),
                    rsa_key = read_file(tls_asset("rsa.key")),
                    ec_cert = read_file(tls_asset("example-ec.pem")),
                    ec_key = read_file(tls_asset("example-ec.key"));
  SluiceOptions o;
  o.files = {{"site.pem", rsa_cert}, {"site.key", rsa_key}};
  Sluice s(tls_config(up, "cert = \"site.pem\", key = \"site.key\""), o);
  REQUIRE_STARTED(s);
  const std::string dir = s.dir().path();
  // Writes a pair the way a deploy tool does: new files renamed over the old ones.
  auto install = [&](const std::string& cert, const std::string& key) {
    s.dir().write("site.key.new", key);
    s.dir().write("site.pem.new", cert);
    std::filesystem::rename(dir + "/site.key.new", dir + "/site.key");
    std::filesystem::rename(dir + "/site.pem.new", dir + "/site.pem");
  };

  std::atomic<bool> stop{false};
  std::atomic<long> ok{0}, failed{0};
  std::string first_error;
  std::mutex mu;
  auto load = [&](bool fresh_connections) {
    CURL* easy = curl_easy_init();
    const auto start = std::chrono::steady_clock::now();
    while (!stop && elapsed_ms(start) < 60000) {
      if (fresh_connections) {
        curl_easy_cleanup(easy);
        easy = curl_easy_init();
      }
      const TlsGet r = https_get(easy, s.port(), "/x");
      if (r.status == 200) {
        ++ok;
      } else {
        ++failed;
        std::lock_guard<std::mutex> lock(mu);
        if (first_error.empty()) first_error = r.error + " status " + std::to_string(r.status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    curl_easy_cleanup(easy);
  };
  std::thread keepalive(load, false), fresh(load, true);

  CURL* probe = curl_easy_init();
  auto served = [&]() {
    curl_easy_cleanup(probe);
    probe = curl_easy_init();  // a new handshake
    return https_get(probe, s.port(), "/probe");
  };
  const TlsGet first = served();
  REQUIRE(first.status == 200);
  const std::string rsa_serial = first.serial;
  std::string ec_serial;
  CurlClient admin;
  const uint16_t aport = admin_port(s);
  int rotated = 0;
  for (int i = 0; i < 20; ++i) {
    const bool to_ec = i % 2 == 0;
    install(to_ec ? ec_cert : rsa_cert, to_ec ? ec_key : rsa_key);
    // Three ways to ask: the watched directory alone, SIGHUP, POST /admin/reload.
    if (i % 3 == 1) s.signal(SIGHUP);
    if (i % 3 == 2) api(admin, aport, "POST", "/admin/reload");
    TlsGet now;
    const bool changed = poll_until(
        [&] {
          now = served();
          if (now.status != 200) return false;
          if (to_ec) return now.serial != rsa_serial && now.key_algorithm != first.key_algorithm;
          return now.serial == rsa_serial;
        },
        10000);
    CAPTURE(i);
    CHECK(changed);
    if (!changed) break;
    if (to_ec && ec_serial.empty()) ec_serial = now.serial;
    if (to_ec) CHECK(now.serial == ec_serial);
    ++rotated;
  }
  curl_easy_cleanup(probe);
  stop = true;
  keepalive.join();
  fresh.join();
  CHECK(rotated == 20);
  CHECK_MESSAGE(failed == 0, first_error);
  CHECK(ok > 100);
  MESSAGE("rotation: " << rotated << " swaps, " << ok.load() << " requests ok, " << failed.load()
                       << " failed");
  CHECK(s.stop() == 0);
}

TEST_CASE("a bad new pair is refused on reload and the old one keeps serving") {
  Upstream up("v1");
  SluiceOptions o;
  o.files = {{"site.pem", read_file(tls_asset("rsa.pem"))},
             {"site.key", read_file(tls_asset("rsa.key"))}};
  Sluice s(tls_config(up, "cert = \"site.pem\", key = \"site.key\""), o);
  REQUIRE_STARTED(s);
  s.dir().write("site.key", read_file(tls_asset("wrong.key")));
  CurlClient admin;
  const auto reply = api(admin, admin_port(s), "POST", "/admin/reload");
  CHECK(reply.status == 400);
  CHECK(reply.raw.find("does not match certificate") != std::string::npos);
  CURL* easy = curl_easy_init();
  const TlsGet r = https_get(easy, s.port(), "/still");
  curl_easy_cleanup(easy);
  CHECK_MESSAGE(r.status == 200, r.error);
  CHECK(s.stop() == 0);
}

TEST_CASE("a WebSocket session over TLS echoes both ways") {
  Upstream up("v1");
  Sluice s(tls_config(up, pair_of("rsa.pem", "rsa.key")));
  REQUIRE_STARTED(s);
  {
    TlsClient c(s.port());
    REQUIRE(c.ok());
    REQUIRE(c.send(
        "GET /ws HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
    const std::string head = c.read_until("\r\n\r\n");
    CHECK(head.rfind("HTTP/1.1 101", 0) == 0);
    REQUIRE(c.send("ping-over-tls"));
    CHECK(c.read_until("ping-over-tls").find("ping-over-tls") != std::string::npos);
  }  // the client leaves; the tunnel ends
  CHECK(s.stop() == 0);
}

TEST_CASE("upstream TLS: verified, pooled across requests, resumed on new connections") {
  TlsUpstream up("ip.pem", "ip.key");  // its certificate names IP 127.0.0.1
  REQUIRE(up.port() != 0);
  Sluice s(upstream_tls_config(up.address(), "{ ca = " + asset_path("ca.pem") + " }"));
  REQUIRE_STARTED(s);
  CurlClient curl;
  std::string last;
  for (int i = 0; i < 20; ++i) {
    HttpResult r = curl.get(s.url("/n" + std::to_string(i)));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    last = r.body;
  }
  // One worker, sequential requests: one upstream connection, one handshake.
  CHECK(last.find("handshakes=1 ") != std::string::npos);
  CHECK(last.find("proto=http\n") != std::string::npos);  // the client spoke plain HTTP to us
  MESSAGE("after 20 requests: " << last);
  // A new upstream connection resumes the session the first one got.
  CurlClient a, b;
  std::vector<std::thread> pair;
  std::string body_a, body_b;
  pair.emplace_back([&] { body_a = a.get(s.url("/slow-a")).body; });
  pair.emplace_back([&] { body_b = b.get(s.url("/slow-b")).body; });
  for (auto& t : pair) t.join();
  HttpResult after = curl.get(s.url("/after"));
  CHECK(after.status == 200);
  MESSAGE("after concurrent requests: " << after.body);
  // Two requests at once (each held 0.3 s upstream) need a second connection; every handshake
  // after the first resumed the session sluice kept.
  int handshakes = 0, resumed = 0;
  REQUIRE(std::sscanf(after.body.c_str(), "handshakes=%d resumed=%d", &handshakes, &resumed) == 2);
  CHECK(handshakes >= 2);
  CHECK(resumed == handshakes - 1);
  CHECK(s.stop() == 0);
}

TEST_CASE("upstream TLS failures are 502 upstream-tls-failed, never plaintext") {
  TlsUpstream up("ip.pem", "ip.key");
  REQUIRE(up.port() != 0);
  {  // verify = false accepts what the wrong CA cannot verify (labs only): the key is not ignored
    Sluice s(upstream_tls_config(up.address(),
                                 "{ ca = " + asset_path("other-ca.pem") + ", verify = false }"));
    REQUIRE_STARTED(s);
    CurlClient curl;
    CHECK(curl.get(s.url("/unverified")).status == 200);
    CHECK(s.stop() == 0);
  }
  Upstream plain("plain");
  struct Case {
    std::string name, endpoint, tls;
  };
  for (const Case& k : std::vector<Case>{
           {"wrong CA", up.address(), "{ ca = " + asset_path("other-ca.pem") + " }"},
           {"wrong name", up.address(),
            "{ ca = " + asset_path("ca.pem") + ", server_name = \"wrong.test\" }"},
           {"system store (the test CA is not in it)", up.address(), "true"},
           {"a plaintext endpoint", plain.address(), "{ ca = " + asset_path("ca.pem") + " }"},
       }) {
    CAPTURE(k.name);
    Sluice s(upstream_tls_config(k.endpoint, k.tls));
    REQUIRE_STARTED(s);
    CurlClient curl;
    HttpResult r = curl.get(s.url("/x"));
    CHECK(r.status == 502);
    CHECK(r.header("x-sluice-error") == "upstream-tls-failed");
    const std::string metrics =
        curl.get("http://127.0.0.1:" + std::to_string(admin_port(s)) + "/metrics").body;
    CHECK(metrics.find("kind=\"tls_failed\"") != std::string::npos);
    CHECK(s.stop() == 0);
  }
  CHECK(plain.requests() == 0);  // nothing was ever sent in plaintext
}

TEST_CASE("upstream mTLS: a client certificate is presented when configured") {
  TlsUpstream up("ip.pem", "ip.key", "ca.pem");  // requires a client certificate from ca
  REQUIRE(up.port() != 0);
  {
    Sluice s(upstream_tls_config(up.address(), "{ ca = " + asset_path("ca.pem") +
                                                   ", cert = " + asset_path("client.pem") +
                                                   ", key = " + asset_path("client.key") + " }"));
    REQUIRE_STARTED(s);
    CurlClient curl;
    HttpResult r = curl.get(s.url("/m"));
    CHECK_MESSAGE(r.status == 200, r.body);
    CHECK(r.body.find("client_cert=yes") != std::string::npos);
    CHECK(s.stop() == 0);
  }
  {
    Sluice s(upstream_tls_config(up.address(), "{ ca = " + asset_path("ca.pem") + " }"));
    REQUIRE_STARTED(s);
    CurlClient curl;
    HttpResult r = curl.get(s.url("/m"));
    CHECK(r.status == 502);
    // In TLS 1.3 the client's handshake is over before the server judges its certificate: the
    // refusal is an alert after the request went out (upstream-tls-failed). This Python server
    // also resets the socket at once, often before the alert can be read (curl then reports
    // "getpeername() failed" 8 times in 10): a reset (bad-upstream-response), or on the retry a
    // connect that fails (connect-failed). Never a 200: nothing reaches the application.
    const std::string reason = r.header("x-sluice-error");
    CAPTURE(reason);
    CHECK((reason == "upstream-tls-failed" || reason == "bad-upstream-response" ||
           reason == "connect-failed"));
    CHECK(s.stop() == 0);
  }
}
