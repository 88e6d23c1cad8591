// Runtime-change state: canonical maps, fingerprints, composition with the file config (see
// state.h).
#include "control/state.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "config/traffic.h"

// The state's JSON form of the health and TLS settings of a published version: the fields by
// their config names (positions are not kept); a missing field reads as its default.
namespace sluice::config {
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(OutlierSpec, consecutive_failures, consecutive_5xx,
                                                base_ejection_ms, max_ejection_ms,
                                                max_ejection_percent)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(HealthCheckSpec, path, interval_ms, timeout_ms,
                                                healthy, unhealthy, expect, start_unhealthy)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(UpstreamTlsSpec, verify, ca, server_name, cert, key)
}  // namespace sluice::config

namespace sluice::control {
namespace {

using nlohmann::json;

bool is_number(std::string_view s) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// Sort key: numbered versions by value, then anything else ($LATEST) by name.
std::pair<uint64_t, std::string> order_key(const std::string& v) {
  if (is_number(v)) return {std::stoull(v), ""};
  return {UINT64_MAX, v};
}

// "host:port" or "[v6]:port" into a SocketAddress (no resolution).
config::SocketAddress parse_address(const std::string& text) {
  config::SocketAddress a;
  a.text = text;
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    a.host = text;
    return a;
  }
  a.host = text.substr(0, colon);
  if (a.host.size() >= 2 && a.host.front() == '[' && a.host.back() == ']')
    a.host = a.host.substr(1, a.host.size() - 2);
  a.port = static_cast<uint16_t>(std::strtoul(text.c_str() + colon + 1, nullptr, 10));
  return a;
}

json settings_json(const config::UpstreamSettings& s) {
  json j = json::object();
  if (s.connect_timeout_ms) j["connect_timeout_ms"] = *s.connect_timeout_ms;
  if (s.response_timeout_ms) j["response_timeout_ms"] = *s.response_timeout_ms;
  if (s.max_concurrency) j["max_concurrency"] = *s.max_concurrency;
  if (s.retries) j["retries"] = *s.retries;
  if (s.retry_timeout_ms) j["retry_timeout_ms"] = *s.retry_timeout_ms;
  if (s.outlier) j["outlier"] = *s.outlier;
  if (s.health) j["health"] = *s.health;
  // A version published with TLS keeps it: its endpoints are never spoken to in plaintext.
  if (s.tls) j["tls"] = *s.tls;
  if (s.protocol) j["protocol"] = std::string(config::protocol_name(*s.protocol));
  return j;
}

config::UpstreamSettings settings_from(const json& j) {
  config::UpstreamSettings s;
  if (j.contains("connect_timeout_ms"))
    s.connect_timeout_ms = j["connect_timeout_ms"].get<uint32_t>();
  if (j.contains("response_timeout_ms"))
    s.response_timeout_ms = j["response_timeout_ms"].get<uint32_t>();
  if (j.contains("max_concurrency")) s.max_concurrency = j["max_concurrency"].get<uint32_t>();
  if (j.contains("retries")) s.retries = j["retries"].get<uint32_t>();
  if (j.contains("retry_timeout_ms")) s.retry_timeout_ms = j["retry_timeout_ms"].get<uint32_t>();
  if (j.contains("outlier")) s.outlier = j["outlier"].get<config::OutlierSpec>();
  if (j.contains("health")) s.health = j["health"].get<config::HealthCheckSpec>();
  if (j.contains("tls")) s.tls = j["tls"].get<config::UpstreamTlsSpec>();
  if (j.contains("protocol")) {
    const std::string p = j["protocol"].get<std::string>();
    s.protocol = p == "h2"    ? config::Protocol::kH2
                 : p == "h2c" ? config::Protocol::kH2c
                              : config::Protocol::kHttp1;
  }
  if (s.tls) s.tls->h2 = s.protocol == config::Protocol::kH2;
  return s;
}

TrafficMap traffic_from(const json& j) {
  TrafficMap m;
  for (auto it = j.begin(); it != j.end(); ++it) m.emplace_back(it.key(), it.value().get<double>());
  return canonical(std::move(m));
}

}  // namespace

TrafficMap canonical(TrafficMap map) {
  std::stable_sort(map.begin(), map.end(), [](const auto& a, const auto& b) {
    return order_key(a.first) < order_key(b.first);
  });
  return map;
}

TrafficMap traffic_of(const config::AliasSpec& alias) {
  TrafficMap m;
  for (const config::TrafficShare& s : alias.traffic) m.emplace_back(s.version, s.weight);
  return canonical(std::move(m));
}

