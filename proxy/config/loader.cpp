// Reads sluice TOML into a validated config::Config; every error is collected with its
// file:line:column and what was expected. toml++ is used here and nowhere else.
#include "config/loader.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include <toml++/toml.h>
#include <nlohmann/json.hpp>

#include "config/lint.h"
#include "config/shift_plan.h"
#include "config/traffic.h"
#include "config/values.h"

namespace sluice::config {
namespace {

constexpr uint64_t kMaxEndpointWeight = 10'000;
constexpr const char* kDurationHint =
    "expected a number with a unit ms, s, m or h, e.g. \"250ms\", \"1s\", \"2m\"";
constexpr const char* kNameRule =
    "expected lower-case letters, digits, '_' and '-', starting with a letter or digit, at most "
    "63 characters: [a-z0-9][a-z0-9_-]{0,62}";

SourcePos pos_of(const toml::source_region& r) {
  return {static_cast<uint32_t>(r.begin.line), static_cast<uint32_t>(r.begin.column)};
}
SourcePos pos_of(const toml::node& n) {
  return pos_of(n.source());
}
SourcePos pos_of(const toml::key& k) {
  return pos_of(k.source());
}

// A TOML value as JSON (for the shift table, which the admin API also takes as JSON).
nlohmann::json to_json_value(const toml::node& n) {
  if (const toml::table* t = n.as_table()) {
    nlohmann::json out = nlohmann::json::object();
    for (auto&& [k, v] : *t) out[std::string(k.str())] = to_json_value(v);
    return out;
  }
  if (const toml::array* a = n.as_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const toml::node& v : *a) out.push_back(to_json_value(v));
    return out;
  }
  if (n.is_string()) return n.as_string()->get();
  if (n.is_integer()) return n.as_integer()->get();
  if (n.is_floating_point()) return n.as_floating_point()->get();
  if (n.is_boolean()) return n.as_boolean()->get();
  return nullptr;  // dates and times: refused by the plan's own checks
}

bool before(SourcePos a, SourcePos b) {
  return a.line != b.line ? a.line < b.line : a.column < b.column;
}

std::string quote(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

std::string join(const std::vector<std::string>& items, std::string_view sep = ", ") {
  std::string out;
  for (const std::string& s : items) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

std::string type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a decimal number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// RFC 9110 token characters: what a header name may contain.
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c))) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) return false;
  }
  return true;
}

// A table's entries ordered as written (toml++ keeps them sorted by key).
std::vector<std::pair<const toml::key*, const toml::node*>> in_file_order(const toml::table& t) {
  std::vector<std::pair<const toml::key*, const toml::node*>> out;
  for (auto&& [k, v] : t) out.emplace_back(&k, &v);
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return before(pos_of(*a.first), pos_of(*b.first));
  });
  return out;
}

class Loader {
 public:
  explicit Loader(std::string source) : source_(std::move(source)) { cfg_.source = source_; }

  void load(const toml::table& root);

  Config cfg_;
  std::vector<Diagnostic> errors_;

 private:
  void error(SourcePos pos, std::string message) {
    errors_.push_back(Diagnostic{source_, pos, std::move(message)});
  }
  void wrong_type(const toml::node& n, const std::string& what, const std::string& expected) {
    error(pos_of(n),
          "wrong type for " + what + ": " + type_name(n) + " (expected " + expected + ")");
  }

  void check_keys(const toml::table& t, const std::vector<std::string>& allowed,
                  const std::string& where);
  const toml::table* table_at(const toml::table& parent, std::string_view key,
                              const std::string& what);

  bool read_string(const toml::table& t, std::string_view key, const std::string& what,
                   std::string* out);
  bool read_bool(const toml::table& t, std::string_view key, const std::string& what, bool* out);
  bool read_uint(const toml::table& t, std::string_view key, const std::string& what, uint64_t min,
                 uint64_t max, uint64_t* out);
  template <typename T>
  void read_uint_into(const toml::table& t, std::string_view key, const std::string& what,
                      uint64_t min, uint64_t max, T* out) {
    uint64_t v = 0;
    if (read_uint(t, key, what, min, max, &v)) *out = static_cast<T>(v);
  }
  bool read_duration(const toml::table& t, std::string_view key, const std::string& what,
                     bool allow_zero, uint32_t* out_ms);
  std::optional<SocketAddress> read_address(const toml::node& n, const std::string& what,
                                            bool allow_port_zero);

  void load_listen(const toml::table& root);
  void load_trusted_proxies(const toml::table& t, ListenSpec& spec);
  void load_tls(const toml::node& n, SourcePos key_pos, ListenSpec& spec);
  void load_upstream_tls(const toml::table& t, const std::string& where, UpstreamSettings* out);
  std::optional<TlsPairSpec> load_tls_pair(const toml::table& t, const std::string& where);
  std::string resolve_path(const std::string& path) const;
  void load_admin(const toml::table& root);
  void load_limits(const toml::table& root);
  void load_store(const toml::table& root);
  void load_functions(const toml::table& root);
  void load_function(std::string name, SourcePos pos, const toml::table& t);
  void load_settings(const toml::table& t, const std::string& where, UpstreamSettings* out);
  void load_health(const toml::table& t, const std::string& where, UpstreamSettings* out);
  void load_outlier(const toml::table& t, const std::string& where, UpstreamSettings* out);
  void load_version(FunctionSpec& f, std::string number, SourcePos pos, const toml::table& t);
  void load_alias(FunctionSpec& f, std::string name, SourcePos pos, const toml::table& t);
  void load_routes(const toml::table& root);
  void load_route(const toml::table& t,
                  std::map<std::pair<std::string, std::string>, SourcePos>& seen);

  std::string source_;
};

void Loader::check_keys(const toml::table& t, const std::vector<std::string>& allowed,
                        const std::string& where) {
  for (auto&& [k, v] : t) {
    if (std::find(allowed.begin(), allowed.end(), k.str()) != allowed.end()) continue;
    const std::string suggestion = closest_match(k.str(), allowed);
    std::string msg = "unknown key " + quote(k.str()) + " in " + where;
    if (!suggestion.empty()) {
      msg += " (did you mean " + quote(suggestion) + "?)";
    } else {
      msg += " (expected one of: " + join(allowed) + ")";
    }
    error(pos_of(k), std::move(msg));
  }
}

const toml::table* Loader::table_at(const toml::table& parent, std::string_view key,
                                    const std::string& what) {
  const toml::node* n = parent.get(key);
  if (!n) return nullptr;
  if (!n->is_table()) {
    wrong_type(*n, what, "a table");
    return nullptr;
  }
  return n->as_table();
}

bool Loader::read_string(const toml::table& t, std::string_view key, const std::string& what,
                         std::string* out) {
  const toml::node* n = t.get(key);
  if (!n) return false;
  if (!n->is_string()) {
    wrong_type(*n, what, "a string");
    return false;
  }
  *out = n->as_string()->get();
  return true;
}

bool Loader::read_bool(const toml::table& t, std::string_view key, const std::string& what,
                       bool* out) {
  const toml::node* n = t.get(key);
  if (!n) return false;
  if (!n->is_boolean()) {
    wrong_type(*n, what, "true or false");
    return false;
  }
  *out = n->as_boolean()->get();
  return true;
}

