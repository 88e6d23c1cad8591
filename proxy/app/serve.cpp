// Runs the proxy with its control plane and admin listener (see serve.h).
#include "app/serve.h"

#include <cstdio>
#include <filesystem>
#include <memory>

#include "admin/server.h"
#include "app/server.h"
#include "control/control.h"
#include "control/shift_manager.h"
#include "upstream/health_check.h"

namespace sluice::app {

int serve(const ServeOptions& options) {
  auto owned = options.config_text
                   ? std::make_unique<Control>(options.config_path, *options.config_text)
                   : std::make_unique<Control>(options.config_path);
  Control& control = *owned;
  auto table = control.init();
  if (!table) return 1;
  Server server(table);
  // Active health checks run on the control loop (created once it exists) and follow every
  // published table.
  std::unique_ptr<upstream::HealthChecker> checker;
  control.set_publisher(
      [&server, &checker, &control](std::shared_ptr<const routing::RoutingTable> t) {
        if (checker) checker->update(*t, control.tls_contexts().get());
        server.publish(std::move(t));
      });
  // TLS contexts follow every reload; the health checks of TLS versions use them too.
  server.publish_tls(control.tls_contexts());
  control.set_tls_publisher(
      [&server, &checker, &control](std::shared_ptr<const net::TlsContexts> tls) {
        if (checker && control.table()) checker->update(*control.table(), tls.get());
        server.publish_tls(std::move(tls));
      });
  server.set_reloader([&control] { control.reload("sighup"); });
  std::string config_dir = std::filesystem::path(options.config_path).parent_path().string();
  AdminServer admin(control, table->config().admin, config_dir.empty() ? "." : config_dir);
  // Progressive shifts (control/shift_manager): admin routes, status, and the 1 s check timer.
  control::ShiftManager shifts(control, [&server] { return server.stats(); });
  shifts.set_health(&server.health());
  control.set_health(&server.health());
  admin.attach_shifts(shifts);
  // GET /readyz: the config is loaded (init() above) and every listener accepts (on_ready), and
  // no stop has begun. Not whether a shared store (etcd) is reachable: a node that cannot reach
  // it serves its last applied state, and taking every node out of its load balancer during an
  // etcd outage would turn that outage into a full one (docs/fleet.md). sluice_store_up says it.
  bool accepting = false;  // control-loop thread only, like the admin handler that reads it
  admin.set_ready([&accepting] { return accepting; });
  server.set_on_start([&](Server& s) {
    admin.set_registry(s.stats());
    std::string error;
    if (!admin.start(s.control_loop(), &error)) {
      std::fprintf(stderr, "sluice: %s\n", error.c_str());
      return false;
    }
    if (int rc = control.store().attach(s.control_loop()); rc != 0) {
      std::fprintf(stderr, "sluice: store: %s\n", uv_err_name(rc));
      return false;
    }
    if (int rc = shifts.start(s.control_loop()); rc != 0)
      std::fprintf(stderr, "sluice: shifts: %s\n", uv_err_name(rc));
    if (int rc = control.start_resolving(s.control_loop()); rc != 0) {
      std::fprintf(stderr, "sluice: name resolution: %s\n", uv_err_name(rc));
      return false;
    }
    checker = std::make_unique<upstream::HealthChecker>(s.control_context(), s.health());
    checker->update(*s.table(), control.tls_contexts().get());
    if (control.start_watch(s.control_loop()) != 0)
      std::fprintf(stderr, "sluice: config file changes are not watched (SIGHUP still reloads)\n");
    return true;
  });
  server.set_on_stop([&]() {
    accepting = false;
    if (checker) checker->close();
    shifts.close();
    admin.close();
    control.close();
    control.store().detach();
  });
  if (options.setup) options.setup(server, control, admin);
  server.set_on_ready([&](Server& s) {
    accepting = true;
    if (options.on_ready) options.on_ready(s, admin);
  });
  return server.run();
}

}  // namespace sluice::app
