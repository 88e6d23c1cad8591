// The routing decision for one request, as a function of the request and the routing snapshot:
// target -> route (host, longest path prefix) -> alias -> version (override header, sticky key,
// weighted pick) -> endpoint. No socket, no loop, no side effect beyond the worker-local pick
// state and the PRNG draws it is given, so it is tested without a connection.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/parser.h"
#include "routing/health.h"
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

// What the request path reads of endpoint health: per version id, its endpoints' shared state
// (relaxed atomic loads), at one loop time. Empty: every endpoint is usable.
struct HealthView {
  const std::vector<std::vector<routing::EndpointHealth*>>* endpoints = nullptr;
  uint64_t now_ms = 0;

  bool usable(const routing::Version& v, size_t endpoint) const {
    return !endpoints || (*endpoints)[v.id][endpoint]->usable(now_ms);
  }
  bool any_usable(const routing::Version& v) const;
};

// An endpoint of `version` that is usable and not in `tried` (bit i: endpoint i was tried; the
// endpoints past 64 are never excluded), by the version's weighted round robin; kNoPick if none.
size_t choose_endpoint(const routing::Version& version, routing::PickState& picks,
                       const HealthView& health, uint64_t tried = 0);

struct RouteChoice {
  enum class Result { kOk, kNoRoute, kUnknownVersion, kNoVersion };
  Result result = Result::kNoRoute;
  const routing::Route* route = nullptr;
  const routing::Function* function = nullptr;
  const routing::Alias* alias = nullptr;  // nullptr when the route pins a version
  const routing::Version* version = nullptr;
  size_t endpoint = routing::kNoPick;  // index into version->endpoints
  // A sticky cookie to issue with the response (alias sticky = { cookie, issue = true } and the
  // request had none): its value, drawn here; 0 = none.
  uint64_t issued_cookie = 0;
  // The alias's pick for this request (its draw and sticky point), kept so that a failover after
  // a failed attempt picks among the other versions the same way.
  uint64_t draw = 0;
  std::optional<double> sticky_point;
  // The version was chosen by the client (a pinned route or the override header): no failover to
  // another version.
  bool version_fixed = false;
};

// Decides route, alias, version and endpoint. `draw` supplies the PRNG draws (one per weighted
// pick, one for an issued cookie); `picks` is the worker's state for `table`. A version of an
// alias with no usable endpoint gives its share to the alias's other versions (version-aware
// failover); kNoVersion only when no version of the alias can serve (or the client's fixed
// version cannot). Never allocates.
RouteChoice choose_version(const routing::RoutingTable& table, routing::PickState& picks,
                           const http::Parser& req, const Target& target, routing::Rng& draw,
                           const HealthView& health = {});

// After a failed attempt on `choice`'s version (every endpoint in `tried` failed or is unusable):
// another usable version of its alias picked as before, with an endpoint. False if the version
// was fixed or no other version can serve.
bool fail_over(RouteChoice& choice, routing::PickState& picks, const HealthView& health);

// The value of cookie `name` in a Cookie header, or empty.
std::string_view cookie_value(std::string_view header, std::string_view name);

// "name=<16 hex digits>; Path=/; Max-Age=31536000; HttpOnly" into `out` (capacity reused).
void sticky_cookie(std::string_view name, uint64_t value, std::string& out);

}  // namespace sluice::worker