bool Loader::read_uint(const toml::table& t, std::string_view key, const std::string& what,
                       uint64_t min, uint64_t max, uint64_t* out) {
  const toml::node* n = t.get(key);
  if (!n) return false;
  const std::string expected =
      "an integer from " + std::to_string(min) + " to " + std::to_string(max);
  if (!n->is_integer()) {
    wrong_type(*n, what, expected);
    return false;
  }
  const int64_t v = n->as_integer()->get();
  if (v < 0 || static_cast<uint64_t>(v) < min || static_cast<uint64_t>(v) > max) {
    error(pos_of(*n),
          what + " = " + std::to_string(v) + " is out of range (expected " + expected + ")");
    return false;
  }
  *out = static_cast<uint64_t>(v);
  return true;
}

bool Loader::read_duration(const toml::table& t, std::string_view key, const std::string& what,
                           bool allow_zero, uint32_t* out_ms) {
  const toml::node* n = t.get(key);
  if (!n) return false;
  if (!n->is_string()) {
    wrong_type(*n, what, std::string("a duration string, ") + (kDurationHint + 9));
    return false;
  }
  const std::string& text = n->as_string()->get();
  auto ms = parse_duration_ms(text);
  if (!ms) {
    error(pos_of(*n), "bad duration " + quote(text) + " for " + what + " (" + kDurationHint + ")");
    return false;
  }
  if (*ms == 0 && !allow_zero) {
    error(pos_of(*n), what + " must be longer than 0 (expected a positive duration, e.g. \"1s\")");
    return false;
  }
  *out_ms = static_cast<uint32_t>(*ms);
  return true;
}

std::optional<SocketAddress> Loader::read_address(const toml::node& n, const std::string& what,
                                                  bool allow_port_zero) {
  if (!n.is_string()) {
    wrong_type(n, what, "an address string \"host:port\"");
    return std::nullopt;
  }
  const std::string& text = n.as_string()->get();
  std::string why;
  auto addr = parse_socket_address(text, allow_port_zero, &why);
  if (!addr) {
    error(pos_of(n), "bad address " + quote(text) + " for " + what + ": " + why +
                         " (expected \"host:port\" or \"[ipv6]:port\", e.g. \"127.0.0.1:8080\")");
  }
  return addr;
}

void Loader::load(const toml::table& root) {
  check_keys(root,
             {"workers", "strict", "listen", "admin", "state", "store", "limits", "upstream", "log",
              "functions", "routes"},
             "the top level");
  read_uint_into(root, "workers", "workers", 0, 1024, &cfg_.workers);
  read_bool(root, "strict", "strict", &cfg_.strict);
  load_listen(root);
  load_admin(root);
  if (const toml::table* state = table_at(root, "state", "[state]")) {
    check_keys(*state, {"dir"}, "[state]");
    read_string(*state, "dir", "state.dir", &cfg_.state_dir);
  }
  load_store(root);
  load_limits(root);
  if (const toml::table* up = table_at(root, "upstream", "[upstream]")) {
    check_keys(*up, {"keepalive", "idle_timeout", "resolve_interval"}, "[upstream]");
    read_uint_into(*up, "keepalive", "upstream.keepalive", 0, 100000, &cfg_.upstream.keepalive);
    read_duration(*up, "idle_timeout", "upstream.idle_timeout", false,
                  &cfg_.upstream.idle_timeout_ms);
    uint32_t every_ms = 0;
    if (read_duration(*up, "resolve_interval", "upstream.resolve_interval", true, &every_ms)) {
      if (every_ms != 0 && every_ms < 1000) {
        error(pos_of(*up->get("resolve_interval")),
              "upstream.resolve_interval " + format_duration_ms(every_ms) +
                  " is too short (expected \"0s\" to resolve only at start and reload, or at "
                  "least \"1s\")");
      } else {
        cfg_.upstream.resolve_interval_ms = every_ms;
      }
    }
  }
  if (const toml::table* log = table_at(root, "log", "[log]")) {
    check_keys(*log, {"access"}, "[log]");
    std::string access;
    if (read_string(*log, "access", "log.access", &access)) {
      if (access.empty()) {
        error(pos_of(*log->get("access")),
              "log.access is empty (expected a file path, \"stdout\" or \"off\")");
      } else {
        cfg_.log.access = access;
      }
    }
  }
  load_functions(root);
  load_routes(root);
}

namespace {

// An etcd member's client URL as the store takes it: "http://host:port" or "host:port" (the
// control plane's etcd client checks the host is an IP literal or localhost).
bool store_endpoint_ok(const std::string& text, std::string* why) {
  std::string_view rest = text;
  if (rest.substr(0, 8) == "https://")
    rest.remove_prefix(8);
  else if (rest.substr(0, 7) == "http://")
    rest.remove_prefix(7);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) {
    *why = "expected \"http://host:port\" without a path or another scheme";
    return false;
  }
  std::string host_port(rest);
  if (host_port.rfind("localhost:", 0) == 0) host_port = "127.0.0.1" + host_port.substr(9);
  std::string reason;
  std::optional<SocketAddress> addr = parse_socket_address(host_port, false, &reason);
  unsigned char ip[16];
  if (addr && inet_pton(AF_INET, addr->host.c_str(), ip) != 1 &&
      inet_pton(AF_INET6, addr->host.c_str(), ip) != 1)
    reason = "the host must be an IP address or localhost (etcd endpoints are not resolved)";
  else if (addr)
    return true;
  *why = reason + " (expected \"http://host:port\", e.g. \"http://127.0.0.1:2379\")";
  return false;
}

}  // namespace

