// Heap per idle server-side TLS connection (TlsEngine after a handshake, and after one request and
// answer), with OpenSSL's buffers kept, released per record (SSL_MODE_RELEASE_BUFFERS), or
// released at idle (TlsEngine::trim); plus OpenSSL allocations per keep-alive exchange in each
// mode (client and server together; OpenSSL 3.0's record writer itself allocates small WPACKET
// bookkeeping per record). Usage:
//   tests/tls_test_certs.sh DIR && build/bench/tls_idle_memory DIR [connections]
#include <malloc.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "net/tls_context.h"
#include "net/tls_engine.h"

namespace {

using sluice::net::TlsEngine;

std::atomic<uint64_t> openssl_allocs{0};

void* count_malloc(size_t n, const char*, int) {
  ++openssl_allocs;
  return std::malloc(n);
}
void* count_realloc(void* p, size_t n, const char*, int) {
  ++openssl_allocs;
  return std::realloc(p, n);
}
void count_free(void* p, const char*, int) {
  std::free(p);
}

size_t heap_in_use() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

size_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

void drive(TlsEngine& e) {
  char buf[16384];
  for (;;) {
    TlsEngine::ReadResult r = e.read(buf, sizeof buf);
    if (r.status != TlsEngine::Status::kOk) return;
  }
}

bool transfer(TlsEngine& from, TlsEngine& to) {
  if (!from.has_output()) return false;
  std::string wire(from.output());
  from.consume_output(wire.size());
  to.feed(wire);
  drive(to);
  to.release_input();
  return true;
}

void pump(TlsEngine& c, TlsEngine& s) {
  drive(c);
  for (int i = 0; i < 50; ++i)
    if (!(transfer(c, s) | transfer(s, c))) return;
}

const std::string kRequest =
    "GET /checkout HTTP/1.1\r\nHost: example.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
const std::string kResponse =
    "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + std::string(1000, 'x');

void exchange(TlsEngine& c, TlsEngine& s) {
  c.write(kRequest);
  pump(c, s);
  s.write(kResponse);
  pump(c, s);
}

enum class Mode { kKeep, kReleaseBuffers, kTrim };
const char* name(Mode m) {
  return m == Mode::kKeep             ? "buffers kept"
         : m == Mode::kReleaseBuffers ? "RELEASE_BUFFERS"
                                      : "trim() at idle";
}

struct Figures {
  double after_handshake = 0;
  double after_request = 0;
  double rss_after_request = 0;
  double allocs_per_exchange = 0;
};

Figures measure(Mode mode, const std::string& dir, int n) {
  sluice::net::ServerOptions so;
  so.certificates.push_back({dir + "/example-ec.pem", dir + "/example-ec.key"});
  so.release_buffers = mode == Mode::kReleaseBuffers;
  auto server = sluice::net::build_server_context(so, sluice::net::unix_now_s()).context;
  sluice::net::ClientOptions co;
  co.ca = dir + "/ca.pem";
  auto client = sluice::net::build_client_context(co, sluice::net::unix_now_s()).context;
  if (!server || !client) {
    std::fprintf(stderr, "cannot load the test certificates from %s\n", dir.c_str());
    std::exit(1);
  }
  sluice::net::TlsBufferPool pool;
  Figures f;

  // Steady-state OpenSSL allocations per keep-alive exchange on one established connection.
  {
    auto c = TlsEngine::client(client, "example.test");
    auto s = TlsEngine::server(server, &pool);
    pump(*c, *s);
    exchange(*c, *s);
    const uint64_t before = openssl_allocs.load();
    constexpr int kExchanges = 1000;
    for (int i = 0; i < kExchanges; ++i) {
      exchange(*c, *s);
      if (mode == Mode::kTrim) s->trim();
    }
    f.allocs_per_exchange = double(openssl_allocs.load() - before) / kExchanges;
  }

  malloc_trim(0);
  const size_t heap0 = heap_in_use();
  const size_t rss0 = rss_bytes();
  std::vector<std::unique_ptr<TlsEngine>> idle;
  std::vector<std::unique_ptr<TlsEngine>> clients;
  idle.reserve(n);
  clients.reserve(n);
  for (int i = 0; i < n; ++i) {
    clients.push_back(TlsEngine::client(client, "example.test"));
    idle.push_back(TlsEngine::server(server, &pool));
    pump(*clients.back(), *idle.back());
    if (!idle.back()->handshake_done()) {
      std::fprintf(stderr, "handshake %d failed: %s\n", i, idle.back()->failure_detail().c_str());
      std::exit(1);
    }
    if (mode == Mode::kTrim) idle.back()->trim();
  }
  clients.clear();  // only the server side stays
  malloc_trim(0);
  f.after_handshake = double(heap_in_use() - heap0) / n;

  // One request and answer on each, as a keep-alive connection that served once and waits.
  for (int i = 0; i < n; ++i) {
    auto c = TlsEngine::client(client, "example.test");
    auto s = TlsEngine::server(server, &pool);
    pump(*c, *s);
    exchange(*c, *s);
    if (mode == Mode::kTrim) s->trim();
    idle[i] = std::move(s);
  }
  malloc_trim(0);
  f.after_request = double(heap_in_use() - heap0) / n;
  f.rss_after_request = double(rss_bytes() - rss0) / n;
  idle.clear();
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: %s CERT_DIR [connections]  (CERT_DIR from tests/tls_test_certs.sh)\n",
                 argv[0]);
    return 2;
  }
  // Before OpenSSL allocates anything.
  CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free);
  const std::string dir = argv[1];
  const int n = argc > 2 ? std::atoi(argv[2]) : 5000;
  std::printf("idle server-side TLS 1.3 connections (ECDSA P-256, X25519, AES-128-GCM), n = %d\n",
              n);
  std::printf("%-18s %14s %14s %14s %16s\n", "mode", "heap/conn", "heap/conn", "RSS/conn",
              "OpenSSL allocs");
  std::printf("%-18s %14s %14s %14s %16s\n", "", "handshaken", "after 1 req", "after 1 req",
              "per exchange");
  for (Mode m : {Mode::kKeep, Mode::kReleaseBuffers, Mode::kTrim}) {
    Figures f = measure(m, dir, n);
    std::printf("%-18s %12.0f B %12.0f B %12.0f B %16.1f\n", name(m), f.after_handshake,
                f.after_request, f.rss_after_request, f.allocs_per_exchange);
  }
  return 0;
}
