// The admin CLI client in the sluice binary: status, alias set, rollback, publish, reload, each
// one blocking HTTP/1.1 call to the admin API.
#pragma once

#include <optional>
#include <string>

#include "net/http_call.h"

namespace sluice::cli {

// The blocking client every command uses (net/http_call.h).
using net::ClientResponse;
using net::http_call;

// True for the commands run_client_command() handles ("status", "alias", ...).
bool is_client_command(const std::string& command);

// argv[0] is the command. Exit codes: 0 success, 1 the call failed (one-line reason on stderr),
// 2 usage error.
int run_client_command(int argc, char** argv);

// The options every client command takes (status, alias, ..., shift, top): --admin HOST:PORT,
// -c/--config FILE (its [admin] address and token_file), --token-file FILE, else $SLUICE_TOKEN.
struct ClientOptions {
  std::string admin, config_path, token_file;

  // If argv[i] is one of these options, stores its value (advancing i past it) and returns true.
  bool take(int argc, char** argv, int& i);
  // The admin address and bearer token to use: explicit options first, then -c FILE's [admin]
  // section (a relative token_file is relative to FILE), then 127.0.0.1:9901 and $SLUICE_TOKEN.
  // False with *error if FILE does not load or the token file cannot be read.
  bool resolve(std::string* admin_out, std::string* token_out, std::string* error) const;
};

// Matches "NAME VALUE" or "NAME=VALUE" at argv[i]; on a match stores VALUE and advances i.
bool take_value(int argc, char** argv, int& i, const std::string& name, std::string& out);

// Help text for `sluice --help`: the client commands and their options.
const char* client_usage();

}  // namespace sluice::cli