void Loader::load_store(const toml::table& root) {
  const toml::table* t = table_at(root, "store", "[store]");
  if (!t) return;
  StoreSpec& s = cfg_.store;
  s.pos = pos_of(*t);
  check_keys(*t,
             {"kind", "endpoints", "prefix", "node", "timeout", "lease_ttl", "username",
              "password_file", "tls"},
             "[store]");
  std::string kind;
  if (read_string(*t, "kind", "store.kind", &kind)) {
    if (kind == "local") {
      s.kind = StoreSpec::Kind::kLocal;
    } else if (kind == "etcd") {
      s.kind = StoreSpec::Kind::kEtcd;
    } else {
      error(pos_of(*t->get("kind")),
            "unknown store.kind " + quote(kind) + " (expected \"local\" or \"etcd\")");
    }
  }
  if (const toml::node* n = t->get("endpoints")) {
    if (!n->is_array()) {
      wrong_type(*n, "store.endpoints", "an array of \"http://host:port\" strings");
    } else {
      for (const toml::node& e : *n->as_array()) {
        if (!e.is_string()) {
          wrong_type(e, "a store.endpoints entry", "a string \"http://host:port\"");
          continue;
        }
        const std::string& text = e.as_string()->get();
        std::string why;
        if (!store_endpoint_ok(text, &why)) {
          error(pos_of(e), "bad store.endpoints entry " + quote(text) + ": " + why);
          continue;
        }
        s.endpoints.push_back(text);
      }
    }
  }
  if (read_string(*t, "prefix", "store.prefix", &s.prefix)) {
    if (s.prefix.size() < 2 || s.prefix.front() != '/' || s.prefix.back() != '/' ||
        s.prefix.find_first_of(std::string("\0\n\r", 3)) != std::string::npos)
      error(pos_of(*t->get("prefix")),
            "store.prefix " + quote(s.prefix) +
                " is not a key prefix (expected one that starts and ends with \"/\", e.g. "
                "\"/sluice/\"; give each fleet its own)");
  }
  if (read_string(*t, "node", "store.node", &s.node)) {
    bool ok = !s.node.empty() && s.node.size() <= 128;
    for (char c : s.node)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
            c == '@' || c == '-'))
        ok = false;
    if (!ok)
      error(pos_of(*t->get("node")),
            "store.node " + quote(s.node) +
                " is not a node name (expected 1 to 128 of A-Z a-z 0-9 . _ : @ -)");
  }
  uint32_t ms = 0;
  if (read_duration(*t, "timeout", "store.timeout", false, &ms)) {
    if (ms < 100 || ms > 60000)
      error(pos_of(*t->get("timeout")), "store.timeout " + format_duration_ms(ms) +
                                            " is out of range (expected \"100ms\" to \"60s\")");
    else
      s.timeout_ms = ms;
  }
  if (read_duration(*t, "lease_ttl", "store.lease_ttl", false, &ms)) {
    if (ms < 2000 || ms > 300000 || ms % 1000 != 0)
      error(pos_of(*t->get("lease_ttl")),
            "store.lease_ttl " + format_duration_ms(ms) +
                " is out of range (expected whole seconds from \"2s\" to \"300s\")");
    else
      s.lease_ttl_ms = ms;
  }
  read_string(*t, "username", "store.username", &s.username);
  if (read_string(*t, "password_file", "store.password_file", &s.password_file))
    s.password_file = resolve_path(s.password_file);
  if (!s.username.empty() && s.password_file.empty())
    error(pos_of(*t->get("username")),
          "store.username needs store.password_file (expected password_file = \"etcd-password\", "
          "a file holding the user's etcd password)");
  if (s.username.empty() && t->get("password_file"))
    error(pos_of(*t->get("password_file")),
          "store.password_file needs store.username (expected the etcd user it is the password "
          "of)");
  if (s.kind == StoreSpec::Kind::kLocal && t->get("username"))
    error(pos_of(*t->get("username")), "store.username is for kind = \"etcd\"");
  bool any_https = false;
  for (const std::string& e : s.endpoints) any_https = any_https || e.rfind("https://", 0) == 0;
  if (const toml::node* n = t->get("tls")) {
    if (!n->is_table()) {
      wrong_type(*n, "store.tls",
                 "a table { ca = \"etcd-ca.pem\", cert = \"client.pem\", key = \"client.key\" }");
    } else {
      const toml::table& tt = *n->as_table();
      check_keys(tt, {"ca", "cert", "key"}, "store.tls");
      for (auto [key, into] : {std::pair{"ca", &s.tls_ca}, std::pair{"cert", &s.tls_cert},
                               std::pair{"key", &s.tls_key}})
        if (read_string(tt, key, std::string("store.tls.") + key, into))
          *into = resolve_path(*into);
      if (s.tls_cert.empty() != s.tls_key.empty())
        error(pos_of(*n), std::string("store.tls has ") +
                              (s.tls_cert.empty() ? "key without cert" : "cert without key") +
                              " (expected both, for a client certificate, or neither)");
      if (!any_https)
        error(pos_of(t->find("tls")->first),
              "store.tls is for https:// endpoints (expected endpoints = "
              "[\"https://10.0.0.1:2379\", ...])");
    }
  }
  const toml::node* listed = t->get("endpoints");
  if (s.kind == StoreSpec::Kind::kEtcd && listed && listed->is_array() &&
      listed->as_array()->empty())
    error(pos_of(*listed),
          "store.endpoints is empty (expected one \"http://host:port\" per etcd "
          "member)");
  if (s.kind == StoreSpec::Kind::kEtcd && !listed)
    error(s.pos,
          "[store] kind = \"etcd\" needs endpoints (expected endpoints = "
          "[\"http://127.0.0.1:2379\", ...], one per etcd member)");
  if (s.kind == StoreSpec::Kind::kLocal && t->get("endpoints"))
    error(pos_of(*t->get("endpoints")),
          "store.endpoints is for kind = \"etcd\" (the local store keeps its state in [state] "
          "dir)");
}

void Loader::load_listen(const toml::table& root) {
  const toml::node* n = root.get("listen");
  if (!n) {
    cfg_.listen.push_back(ListenSpec{SocketAddress{"0.0.0.0:8080", "0.0.0.0", 8080}, {}, {}});
    return;
  }
  std::vector<const toml::table*> tables;
  if (n->is_table()) {
    tables.push_back(n->as_table());
  } else if (n->is_array()) {
    const toml::array& arr = *n->as_array();
    if (arr.empty()) {
      error(pos_of(*n), "listen is empty (expected at least one [[listen]] with an address)");
    }
    for (const toml::node& e : arr) {
      if (e.is_table()) {
        tables.push_back(e.as_table());
      } else {
        wrong_type(e, "a listen entry", "a table with address = \"host:port\"");
      }
    }
  } else {
    wrong_type(*n, "listen", "a [listen] table or [[listen]] tables");
    return;
  }
  std::map<std::string, SourcePos> seen;
  for (const toml::table* t : tables) {
    check_keys(*t, {"address", "tls", "trusted_proxies", "http2", "h2c"}, "[listen]");
    ListenSpec spec{SocketAddress{"0.0.0.0:8080", "0.0.0.0", 8080}, {}, pos_of(*t)};
    bool ok = true;
    if (const toml::node* a = t->get("address")) {
      if (auto addr = read_address(*a, "listen.address", true)) {
        spec.address = *addr;
        spec.pos = pos_of(*a);
      } else {
        ok = false;
      }
    }
    if (const toml::node* tls = t->get("tls")) load_tls(*tls, pos_of(t->find("tls")->first), spec);
    load_trusted_proxies(*t, spec);
    read_bool(*t, "http2", "listen.http2", &spec.http2);
    read_bool(*t, "h2c", "listen.h2c", &spec.h2c);
    if (spec.h2c && spec.tls)
      error(pos_of(t->find("h2c")->first),
            "listen.h2c is for plaintext listeners (a TLS listener offers h2 by ALPN; expected "
            "h2c = false with tls)");
    if (ok) {
      auto [it, inserted] = seen.emplace(spec.address.text, spec.pos);
      if (!inserted) {
        error(spec.pos, "duplicate listen address " + quote(spec.address.text) +
                            " (already listed at line " + std::to_string(it->second.line) +
                            "; expected each address once)");
      }
    }
    cfg_.listen.push_back(std::move(spec));
  }
}

std::string Loader::resolve_path(const std::string& path) const {
  if (path.empty() || path[0] == '/') return path;
  const size_t slash = source_.rfind('/');
  if (slash == std::string::npos) return path;
  return source_.substr(0, slash + 1) + path;
}

