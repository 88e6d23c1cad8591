// `sluice check`: validate and lint a config file without starting anything.
#pragma once

#include <string>

namespace sluice::cli {

// `sluice check -c FILE [--strict]`, as read by cli/commands.cpp.
struct CheckArgs {
  std::string config_path;
  bool strict = false;
};

// Prints a one-line summary and any lint warnings (exit 0), or every error on stderr (exit 1).
int run_check(const CheckArgs& args);

}  // namespace sluice::cli
