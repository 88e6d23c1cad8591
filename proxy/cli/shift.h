// `sluice shift`: start a progressive shift, follow it (--wait), show its status or abort it,
// through the admin API. Its arguments are read by cli/commands.cpp into ShiftArgs.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/client.h"

namespace sluice::cli {

// `sluice shift`'s arguments as given; an empty value is an option not given.
struct ShiftArgs {
  std::vector<std::string> words;  // FN:ALIAS, or status FN:ALIAS, or abort FN:ALIAS
  std::string to, steps, every, hook_timeout, max_error_rate, max_p99, max_throttle_rate,
      min_requests, margin, pre_traffic, post_traffic;
  bool compare_to_stable = false;
  bool wait = false;
};

// What `sluice shift` does: start (POST `body`), or show or abort the alias's shift.
struct ShiftCall {
  std::string verb;  // "start", "status" or "abort"
  std::string function, alias;
  nlohmann::json body;  // start: the POST body; rates and durations as written
  bool wait = false;
};

// What is wrong with `value` for the shift option `name` ("--steps", "--every", "--max-p99",
// "--max-error-rate", ...), or "" if it reads. Rates refuse a bare 1 or more as ambiguous.
std::string shift_value_error(const std::string& name, const std::string& value);

// The call from the arguments, or nullopt with *error (a usage error: "--to VERSION is
// required", "expected FN:ALIAS (e.g. checkout:prod), got x").
std::optional<ShiftCall> make_shift_call(const ShiftArgs& args, std::string* error);

// Makes the call. Exit codes: 0 success (with --wait: promoted), 1 the call failed or the shift
// was rolled back / aborted / interrupted (the reason on stderr).
int run_shift(const ShiftCall& call, const ClientOptions& options);

}  // namespace sluice::cli
