// Helpers shared by the HTTP/2 and gRPC e2e tests (h2_test.cpp, grpc_test.cpp): running a
// client's command line, a TLS listener line, finding a Python with grpcio, reading the clients'
// one-line JSON.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "harness.h"
#include "tls_test_certs.h"

namespace sluice::e2e::h2 {

// Runs a shell command; its stdout (stderr too when `with_stderr`).
inline std::string run(const std::string& cmd, bool with_stderr = false) {
  return shell_output(cmd, with_stderr);
}

// The [listen] line of a TLS listener serving the RSA test certificate.
inline std::string rsa_listener_tls() {
  using sluice::test::tls_asset;
  return "tls = { cert = \"" + tls_asset("rsa.pem") + "\", key = \"" + tls_asset("rsa.key") +
         "\" }\n";
}

// A Python with grpcio: Debian's (python3-grpcio installs there), else whatever python3 is first
// on PATH if it has it; "" if none.
inline std::string grpc_python() {
  for (const char* py : {"/usr/bin/python3", "python3"})
    if (std::system((std::string(py) + " -c 'import grpc' >/dev/null 2>&1").c_str()) == 0)
      return py;
  return "";
}

// tests/e2e/<name>
inline std::string script(const std::string& name) {
  return std::string(SLUICE_SOURCE_DIR) + "/tests/e2e/" + name;
}

// The value of "key" in a test client's one-line JSON (h2_attacks.py, grpc_probe.py), "" if
// absent: a string without its quotes, anything else as written ("true", "11", "null").
inline std::string json_field(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\": ";
  const size_t at = json.find(k);
  if (at == std::string::npos) return "";
  const size_t from = at + k.size();
  if (json[from] == '"') {
    const size_t to = json.find('"', from + 1);
    return json.substr(from + 1, to - from - 1);
  }
  size_t to = from;
  while (to < json.size() && json[to] != ',' && json[to] != '}') ++to;
  return json.substr(from, to - from);
}

}  // namespace sluice::e2e::h2
