// Builds the immutable routing snapshot from a validated config and answers the data plane's
// questions: which route, which version, which endpoint.
#include "routing/table.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>

namespace sluice::routing {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

// "Example.com:8080" -> "Example.com"; "[::1]:80" -> "[::1]"; a trailing dot is dropped.
std::string_view strip_port(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    if (close != std::string_view::npos) return host.substr(0, close + 1);
    return host;
  }
  const size_t colon = host.rfind(':');
  if (colon != std::string_view::npos) host = host.substr(0, colon);
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return host;
}

// Sort key for versions, newest first: $LATEST, then published numbers descending.
uint64_t age_rank(const Version& v) {
  if (v.number == config::kLatest) return UINT64_MAX;
  return std::stoull(v.number);
}

}  // namespace

bool is_ip_literal(const std::string& host) {
  in_addr a4{};
  in6_addr a6{};
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

std::vector<std::string> host_names(const config::Config& cfg) {
  std::set<std::string> names;
  auto add = [&](const config::VersionSpec& v) {
    for (const config::Endpoint& e : v.endpoints)
      if (!is_ip_literal(e.address.host)) names.insert(e.address.host);
  };
  for (const config::FunctionSpec& f : cfg.functions) {
    for (const auto& [n, v] : f.versions) add(v);
    if (f.latest) add(*f.latest);
  }
  return {names.begin(), names.end()};
}

std::string Version::tls_server_name(const Endpoint& ep) const {
  if (tls && !tls->server_name.empty()) return tls->server_name;
  const std::string& a = ep.address;
  if (!a.empty() && a[0] == '[') return a.substr(1, a.find(']') - 1);
  const size_t colon = a.rfind(':');
  return colon == std::string::npos ? a : a.substr(0, colon);
}

void take_preferred(const addrinfo* res, ResolvedHost& out) {
  const addrinfo* pick = res;
  for (const addrinfo* ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      pick = ai;
      break;
    }
  }
  std::memcpy(&out.addr, pick->ai_addr, pick->ai_addrlen);
  out.len = static_cast<socklen_t>(pick->ai_addrlen);
}

ResolvedHost resolve_blocking(const std::string& host) {
  ResolvedHost out;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res) {
    out.error = rc != 0 ? gai_strerror(rc) : "no addresses";
    if (res) freeaddrinfo(res);
    return out;
  }
  take_preferred(res, out);
  freeaddrinfo(res);
  return out;
}

std::string address_text(const sockaddr_storage& addr) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    return std::string(ip) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  return "?";
}

namespace {

// The endpoint's socket address: an IP literal directly, a name from `hosts`. False with `why`.
bool endpoint_address(const config::SocketAddress& a, const HostAddresses& hosts, Endpoint* ep,
                      std::string* why) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, a.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, a.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    len = sizeof(sockaddr_in6);
  } else {
    auto it = hosts.find(a.host);
    if (it == hosts.end()) {
      *why = "the host name has not been resolved";
      return false;
    }
    if (!it->second.ok()) {
      *why = it->second.error.empty() ? "no addresses" : it->second.error;
      return false;
    }
    addr = it->second.addr;
    len = it->second.len;
  }
  if (addr.ss_family == AF_INET)
    v4->sin_port = htons(a.port);
  else
    v6->sin6_port = htons(a.port);
  ep->sockaddr = addr;
  ep->sockaddr_len = len;
  ep->resolved = address_text(addr);
  return true;
}

}  // namespace

std::shared_ptr<const RoutingTable> RoutingTable::build(config::Config cfg,
                                                        std::vector<config::Diagnostic>* errors) {
  HostAddresses hosts;
  for (const std::string& name : host_names(cfg)) hosts[name] = resolve_blocking(name);
  return build(std::move(cfg), errors, hosts);
}

