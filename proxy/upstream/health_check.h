// Active health checks: for every version with a `health` table, a GET of its path to each
// endpoint every interval, on one loop (the control loop), never on the request path. The verdict
// goes to the endpoint's shared routing::EndpointHealth, which every worker reads.
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "config/model.h"
#include "net/loop_context.h"
#include "net/tls_context.h"
#include "routing/health.h"
#include "routing/table.h"

namespace sluice::upstream {

class HealthProbe;

class HealthChecker {
 public:
  // `ctx` is the loop's context and `registry` the workers' shared health; both outlive this.
  HealthChecker(net::LoopContext& ctx, routing::HealthRegistry& registry);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Checks what `table` asks for from now on: new (version, endpoint) pairs start (up, or down
  // with start_unhealthy), pairs that stay keep their verdict and streak (a changed spec applies
  // from the next check), pairs that go away stop. An endpoint whose version no longer has a
  // `health` table is up again as far as checks go. Loop thread only.
  // `tls`: the process's contexts, for versions that speak TLS (checked over TLS, like requests).
  void update(const routing::RoutingTable& table, const net::TlsContexts* tls);
  // Stops every check; in-flight probes are abandoned and free themselves. Safe to call twice.
  void close();
  size_t targets() const { return targets_.size(); }

  // One (version, endpoint) being checked. Public for HealthProbe's report; owned by targets_.
  // `healthy` passes in a row make it up and end a passive ejection; `unhealthy` failures in a
  // row make it down.
  struct Target {
    HealthChecker* owner = nullptr;
    routing::EndpointHealth* health = nullptr;  // owned by the registry (process lifetime)
    config::HealthCheckSpec spec;
    sockaddr_storage addr{};
    std::string host;           // Host header: the endpoint's address as configured
    bool tls_required = false;  // the version speaks TLS
    std::shared_ptr<const net::ClientContext> tls;  // null with tls_required: every check fails
    std::string server_name;
    uv_timer_t timer{};
    HealthProbe* probe = nullptr;  // in flight, or nullptr
    void report(bool pass);
  };

 private:
  static void on_timer(uv_timer_t* t);
  static void set_tls(Target& t, const routing::Version& v, const routing::Endpoint& ep,
                      const net::TlsContexts* tls);

  net::LoopContext& ctx_;
  routing::HealthRegistry& registry_;
  // Keyed by (version label, resolved address). A target is freed in its timer's close callback.
  std::map<std::pair<std::string, std::string>, Target*> targets_;
  bool closed_ = false;
};

}  // namespace sluice::upstream
