// Builds the process's TLS contexts from the config -- listeners' (server) and upstreams' (client):
// every certificate, key and CA file is read and checked here (start, reload, `sluice check`),
// and each problem becomes a diagnostic at the config key to blame, so a bad file never reaches
// a connection.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/model.h"
#include "net/tls_context.h"

namespace sluice::control {

struct TlsBuild {
  std::shared_ptr<const net::TlsContexts> tls;  // null if and only if `errors` is not empty
  std::vector<config::Diagnostic> errors;
  std::vector<config::Diagnostic> warnings;  // e.g. a certificate expiring within 14 days
};

// `ticket_keys`: the process's ring, shared by every listener and kept across reloads so that a
// client resumes whatever worker or certificate generation it lands on. May be null (checks).
TlsBuild build_tls(const config::Config& cfg, std::shared_ptr<net::TicketKeyRing> ticket_keys,
                   int64_t now_s);

// A stamp of every certificate and key file the config names (size, mtime, inode), so a watcher
// can tell that a file changed even when the config text did not.
std::string tls_files_stamp(const config::Config& cfg);

// Does a file event for `name` (a base name in the config's directory) concern a TLS file?
bool names_tls_file(const config::Config& cfg, const std::string& dir, const std::string& name);

}  // namespace sluice::control