std::shared_ptr<const RoutingTable> RoutingTable::build(config::Config cfg,
                                                        std::vector<config::Diagnostic>* errors,
                                                        const HostAddresses& hosts) {
  std::shared_ptr<RoutingTable> table(new RoutingTable());
  bool ok = true;
  auto fail = [&](config::SourcePos pos, std::string message) {
    ok = false;
    if (errors) errors->push_back(config::Diagnostic{cfg.source, pos, std::move(message)});
  };

  for (const config::FunctionSpec& fs : cfg.functions) {
    auto fn = std::make_unique<Function>();
    fn->name = fs.name;
    fn->version_header = fs.version_header;
    fn->grpc_errors = fs.grpc_errors;

    auto add_version = [&](const config::VersionSpec& vs) {
      auto v = std::make_unique<Version>();
      v->id = static_cast<uint32_t>(table->versions_.size());
      v->function = fs.name;
      v->number = vs.number;
      v->label = fs.name + ":" + vs.number;
      v->connect_timeout_ms = vs.settings.connect_timeout_ms.value_or(1000);
      v->response_timeout_ms = vs.settings.response_timeout_ms.value_or(30000);
      v->max_concurrency = vs.settings.max_concurrency.value_or(0);
      v->retries = vs.settings.retries.value_or(2);
      v->retry_timeout_ms = vs.settings.retry_timeout_ms.value_or(10000);
      v->health = vs.settings.health;
      v->outlier = vs.settings.outlier.value_or(config::OutlierSpec{});
      v->tls = vs.settings.tls;
      v->protocol = vs.settings.protocol.value_or(config::Protocol::kHttp1);
      for (const config::Endpoint& es : vs.endpoints) {
        Endpoint ep;
        ep.address = es.address.text;
        ep.weight = es.weight;
        std::string why;
        if (!endpoint_address(es.address, hosts, &ep, &why)) {
          fail(es.pos, "cannot resolve endpoint \"" + es.address.text + "\" of " + v->label + ": " +
                           why + " (expected an IP address or a resolvable host name)");
          continue;
        }
        v->endpoints.push_back(std::move(ep));
      }
      fn->versions.push_back(v.get());
      table->versions_.push_back(std::move(v));
    };
    for (const auto& [number, vs] : fs.versions) add_version(vs);
    if (fs.latest) add_version(*fs.latest);

    for (const config::AliasSpec& as : fs.aliases) {
      auto a = std::make_unique<Alias>();
      a->id = static_cast<uint32_t>(table->aliases_.size());
      a->function = fs.name;
      a->name = as.name;
      a->label = fs.name + ":" + as.name;
      a->selection = as.selection;
      a->sticky = as.sticky;
      a->allow_override = as.allow_override;
      std::vector<double> weights;
      for (const config::TrafficShare& share : as.traffic) {
        const Version* v = fn->find_version(share.version);
        if (!v) {  // cannot happen after validation; keep the table safe anyway
          fail(share.pos, "alias " + a->label + " names undefined version " + share.version);
          continue;
        }
        a->shares_.push_back(Alias::Share{v, share.weight});
        weights.push_back(share.weight);
      }
      a->cumulative_ = Cumulative(weights);
      std::vector<size_t> order(weights.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
        return age_rank(*a->shares_[x].version) > age_rank(*a->shares_[y].version);
      });
      a->sticky_ = StickyLayout(weights, order);
      a->newest_first_ = order;
      fn->aliases.push_back(a.get());
      table->aliases_.push_back(std::move(a));
    }
    table->functions_.push_back(std::move(fn));
  }

  for (const config::RouteSpec& rs : cfg.routes) {
    Route r;
    r.host = rs.host;
    r.path_prefix = rs.path_prefix;
    r.function = table->find_function(rs.function);
    if (r.function) {
      if (rs.pinned_version) {
        r.version = r.function->find_version(rs.target);
      } else {
        r.alias = r.function->find_alias(rs.target);
      }
    }
    if (!r.function || (!r.version && !r.alias)) {
      fail(rs.pos, "route target \"" + rs.function + ":" + rs.target + "\" is not defined");
      continue;
    }
    table->routes_.push_back(std::move(r));
  }
  // match() takes the first hit: host-specific routes first, then longer prefixes first.
  std::stable_sort(table->routes_.begin(), table->routes_.end(),
                   [](const Route& x, const Route& y) {
                     if (x.host.empty() != y.host.empty()) return !x.host.empty();
                     return x.path_prefix.size() > y.path_prefix.size();
                   });

  table->config_ = std::move(cfg);
  if (!ok) return nullptr;
  return table;
}

const Route* RoutingTable::match(std::string_view host, std::string_view path) const {
  const std::string_view bare = strip_port(host);
  for (const Route& r : routes_) {
    if (!r.host.empty() && !iequals(r.host, bare)) continue;
    // A plain prefix: "/api" also matches "/apiary"; write "/api/" to match a segment.
    if (path.substr(0, r.path_prefix.size()) == r.path_prefix) return &r;
  }
  return nullptr;
}

const Function* RoutingTable::find_function(std::string_view name) const {
  for (const auto& f : functions_) {
    if (f->name == name) return f.get();
  }
  return nullptr;
}

const Version* Function::find_version(std::string_view number) const {
  for (const Version* v : versions) {
    if (v->number == number) return v;
  }
  return nullptr;
}

const Alias* Function::find_alias(std::string_view alias_name) const {
  for (const Alias* a : aliases) {
    if (a->name == alias_name) return a;
  }
  return nullptr;
}

const Version* Alias::pick(uint64_t draw, std::optional<double> sticky_point,
                           PickState& state) const {
  size_t index = kNoPick;
  if (sticky_point) {
    index = sticky_.pick(*sticky_point);
  } else if (selection == config::Selection::kExact) {
    index = state.alias_wrr(id).next();
  } else {
    index = cumulative_.pick(draw);
  }
  if (index == kNoPick || index >= shares_.size()) return nullptr;
  return shares_[index].version;
}

const Endpoint* Version::pick_endpoint(PickState& state) const {
  if (endpoints.empty()) return nullptr;
  if (endpoints.size() == 1) return &endpoints.front();
  const size_t index = state.endpoint_wrr(id).next();
  return index < endpoints.size() ? &endpoints[index] : nullptr;
}

PickState::PickState(const RoutingTable& table) {
  alias_wrr_.reserve(table.aliases().size());
  for (const auto& a : table.aliases()) {
    std::vector<double> weights;
    for (const Alias::Share& s : a->shares()) weights.push_back(s.weight);
    alias_wrr_.emplace_back(scale_weights(weights));
  }
  endpoint_wrr_.reserve(table.versions().size());
  for (const auto& v : table.versions()) {
    std::vector<uint64_t> weights;
    for (const Endpoint& e : v->endpoints) weights.push_back(e.weight);
    endpoint_wrr_.emplace_back(std::move(weights));
  }
}

}  // namespace sluice::routing
