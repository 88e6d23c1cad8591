// `sluice check`: load, validate, lint and resolve a config file; report like a compiler.
#include "cli/check.h"

#include <cstdio>
#include <string>

#include "config/loader.h"
#include "control/tls.h"
#include "routing/table.h"

namespace sluice::cli {
namespace {

using config::Diagnostic;
using config::FunctionSpec;
using config::LoadResult;

std::string count(size_t n, const char* singular, const char* plural) {
  return std::to_string(n) + " " + (n == 1 ? singular : plural);
}

}  // namespace

int run_check(const CheckArgs& args) {
  const std::string& path = args.config_path;
  const bool strict = args.strict;
  LoadResult result = config::load_file(path, strict);
  std::vector<Diagnostic> errors = std::move(result.errors);
  std::shared_ptr<const routing::RoutingTable> table;
  if (errors.empty() && result.config) {
    table = routing::RoutingTable::build(*result.config, &errors);
    // Certificates and keys are read and checked as `sluice run` would (a warning, such as a
    // certificate expiring within 14 days, is an error under --strict).
    control::TlsBuild tls = control::build_tls(*result.config, nullptr, net::unix_now_s());
    errors.insert(errors.end(), tls.errors.begin(), tls.errors.end());
    auto& warned = strict ? errors : result.warnings;
    warned.insert(warned.end(), tls.warnings.begin(), tls.warnings.end());
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