std::optional<TlsPairSpec> Loader::load_tls_pair(const toml::table& t, const std::string& where) {
  TlsPairSpec pair;
  bool ok = true;
  for (const char* key : {"cert", "key"}) {
    const toml::node* n = t.get(key);
    std::string& out = key[0] == 'c' ? pair.cert : pair.key;
    SourcePos& pos = key[0] == 'c' ? pair.cert_pos : pair.key_pos;
    if (!n) {
      error(pos_of(t), where + "." + key + " is missing (expected " + where +
                           " = { cert = \"server.pem\", key = \"server.key\" })");
      ok = false;
      continue;
    }
    if (!n->is_string() || n->as_string()->get().empty()) {
      wrong_type(*n, where + "." + key, "a non-empty file path");
      ok = false;
      continue;
    }
    out = resolve_path(n->as_string()->get());
    pos = pos_of(*n);
  }
  if (!ok) return std::nullopt;
  return pair;
}

void Loader::load_tls(const toml::node& n, SourcePos key_pos, ListenSpec& spec) {
  constexpr const char* kExpected =
      "a table: tls = { cert = \"server.pem\", key = \"server.key\" } or tls = { certificates = "
      "[ { cert = ..., key = ... }, ... ] }";
  if (!n.is_table()) {
    wrong_type(n, "listen.tls", kExpected);
    return;
  }
  const toml::table& t = *n.as_table();
  check_keys(t, {"cert", "key", "certificates", "min_version", "ciphers", "ciphersuites"},
             "listen.tls");
  TlsSpec tls;
  tls.pos = key_pos;
  bool ok = true;
  if (const toml::node* list = t.get("certificates")) {
    if (t.get("cert") || t.get("key")) {
      error(pos_of(*list), "listen.tls has both certificates and cert/key (expected one of them)");
      ok = false;
    }
    if (!list->is_array() || list->as_array()->empty()) {
      wrong_type(*list, "listen.tls.certificates",
                 "a non-empty array of { cert = ..., key = ... } tables");
      ok = false;
    } else {
      size_t i = 0;
      for (const toml::node& e : *list->as_array()) {
        const std::string where = "listen.tls.certificates[" + std::to_string(i++) + "]";
        if (!e.is_table()) {
          wrong_type(e, where, "a table { cert = ..., key = ... }");
          ok = false;
          continue;
        }
        check_keys(*e.as_table(), {"cert", "key"}, where);
        if (auto pair = load_tls_pair(*e.as_table(), where))
          tls.certificates.push_back(std::move(*pair));
        else
          ok = false;
      }
    }
  } else if (auto pair = load_tls_pair(t, "listen.tls")) {
    tls.certificates.push_back(std::move(*pair));
  } else {
    ok = false;
  }
  if (const toml::node* v = t.get("min_version")) {
    if (!v->is_string() ||
        (v->as_string()->get() != "TLSv1.2" && v->as_string()->get() != "TLSv1.3")) {
      error(pos_of(*v),
            "bad listen.tls.min_version (expected \"TLSv1.2\" or \"TLSv1.3\"; older "
            "versions are not offered)");
      ok = false;
    } else {
      tls.min_version = v->as_string()->get();
      tls.min_version_pos = pos_of(*v);
    }
  }
  if (read_string(t, "ciphers", "listen.tls.ciphers", &tls.ciphers))
    tls.ciphers_pos = pos_of(*t.get("ciphers"));
  if (read_string(t, "ciphersuites", "listen.tls.ciphersuites", &tls.ciphersuites))
    tls.ciphersuites_pos = pos_of(*t.get("ciphersuites"));
  if (ok) spec.tls = std::move(tls);
}

void Loader::load_trusted_proxies(const toml::table& t, ListenSpec& spec) {
  const toml::node* n = t.get("trusted_proxies");
  if (!n) return;
  constexpr const char* kExpected = "an array of CIDR strings, e.g. [\"10.0.0.0/8\", \"::1/128\"]";
  if (!n->is_array()) {
    wrong_type(*n, "listen.trusted_proxies", kExpected);
    return;
  }
  for (const toml::node& e : *n->as_array()) {
    if (!e.is_string()) {
      wrong_type(e, "an entry of listen.trusted_proxies", kExpected);
      continue;
    }
    const std::string& text = e.as_string()->get();
    std::string why;
    if (auto cidr = http::parse_cidr(text, &why)) {
      spec.trusted_proxies.push_back(*cidr);
    } else {
      error(pos_of(e), "bad CIDR " + quote(text) + " in listen.trusted_proxies: " + why +
                           " (expected an address and prefix length, e.g. \"10.0.0.0/8\" or "
                           "\"fd00::/8\")");
    }
  }
}

void Loader::load_admin(const toml::table& root) {
  const toml::table* admin = table_at(root, "admin", "[admin]");
  if (!admin) return;
  check_keys(*admin, {"address", "token_file", "read_token_file"}, "[admin]");
  read_string(*admin, "token_file", "admin.token_file", &cfg_.admin.token_file);
  if (read_string(*admin, "read_token_file", "admin.read_token_file",
                  &cfg_.admin.read_token_file) &&
      cfg_.admin.token_file.empty()) {
    error(pos_of(*admin->get("read_token_file")),
          "admin.read_token_file needs admin.token_file too (expected token_file = \"...\" for "
          "the calls that change traffic; the read token only allows GET)");
  }
  const toml::node* a = admin->get("address");
  if (!a) return;
  auto addr = read_address(*a, "admin.address", true);
  if (!addr) return;
  cfg_.admin.address = *addr;
  if (!is_loopback_host(addr->host) && cfg_.admin.token_file.empty()) {
    error(pos_of(*a),
          "admin address " + quote(addr->text) +
              " is not loopback, so it needs a token (expected a loopback address "
              "such as \"127.0.0.1:9901\", or [admin] token_file = \"/path/to/token\")");
  }
}

void Loader::load_limits(const toml::table& root) {
  const toml::table* l = table_at(root, "limits", "[limits]");
  if (!l) return;
  check_keys(
      *l,
      {"header_timeout", "handshake_timeout", "idle_timeout", "body_timeout", "send_timeout",
       "tunnel_idle_timeout", "max_header_bytes", "max_headers", "max_body_size", "max_connections",
       "max_connections_per_client", "drain_timeout", "max_concurrent_streams"},
      "[limits]");
  LimitsSpec& s = cfg_.limits;
  read_duration(*l, "header_timeout", "limits.header_timeout", false, &s.header_timeout_ms);
  read_duration(*l, "handshake_timeout", "limits.handshake_timeout", false,
                &s.handshake_timeout_ms);
  read_duration(*l, "idle_timeout", "limits.idle_timeout", false, &s.idle_timeout_ms);
  read_duration(*l, "body_timeout", "limits.body_timeout", false, &s.body_timeout_ms);
  read_duration(*l, "send_timeout", "limits.send_timeout", false, &s.send_timeout_ms);
  read_duration(*l, "tunnel_idle_timeout", "limits.tunnel_idle_timeout", false,
                &s.tunnel_idle_timeout_ms);
  read_duration(*l, "drain_timeout", "limits.drain_timeout", true, &s.drain_timeout_ms);
  read_uint_into(*l, "max_header_bytes", "limits.max_header_bytes", 1024, 16u << 20,
                 &s.max_header_bytes);
  read_uint_into(*l, "max_headers", "limits.max_headers", 1, 10000, &s.max_headers);
  read_uint_into(*l, "max_body_size", "limits.max_body_size", 0, uint64_t{1} << 62,
                 &s.max_body_size);
  read_uint_into(*l, "max_connections", "limits.max_connections", 1, 10'000'000,
                 &s.max_connections);
  read_uint_into(*l, "max_connections_per_client", "limits.max_connections_per_client", 1,
                 10'000'000, &s.max_connections_per_client);
  read_uint_into(*l, "max_concurrent_streams", "limits.max_concurrent_streams", 1, 10000,
                 &s.max_concurrent_streams);
}