std::vector<config::TrafficShare> shares_of(const TrafficMap& map) {
  std::vector<config::TrafficShare> out;
  for (const auto& [v, w] : map) out.push_back({v, w, {}});
  return out;
}

json traffic_json(const TrafficMap& map) {
  json j = json::object();
  for (const auto& [v, w] : map) {
    if (std::floor(w) == w && std::fabs(w) < 1e15)
      j[v] = static_cast<int64_t>(w);
    else
      j[v] = w;
  }
  return j;
}

std::string traffic_text(const TrafficMap& map) {
  std::string out;
  for (const auto& [v, w] : map) {
    if (!out.empty()) out += ' ';
    out += v + "=" + traffic_json({{v, w}})[v].dump();
  }
  return out;
}

std::string fnv_hex(std::string_view bytes) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string alias_file_hash(const config::AliasSpec& alias) {
  return fnv_hex(traffic_json(traffic_of(alias)).dump());
}

Fingerprint fingerprint_of(const config::VersionSpec& v) {
  // Effective values: the defaults the routing table applies (table.cpp) count as set.
  return {
      {"connect_timeout", std::to_string(v.settings.connect_timeout_ms.value_or(1000)) + "ms"},
      {"response_timeout", std::to_string(v.settings.response_timeout_ms.value_or(30000)) + "ms"},
      {"max_concurrency", std::to_string(v.settings.max_concurrency.value_or(0))},
  };
}

void AliasState::push_history(const TrafficMap& map) {
  history.push_back(map);
  while (history.size() > kHistoryDepth) history.pop_front();
}

json to_json(const State& state) {
  json fns = json::object();
  for (const auto& [name, fs] : state.functions) {
    json f;
    f["next_number"] = fs.next_number;
    json pub = json::object();
    for (const auto& [n, pv] : fs.published) {
      json eps = json::array();
      for (const config::Endpoint& e : pv.endpoints)
        eps.push_back({{"address", e.address.text}, {"weight", e.weight}});
      pub[std::to_string(n)] = {
          {"endpoints", eps}, {"settings", settings_json(pv.settings)}, {"time", pv.time}};
    }
    f["published"] = pub;
    json fps = json::object();
    for (const auto& [n, fp] : fs.fingerprints) fps[std::to_string(n)] = fp;
    f["fingerprints"] = fps;
    json aliases = json::object();
    for (const auto& [an, as] : fs.aliases) {
      json a;
      a["override"] = as.override_traffic ? traffic_json(*as.override_traffic) : json(nullptr);
      a["override_file_hash"] = as.override_file_hash;
      json hist = json::array();
      for (const TrafficMap& m : as.history) hist.push_back(traffic_json(m));
      a["history"] = hist;
      aliases[an] = a;
    }
    f["aliases"] = aliases;
    if (!fs.endpoint_states.empty()) f["endpoint_states"] = fs.endpoint_states;
    fns[name] = f;
  }
  return {{"format", 1}, {"functions", fns}};
}

bool operator==(const State& a, const State& b) {
  return to_json(a) == to_json(b);
}

bool from_json(const json& doc, State& out, std::string* error) {
  try {
    State s;
    if (doc.value("format", 0) != 1) {
      *error = "unknown state format (expected \"format\": 1)";
      return false;
    }
    for (auto fit = doc.at("functions").begin(); fit != doc.at("functions").end(); ++fit) {
      FunctionState fs;
      const json& f = fit.value();
      fs.next_number = f.at("next_number").get<uint32_t>();
      for (auto it = f.at("published").begin(); it != f.at("published").end(); ++it) {
        PublishedVersion pv;
        for (const json& e : it.value().at("endpoints")) {
          config::Endpoint ep;
          ep.address = parse_address(e.at("address").get<std::string>());
          ep.weight = e.value("weight", 1u);
          pv.endpoints.push_back(ep);
        }
        pv.settings = settings_from(it.value().at("settings"));
        pv.time = it.value().value("time", "");
        fs.published[static_cast<uint32_t>(std::stoul(it.key()))] = std::move(pv);
      }
      for (auto it = f.at("fingerprints").begin(); it != f.at("fingerprints").end(); ++it)
        fs.fingerprints[static_cast<uint32_t>(std::stoul(it.key()))] =
            it.value().get<Fingerprint>();
      if (f.contains("endpoint_states"))
        fs.endpoint_states =
            f["endpoint_states"].get<std::map<std::string, std::map<std::string, std::string>>>();
      for (auto it = f.at("aliases").begin(); it != f.at("aliases").end(); ++it) {
        AliasState as;
        const json& a = it.value();
        if (!a.at("override").is_null()) as.override_traffic = traffic_from(a.at("override"));
        as.override_file_hash = a.value("override_file_hash", "");
        for (const json& m : a.at("history")) as.history.push_back(traffic_from(m));
        fs.aliases[it.key()] = std::move(as);
      }
      s.functions[fit.key()] = std::move(fs);
    }
    out = std::move(s);
    return true;
  } catch (const std::exception& e) {
    *error = std::string("malformed state: ") + e.what();
    return false;
  }
}

