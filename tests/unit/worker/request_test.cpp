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

TEST_CASE("only an idempotent request without a body, reset on a pooled connection, is replayed") {
  upstream::Pool* some_pool = reinterpret_cast<upstream::Pool*>(uintptr_t{16});
  RequestContext ctx;
  ctx.pool = some_pool;
  CHECK(may_replay(ctx, HTTP_GET, upstream::Failure::kReset, true));
  CHECK(may_replay(ctx, HTTP_PUT, upstream::Failure::kReset, true));
  SUBCASE("a fresh connection's failure is the upstream's answer") {
    CHECK_FALSE(may_replay(ctx, HTTP_GET, upstream::Failure::kReset, false));
  }
  SUBCASE("POST and PATCH are not idempotent") {
    CHECK_FALSE(may_replay(ctx, HTTP_POST, upstream::Failure::kReset, true));
    CHECK_FALSE(may_replay(ctx, HTTP_PATCH, upstream::Failure::kReset, true));
  }
  SUBCASE("a body cannot be sent twice: it is streamed, not kept") {
    ctx.has_body = true;
    CHECK_FALSE(may_replay(ctx, HTTP_PUT, upstream::Failure::kReset, true));
  }
  SUBCASE("once only") {
    ctx.retried = true;
    CHECK_FALSE(may_replay(ctx, HTTP_GET, upstream::Failure::kReset, true));
  }
  SUBCASE("timeouts and bad responses are answers, not a dead pooled connection") {
    CHECK_FALSE(may_replay(ctx, HTTP_GET, upstream::Failure::kTimeout, true));
    CHECK_FALSE(may_replay(ctx, HTTP_GET, upstream::Failure::kBadResponse, true));
  }
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