void Loader::load_settings(const toml::table& t, const std::string& where, UpstreamSettings* out) {
  uint32_t ms = 0;
  if (read_duration(t, "connect_timeout", where + ".connect_timeout", false, &ms))
    out->connect_timeout_ms = ms;
  if (read_duration(t, "response_timeout", where + ".response_timeout", false, &ms))
    out->response_timeout_ms = ms;
  uint64_t n = 0;
  if (read_uint(t, "max_concurrency", where + ".max_concurrency", 0, 10'000'000, &n))
    out->max_concurrency = static_cast<uint32_t>(n);
  if (read_uint(t, "retries", where + ".retries", 0, 10, &n)) out->retries = uint32_t(n);
  if (read_duration(t, "retry_timeout", where + ".retry_timeout", false, &ms))
    out->retry_timeout_ms = ms;
  load_health(t, where, out);
  load_outlier(t, where, out);
  load_upstream_tls(t, where, out);
  std::string protocol;
  if (read_string(t, "protocol", where + ".protocol", &protocol)) {
    out->protocol_pos = pos_of(*t.get("protocol"));
    if (protocol == "http1")
      out->protocol = Protocol::kHttp1;
    else if (protocol == "h2")
      out->protocol = Protocol::kH2;
    else if (protocol == "h2c")
      out->protocol = Protocol::kH2c;
    else
      error(out->protocol_pos, "bad " + where + ".protocol " + quote(protocol) +
                                   " (expected \"http1\", \"h2\" or \"h2c\")");
  }
}

void Loader::load_upstream_tls(const toml::table& t, const std::string& where,
                               UpstreamSettings* out) {
  const toml::node* n = t.get("tls");
  if (!n) return;
  const std::string what = where + ".tls";
  UpstreamTlsSpec spec;
  spec.pos = pos_of(t.find("tls")->first);
  if (n->is_boolean()) {
    if (n->as_boolean()->get()) out->tls = spec;
    return;
  }
  if (!n->is_table()) {
    wrong_type(*n, what,
               "true, or a table { ca = \"ca.pem\", server_name = \"api.internal\", verify = true, "
               "cert = \"client.pem\", key = \"client.key\" }");
    return;
  }
  const toml::table& tt = *n->as_table();
  check_keys(tt, {"ca", "server_name", "verify", "cert", "key"}, what);
  read_bool(tt, "verify", what + ".verify", &spec.verify);
  read_string(tt, "server_name", what + ".server_name", &spec.server_name);
  auto path = [&](const char* key, std::string* into, SourcePos* pos) {
    if (read_string(tt, key, what + "." + key, into)) {
      *into = resolve_path(*into);
      *pos = pos_of(*tt.get(key));
    }
  };
  path("ca", &spec.ca, &spec.ca_pos);
  path("cert", &spec.cert, &spec.cert_pos);
  path("key", &spec.key, &spec.key_pos);
  if (spec.cert.empty() != spec.key.empty()) {
    error(spec.pos, what + " has " + (spec.cert.empty() ? "key" : "cert") + " without " +
                        (spec.cert.empty() ? "cert" : "key") +
                        " (expected both, for a client certificate, or neither)");
    return;
  }
  out->tls = spec;
}

void Loader::load_health(const toml::table& t, const std::string& where, UpstreamSettings* out) {
  const std::string what = where + ".health";
  const toml::table* h = table_at(t, "health", what);
  if (!h) return;
  check_keys(*h,
             {"path", "interval", "timeout", "healthy", "unhealthy", "expect", "start_unhealthy"},
             what);
  HealthCheckSpec spec;
  spec.pos = pos_of(*t.get("health"));
  if (read_string(*h, "path", what + ".path", &spec.path) &&
      (spec.path.empty() || spec.path.front() != '/' ||
       spec.path.find_first_of(" \t\r\n") != std::string::npos))
    error(pos_of(*h->get("path")), what + ".path " + quote(spec.path) +
                                       " is not a request path (expected e.g. \"/healthz\")");
  read_duration(*h, "interval", what + ".interval", false, &spec.interval_ms);
  read_duration(*h, "timeout", what + ".timeout", false, &spec.timeout_ms);
  read_uint_into(*h, "healthy", what + ".healthy", 1, 100, &spec.healthy);
  read_uint_into(*h, "unhealthy", what + ".unhealthy", 1, 100, &spec.unhealthy);
  read_bool(*h, "start_unhealthy", what + ".start_unhealthy", &spec.start_unhealthy);
  if (const toml::node* e = h->get("expect")) {
    const std::string expected = "an array of HTTP statuses from 100 to 599, e.g. [200, 204]";
    if (!e->is_array() || e->as_array()->empty()) {
      wrong_type(*e, what + ".expect", expected);
    } else {
      spec.expect.clear();
      for (const toml::node& s : *e->as_array()) {
        if (!s.is_integer() || s.as_integer()->get() < 100 || s.as_integer()->get() > 599) {
          error(pos_of(s),
                what + ".expect: " +
                    (s.is_integer() ? std::to_string(s.as_integer()->get()) : type_name(s)) +
                    " is not a status (expected " + expected + ")");
          continue;
        }
        spec.expect.push_back(int(s.as_integer()->get()));
      }
    }
  }
  if (spec.timeout_ms >= spec.interval_ms)
    error(spec.pos, what + ": timeout " + std::to_string(spec.timeout_ms) +
                        "ms is not shorter than interval " + std::to_string(spec.interval_ms) +
                        "ms (expected a timeout below the interval)");
  out->health = std::move(spec);
}

void Loader::load_outlier(const toml::table& t, const std::string& where, UpstreamSettings* out) {
  const std::string what = where + ".outlier";
  const toml::table* o = table_at(t, "outlier", what);
  if (!o) return;
  check_keys(*o,
             {"consecutive_failures", "consecutive_5xx", "base_ejection_time", "max_ejection_time",
              "max_ejection_percent"},
             what);
  OutlierSpec spec;
  read_uint_into(*o, "consecutive_failures", what + ".consecutive_failures", 0, 1000,
                 &spec.consecutive_failures);
  read_uint_into(*o, "consecutive_5xx", what + ".consecutive_5xx", 0, 1000, &spec.consecutive_5xx);
  read_duration(*o, "base_ejection_time", what + ".base_ejection_time", false,
                &spec.base_ejection_ms);
  read_duration(*o, "max_ejection_time", what + ".max_ejection_time", false, &spec.max_ejection_ms);
  read_uint_into(*o, "max_ejection_percent", what + ".max_ejection_percent", 0, 100,
                 &spec.max_ejection_percent);
  if (spec.max_ejection_ms < spec.base_ejection_ms)
    error(pos_of(*t.get("outlier")),
          what + ": max_ejection_time is shorter than base_ejection_time (expected max >= base)");
  out->outlier = spec;
}

