// `sluice check`: validate and lint a config file without starting anything.
#pragma once

namespace sluice::cli {

// `sluice check -c FILE [--strict]`; argv[0] is "check". Prints a one-line summary and any lint
// warnings (exit 0), every error on stderr (exit 1), or usage problems (exit 2).
int run_check_command(int argc, char** argv);

// The text `sluice check --help` prints.
const char* check_command_help();

}  // namespace sluice::cli
