// The immutable routing snapshot the data plane reads: routes -> aliases -> versions -> endpoints.
// Built once from a validated config::Config; shared read-only by every worker through
// std::atomic<std::shared_ptr<const RoutingTable>>. Nothing here includes uv.h.
#pragma once

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"
#include "routing/selection.h"

namespace sluice::routing {

struct Endpoint {
  std::string address;  // "127.0.0.1:8080" or "api.internal:8080", as configured
  sockaddr_storage sockaddr{};
  socklen_t sockaddr_len = 0;
  // `sockaddr` as text, "10.0.0.5:8080" or "[::1]:8080": a stable key for what this endpoint
  // connects to (upstream pools are keyed by it, so a name that re-resolves elsewhere gets new
  // connections, and two names for one address share them).
  std::string resolved;
  uint32_t weight = 1;
};

// What a host name resolved to: one address (IPv4 preferred, so that "localhost" reaches
// upstreams bound to 127.0.0.1) with port 0, or why it did not resolve.
struct ResolvedHost {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string error;  // set: not resolved
  bool ok() const { return error.empty() && len != 0; }
};
// Host name -> its resolution. IP literals never need an entry.
using HostAddresses = std::map<std::string, ResolvedHost>;

// The host names (not IP literals) the endpoints of `cfg` use, sorted, each once.
std::vector<std::string> host_names(const config::Config& cfg);
// True if `host` is an IPv4 or IPv6 literal (no brackets).
bool is_ip_literal(const std::string& host);
// Resolves `host` with a blocking getaddrinfo. Only for places where blocking is harmless:
// before any loop runs (start-up, `sluice check`) and resolver threads; never on a loop.
ResolvedHost resolve_blocking(const std::string& host);
// Copies the address of `res` (non-empty) to prefer into `out`: the first IPv4 one, else the
// first (so that "localhost" reaches upstreams bound to 127.0.0.1).
void take_preferred(const addrinfo* res, ResolvedHost& out);
// "10.0.0.5:8080" / "[::1]:8080" for an AF_INET / AF_INET6 address.
std::string address_text(const sockaddr_storage& addr);

class PickState;

// One version of one function: how to reach and call it. Immutable.
struct Version {
  uint32_t id = 0;       // dense index into RoutingTable::versions(); valid within this table
  std::string function;  // "checkout"
  std::string number;    // "3" or "$LATEST"
  std::string label;     // "checkout:3": the version header's value
  std::vector<Endpoint> endpoints;
  uint32_t connect_timeout_ms = 1000;
  uint32_t response_timeout_ms = 30000;
  uint32_t max_concurrency = 0;       // 0 = unlimited
  uint32_t retries = 2;               // further attempts after a failure that allows one
  uint32_t retry_timeout_ms = 10000;  // no new attempt after this, from the request's start
  std::optional<config::HealthCheckSpec> health;  // active checks, if any
  config::OutlierSpec outlier;                    // passive ejection
  std::optional<config::UpstreamTlsSpec> tls;     // set: endpoints are reached over TLS
  config::Protocol protocol = config::Protocol::kHttp1;

  // TLS: the name sent as SNI and checked on `ep`'s certificate -- tls.server_name, else the
  // endpoint's host as configured (an IP literal is checked against the IP names).
  std::string tls_server_name(const Endpoint& ep) const;

  // Weighted round robin over `endpoints` using this worker's state. nullptr if none.
  const Endpoint* pick_endpoint(PickState& state) const;
  // The same over the endpoints `usable(index)` accepts; kNoPick if none does. Weighted round
  // robin skips the others (a few extra steps); if it meets none, a scan finds any usable one.
  template <typename Usable>
  size_t pick_endpoint_if(PickState& state, Usable&& usable) const;
};

// A stable name whose traffic map sends shares of requests to versions. Immutable.
class Alias {
 public:
  uint32_t id = 0;  // dense index into RoutingTable::aliases(); valid within this table
  std::string function;
  std::string name;
  std::string label;  // "checkout:prod"
  config::Selection selection = config::Selection::kRandom;
  config::StickySpec sticky;
  bool allow_override = false;

  struct Share {
    const Version* version;
    double weight;  // as configured, >= 0
  };
  const std::vector<Share>& shares() const { return shares_; }

  // Picks the version for one request. `sticky_point` in [0,1) when the request carries a
  // sticky key (see sticky_point()); otherwise random (from `draw`) or exact (from `state`)
  // per `selection`. Never allocates. Returns nullptr only if no share has weight > 0.
  const Version* pick(uint64_t draw, std::optional<double> sticky_point, PickState& state) const;
  // Version-aware failover: the share of the versions `usable(version)` refuses goes to the
  // others in proportion to their weights. The same `draw` or `sticky_point` picks among the
  // usable versions; a sticky point is laid out again over them newest first, so sticky clients
  // of a failed version move to a survivor and come back when it recovers. nullptr if no version
  // with weight > 0 is usable. Never allocates.
  template <typename Usable>
  const Version* pick_usable(uint64_t draw, std::optional<double> sticky_point,
                             Usable&& usable) const;

