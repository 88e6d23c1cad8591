// `sluice top`: a live terminal view of every alias's traffic split and per-version figures,
// polled from the admin API's GET /admin/status once a second.
#pragma once

#include <string>

namespace sluice::cli {

// argv[0] is "top". Options: --admin HOST:PORT, -c/--config FILE, --token-file FILE (else
// $SLUICE_TOKEN), --once, --interval-ms N. On a terminal it redraws every interval until `q`,
// Ctrl-C or SIGINT/SIGTERM/SIGHUP, restoring the terminal on every exit path; when stdout is not
// a terminal (or with --once) it prints one snapshot. Exit codes: 0 success, 1 the admin API could
// not be read (snapshot mode only; live mode shows the error and keeps retrying), 2 usage error.
int run_top_command(int argc, char** argv);

// One frame of the view from a GET /admin/status body, `columns` wide, ending in '\n'. `ansi`:
// colours and bold; otherwise plain ASCII. `header` is the first line (address, time, keys).
// Figures the status lacks (no live figures) show as "-". Invalid JSON gives a one-line error.
std::string render_top_frame(const std::string& status_json, int columns, bool ansi,
                             const std::string& header);

}  // namespace sluice::cli
