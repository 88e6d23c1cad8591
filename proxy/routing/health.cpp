// Endpoint health and passive outlier ejection (see health.h).
#include "routing/health.h"

#include <algorithm>

namespace sluice::routing {

const char* admin_state_name(AdminState s) {
  switch (s) {
    case AdminState::kReady:
      return "ready";
    case AdminState::kDrain:
      return "drain";
    case AdminState::kMaint:
      return "maint";
  }
  return "ready";
}

bool parse_admin_state(std::string_view text, AdminState* out) {
  for (AdminState s : {AdminState::kReady, AdminState::kDrain, AdminState::kMaint})
    if (text == admin_state_name(s)) {
      *out = s;
      return true;
    }
  return false;
}

namespace {

// Resets a streak counter without writing a shared cache line when it is already 0.
void clear(std::atomic<uint32_t>& counter) {
  if (counter.load(std::memory_order_relaxed) != 0) counter.store(0, std::memory_order_relaxed);
}

bool try_eject(EndpointHealth& ep, EndpointHealth* const* all, size_t count,
               const config::OutlierSpec& spec, uint64_t now_ms) {
  if (ep.ejected(now_ms)) return false;
  size_t ejected = 0;
  for (size_t i = 0; i < count; ++i) ejected += all[i] != &ep && all[i]->ejected(now_ms);
  // At least one endpoint may always be ejected; beyond that, the cap holds (a bad deploy must
  // not eject a whole pool on noise).
  if (ejected > 0 && (ejected + 1) * 100 > size_t(spec.max_ejection_percent) * count) return false;
  const uint32_t n = ep.ejection_count.fetch_add(1, std::memory_order_relaxed);
  uint64_t ms = spec.base_ejection_ms;
  for (uint32_t i = 0; i < n && ms < spec.max_ejection_ms; ++i) ms *= 2;
  ms = std::min<uint64_t>(ms, spec.max_ejection_ms);
  uint64_t expected = ep.ejected_until_ms.load(std::memory_order_relaxed);
  if (expected > now_ms) return false;
  if (!ep.ejected_until_ms.compare_exchange_strong(expected, now_ms + ms,
                                                   std::memory_order_relaxed))
    return false;  // another worker ejected it first
  ep.ejections_total.fetch_add(1, std::memory_order_relaxed);
  ep.failures.store(0, std::memory_order_relaxed);
  ep.errors_5xx.store(0, std::memory_order_relaxed);
  return true;
}

}  // namespace

bool record_outcome(EndpointHealth& ep, EndpointHealth* const* version_endpoints, size_t count,
                    const config::OutlierSpec& spec, Outcome outcome, uint64_t now_ms) {
  switch (outcome) {
    case Outcome::kSuccess:
      clear(ep.failures);
      clear(ep.errors_5xx);
      // An endpoint that has served without an ejection for max_ejection_time since its last
      // one earns back the short ejection time.
      if (ep.ejection_count.load(std::memory_order_relaxed) &&
          now_ms > ep.ejected_until_ms.load(std::memory_order_relaxed) + spec.max_ejection_ms)
        ep.ejection_count.store(0, std::memory_order_relaxed);
      return false;
    case Outcome::kFailure:
      clear(ep.errors_5xx);
      if (spec.consecutive_failures == 0) return false;
      if (ep.failures.fetch_add(1, std::memory_order_relaxed) + 1 < spec.consecutive_failures)
        return false;
      return try_eject(ep, version_endpoints, count, spec, now_ms);
    case Outcome::k5xx:
      clear(ep.failures);
      if (spec.consecutive_5xx == 0) return false;
      if (ep.errors_5xx.fetch_add(1, std::memory_order_relaxed) + 1 < spec.consecutive_5xx)
        return false;
      return try_eject(ep, version_endpoints, count, spec, now_ms);
  }
  return false;
}

EndpointHealth& HealthRegistry::get(const std::string& version_label, const std::string& resolved) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = entries_[{version_label, resolved}];
  if (!slot) slot = std::make_unique<EndpointHealth>();
  return *slot;
}

void HealthRegistry::for_each(
    const std::function<void(const std::string&, const std::string&, EndpointHealth&)>& visit) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [key, h] : entries_) visit(key.first, key.second, *h);
}

}  // namespace sluice::routing
