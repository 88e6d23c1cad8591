// `sluice check`: load, validate, lint and resolve a config file; report like a compiler.
#include "cli/check.h"

#include <cstdio>
#include <string>
#include <string_view>

#include "config/loader.h"
#include "routing/table.h"

namespace sluice::cli {
namespace {

using config::Diagnostic;
using config::FunctionSpec;
using config::LoadResult;

constexpr const char* kUsage =
    "usage: sluice check -c FILE [--strict]  (see sluice check --help)\n";

std::string count(size_t n, const char* singular, const char* plural) {
  return std::to_string(n) + " " + (n == 1 ? singular : plural);
}

}  // namespace

const char* check_command_help() {
  return "Usage: sluice check -c FILE [--strict]\n"
         "\n"
         "Validate a sluice configuration file and lint it, without starting the proxy.\n"
         "Endpoint host names are resolved as the proxy would at start-up.\n"
         "\n"
         "Options:\n"
         "  -c, --config FILE  the TOML file to check (required)\n"
         "  --strict           treat lint warnings as errors (same as strict = true in the file)\n"
         "  -h, --help         show this help and exit\n"
         "\n"
         "Exit status:\n"
         "  0  valid; prints a one-line summary, then any lint warnings\n"
         "  1  invalid; prints every error as file:line:column: message\n"
         "  2  usage error (unknown option, missing -c FILE)\n"
         "\n"
         "Lint warnings: an alias named prod/production/live sending traffic to $LATEST; a\n"
         "published version no alias or route uses; an alias with 100% of its traffic on one\n"
         "version that still lists others at weight 0.\n";
}

int run_check_command(int argc, char** argv) {
  std::string path;
  bool strict = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(check_command_help(), stdout);
      return 0;
    }
    if (arg == "--strict") {
      strict = true;
    } else if (arg == "-c" || arg == "--config") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "sluice check: %s needs a FILE\n%s", argv[i], kUsage);
        return 2;
      }
      path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      path = std::string(arg.substr(9));
    } else {
      std::fprintf(stderr, "sluice check: unknown option '%s'\n%s", argv[i], kUsage);
      return 2;
    }
  }
  if (path.empty()) {
    std::fprintf(stderr, "sluice check: missing -c FILE\n%s", kUsage);
    return 2;
  }

  LoadResult result = config::load_file(path, strict);
  std::vector<Diagnostic> errors = std::move(result.errors);
  std::shared_ptr<const routing::RoutingTable> table;
  if (errors.empty() && result.config) {
    table = routing::RoutingTable::build(*result.config, &errors);
  }
  if (!errors.empty() || !table) {
    for (const Diagnostic& d : errors) std::fprintf(stderr, "%s\n", d.to_string().c_str());
    std::fprintf(stderr, "%s: %s\n", path.c_str(), count(errors.size(), "error", "errors").c_str());
    return 1;
  }
  size_t versions = 0, aliases = 0;
  for (const FunctionSpec& f : result.config->functions) {
    versions += f.versions.size() + (f.latest ? 1 : 0);
    aliases += f.aliases.size();
  }
  std::printf("%s: ok: %s, %s, %s, %s\n", path.c_str(),
              count(result.config->functions.size(), "function", "functions").c_str(),
              count(versions, "version", "versions").c_str(),
              count(aliases, "alias", "aliases").c_str(),
              count(result.config->routes.size(), "route", "routes").c_str());
  for (const Diagnostic& d : result.warnings) {
    std::fprintf(stderr, "warning: %s\n", d.to_string().c_str());
  }
  return 0;
}

}  // namespace sluice::cli
