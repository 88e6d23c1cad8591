// Runs the proxy with its control plane: config (file or embedded text) + state directory ->
// Server, plus the admin listener and the config-file watch on the control loop. Used by
// `sluice run` and `sluice demo`.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace sluice::admin {
class AdminServer;
}
namespace sluice::control {
class Control;
}

namespace sluice::app {

class Server;
using admin::AdminServer;
using control::Control;

struct ServeOptions {
  // The config file (watched, reloaded). With `config_text` set, only names the config in
  // messages and nothing is watched.
  std::string config_path;
  std::optional<std::string> config_text;
  // Called on the control loop once the listeners and the admin listener accept.
  std::function<void(Server&, const AdminServer&)> on_ready;
  // Called once the control plane and the admin server exist, before the server runs: the place
  // to attach extensions (AdminServer::set_extension, e.g. progressive shifts). All three outlive
  // the server's run.
  std::function<void(Server&, Control&, AdminServer&)> setup;
};

// Serves until SIGTERM/SIGINT and a drain. Returns the process exit code (1 if the config,
// the state directory or a listener cannot be used; every reason is printed to stderr).
int serve(const ServeOptions& options);

}  // namespace sluice::app
