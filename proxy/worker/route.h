// The routing decision for one request, as a function of the request and the routing snapshot:
// target -> route (host, longest path prefix) -> alias -> version (override header, sticky key,
// weighted pick) -> endpoint. No socket, no loop, no side effect beyond the worker-local pick
// state and the PRNG draws it is given, so it is tested without a connection.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "http/parser.h"
#include "routing/selection.h"
#include "routing/table.h"

namespace sluice::worker {

// Where a request goes, from its request-target and Host (RFC 9112 §3.2).
struct Target {
  std::string_view host;  // Host header, or the authority of an absolute-form target
  std::string_view path;  // for route matching: the path without the query
  // An absolute-form target (GET http://host/path) is forwarded in origin-form: `origin` is that
  // form (points into the caller's buffer) and `authority` replaces Host. Both empty otherwise.
  std::string_view origin;
  std::string_view authority;
};

// Splits the request's target. `origin_buffer` receives the origin-form of an absolute-form
// target (its capacity is reused across requests); the result may point into it and into the
// parser's head.
Target target_of(const http::Parser& req, std::string& origin_buffer);

struct RouteChoice {
  enum class Result { kOk, kNoRoute, kUnknownVersion, kNoVersion };
  Result result = Result::kNoRoute;
  const routing::Route* route = nullptr;
  const routing::Function* function = nullptr;
  const routing::Alias* alias = nullptr;  // nullptr when the route pins a version
  const routing::Version* version = nullptr;
  // A sticky cookie to issue with the response (alias sticky = { cookie, issue = true } and the
  // request had none): its value, drawn here; 0 = none.
  uint64_t issued_cookie = 0;
};

// Decides route, alias and version. `draw` supplies the PRNG draws (one per weighted pick, one
// for an issued cookie); `picks` is the worker's state for `table`. Never allocates.
RouteChoice choose_version(const routing::RoutingTable& table, routing::PickState& picks,
                           const http::Parser& req, const Target& target, routing::Rng& draw);

// The value of cookie `name` in a Cookie header, or empty.
std::string_view cookie_value(std::string_view header, std::string_view name);

// "name=<16 hex digits>; Path=/; Max-Age=31536000; HttpOnly" into `out` (capacity reused).
void sticky_cookie(std::string_view name, uint64_t value, std::string& out);

}  // namespace sluice::worker
