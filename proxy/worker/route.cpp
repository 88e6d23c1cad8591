// The routing decision for one request (see route.h).
#include "worker/route.h"

namespace sluice::worker {
namespace {

// 16 lower-case hex digits of `v` into out[0..15].
void hex16(uint64_t v, char* out) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i, v >>= 4) out[i] = kDigits[v & 0xf];
}

}  // namespace

Target target_of(const http::Parser& req, std::string& origin_buffer) {
  Target t;
  t.host = req.header("host");
  std::string_view path = req.url();
  if (!path.empty() && path.front() != '/') {
    // absolute-form: scheme://authority[/path][?query]; forwarded in origin-form with the
    // authority as Host (RFC 9112 §3.2.2).
    size_t scheme = path.find("://");
    if (scheme != std::string_view::npos) {
      std::string_view rest = path.substr(scheme + 3);
      size_t end = rest.find_first_of("/?");
      t.authority = t.host = rest.substr(0, end);
      origin_buffer.clear();
      if (end == std::string_view::npos || rest[end] == '?') origin_buffer = "/";
      if (end != std::string_view::npos) origin_buffer.append(rest.substr(end));
      t.origin = path = origin_buffer;
    }
  }
  size_t q = path.find('?');
  t.path = q == std::string_view::npos ? path : path.substr(0, q);
  return t;
}

bool HealthView::any_usable(const routing::Version& v) const {
  for (size_t i = 0; i < v.endpoints.size(); ++i)
    if (usable(v, i)) return true;
  return false;
}

size_t choose_endpoint(const routing::Version& version, routing::PickState& picks,
                       const HealthView& health, uint64_t tried) {
  if (version.endpoints.empty()) return routing::kNoPick;
  return version.pick_endpoint_if(
      picks, [&](size_t i) { return (i >= 64 || !(tried >> i & 1)) && health.usable(version, i); });
}

RouteChoice choose_version(const routing::RoutingTable& table, routing::PickState& picks,
                           const http::Parser& req, const Target& target, routing::Rng& draw,
                           const HealthView& health) {
  RouteChoice c;
  c.route = table.match(target.host, target.path);
  if (!c.route) return c;  // kNoRoute
  c.function = c.route->function;
  c.alias = c.route->alias;
  c.version = c.route->version;
  c.version_fixed = c.version != nullptr;
  if (!c.version) {
    const routing::Alias& alias = *c.alias;
    if (alias.allow_override) {
      std::string_view want = req.header("x-sluice-version");
      if (!want.empty()) {
        size_t colon = want.rfind(':');
        if (colon != std::string_view::npos) want = want.substr(colon + 1);
        c.version = c.function->find_version(want);
        if (!c.version) {
          c.result = RouteChoice::Result::kUnknownVersion;
          return c;
        }
        c.version_fixed = true;
      }
    }
    if (!c.version) {
      if (alias.sticky.kind != config::StickySpec::Kind::kNone) {
        std::string_view key = alias.sticky.kind == config::StickySpec::Kind::kHeader
                                   ? req.header(alias.sticky.name)
                                   : cookie_value(req.header("cookie"), alias.sticky.name);
        if (key.empty() && alias.sticky.issue) {
          c.issued_cookie = draw.next() | 1;  // never 0 (0 means none)
          char hex[16];
          hex16(c.issued_cookie, hex);  // the cookie's value: its point is the point of that text
          c.sticky_point = routing::sticky_point(std::string_view(hex, sizeof hex));
        } else if (!key.empty()) {
          c.sticky_point = routing::sticky_point(key);
        }
      }
      c.draw = draw.next();
      c.version = alias.pick(c.draw, c.sticky_point, picks);
    }
  }
  if (!c.version) {
    c.result = RouteChoice::Result::kNoVersion;
    return c;
  }
  c.endpoint = choose_endpoint(*c.version, picks, health);
  if (c.endpoint == routing::kNoPick && !fail_over(c, picks, health)) {
    // No version of the alias can serve: the answer is charged to the version picked first.
    c.result = RouteChoice::Result::kNoVersion;
    return c;
  }
  c.result = RouteChoice::Result::kOk;
  return c;
}

bool fail_over(RouteChoice& c, routing::PickState& picks, const HealthView& health) {
  if (c.version_fixed || !c.alias) return false;
  const routing::Version* failed = c.version;
  const routing::Version* v =
      c.alias->pick_usable(c.draw, c.sticky_point, [&](const routing::Version& candidate) {
        return &candidate != failed && health.any_usable(candidate);
      });
  if (!v) return false;
  const size_t e = choose_endpoint(*v, picks, health);
  if (e == routing::kNoPick) return false;
  c.version = v;
  c.endpoint = e;
  return true;
}

std::string_view cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    size_t semi = header.find(';');
    std::string_view pair = header.substr(0, semi);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    if (pair.size() > name.size() && pair[name.size()] == '=' &&
        pair.substr(0, name.size()) == name)
      return pair.substr(name.size() + 1);
    if (semi == std::string_view::npos) break;
    header.remove_prefix(semi + 1);
  }
  return {};
}

void sticky_cookie(std::string_view name, uint64_t value, std::string& out) {
  char hex[16];
  hex16(value, hex);
  out.assign(name);
  out.push_back('=');
  out.append(hex, sizeof hex);
  out.append("; Path=/; Max-Age=31536000; HttpOnly");
}

}  // namespace sluice::worker