void Loader::load_functions(const toml::table& root) {
  const toml::table* fns = table_at(root, "functions", "functions");
  if (!fns) return;
  for (auto [k, v] : in_file_order(*fns)) {
    if (!is_valid_name(std::string(k->str()))) {
      error(pos_of(*k),
            "invalid function name " + quote(std::string(k->str())) + " (" + kNameRule + ")");
      continue;
    }
    if (!v->is_table()) {
      wrong_type(*v, "functions." + std::string(k->str()),
                 "a table [functions." + std::string(k->str()) + "]");
      continue;
    }
    load_function(std::string(k->str()), pos_of(*k), *v->as_table());
  }
}

void Loader::load_function(std::string name, SourcePos pos, const toml::table& t) {
  FunctionSpec f;
  f.name = std::move(name);
  f.pos = pos;
  const std::string where = "functions." + f.name;
  check_keys(t,
             {"version_header", "connect_timeout", "response_timeout", "max_concurrency", "retries",
              "retry_timeout", "health", "outlier", "tls", "protocol", "grpc_error_codes", "latest",
              "versions", "aliases"},
             "[" + where + "]");
  std::string header;
  if (read_string(t, "version_header", where + ".version_header", &header)) {
    if (!header.empty() && !is_token(header)) {
      error(pos_of(*t.get("version_header")),
            "version_header " + quote(header) +
                " is not a valid header name (expected letters, digits and -, or \"\" for none)");
    } else {
      f.version_header = lower(header);
    }
  }
  load_settings(t, where, &f.defaults);
  if (const toml::node* codes = t.get("grpc_error_codes")) {
    const std::string what = where + ".grpc_error_codes";
    const char* expected = "an array of gRPC status codes 1 to 16, e.g. [2, 4, 8, 13, 14, 15]";
    if (!codes->is_array()) {
      wrong_type(*codes, what, expected);
    } else {
      f.grpc_errors = 0;
      for (const toml::node& c : *codes->as_array()) {
        const int64_t* n = c.is_integer() ? &c.as_integer()->get() : nullptr;
        if (!n || *n < 1 || *n > 16)
          wrong_type(c, "an entry of " + what, expected);
        else
          f.grpc_errors |= 1u << *n;
      }
    }
  }

  if (const toml::table* latest = table_at(t, "latest", where + ".latest"))
    load_version(f, kLatest, pos_of(t.find("latest")->first), *latest);
  if (const toml::table* versions = table_at(t, "versions", where + ".versions")) {
    for (auto [k, v] : in_file_order(*versions)) {
      auto number = parse_version_number(std::string(k->str()));
      if (!number) {
        std::string msg = "version key " + quote(std::string(k->str())) + " in " + where +
                          ".versions is not a version number (expected a positive integer "
                          "without leading zeros, e.g. [" +
                          where + ".versions.3]";
        if (std::string(k->str()) == kLatest) msg += "; $LATEST is [" + where + ".latest]";
        error(pos_of(*k), msg + ")");
        continue;
      }
      if (!v->is_table()) {
        wrong_type(*v, where + ".versions." + std::string(k->str()), "a table");
        continue;
      }
      load_version(f, std::string(k->str()), pos_of(*k), *v->as_table());
    }
  }
  if (!t.get("latest") && !t.get("versions")) {
    error(pos, "function " + f.name + " defines no versions (expected [" + where +
                   ".versions.1] or [" + where + ".latest] with endpoints)");
  }
  if (const toml::table* aliases = table_at(t, "aliases", where + ".aliases")) {
    for (auto [k, v] : in_file_order(*aliases)) {
      if (!is_valid_name(std::string(k->str()))) {
        error(pos_of(*k),
              "invalid alias name " + quote(std::string(k->str())) + " (" + kNameRule + ")");
        continue;
      }
      if (!v->is_table()) {
        wrong_type(*v, where + ".aliases." + std::string(k->str()),
                   "a table with traffic = { ... }");
        continue;
      }
      load_alias(f, std::string(k->str()), pos_of(*k), *v->as_table());
    }
  }
  cfg_.functions.push_back(std::move(f));
}

void Loader::load_version(FunctionSpec& f, std::string number, SourcePos pos,
                          const toml::table& t) {
  VersionSpec v;
  v.number = std::move(number);
  v.pos = pos;
  const std::string where = "functions." + f.name + "." +
                            (v.number == kLatest ? std::string("latest") : "versions." + v.number);
  const std::string label = f.name + ":" + v.number;
  check_keys(t,
             {"endpoints", "connect_timeout", "response_timeout", "max_concurrency", "retries",
              "retry_timeout", "health", "outlier", "tls", "protocol"},
             "[" + where + "]");
  const char* endpoints_hint =
      "expected endpoints = [\"host:port\", ...] or [{ address = \"host:port\", weight = 2 }]";
  const toml::node* eps = t.get("endpoints");
  if (!eps) {
    error(pos, "version " + label + " has no endpoints (" + endpoints_hint + ")");
  } else if (!eps->is_array()) {
    wrong_type(*eps, where + ".endpoints", "an array of \"host:port\" strings or tables");
  } else if (eps->as_array()->empty()) {
    error(pos_of(*eps), "version " + label + " has no endpoints (" + endpoints_hint + ")");
  } else {
    for (const toml::node& e : *eps->as_array()) {
      Endpoint ep;
      ep.pos = pos_of(e);
      if (e.is_string()) {
        auto addr = read_address(e, "an endpoint of " + label, false);
        if (!addr) continue;
        ep.address = *addr;
      } else if (e.is_table()) {
        const toml::table& et = *e.as_table();
        check_keys(et, {"address", "weight"}, "an endpoint of " + label);
        const toml::node* a = et.get("address");
        if (!a) {
          error(ep.pos, "endpoint of " + label +
                            " has no address (expected { address = \"host:port\", weight = 1 })");
          continue;
        }
        auto addr = read_address(*a, "an endpoint of " + label, false);
        if (!addr) continue;
        ep.address = *addr;
        if (const toml::node* w = et.get("weight")) {
          const std::string expected =
              "a positive integer from 1 to " + std::to_string(kMaxEndpointWeight);
          if (!w->is_integer()) {
            wrong_type(*w, "endpoint weight", expected);
            continue;
          }
          const int64_t wv = w->as_integer()->get();
          if (wv < 1 || static_cast<uint64_t>(wv) > kMaxEndpointWeight) {
            error(pos_of(*w), "endpoint weight " + std::to_string(wv) + " of " + label +
                                  " is out of range (expected " + expected + ")");
            continue;
          }
          ep.weight = static_cast<uint32_t>(wv);
        }
      } else {
        wrong_type(e, "an endpoint of " + label,
                   "\"host:port\" or { address = \"host:port\", weight = 1 }");
        continue;
      }
      v.endpoints.push_back(std::move(ep));
    }
  }
  load_settings(t, where, &v.settings);
  if (!v.settings.connect_timeout_ms) v.settings.connect_timeout_ms = f.defaults.connect_timeout_ms;
  if (!v.settings.response_timeout_ms)
    v.settings.response_timeout_ms = f.defaults.response_timeout_ms;
  if (!v.settings.max_concurrency) v.settings.max_concurrency = f.defaults.max_concurrency;
  if (!v.settings.retries) v.settings.retries = f.defaults.retries;
  if (!v.settings.retry_timeout_ms) v.settings.retry_timeout_ms = f.defaults.retry_timeout_ms;
  if (!v.settings.health) v.settings.health = f.defaults.health;
  if (!v.settings.outlier) v.settings.outlier = f.defaults.outlier;
  if (!v.settings.tls) v.settings.tls = f.defaults.tls;
  if (!v.settings.protocol) {
    v.settings.protocol = f.defaults.protocol;
    v.settings.protocol_pos = f.defaults.protocol_pos;
  }
  if (v.settings.protocol == Protocol::kH2 && !v.settings.tls)
    error(v.settings.protocol_pos, label +
                                       " has protocol = \"h2\" without tls (expected tls = true "
                                       "or a tls table, or protocol = \"h2c\" for plaintext)");
  if (v.settings.protocol == Protocol::kH2c && v.settings.tls)
    error(v.settings.protocol_pos, label +
                                       " has protocol = \"h2c\" with tls (expected "
                                       "protocol = \"h2\" for HTTP/2 over TLS)");
  if (v.settings.tls) v.settings.tls->h2 = v.settings.protocol == Protocol::kH2;
  if (v.settings.health && v.settings.protocol && v.settings.protocol != Protocol::kHttp1)
    error(v.settings.protocol_pos,
          label + " has active health checks, which speak HTTP/1.1, and protocol = \"" +
              std::string(protocol_name(*v.settings.protocol)) +
              "\" (expected no health table for an HTTP/2 version: passive outlier detection "
              "still ejects failing endpoints)");
  if (v.number == kLatest) {
    f.latest = std::move(v);
  } else {
    const uint32_t n = *parse_version_number(v.number);
    f.versions.emplace(n, std::move(v));
  }
}

