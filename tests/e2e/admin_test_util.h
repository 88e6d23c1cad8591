// Helpers for the admin e2e tests: the admin port from sluice's stderr, JSON calls to the admin
// API, configs with a state directory, running the CLI, and file-swap styles for reload tests.
#pragma once

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "e2e.h"

namespace sluice::e2e::admin {

using nlohmann::json;

// The port of `sluice: admin on 127.0.0.1:PORT` (printed before the listening lines), or 0.
inline uint16_t admin_port(const Sluice& s) {
  static const std::string kMarker = "sluice: admin on ";
  std::string err = s.stderr_text();
  size_t at = err.find(kMarker);
  if (at == std::string::npos) return 0;
  size_t eol = err.find('\n', at);
  std::string addr = err.substr(at + kMarker.size(), eol - at - kMarker.size());
  return static_cast<uint16_t>(std::stoul(addr.substr(addr.rfind(':') + 1)));
}

struct ApiReply {
  long status = 0;  // 0: the transfer failed (see error)
  json body;
  std::string raw;
  std::string error;  // libcurl's reason when status is 0
};

// One admin API call over `curl` (keep-alive reused across calls on the same client).
inline ApiReply api(CurlClient& curl, uint16_t port, const std::string& method,
                    const std::string& path, const std::string& body = "",
                    const std::string& token = "") {
  std::vector<std::string> headers;
  if (!token.empty()) headers.push_back("Authorization: Bearer " + token);
  if (!body.empty()) headers.push_back("Content-Type: application/json");
  HttpResult r =
      curl.request(method, "http://127.0.0.1:" + std::to_string(port) + path, headers, body);
  ApiReply out{r.status, json::parse(r.body, nullptr, false), r.body, r.error};
  return out;
}

inline std::string traffic_body(const std::string& a, int wa, const std::string& b = "",
                                int wb = 0) {
  json t = {{a, wa}};
  if (!b.empty()) t[b] = wb;
  return json{{"traffic", t}}.dump();
}

// Counts who answers `n` GETs on one keep-alive connection.
inline std::map<std::string, int> who_answers(const Sluice& s, int n, int* failures = nullptr) {
  CurlClient curl;
  std::map<std::string, int> hits;
  for (int i = 0; i < n; ++i) {
    HttpResult r = curl.get(s.url("/"));
    if (r.status != 200 && failures) ++*failures;
    ++hits[r.status == 200 ? r.header("x-upstream") : "status-" + std::to_string(r.status)];
  }
  return hits;
}

// Config with two versions 1 (upstream a) and 2 (upstream b) of "shop", alias "live" at
// `traffic`, a route to it, and optional [admin] token / [state] dir lines.
inline std::string shop_config(const Upstream& a, const Upstream& b, const std::string& traffic,
                               const std::string& state_dir = "",
                               const std::string& token_file = "",
                               const std::string& v1_extra = "") {
  std::string out = "workers = 2\n[listen]\naddress = \"127.0.0.1:0\"\n";
  out += "[admin]\naddress = \"127.0.0.1:0\"\n";
  if (!token_file.empty()) out += "token_file = \"" + token_file + "\"\n";
  if (!state_dir.empty()) out += "[state]\ndir = \"" + state_dir + "\"\n";
  out += "[log]\naccess = \"off\"\n";
  out += "[functions.shop.latest]\nendpoints = [\"" + b.address() + "\"]\n";
  out += "[functions.shop.versions.1]\nendpoints = [\"" + a.address() + "\"]\n" + v1_extra;
  out += "[functions.shop.versions.2]\nendpoints = [\"" + b.address() + "\"]\n";
  out += "[functions.shop.aliases.live]\ntraffic = " + traffic + "\n";
  out += "[[routes]]\ntarget = \"shop:live\"\n";
  return out;
}

inline void write_file(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

// Runs `sluice ARGS` (args shell-quoted by the caller), capturing stdout and stderr.
struct CliRun {
  int exit_code = -1;
  std::string out, err;
};
inline CliRun run_cli(const std::string& args, const std::string& env = "") {
  char tmpl[] = "/tmp/sluice-cli-err-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd >= 0) ::close(fd);
  std::string cmd = env + (env.empty() ? "" : " ") + sluice_binary() + " " + args + " 2>" + tmpl;
  CliRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(tmpl);
  std::stringstream ss;
  ss << in.rdbuf();
  r.err = ss.str();
  std::remove(tmpl);
  return r;
}

}  // namespace sluice::e2e::admin
