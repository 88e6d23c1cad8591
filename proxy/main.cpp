// The sluice binary: the proxy (`run`), the config checker (`check`), the demo, and the CLI.
#include <cstdio>
#include <cstring>
#include <string>

#include "app/demo.h"
#include "app/serve.h"
#include "app/server.h"
#include "cli/check.h"
#include "cli/client.h"
#include "cli/top.h"
#include "config/loader.h"
#include "routing/table.h"

namespace {

const char* kUsage =
    "usage: sluice <command> [options]\n"
    "\n"
    "sluice is a weighted-routing HTTP reverse proxy: versions, aliases, canaries, rollback.\n"
    "\n"
    "commands:\n"
    "  run -c FILE        serve the configuration in FILE (also: sluice -c FILE)\n"
    "  check -c FILE      validate and lint FILE; --strict turns warnings into errors\n"
    "  demo               run the proxy with built-in demo upstreams on 127.0.0.1:8080\n"
    "  status, alias set, rollback, publish, reload, shift, top   admin client (see below)\n"
    "\n"
    "options:\n"
    "  -c, --config FILE  the TOML configuration (see config/sluice.toml for every key)\n"
    "  -h, --help         show help (also: sluice <command> --help)\n"
    "  --version          print the version\n"
    "\n"
    "signals (run): SIGTERM/SIGINT drain in-flight requests and exit 0; SIGHUP reloads FILE\n"
    "(so do saving FILE and POST /admin/reload). The admin API listens on [admin] address\n"
    "(default 127.0.0.1:9901) and prints `sluice: admin on HOST:PORT`.\n";

const char* kRunUsage =
    "usage: sluice run -c FILE\n"
    "\n"
    "Serves FILE's listeners and proxies each request: route -> alias -> weighted version ->\n"
    "endpoint. A listen port of 0 picks a free port; the bound addresses are printed to stderr\n"
    "as `sluice: listening on HOST:PORT` once every worker accepts.\n"
    "\n"
    "options:\n"
    "  -c, --config FILE  the TOML configuration\n"
    "  -h, --help         this help\n";

int run_command(int argc, char** argv, int first) {
  std::string path;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kRunUsage, stdout);
      return 0;
    }
    if ((a == "-c" || a == "--config") && i + 1 < argc) {
      path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      path = a.substr(9);
    } else {
      std::fprintf(stderr, "sluice run: unexpected argument '%s'\n%s", a.c_str(), kRunUsage);
      return 2;
    }
  }
  if (path.empty()) {
    std::fprintf(stderr, "sluice run: missing -c FILE\n%s", kRunUsage);
    return 2;
  }
  return sluice::app::serve({path, std::nullopt, {}});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    std::fputs(kUsage, stdout);
    std::fputs("\n", stdout);
    std::fputs(sluice::cli::client_usage(), stdout);
    return 0;
  }
  if (cmd == "--version" || cmd == "version") {
    std::printf("sluice %s\n", SLUICE_VERSION);
    return 0;
  }
  if (cmd == "run") return run_command(argc, argv, 2);
  if (cmd == "-c" || cmd == "--config" || cmd.rfind("--config=", 0) == 0)
    return run_command(argc, argv, 1);
  if (cmd == "check") return sluice::cli::run_check_command(argc - 1, argv + 1);
  if (cmd == "demo") return sluice::app::run_demo_command(argc - 1, argv + 1);
  if (cmd == "top") return sluice::cli::run_top_command(argc - 1, argv + 1);
  if (sluice::cli::is_client_command(cmd))
    return sluice::cli::run_client_command(argc - 1, argv + 1);
  std::fprintf(stderr, "sluice: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return 2;
}
