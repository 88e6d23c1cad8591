// `sluice top`: a live terminal view of every alias's traffic split and per-version figures,
// polled from the admin API's GET /admin/status once a second.
#pragma once

#include <string>

#include "cli/client.h"

namespace sluice::cli {

// `sluice top`'s own options (the client options are ClientOptions).
struct TopArgs {
  bool once = false;
  std::string interval_ms = "1000";  // checked by top_interval_error
};

// What is wrong with --interval-ms `value`, or "" if it is a whole number from 100 to 60000.
std::string top_interval_error(const std::string& value);

// On a terminal it redraws every interval until `q`, Ctrl-C or SIGINT/SIGTERM/SIGHUP, restoring the
// terminal on every exit path; when stdout is not a terminal (or with --once) it prints one
// snapshot. Exit codes: 0 success, 1 the admin API could not be read (snapshot mode only; live
// mode shows the error and keeps retrying).
int run_top(const TopArgs& args, const ClientOptions& options);

// One frame of the view from a GET /admin/status body, `columns` wide, ending in '\n'. `ansi`:
// colours and bold; otherwise plain ASCII. `header` is the first line (address, time, keys).
// Figures the status lacks (no live figures) show as "-". Invalid JSON gives a one-line error.
std::string render_top_frame(const std::string& status_json, int columns, bool ansi,
                             const std::string& header);

}  // namespace sluice::cli
