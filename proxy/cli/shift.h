// `sluice shift`: start a progressive shift, follow it (--wait), show its status or abort it,
// through the admin API.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::cli {

// argv[0] is "shift". Exit codes: 0 success (with --wait: promoted), 1 the call failed or the
// shift was rolled back / aborted / interrupted (the reason on stderr), 2 usage error.
int run_shift_command(int argc, char** argv);

const char* shift_usage();

// Builds the POST body from the start options (everything after FN:ALIAS except the client
// options). false with `error` on a bad option.
bool shift_body_from_args(const std::vector<std::string>& args, nlohmann::json& body, bool& wait,
                          std::string* error);

}  // namespace sluice::cli