void Loader::load_alias(FunctionSpec& f, std::string name, SourcePos pos, const toml::table& t) {
  AliasSpec a;
  a.name = std::move(name);
  a.pos = pos;
  const std::string label = f.name + ":" + a.name;
  const std::string where = "functions." + f.name + ".aliases." + a.name;
  check_keys(t, {"traffic", "selection", "sticky", "allow_override", "shift"}, "[" + where + "]");
  const char* traffic_hint =
      "expected traffic = { \"<version>\" = <weight>, ... }, e.g. { \"1\" = 100 }";
  const toml::node* tr = t.get("traffic");
  if (!tr) {
    error(pos, "alias " + label + " has no traffic map (" + traffic_hint + ")");
  } else if (!tr->is_table()) {
    wrong_type(*tr, where + ".traffic", "a table { \"<version>\" = <weight>, ... }");
  } else {
    // The checks themselves are shared with the admin API (config/traffic.h); this only reads
    // TOML into entries and maps each issue back to its key, value or table position.
    a.traffic_pos = pos_of(*tr);
    std::vector<TrafficEntry> entries;
    std::vector<std::pair<const toml::key*, const toml::node*>> nodes =
        in_file_order(*tr->as_table());
    for (auto [k, v] : nodes) {
      TrafficEntry e;
      e.version = std::string(k->str());
      if (v->is_integer()) {
        e.weight = static_cast<double>(v->as_integer()->get());
        e.weight_text = std::to_string(v->as_integer()->get());
      } else if (v->is_floating_point()) {
        e.weight = v->as_floating_point()->get();
        std::ostringstream text;
        text << *e.weight;
        e.weight_text = text.str();
      } else {
        e.type_name = type_name(*v);
      }
      entries.push_back(std::move(e));
    }
    std::vector<TrafficIssue> issues = check_traffic(f, label, entries);
    for (const TrafficIssue& issue : issues) {
      SourcePos at = a.traffic_pos;
      if (issue.at == TrafficIssue::At::kKey) at = pos_of(*nodes[issue.index].first);
      if (issue.at == TrafficIssue::At::kWeight) at = pos_of(*nodes[issue.index].second);
      error(at, issue.message);
    }
    if (issues.empty()) {
      for (size_t i = 0; i < entries.size(); ++i)
        a.traffic.push_back(
            TrafficShare{entries[i].version, *entries[i].weight, pos_of(*nodes[i].first)});
    }
  }
  if (const toml::node* s = t.get("selection")) {
    if (!s->is_string()) {
      wrong_type(*s, where + ".selection", "\"random\" or \"exact\"");
    } else if (s->as_string()->get() == "random") {
      a.selection = Selection::kRandom;
    } else if (s->as_string()->get() == "exact") {
      a.selection = Selection::kExact;
    } else {
      error(pos_of(*s), "unknown selection " + quote(s->as_string()->get()) + " for alias " +
                            label + " (expected \"random\" or \"exact\")");
    }
  }
  if (const toml::node* s = t.get("sticky")) {
    const char* sticky_hint =
        "expected sticky = { header = \"x-user-id\" } or { cookie = \"uid\", issue = true }";
    if (!s->is_table()) {
      wrong_type(*s, where + ".sticky", "a table { header = \"...\" } or { cookie = \"...\" }");
    } else {
      const toml::table& st = *s->as_table();
      check_keys(st, {"header", "cookie", "issue"}, where + ".sticky");
      std::string header, cookie;
      const bool has_header = read_string(st, "header", where + ".sticky.header", &header);
      const bool has_cookie = read_string(st, "cookie", where + ".sticky.cookie", &cookie);
      bool issue = false;
      const bool has_issue = read_bool(st, "issue", where + ".sticky.issue", &issue);
      if (st.get("header") && st.get("cookie")) {
        error(pos_of(*s), "sticky of alias " + label + " names both a header and a cookie (" +
                              sticky_hint + ")");
      } else if (!st.get("header") && !st.get("cookie")) {
        error(pos_of(*s),
              "sticky of alias " + label + " names no header or cookie (" + sticky_hint + ")");
      } else if (has_header) {
        if (!is_token(header)) {
          error(pos_of(*st.get("header")), "sticky header " + quote(header) +
                                               " is not a valid header name (" + sticky_hint + ")");
        } else if (st.get("issue")) {
          error(pos_of(*st.get("issue")),
                "sticky issue = ... only applies to a cookie (" + std::string(sticky_hint) + ")");
        } else {
          a.sticky.kind = StickySpec::Kind::kHeader;
          a.sticky.name = lower(header);
        }
      } else if (has_cookie) {
        if (!is_token(cookie)) {
          error(pos_of(*st.get("cookie")), "sticky cookie " + quote(cookie) +
                                               " is not a valid cookie name (" + sticky_hint + ")");
        } else {
          a.sticky.kind = StickySpec::Kind::kCookie;
          a.sticky.name = cookie;
          a.sticky.issue = has_issue && issue;
        }
      }
    }
  }
  read_bool(t, "allow_override", where + ".allow_override", &a.allow_override);
  if (const toml::node* s = t.get("shift")) {  // progressive shift (proxy/shift/plan.h)
    if (!s->is_table()) {
      wrong_type(*s, where + ".shift", "a table [" + where + ".shift] with to = \"<version>\"");
    } else {
      nlohmann::json plan_json = to_json_value(*s);
      config::PlanError perr;
      std::optional<config::Plan> plan = config::parse_plan(plan_json, &perr);
      const toml::node* at = s;
      if (!perr.field.empty()) {  // point at the offending key where there is one
        std::string_view field = perr.field;
        const toml::node* n = s->as_table()->get(field.substr(0, field.find_first_of(".[")));
        if (n && field.rfind("guard.", 0) == 0 && n->is_table())
          n = n->as_table()->get(field.substr(6));
        if (n) at = n;
      }
      if (!plan) {
        error(pos_of(*at), "shift of alias " + label + ": " + perr.message);
      } else if (!has_version(f, plan->to)) {
        error(pos_of(*s->as_table()->get("to")), "shift of alias " + label + " goes to version " +
                                                     plan->to + ", which is not defined (" +
                                                     defined_versions(f) + ")");
      } else {
        a.shift_json = plan_json.dump();
        a.shift_pos = pos_of(*s);
      }
    }
  }
  f.aliases.push_back(std::move(a));
}

