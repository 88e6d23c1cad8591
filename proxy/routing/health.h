// Endpoint health shared by every worker and the control loop: the operator's state (ready,
// drain, maint), the active checks' verdict, and passive outlier ejection. Read on the request
// path with relaxed atomic loads only; written rarely (a failure, a check result, an operator
// call). Pure logic: time is passed in (loop milliseconds, the same monotonic clock everywhere).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "config/model.h"

namespace sluice::routing {

// What the operator set (persisted by the control plane). drain: no new requests, those in
// flight finish, keep-alive connections close after their current request. maint: the same,
// for maintenance; both are "not ready" to the balancer.
enum class AdminState : uint8_t { kReady, kDrain, kMaint };
const char* admin_state_name(AdminState s);
bool parse_admin_state(std::string_view text, AdminState* out);

struct EndpointHealth {
  std::atomic<uint8_t> admin{uint8_t(AdminState::kReady)};
  std::atomic<bool> checked_up{true};         // active checks' verdict (up without checks)
  std::atomic<uint64_t> ejected_until_ms{0};  // the last passive ejection ends (0: never)
  // Consecutive outcomes across workers (reset by a success; written only when non-zero).
  std::atomic<uint32_t> failures{0};
  std::atomic<uint32_t> errors_5xx{0};
  std::atomic<uint32_t> ejection_count{0};  // ejections so far: the next one lasts 2^n * base
  std::atomic<uint64_t> ejections_total{0};
  // Active-check streak on the control loop only (passes > 0 or failures < 0).
  int32_t check_streak = 0;

  AdminState admin_state() const { return AdminState(admin.load(std::memory_order_relaxed)); }
  bool ejected(uint64_t now_ms) const {
    return ejected_until_ms.load(std::memory_order_relaxed) > now_ms;
  }
  // May take a new request: ready, up by the checks, not ejected.
  bool usable(uint64_t now_ms) const {
    return admin.load(std::memory_order_relaxed) == uint8_t(AdminState::kReady) &&
           checked_up.load(std::memory_order_relaxed) && !ejected(now_ms);
  }
};

// An attempt's outcome, for passive health. kFailure: the endpoint did not answer properly
// (connect failure or timeout, reset, bad response, response timeout). k5xx: it answered 5xx.
enum class Outcome { kSuccess, kFailure, k5xx };

// Records an attempt on `ep`, one of `version_endpoints` (`count` of them, ep among them), under
// `spec`. A success resets the streaks; a streak reaching its threshold ejects `ep` for
// base * 2^(ejections so far), capped at max, unless more than max_ejection_percent of the
// version would then be ejected (at least one endpoint always may be). Returns true if this call
// ejected it. Thread-safe (atomics); allocates nothing.
bool record_outcome(EndpointHealth& ep, EndpointHealth* const* version_endpoints, size_t count,
                    const config::OutlierSpec& spec, Outcome outcome, uint64_t now_ms);

// Every endpoint's health by (version label, resolved address), for the life of the process: a
// reload keeps what was learnt about an endpoint that stays. Lookups take a mutex: workers call
// get() when they build a snapshot view, never per request.
class HealthRegistry {
 public:
  EndpointHealth& get(const std::string& version_label, const std::string& resolved);
  // Visits every entry (any thread; the mutex is held during the walk).
  void for_each(const std::function<void(const std::string& version_label,
                                         const std::string& resolved, EndpointHealth&)>& visit);

 private:
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<EndpointHealth>> entries_;
};

}  // namespace sluice::routing
