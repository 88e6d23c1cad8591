// End-to-end: 256 MiB bodies stream through sluice in both directions, with back-pressure, while
// its peak RSS (VmHWM) stays under 64 MiB. Under ASan the sizes shrink and the bound is skipped.
#include <cstdio>
#include <string>

#include "e2e.h"

using namespace sluice::e2e;

namespace {

constexpr uint64_t kBigBytes = kSanitized ? (32ull << 20) : (256ull << 20);
constexpr long kRssLimitKib = 64 * 1024;

std::string config_for(const Upstream& up) {
  ConfigText cfg;
  cfg.function("shop", {{"1", {up.address()}}})
      .alias("shop", "prod", R"({ "1" = 100 })")
      .route("shop:prod");
  return cfg.str();
}

void check_peak_rss(const Sluice& s) {
  long hwm = s.vm_hwm_kib();
  REQUIRE(hwm > 0);
  MESSAGE("sluice VmHWM: " << hwm << " KiB (limit " << kRssLimitKib << " KiB)");
  if (kSanitized) {
    MESSAGE("sanitizer build: the 64 MiB peak RSS bound is not asserted (ASan inflates RSS)");
    return;
  }
  CHECK(hwm < kRssLimitKib);
}

std::string counted(uint64_t n) {
  char text[96];
  std::snprintf(text, sizeof text, "bytes=%llu hash=%016llx", static_cast<unsigned long long>(n),
                static_cast<unsigned long long>(pattern_hash(n)));
  return text;
}

}  // namespace

TEST_CASE("a 256 MiB upload streams through while peak RSS stays under 64 MiB") {
  Upstream v1("v1");
  Sluice s(config_for(v1));
  REQUIRE_STARTED(s);
  MESSAGE("sluice VmHWM at start: " << s.vm_hwm_kib() << " KiB");
  const std::string expect = counted(kBigBytes);
  CurlClient curl;

  // The upstream waits a second before reading: sluice must stop reading the client meanwhile.
  HttpResult stalled = curl.upload(s.url("/count-body?delay_ms=1000"), kBigBytes, false, 100000);
  CAPTURE(stalled.error);
  CHECK(stalled.status == 200);
  CHECK(stalled.body == expect);
  check_peak_rss(s);

  HttpResult chunked = curl.upload(s.url("/count-body"), kBigBytes, true, 100000);
  CAPTURE(chunked.error);
  CHECK(chunked.status == 200);
  CHECK(chunked.body == expect);
  check_peak_rss(s);
  CHECK(v1.count_target("/count-body") == 2);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a 256 MiB download streams through while peak RSS stays under 64 MiB") {
  Upstream v1("v1");
  Sluice s(config_for(v1));
  REQUIRE_STARTED(s);
  const std::string path = "/download?bytes=" + std::to_string(kBigBytes);
  const uint64_t expect_hash = pattern_hash(kBigBytes);

  // A client that reads nothing for a second: sluice must stop reading the upstream meanwhile.
  RawClient stalled(s.port());
  REQUIRE(stalled.send(raw_request("GET", path)));
  auto head = stalled.read_head();
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->header("content-length") == std::to_string(kBigBytes));
  bool blew_up = poll_until([&] { return s.vm_hwm_kib() > kRssLimitKib && !kSanitized; }, 1000);
  CHECK(!blew_up);
  Fnv fnv;
  REQUIRE(stalled.read_body_bytes(kBigBytes, fnv, 20000));
  CHECK(fnv.bytes == kBigBytes);
  CHECK(fnv.hash == expect_hash);
  check_peak_rss(s);

  CurlClient curl;
  HttpResult fast = curl.download(s.url(path), 100000);
  CAPTURE(fast.error);
  CHECK(fast.status == 200);
  CHECK(fast.body_bytes == kBigBytes);
  CHECK(fast.body_hash == expect_hash);
  check_peak_rss(s);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("pipelined downloads to a client that reads late keep peak RSS under 64 MiB") {
  Upstream v1("v1");
  Sluice s(config_for(v1));
  REQUIRE_STARTED(s);
  constexpr int kRequests = kSanitized ? 200 : 1500;
  constexpr uint64_t kEach = 128 * 1024;  // 1500 x 128 KiB = 187.5 MiB of responses
  const std::string one = raw_request("GET", "/download?bytes=" + std::to_string(kEach));
  std::string batch;
  for (int i = 0; i < kRequests; ++i) batch += one;
  RawClient c(s.port());
  REQUIRE(c.send(batch));
  // Read nothing for a second: sluice must stop taking requests off the socket meanwhile.
  bool blew_up = poll_until([&] { return s.vm_hwm_kib() > kRssLimitKib && !kSanitized; }, 1000);
  CHECK(!blew_up);
  const uint64_t expect_hash = pattern_hash(kEach);
  int good = 0;
  for (int i = 0; i < kRequests; ++i) {
    auto head = c.read_head();
    if (!head || head->status != 200 || head->header("content-length") != std::to_string(kEach))
      break;
    Fnv fnv;
    if (!c.read_body_bytes(kEach, fnv, 10000) || fnv.hash != expect_hash) break;
    ++good;
  }
  CHECK(good == kRequests);
  check_peak_rss(s);
  CHECK(v1.count_target("/download") == static_cast<size_t>(kRequests));
  CHECK_CLEAN_STOP(s);
}
