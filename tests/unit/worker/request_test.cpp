// Per-request rules without a socket: when a request may be replayed on a fresh upstream
// connection, the access-log record of a finished request, and that resetting the context by
// assignment forgets everything of the previous request.
#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "http/parser.h"
#include "worker/request.h"

namespace sluice::worker {
namespace {

struct Head final : http::Sink {
  http::Parser parser{HTTP_REQUEST, *this, 8192, 64};
  explicit Head(const std::string& text) {
    parser.feed(text.data(), text.size());
    REQUIRE(parser.head_complete());
  }
  int on_head(http::Parser&) override { return 0; }
  int on_body(http::Parser&, const char*, size_t) override { return 0; }
  bool on_message_end(http::Parser&) override { return true; }
};

}  // namespace

TEST_CASE("a failed attempt is replayed when nothing was sent, or for a safe request only") {
  RequestContext ctx;
  SUBCASE("nothing reached the upstream (the connection never came up): any request") {
    ctx.has_body = ctx.body_sent = true;
    CHECK(may_replay(ctx, HTTP_POST, upstream::Failure::kConnect, true));
    CHECK(may_replay(ctx, HTTP_PATCH, upstream::Failure::kConnectTimeout, true));
  }
  SUBCASE("a reset after sending: idempotent and without a body only") {
    CHECK(may_replay(ctx, HTTP_GET, upstream::Failure::kReset, false));
    CHECK(may_replay(ctx, HTTP_PUT, upstream::Failure::kReset, false));
    CHECK_FALSE(may_replay(ctx, HTTP_POST, upstream::Failure::kReset, false));
    ctx.has_body = true;
    CHECK_FALSE(may_replay(ctx, HTTP_PUT, upstream::Failure::kReset, false));
  }
  SUBCASE("timeouts and bad responses after sending are the upstream's answer") {
    CHECK_FALSE(may_replay(ctx, HTTP_GET, upstream::Failure::kTimeout, false));
    CHECK_FALSE(may_replay(ctx, HTTP_GET, upstream::Failure::kBadResponse, false));
  }
}

TEST_CASE("the retry budget counts attempts and the time since the request began") {
  routing::Version v;
  v.retries = 2;
  v.retry_timeout_ms = 100;
  RequestContext ctx;
  ctx.start_ns = 1'000'000'000;
  ctx.attempts = 1;
  CHECK(retry_budget_left(ctx, v, ctx.start_ns + 50'000'000));
  ctx.attempts = 3;  // the first attempt and two retries
  CHECK_FALSE(retry_budget_left(ctx, v, ctx.start_ns + 50'000'000));
  ctx.attempts = 2;
  CHECK_FALSE(retry_budget_left(ctx, v, ctx.start_ns + 100'000'000));
}

TEST_CASE("the access record of a request carries its own id, or the client's") {
  Head h("GET /a?b HTTP/1.1\r\nHost: x\r\nx-request-id: client-id\r\n\r\n");
  RequestContext ctx;
  ctx.start_ns = 1'000'000;
  ctx.bytes_out = 321;
  ctx.retried = true;
  observe::AccessRecord r = access_record(ctx, h.parser, "10.0.0.7", 200, 5'000'000, 1200);
  CHECK(r.client == "10.0.0.7");
  CHECK(r.method == "GET");
  CHECK(r.path == "/a?b");
  CHECK(r.status == 200);
  CHECK(r.bytes == 321);
  CHECK(r.duration_us == 4000);
  CHECK(r.upstream_us == 1200);
  CHECK(r.request_id == "client-id");
  CHECK(r.retried);

  SUBCASE("a generated id wins over the header and is reset with the context") {
    std::memcpy(ctx.request_id, "0123456789abcdef0123456789abcdef", 32);
    ctx.request_id_len = 32;
    CHECK(access_record(ctx, h.parser, "", 404, 2'000'000, 0).request_id ==
          "0123456789abcdef0123456789abcdef");
    ctx = {};
    CHECK(ctx.request_id_len == 0);
    CHECK(ctx.generated_id().empty());
    CHECK_FALSE(ctx.retried);
    CHECK(ctx.bytes_out == 0);
    CHECK(access_record(ctx, h.parser, "", 404, 0, 0).request_id == "client-id");
  }
}

}  // namespace sluice::worker
