// Private glue between tls_context.cpp and tls_engine.cpp: ex_data slots that let OpenSSL
// callbacks find sluice objects. Not for use outside proxy/net/.
#pragma once

#include <cstdint>
#include <string>

namespace sluice::net {

class ClientSessionCache;

// SSL_CTX ex_data: the ServerContext that owns a server SSL_CTX (its ticket ring, its slots).
int server_context_index();

// SSL ex_data: where a client SSL files the sessions the server sends it. Owned by the engine,
// which outlives its SSL.
struct ClientSessionRef {
  ClientSessionCache* cache = nullptr;  // kept alive by the worker that owns cache and engine
  std::string key;
  uint64_t context_id = 0;
};
int client_session_index();

}  // namespace sluice::net
