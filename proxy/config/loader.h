// Reads a sluice TOML file into a validated config::Config, collecting every error with its
// file:line:column. The only place (with loader.cpp) that touches toml++.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"

namespace sluice::config {

struct LoadResult {
  std::optional<Config> config;      // set if and only if `errors` is empty
  std::vector<Diagnostic> errors;    // every problem found, in file order
  std::vector<Diagnostic> warnings;  // lint findings (moved to `errors` when strict)
};

// Reads and validates `path`. Diagnostics name `path` as given.
LoadResult load_file(const std::string& path);

// Validates TOML text; `source_name` is used in diagnostics (e.g. "sluice.toml").
// `force_strict`: treat lint warnings as errors even if the file does not say strict = true.
LoadResult load_string(std::string_view toml, std::string source_name, bool force_strict = false);
LoadResult load_file(const std::string& path, bool force_strict);

}  // namespace sluice::config
