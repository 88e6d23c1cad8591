// The admin CLI client: a call from the command's arguments, one blocking HTTP call, human or JSON
// output.
#include "cli/client.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/loader.h"
#include "http/parser.h"

namespace sluice::cli {
namespace {

using nlohmann::json;

bool read_token_file(const std::string& path, std::string& token, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read token file " + path + ": " + std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  token = ss.str();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  return true;
}

std::string weight_text(const json& w) {
  return w.is_number_integer() ? std::to_string(w.get<int64_t>()) : w.dump();
}

std::string map_text(const json& traffic) {
  if (!traffic.is_object()) return "-";
  std::string out;
  for (auto it = traffic.begin(); it != traffic.end(); ++it)
    out += (out.empty() ? "" : " ") + it.key() + "=" + weight_text(it.value());
  return out;
}

std::string num_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// The running (or hook-waiting) shift of alias f:a in /admin/status's "shifts", if any.
const json* running_shift(const json& s, const std::string& f, const std::string& a) {
  const json* shifts = s.contains("shifts") && s["shifts"].is_array() ? &s["shifts"] : nullptr;
  if (!shifts) return nullptr;
  for (const json& sh : *shifts) {
    const std::string state = sh.value("state", "");
    if (sh.value("function", "") == f && sh.value("alias", "") == a &&
        (state == "running" || state == "pre_traffic"))
      return &sh;
  }
  return nullptr;
}

void print_shift_line(const json& sh) {
  std::printf("      shift to %s from %s: %s, step %s/%s at %s%%",
              sh.value("candidate", "?").c_str(), sh.value("stable", "?").c_str(),
              sh.value("state", "?").c_str(), sh.value("step", json()).dump().c_str(),
              sh.value("steps_total", json()).dump().c_str(),
              num_text(sh.value("percent", 0.0)).c_str());
  if (!sh.value("reason", "").empty()) std::printf(": %s", sh.value("reason", "").c_str());
  std::printf("\n");
  if (sh.contains("window") && sh["window"].is_object()) {
    const json& c = sh["window"].value("candidate", json::object());
    std::printf("        window: candidate %llu req, err %.2f%%, p99 %.1fms\n",
                static_cast<unsigned long long>(c.value("requests", uint64_t{0})),
                c.value("error_rate", 0.0) * 100.0, c.value("p99_ms", 0.0));
  }
}

void print_status(const json& s) {
  size_t shifts_running = 0;
  for (const json& f : s.value("functions", json::array())) {
    std::string versions;
    for (const json& v : f.value("versions", json::array()))
      versions += (versions.empty() ? "" : ", ") + v.value("number", "?") + " (" +
                  v.value("source", "?") + ")";
    std::printf("function %s: versions %s", f.value("name", "?").c_str(), versions.c_str());
    if (f.contains("next_version")) std::printf("; next %s", f["next_version"].dump().c_str());
    std::printf("\n");
    // Endpoints that take no new requests, and why (all ready and healthy: nothing printed).
    for (const json& v : f.value("versions", json::array()))
      for (const json& e : v.value("health", json::array())) {
        if (e.value("usable", true)) continue;
        std::string why = e.value("state", "ready");
        if (why == "ready") why = e.value("ejected", false) ? "ejected" : "failing its checks";
        std::printf("  endpoint %s:%s %s: %s\n", f.value("name", "?").c_str(),
                    v.value("number", "?").c_str(), e.value("endpoint", "?").c_str(), why.c_str());
      }
    for (const json& a : f.value("aliases", json::array())) {
      std::printf("  %s:%s  %s  (%s, history %s)\n", f.value("name", "?").c_str(),
                  a.value("name", "?").c_str(), map_text(a["traffic"]).c_str(),
                  a.value("source", "?").c_str(), a["history_depth"].dump().c_str());
      for (const json& v : a.value("versions", json::array())) {
        std::printf("      %-8s %5.1f%%", v.value("version", "?").c_str(),
                    v.value("share", 0.0) * 100.0);
        if (v.contains("requests_per_second"))
          std::printf("  %8.1f req/s  err %5.2f%%  p50 %.1fms  p99 %.1fms",
                      v.value("requests_per_second", 0.0), v.value("error_rate", 0.0) * 100.0,
                      v.value("p50_ms", 0.0), v.value("p99_ms", 0.0));
        std::printf("\n");
      }
      if (const json* sh = running_shift(s, f.value("name", ""), a.value("name", ""))) {
        print_shift_line(*sh);
        ++shifts_running;
      }
    }
  }
  if (s.contains("shifts")) {
    if (shifts_running == 0)
      std::printf("shifts: none running\n");
    else
      std::printf("shifts: %zu running (details: sluice shift status FN:ALIAS)\n", shifts_running);
  }
  const json& r = s["reloads"];
  std::printf("reloads: %s ok, %s error", r["ok"].dump().c_str(), r["error"].dump().c_str());
  if (r.contains("last") && r["last"].is_object()) {
    const json& last = r["last"];
    std::printf("; last %s (%s) at %s", last.value("result", "?").c_str(),
                last.value("cause", "?").c_str(), last.value("time", "?").c_str());
    for (const json& e : last.value("errors", json::array()))
      std::printf("\n  %s", e.get<std::string>().c_str());
  }
  std::printf("\n");
  const json& st = s["state"];
  if (st.value("kind", "") == "etcd") {
    std::printf("state: etcd %s (node %s): %s, revision %lld", st.value("prefix", "").c_str(),
                st.value("node", "").c_str(), st.value("up", false) ? "up" : "DOWN",
                static_cast<long long>(st.value("revision", int64_t{0})));
    if (!st.value("up", false))
      std::printf(" (%s; serving the last applied state)", st.value("error", "").c_str());
    std::printf("\n");
  } else if (st.value("durable", false))
    std::printf("state: %s\n", st.value("dir", "").c_str());
  else
    std::printf("state: %s\n", st.value("note", "in memory only").c_str());
}

}  // namespace

bool split_target(const std::string& s, std::string& f, std::string& a) {
  size_t colon = s.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return false;
  f = s.substr(0, colon);
  a = s.substr(colon + 1);
  return true;
}

std::optional<ClientCall> make_client_call(const std::string& command,
                                           const std::vector<std::string>& args,
                                           std::string* error) {
  ClientCall call;
  call.command = command;
  auto usage = [&](const std::string& message) -> std::optional<ClientCall> {
    *error = message;
    return std::nullopt;
  };
  std::string& f = call.function;
  std::string& a = call.alias;
  if (command == "status") {
    if (!args.empty()) return usage("takes no arguments");
    call.target = "/admin/status";
  } else if (command == "reload") {
    if (!args.empty()) return usage("takes no arguments");
    call.method = "POST";
    call.target = "/admin/reload";
  } else if (command == "publish") {
    if (args.size() != 1) return usage("expected: publish FUNCTION");
    f = args[0];
    call.method = "POST";
    call.target = "/admin/functions/" + f + "/versions";
  } else if (command == "rollback") {
    if (args.size() != 1 || !split_target(args[0], f, a))
      return usage("expected: rollback FUNCTION:ALIAS");
    call.method = "POST";
    call.target = "/admin/functions/" + f + "/aliases/" + a + "/rollback";
  } else if (command == "alias") {
    if (args.size() < 3 || args[0] != "set" || !split_target(args[1], f, a))
      return usage("expected: alias set FUNCTION:ALIAS VERSION=WEIGHT [VERSION=WEIGHT ...]");
    json traffic = json::object();
    for (size_t i = 2; i < args.size(); ++i) {
      size_t eq = args[i].find('=');
      char* end = nullptr;
      double w = eq == std::string::npos ? 0 : std::strtod(args[i].c_str() + eq + 1, &end);
      if (eq == std::string::npos || eq == 0 || !end || *end != '\0' || eq + 1 == args[i].size())
        return usage("bad share '" + args[i] + "' (expected VERSION=WEIGHT, e.g. 3=90)");
      std::string v = args[i].substr(0, eq);
      if (v == "LATEST" || v == "latest") v = "$LATEST";
      if (std::floor(w) == w && std::fabs(w) < 1e15)
        traffic[v] = static_cast<int64_t>(w);
      else
        traffic[v] = w;
    }
    call.method = "PUT";
    call.target = "/admin/functions/" + f + "/aliases/" + a;
    call.body = json{{"traffic", traffic}}.dump();
  } else if (command == "endpoint") {
    // endpoint drain|maint|ready FUNCTION:VERSION HOST:PORT
    const bool known =
        !args.empty() && (args[0] == "drain" || args[0] == "maint" || args[0] == "ready");
    if (args.size() != 3 || !known || !split_target(args[1], f, a) || args[2].empty() ||
        args[2].find('/') != std::string::npos)
      return usage("expected: endpoint drain|maint|ready FUNCTION:VERSION HOST:PORT");
    if (a == "LATEST" || a == "latest") a = "$LATEST";
    call.endpoint = args[2];
    call.method = "PUT";
    call.target = "/admin/functions/" + f + "/versions/" + a + "/endpoints/" + args[2];
    call.body = json{{"state", args[0]}}.dump();
  } else if (command == "health") {
    if (args.size() > 1 || (args.size() == 1 && args[0] != "ready"))
      return usage("expected: health [ready]");
    call.target = args.empty() ? "/healthz" : "/readyz";
  } else {
    return usage("unknown command");
  }
  return call;
}

int run_client(const ClientCall& call, const ClientOptions& options) {
  const std::string& cmd = call.command;
  const std::string& f = call.function;
  const std::string& a = call.alias;
  std::string admin, token, err;
  if (!options.resolve(&admin, &token, &err)) {
    std::fprintf(stderr, "sluice %s: %s\n", cmd.c_str(), err.c_str());
    return 1;
  }
  std::optional<ClientResponse> resp =
      http_call(admin, call.method, call.target, token, call.body, &err);
  if (!resp) {
    std::fprintf(stderr, "sluice %s: %s\n", cmd.c_str(), err.c_str());
    return 1;
  }
  bool ok = resp->status >= 200 && resp->status < 300;
  if (cmd == "health") {  // plain text: "ok" or "not ready"
    std::fprintf(ok ? stdout : stderr, "%s", resp->body.c_str());
    return ok ? 0 : 1;
  }
  const bool as_json = options.json;
  json doc = json::parse(resp->body, nullptr, false);
  if (as_json) std::printf("%s\n", doc.is_discarded() ? resp->body.c_str() : doc.dump(2).c_str());
  if (!ok) {
    std::string reason = !doc.is_discarded() && doc.is_object() && doc.contains("error")
                             ? doc["error"].get<std::string>()
                             : "HTTP " + std::to_string(resp->status);
    std::fprintf(stderr, "sluice %s: %s (HTTP %d)\n", cmd.c_str(), reason.c_str(), resp->status);
    return 1;
  }
  if (as_json) return 0;
  if (doc.is_discarded()) {
    std::fprintf(stderr, "sluice %s: the admin API answered with invalid JSON\n", cmd.c_str());
    return 1;
  }
  if (cmd == "status") {
    print_status(doc);
  } else if (cmd == "reload") {
    std::printf("configuration reloaded\n");
  } else if (cmd == "publish") {
    std::printf("published %s:%s\n", f.c_str(), doc.value("version", "?").c_str());
  } else if (cmd == "rollback") {
    std::printf("%s:%s rolled back to %s (was %s)\n", f.c_str(), a.c_str(),
                map_text(doc["new"]).c_str(), map_text(doc["old"]).c_str());
  } else if (cmd == "endpoint") {
    std::printf("%s:%s %s now %s (was %s)\n", f.c_str(), a.c_str(), call.endpoint.c_str(),
                doc.value("new", "?").c_str(), doc.value("old", "?").c_str());
  } else {
    std::printf("%s:%s now %s (was %s)\n", f.c_str(), a.c_str(), map_text(doc["new"]).c_str(),
                map_text(doc["old"]).c_str());
  }
  return 0;
}

bool ClientOptions::resolve(std::string* admin_out, std::string* token_out,
                            std::string* error) const {
  std::string address = admin, tokens = token_file;
  if (!config_path.empty()) {
    config::LoadResult r = config::load_file(config_path);
    if (!r.config) {
      *error = r.errors.empty() ? "cannot load config" : r.errors[0].to_string();
      return false;
    }
    if (address.empty()) address = r.config->admin.address.text;
    if (tokens.empty() && !r.config->admin.token_file.empty()) {
      tokens = r.config->admin.token_file;
      const size_t slash = config_path.rfind('/');
      if (tokens[0] != '/' && slash != std::string::npos)
        tokens = config_path.substr(0, slash + 1) + tokens;
    }
  }
  *admin_out = address.empty() ? "127.0.0.1:9901" : address;
  token_out->clear();
  if (!tokens.empty()) return read_token_file(tokens, *token_out, error);
  if (const char* env = std::getenv("SLUICE_TOKEN")) *token_out = env;
  return true;
}

}  // namespace sluice::cli
