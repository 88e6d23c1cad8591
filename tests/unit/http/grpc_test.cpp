// gRPC header rules: content types, grpc-timeout, grpc-status, the status for sluice's own
// answers.
#include "http/grpc.h"

#include <doctest/doctest.h>

namespace sluice::http {
namespace {

TEST_CASE("gRPC content types are recognised, other types are not") {
  CHECK(is_grpc("application/grpc"));
  CHECK(is_grpc("application/grpc+proto"));
  CHECK(is_grpc("Application/GRPC+json"));
  CHECK(is_grpc("application/grpc; charset=utf-8"));
  CHECK_FALSE(is_grpc("application/grpc-web"));
  CHECK_FALSE(is_grpc("application/json"));
  CHECK_FALSE(is_grpc("application/grp"));
  CHECK_FALSE(is_grpc(""));
}

TEST_CASE("grpc-timeout in every unit, rounded up below a millisecond, malformed refused") {
  CHECK(grpc_timeout_ms("1H") == 3600000u);
  CHECK(grpc_timeout_ms("2M") == 120000u);
  CHECK(grpc_timeout_ms("3S") == 3000u);
  CHECK(grpc_timeout_ms("300m") == 300u);
  CHECK(grpc_timeout_ms("1500u") == 2u);
  CHECK(grpc_timeout_ms("1n") == 1u);
  CHECK(grpc_timeout_ms("0m") == 0u);
  CHECK(grpc_timeout_ms("99999999S") == 99999999000u);  // 8 digits: the most allowed
  CHECK_FALSE(grpc_timeout_ms("123456789S").has_value());
  CHECK_FALSE(grpc_timeout_ms("S").has_value());
  CHECK_FALSE(grpc_timeout_ms("10").has_value());
  CHECK_FALSE(grpc_timeout_ms("10s").has_value());
  CHECK_FALSE(grpc_timeout_ms("-1S").has_value());
  CHECK_FALSE(grpc_timeout_ms("").has_value());
}

TEST_CASE("grpc-status values 0 to 16, anything else is no status") {
  CHECK(grpc_status("0") == 0);
  CHECK(grpc_status("14") == 14);
  CHECK(grpc_status("16") == 16);
  CHECK(grpc_status("17") == -1);
  CHECK(grpc_status("1a") == -1);
  CHECK(grpc_status("") == -1);
  CHECK(grpc_status("014") == -1);
}

TEST_CASE("sluice's own answers map to the gRPC status a client can act on") {
  CHECK(grpc_status_for_http(404) == 5);
  CHECK(grpc_status_for_http(405) == 12);
  CHECK(grpc_status_for_http(504) == 4);
  CHECK(grpc_status_for_http(408) == 4);
  CHECK(grpc_status_for_http(429) == 8);
  CHECK(grpc_status_for_http(431) == 8);
  CHECK(grpc_status_for_http(502) == 14);
  CHECK(grpc_status_for_http(503) == 14);
  CHECK(grpc_status_for_http(400) == 13);
  CHECK(grpc_status_for_http(500) == 13);
}

}  // namespace
}  // namespace sluice::http
