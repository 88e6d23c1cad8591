// The admin CLI client in the sluice binary: status, alias set, rollback, publish, reload, each
// one blocking HTTP/1.1 call to the admin API.
#pragma once

#include <optional>
#include <string>

namespace sluice::admin {

// True for the commands run_client_command() handles ("status", "alias", ...).
bool is_client_command(const std::string& command);

// argv[0] is the command. Exit codes: 0 success, 1 the call failed (one-line reason on stderr),
// 2 usage error.
int run_client_command(int argc, char** argv);

// Help text for `sluice --help`: the client commands and their options.
const char* client_usage();

// One blocking HTTP/1.1 exchange with 127.0.0.1-style "host:port" (IP literal or "localhost").
struct ClientResponse {
  int status = 0;
  std::string body;
};
std::optional<ClientResponse> http_call(const std::string& address, const std::string& method,
                                        const std::string& target, const std::string& token,
                                        const std::string& body, std::string* error,
                                        int timeout_ms = 10000);

}  // namespace sluice::admin
