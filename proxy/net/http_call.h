// One blocking HTTP/1.1 exchange over a plain socket, for the command-line client and for calls
// made off the event loops (the shift engine's hooks run on their own threads).
#pragma once

#include <optional>
#include <string>

namespace sluice::net {

struct ClientResponse {
  int status = 0;
  std::string body;
};

// Sends one request to "host:port" (an IP literal, [v6], or a name) with Connection: close and
// reads the whole answer. `token`, if not empty, goes in Authorization: Bearer. nullopt with
// *error (naming `peer`: "cannot connect to sluice admin at 127.0.0.1:9901: ...") if it cannot
// connect, send, or read a valid response within `timeout_ms` per send or receive.
std::optional<ClientResponse> http_call(const std::string& address, const std::string& method,
                                        const std::string& target, const std::string& token,
                                        const std::string& body, std::string* error,
                                        int timeout_ms = 10000, const char* peer = "sluice admin");

}  // namespace sluice::net