void Loader::load_routes(const toml::table& root) {
  const toml::node* n = root.get("routes");
  if (!n) return;
  std::map<std::pair<std::string, std::string>, SourcePos> seen;
  if (n->is_table()) {
    load_route(*n->as_table(), seen);
    return;
  }
  if (!n->is_array()) {
    wrong_type(*n, "routes", "[[routes]] tables");
    return;
  }
  for (const toml::node& e : *n->as_array()) {
    if (!e.is_table()) {
      wrong_type(e, "a route", "a [[routes]] table with target = \"function:alias\"");
      continue;
    }
    load_route(*e.as_table(), seen);
  }
}

void Loader::load_route(const toml::table& t,
                        std::map<std::pair<std::string, std::string>, SourcePos>& seen) {
  RouteSpec r;
  r.pos = pos_of(t);
  check_keys(t, {"host", "path_prefix", "target"}, "[[routes]]");
  bool ok = true;
  std::string host;
  if (read_string(t, "host", "routes.host", &host)) {
    const bool bad = host.find_first_of("/ \t?#@") != std::string::npos ||
                     (host.find(':') != std::string::npos && host.front() != '[');
    if (bad) {
      error(pos_of(*t.get("host")),
            "route host " + quote(host) +
                " is not a host name (expected a name without port or path, e.g. "
                "\"api.example.com\"; routes match any port)");
      ok = false;
    }
    r.host = lower(host);
  } else if (t.get("host")) {
    ok = false;
  }
  std::string prefix;
  if (read_string(t, "path_prefix", "routes.path_prefix", &prefix)) {
    if (prefix.empty() || prefix.front() != '/' ||
        prefix.find_first_of(" \t?#") != std::string::npos) {
      error(
          pos_of(*t.get("path_prefix")),
          "route path_prefix " + quote(prefix) +
              " is not a path (expected a path starting with '/', without query, e.g. \"/api/\")");
      ok = false;
    } else {
      r.path_prefix = prefix;
    }
  } else if (t.get("path_prefix")) {
    ok = false;
  }
  const toml::node* target = t.get("target");
  const char* target_hint =
      "expected \"function:alias\", \"function:<version>\" or \"function:$LATEST\"";
  if (!target) {
    error(r.pos, std::string("route has no target (") + target_hint + ")");
    ok = false;
  } else if (!target->is_string()) {
    wrong_type(*target, "routes.target", target_hint);
    ok = false;
  } else {
    const std::string& text = target->as_string()->get();
    const size_t colon = text.find(':');
    const SourcePos tpos = pos_of(*target);
    if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
      error(tpos, "route target " + quote(text) + " is malformed (" + target_hint + ")");
      ok = false;
    } else {
      r.function = text.substr(0, colon);
      r.target = text.substr(colon + 1);
      const FunctionSpec* f = nullptr;
      std::vector<std::string> fn_names;
      for (const FunctionSpec& fs : cfg_.functions) {
        fn_names.push_back(fs.name);
        if (fs.name == r.function) f = &fs;
      }
      if (!f) {
        const std::string suggestion = closest_match(r.function, fn_names);
        error(tpos, "route target " + quote(text) + " names function " + quote(r.function) +
                        ", which is not defined (" +
                        (!suggestion.empty() ? "did you mean " + quote(suggestion) + "?"
                         : fn_names.empty()  ? std::string("no functions are defined")
                                             : "defined: " + join(fn_names)) +
                        ")");
        ok = false;
      } else if (r.target == kLatest || parse_version_number(r.target) ||
                 std::all_of(r.target.begin(), r.target.end(),
                             [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
        r.pinned_version = true;
        if (!has_version(*f, r.target)) {
          error(tpos, "route target " + quote(text) + " pins version " + r.target + " of " +
                          f->name + ", which is not defined (" + defined_versions(*f) + ")");
          ok = false;
        }
      } else {
        std::vector<std::string> alias_names;
        bool found = false;
        for (const AliasSpec& a : f->aliases) {
          alias_names.push_back(a.name);
          found = found || a.name == r.target;
        }
        if (!found) {
          const std::string suggestion = closest_match(r.target, alias_names);
          error(tpos, "route target " + quote(text) + " names alias " + quote(r.target) + " of " +
                          f->name + ", which is not defined (" +
                          (!suggestion.empty()   ? "did you mean " + quote(suggestion) + "?"
                           : alias_names.empty() ? "function " + f->name + " has no aliases"
                                                 : "defined aliases: " + join(alias_names)) +
                          ")");
          ok = false;
        }
      }
    }
  }
  if (ok) {
    auto [it, inserted] = seen.emplace(std::pair{r.host, r.path_prefix}, r.pos);
    if (!inserted) {
      error(r.pos, "duplicate route match: " +
                       (r.host.empty() ? std::string("any host") : "host " + quote(r.host)) +
                       " with path_prefix " + quote(r.path_prefix) + " is already routed at line " +
                       std::to_string(it->second.line) +
                       " (expected each host + path_prefix pair once)");
      ok = false;
    }
  }
  if (ok) cfg_.routes.push_back(std::move(r));
}

}  // namespace

LoadResult load_string(std::string_view toml_text, std::string source_name, bool force_strict) {
  LoadResult result;
  Loader loader(source_name);
  try {
    toml::table root = toml::parse(toml_text, std::string_view(source_name));
    loader.load(root);
  } catch (const toml::parse_error& e) {
    result.errors.push_back(Diagnostic{source_name, pos_of(e.source()),
                                       std::string(e.description()) + " (expected valid TOML)"});
    return result;
  }
  result.errors = std::move(loader.errors_);
  std::stable_sort(result.errors.begin(), result.errors.end(),
                   [](const Diagnostic& a, const Diagnostic& b) { return before(a.pos, b.pos); });
  if (!result.errors.empty()) return result;
  result.warnings = lint(loader.cfg_);
  if (loader.cfg_.strict || force_strict) {
    for (Diagnostic& d : result.warnings) {
      d.message += " (strict: lint findings are errors)";
      result.errors.push_back(std::move(d));
    }
    result.warnings.clear();
    if (!result.errors.empty()) return result;
  }
  result.config = std::move(loader.cfg_);
  return result;
}

LoadResult load_file(const std::string& path, bool force_strict) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult result;
    result.errors.push_back(Diagnostic{path,
                                       {},
                                       std::string("cannot read the file: ") +
                                           std::strerror(errno) +
                                           " (expected a readable TOML file)"});
    return result;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return load_string(text.str(), path, force_strict);
}

LoadResult load_file(const std::string& path) {
  return load_file(path, false);
}

}  // namespace sluice::config
