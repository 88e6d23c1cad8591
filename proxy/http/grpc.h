// gRPC over HTTP/2 as a proxy sees it (github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
// the request's deadline, the status a proxy answers with when it fails the call itself. Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice::http {

// True for a gRPC content type ("application/grpc", "application/grpc+proto", ...).
bool is_grpc(std::string_view content_type);

// The grpc-timeout header in milliseconds ("100m", "2S", "1H"; at most 8 digits; a sub-millisecond
// value rounds up to 1 ms), or nullopt when malformed.
std::optional<uint64_t> grpc_timeout_ms(std::string_view value);

// The grpc-status value (0 to 16), or -1 when absent or malformed.
int grpc_status(std::string_view value);

// The gRPC status for an HTTP status sluice answers a gRPC call with itself: 404 NOT_FOUND (5),
// 405/501 UNIMPLEMENTED (12), 408/504 DEADLINE_EXCEEDED (4), 413/429/431 RESOURCE_EXHAUSTED (8),
// 502/503 UNAVAILABLE (14), anything else INTERNAL (13).
int grpc_status_for_http(int http_status);

}  // namespace sluice::http
