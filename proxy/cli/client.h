// The admin CLI client in the sluice binary: status, alias set, rollback, publish, reload, health,
// each one blocking HTTP/1.1 call to the admin API. Their arguments are read by cli/commands.cpp.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "net/http_call.h"

namespace sluice::cli {

// The blocking client every command uses (net/http_call.h).
using net::ClientResponse;
using net::http_call;

// The options every client command takes (status, alias, ..., shift, top): --admin HOST:PORT,
// -c/--config FILE (its [admin] address and token_file), --token-file FILE, else $SLUICE_TOKEN;
// and --json where the command prints the API's answer.
struct ClientOptions {
  std::string admin, config_path, token_file;
  bool json = false;

  // The admin address and bearer token to use: explicit options first, then -c FILE's [admin]
  // section (a relative token_file is relative to FILE), then 127.0.0.1:9901 and $SLUICE_TOKEN.
  // False with *error if FILE does not load or the token file cannot be read.
  bool resolve(std::string* admin_out, std::string* token_out, std::string* error) const;
};

// Splits "FN:ALIAS" into its two halves, each non-empty; false (nothing set) otherwise.
bool split_target(const std::string& target, std::string& function, std::string& alias);

// One call of a client command, read from its positional arguments.
struct ClientCall {
  std::string command;  // "status", "alias", "rollback", "publish", "reload", "health"
  std::string method = "GET", target, body;
  std::string function, alias;  // as named on the command line, for the answer's text
  std::string endpoint;         // `endpoint`: HOST:PORT (alias holds the version)
};

// The call for `command` with its positional arguments (e.g. "alias", {"set", "checkout:prod",
// "3=90", "4=10"}), or nullopt with *error saying what was expected (a usage error).
std::optional<ClientCall> make_client_call(const std::string& command,
                                           const std::vector<std::string>& args,
                                           std::string* error);

// Makes the call and prints the answer. Exit codes: 0 success, 1 the call failed (one-line reason
// on stderr).
int run_client(const ClientCall& call, const ClientOptions& options);

}  // namespace sluice::cli