void check_immutable(const config::Config& file, State& state,
                     std::vector<config::Diagnostic>* errors) {
  for (const config::FunctionSpec& fn : file.functions) {
    FunctionState& fs = state.functions[fn.name];
    for (const auto& [n, v] : fn.versions) {
      Fingerprint fp = fingerprint_of(v);
      auto known = fs.fingerprints.find(n);
      if (known == fs.fingerprints.end()) {
        fs.fingerprints[n] = fp;
      } else if (known->second != fp) {
        std::string fields;
        for (const auto& [key, value] : fp) {
          auto old = known->second.find(key);
          if (old != known->second.end() && old->second == value) continue;
          if (!fields.empty()) fields += ", ";
          fields += key;
        }
        for (const auto& [key, value] : known->second)
          if (!fp.count(key)) fields += (fields.empty() ? "" : ", ") + key;
        // The version's table header: its line, column 1.
        config::SourcePos at{v.pos.line, v.pos.line ? 1u : 0u};
        errors->push_back({file.source, at,
                           "version " + fn.name + ":" + std::to_string(n) +
                               " is published and immutable: " + fields +
                               " changed; publish a new version instead"});
      }
      fs.next_number = std::max(fs.next_number, n + 1);
    }
  }
}

config::Config compose(const config::Config& file, State& state,
                       std::vector<DroppedOverride>* dropped) {
  config::Config cfg = file;
  for (config::FunctionSpec& fn : cfg.functions) {
    auto fit = state.functions.find(fn.name);
    if (fit == state.functions.end()) continue;
    FunctionState& fs = fit->second;
    for (const auto& [n, pv] : fs.published) {
      if (fn.versions.count(n)) continue;  // the file took it over (same fingerprint)
      config::VersionSpec vs;
      vs.number = std::to_string(n);
      vs.endpoints = pv.endpoints;
      vs.settings = pv.settings;
      fn.versions[n] = std::move(vs);
    }
    for (config::AliasSpec& alias : fn.aliases) {
      auto ait = fs.aliases.find(alias.name);
      if (ait == fs.aliases.end() || !ait->second.override_traffic) continue;
      AliasState& as = ait->second;
      std::string why;
      if (as.override_file_hash != alias_file_hash(alias)) {
        why = "the file's definition changed since the override was made";
      } else {
        for (const auto& [v, w] : *as.override_traffic) {
          bool defined = v == config::kLatest ? fn.latest.has_value()
                                              : is_number(v) && fn.versions.count(std::stoul(v));
          if (!defined) {
            why = "version " + v + " is no longer defined";
            break;
          }
        }
        // A state file written before the API shared the loader's checks (or edited by hand)
        // may hold a map the file would refuse; it must not reach the routing table.
        if (why.empty()) {
          std::vector<config::TrafficEntry> entries;
          for (const auto& [v, w] : *as.override_traffic)
            entries.push_back({v, w, config::weight_text(w), ""});
          std::vector<config::TrafficIssue> issues =
              config::check_traffic(fn, fn.name + ":" + alias.name, entries);
          if (!issues.empty()) why = issues.front().message;
        }
      }
      if (!why.empty()) {
        TrafficMap file_map = traffic_of(alias);
        as.push_history(*as.override_traffic);
        if (dropped) dropped->push_back({fn.name, alias.name, *as.override_traffic, file_map, why});
        as.override_traffic.reset();
        as.override_file_hash.clear();
        continue;
      }
      alias.traffic = shares_of(*as.override_traffic);
      for (config::TrafficShare& s : alias.traffic) s.pos = alias.traffic_pos;
    }
  }
  return cfg;
}

uint32_t next_version_number(const config::FunctionSpec& fn, const FunctionState& fs) {
  uint32_t n = std::max<uint32_t>(fs.next_number, 1);
  if (!fn.versions.empty()) n = std::max(n, fn.versions.rbegin()->first + 1);
  if (!fs.published.empty()) n = std::max(n, fs.published.rbegin()->first + 1);
  if (!fs.fingerprints.empty()) n = std::max(n, fs.fingerprints.rbegin()->first + 1);
  return n;
}

}  // namespace sluice::control