  // Internal layout, filled by the builder.
  std::vector<Share> shares_;
  Cumulative cumulative_;             // random draw over shares_
  StickyLayout sticky_;               // [0,1) laid out newest version first
  std::vector<size_t> newest_first_;  // share indices, newest version first
};

struct Function {
  std::string name;
  std::string version_header;            // empty: none added
  uint32_t grpc_errors = 0;              // gRPC statuses counted as errors (bit n: status n)
  std::vector<const Version*> versions;  // published ascending, then $LATEST if defined
  std::vector<const Alias*> aliases;

  const Version* find_version(std::string_view number) const;  // "3" or "$LATEST"
  const Alias* find_alias(std::string_view name) const;
};

struct Route {
  std::string host;         // empty = any; lower-case
  std::string path_prefix;  // starts with '/'
  const Function* function = nullptr;
  const Alias* alias = nullptr;      // set unless the route pins a version
  const Version* version = nullptr;  // set when the route pins a version
};

// Worker-local mutable selection state (smooth weighted round robin counters for `exact`
// aliases and for endpoint pools). One per worker per table; never shared between threads.
// Pass it only with the table it was built from: ids index its vectors. Build a new one when
// the worker picks up a new table (rotations restart; shares stay exact per window).
class PickState {
 public:
  explicit PickState(const class RoutingTable& table);
  SmoothWrr& alias_wrr(uint32_t alias_id) { return alias_wrr_[alias_id]; }
  SmoothWrr& endpoint_wrr(uint32_t version_id) { return endpoint_wrr_[version_id]; }

 private:
  std::vector<SmoothWrr> alias_wrr_;
  std::vector<SmoothWrr> endpoint_wrr_;
};

class RoutingTable {
 public:
  // Builds from a config that passed validation. Endpoint hosts that are names take their
  // address from `hosts` (no lookup happens here, so this never blocks): a name missing from
  // it or that failed to resolve is an error at the endpoint's position. Returns nullptr and
  // fills `errors` on any error.
  static std::shared_ptr<const RoutingTable> build(config::Config cfg,
                                                   std::vector<config::Diagnostic>* errors,
                                                   const HostAddresses& hosts);
  // The same, resolving the config's host names first with resolve_blocking(): for tools and
  // tests only, never on a running loop (the control plane resolves off its loop).
  static std::shared_ptr<const RoutingTable> build(config::Config cfg,
                                                   std::vector<config::Diagnostic>* errors);

  // Longest match: a route naming the request's host beats one for any host; among those, the
  // longest path prefix wins. `host` may carry a ":port" and any case. nullptr if none.
  // path_prefix is a plain string prefix, not a segment match: "/api" also matches "/apix"
  // (write "/api/" for one segment). Linear in the number of routes; no allocation.
  const Route* match(std::string_view host, std::string_view path) const;

  const Function* find_function(std::string_view name) const;

  const config::Config& config() const { return config_; }
  const std::vector<std::unique_ptr<Function>>& functions() const { return functions_; }
  const std::vector<std::unique_ptr<Version>>& versions() const { return versions_; }
  const std::vector<std::unique_ptr<Alias>>& aliases() const { return aliases_; }
  const std::vector<Route>& routes() const { return routes_; }

 private:
  config::Config config_;
  std::vector<std::unique_ptr<Function>> functions_;
  std::vector<std::unique_ptr<Version>> versions_;
  std::vector<std::unique_ptr<Alias>> aliases_;
  std::vector<Route> routes_;  // sorted for match()
};

template <typename Usable>
size_t Version::pick_endpoint_if(PickState& state, Usable&& usable) const {
  const size_t n = endpoints.size();
  if (n == 1) return usable(size_t{0}) ? 0 : kNoPick;
  for (size_t tries = 0; tries < n; ++tries) {
    const Endpoint* e = pick_endpoint(state);
    if (!e) return kNoPick;
    const size_t i = size_t(e - endpoints.data());
    if (usable(i)) return i;
  }
  for (size_t i = 0; i < n; ++i)
    if (usable(i)) return i;
  return kNoPick;
}

template <typename Usable>
const Version* Alias::pick_usable(uint64_t draw, std::optional<double> sticky_point,
                                  Usable&& usable) const {
  double total = 0;
  for (const Share& s : shares_)
    if (s.weight > 0 && usable(*s.version)) total += s.weight;
  if (total <= 0) return nullptr;
  const double unit = sticky_point ? *sticky_point : double(draw >> 11) * 0x1.0p-53;
  double x = unit * total;
  const Version* last = nullptr;
  for (size_t k = 0; k < shares_.size(); ++k) {
    const Share& s = shares_[sticky_point ? newest_first_[k] : k];
    if (s.weight <= 0 || !usable(*s.version)) continue;
    last = s.version;
    if (x < s.weight) return s.version;
    x -= s.weight;
  }
  return last;  // rounding at the top end
}

}  // namespace sluice::routing
