// Tests of loadgen's pure logic: histogram bucket bounds and quantiles, and response framing
// with every split of the byte stream.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "loadgen.h"

using loadgen::Framed;
using loadgen::Histogram;

TEST_CASE("every value lands in a bucket whose bounds contain it, within 1/128") {
  std::vector<uint64_t> values;
  for (uint64_t v = 0; v < 5000; ++v) values.push_back(v);
  for (uint64_t v = 5000; v < (uint64_t{1} << 40); v = v * 3 / 2 + 7) values.push_back(v);
  size_t last = 0;
  for (uint64_t v : values) {
    CAPTURE(v);
    const size_t i = Histogram::index_of(v);
    REQUIRE(i < Histogram::kBuckets);
    CHECK(i >= last);  // monotonic
    last = i;
    CHECK(Histogram::lowest_of(i) <= v);
    CHECK(v < Histogram::lowest_of(i) + Histogram::width_of(i));
    CHECK(Histogram::width_of(i) * 128 <= std::max<uint64_t>(Histogram::lowest_of(i), 128));
  }
}

TEST_CASE("buckets tile the value range without gaps") {
  for (size_t i = 0; i + 1 < Histogram::kBuckets; ++i) {
    CAPTURE(i);
    CHECK(Histogram::lowest_of(i) + Histogram::width_of(i) == Histogram::lowest_of(i + 1));
    CHECK(Histogram::index_of(Histogram::lowest_of(i)) == i);
  }
}

TEST_CASE("quantiles of 1..100000 us are within 1% and never below the true value") {
  Histogram h;
  for (uint64_t us = 1; us <= 100000; ++us) h.record(us * 1000);
  CHECK(h.total() == 100000);
  for (double q : {0.5, 0.9, 0.99, 0.999, 0.9999}) {
    CAPTURE(q);
    const double truth = q * 100000 * 1000;
    const double got = static_cast<double>(h.quantile(q));
    CHECK(got >= truth);
    CHECK(got <= truth * 1.01);
  }
  CHECK(h.quantile(1.0) == 100000 * 1000);
  CHECK(h.max() == 100000 * 1000);
}

TEST_CASE("a single slow request shows in p99.9 of 1000 and not in p99") {
  Histogram h;
  for (int i = 0; i < 999; ++i) h.record(100000);  // 100 us
  h.record(50000000);                              // 50 ms
  CHECK(h.quantile(0.99) < 101000);
  CHECK(h.quantile(0.999) < 101000);  // rank 999 of 1000 is still fast
  CHECK(h.quantile(0.9999) >= 50000000);
  CHECK(h.quantile(0.9999) <= 50000000 * 1.01);
}

TEST_CASE("an empty histogram reports zero and huge values are clamped") {
  Histogram h;
  CHECK(h.quantile(0.99) == 0);
  h.record(~uint64_t{0});
  CHECK(Histogram::index_of(~uint64_t{0}) == Histogram::kBuckets - 1);
  CHECK(h.total() == 1);
}

namespace {
// Frames `stream` fed in two pieces split at every offset; returns the results seen once the
// whole stream is there and checks that no prefix claims to be complete too early.
void check_every_split(const std::string& stream, size_t want_length, int want_code) {
  for (size_t cut = 0; cut < stream.size(); ++cut) {
    CAPTURE(cut);
    const Framed partial = loadgen::frame_response(std::string_view(stream).substr(0, cut));
    if (cut < want_length) CHECK(partial.status == Framed::kNeedMore);
  }
  const Framed full = loadgen::frame_response(stream);
  REQUIRE(full.status == Framed::kDone);
  CHECK(full.length == want_length);
  CHECK(full.code == want_code);
}
}  // namespace

TEST_CASE("a content-length response is complete exactly when its body is") {
  const std::string r =
      "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 14\r\n\r\nhello from v1\n";
  check_every_split(r, r.size(), 200);
  check_every_split(r + "HTTP/1.1 200 OK\r\n", r.size(), 200);  // next response may follow
}

TEST_CASE("a chunked response with trailers is framed to its last CRLF") {
  const std::string r =
      "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n"
      "5\r\nhello\r\na;ext=1\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n";
  check_every_split(r, r.size(), 200);
}

TEST_CASE("bodiless statuses end at the head, whatever content-length says") {
  const std::string r = "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n";
  check_every_split(r, r.size(), 304);
}

TEST_CASE("connection: close and a non-2xx code are reported") {
  const Framed f = loadgen::frame_response(
      "HTTP/1.1 503 Service Unavailable\r\nConnection: keep-alive, close\r\n"
      "content-length: 0\r\n\r\n");
  REQUIRE(f.status == Framed::kDone);
  CHECK(f.code == 503);
  CHECK(f.close);
}

TEST_CASE("an HTTP/1.0 response closes unless it says keep-alive") {
  CHECK(loadgen::frame_response("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").close);
  CHECK_FALSE(loadgen::frame_response(
                  "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
                  .close);
  CHECK_FALSE(loadgen::frame_response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").close);
}

TEST_CASE("garbage and unframed responses are not taken for complete ones") {
  CHECK(loadgen::frame_response("HTTX/1.1 200 OK\r\n\r\n").status == Framed::kBad);
  CHECK(loadgen::frame_response("HTTP/1.1 2x0 OK\r\n\r\n").status == Framed::kBad);
  CHECK(loadgen::frame_response("HTTP/1.1 200 OK\r\ncontent-length: 1x\r\n\r\n").status ==
        Framed::kBad);
  CHECK(loadgen::frame_response("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")
            .status == Framed::kBad);
  CHECK(loadgen::frame_response("HTTP/1.1 200 OK\r\n\r\nbody").status == Framed::kUnframed);
  CHECK(loadgen::frame_response(std::string(70000, 'a')).status == Framed::kBad);
}
