// Runtime-change state: canonical maps, fingerprints, composition with the file config, and the
// durable store (see state.h).
#include "admin/state.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "config/traffic.h"

namespace sluice::admin {
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

std::string errno_text(const char* what, const std::string& path) {
  return std::string(what) + " " + path + ": " + std::strerror(errno);
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
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
  return j;
}

config::UpstreamSettings settings_from(const json& j) {
  config::UpstreamSettings s;
  if (j.contains("connect_timeout_ms"))
    s.connect_timeout_ms = j["connect_timeout_ms"].get<uint32_t>();
  if (j.contains("response_timeout_ms"))
    s.response_timeout_ms = j["response_timeout_ms"].get<uint32_t>();
  if (j.contains("max_concurrency")) s.max_concurrency = j["max_concurrency"].get<uint32_t>();
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

std::string dump_json(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string now_rfc3339() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

bool write_file_atomic(const std::string& path, std::string_view content, std::string* error) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = errno_text("cannot create", tmp);
    return false;
  }
  if (!write_all(fd, content) || ::fsync(fd) != 0) {
    *error = errno_text("cannot write", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return false;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    *error = errno_text("cannot rename onto", path);
    ::unlink(tmp.c_str());
    return false;
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || ::fsync(dfd) != 0) {
    *error = errno_text("cannot fsync directory", dir);
    if (dfd >= 0) ::close(dfd);
    return false;
  }
  ::close(dfd);
  return true;
}

namespace {

// The sequence number of the last record in audit.jsonl that has one (0 if none), and whether
// the file ends with a newline. Reads from the end: only the tail matters.
bool audit_tail(const std::string& path, uint64_t* last_seq, bool* ends_with_newline,
                std::string* error) {
  *last_seq = 0;
  *ends_with_newline = true;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return true;
    *error = errno_text("cannot read", path);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    *error = errno_text("cannot read", path);
    ::close(fd);
    return false;
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  std::string tail;
  for (uint64_t want = 64 * 1024;; want *= 4) {
    const uint64_t take = std::min(want, size);
    tail.assign(take, '\0');
    size_t got = 0;
    while (got < take) {
      ssize_t n = ::pread(fd, tail.data() + got, take - got, static_cast<off_t>(size - take + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    tail.resize(got);
    if (!tail.empty()) *ends_with_newline = tail.back() == '\n';
    // Whole lines only: the first one may be cut unless the tail is the whole file.
    size_t end = tail.size();
    while (end > 0) {
      size_t start = tail.rfind('\n', end - 1);
      const bool whole = start != std::string::npos || take == size;
      start = start == std::string::npos ? 0 : start + 1;
      if (!whole) break;
      json j = json::parse(std::string_view(tail).substr(start, end - start), nullptr, false);
      if (j.is_object() && j.contains("seq") && j["seq"].is_number_unsigned()) {
        *last_seq = j["seq"].get<uint64_t>();
        ::close(fd);
        return true;
      }
      if (start == 0) break;
      end = start - 1;
    }
    if (take == size) break;
  }
  ::close(fd);
  return true;
}

}  // namespace

bool Store::load(State& out, std::string* error, size_t* repaired) {
  out = State{};
  unaudited_.clear();
  next_seq_ = 1;
  if (repaired) *repaired = 0;
  if (!durable()) return true;
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) {
    *error = "cannot create state directory " + dir_ + ": " + ec.message();
    return false;
  }
  uint64_t state_seq = 0;
  std::vector<json> carried;
  if (std::filesystem::exists(state_path(), ec)) {
    std::ifstream in(state_path(), std::ios::binary);
    if (!in) {
      *error = errno_text("cannot read", state_path());
      return false;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    json doc = json::parse(ss.str(), nullptr, false);
    if (doc.is_discarded()) {
      *error = state_path() + ": not valid JSON";
      return false;
    }
    if (!from_json(doc, out, error)) {
      *error = state_path() + ": " + *error;
      return false;
    }
    if (doc.contains("audit") && doc["audit"].is_object()) {
      const json& a = doc["audit"];
      if (a.contains("last_seq") && a["last_seq"].is_number_unsigned())
        state_seq = a["last_seq"].get<uint64_t>();
      if (a.contains("unaudited") && a["unaudited"].is_array())
        for (const json& line : a["unaudited"])
          if (line.is_object() && line.contains("seq") && line["seq"].is_number_unsigned())
            carried.push_back(line);
    }
  }
  uint64_t audited_seq = 0;
  bool newline = true;
  if (!audit_tail(audit_path(), &audited_seq, &newline, error)) return false;
  next_seq_ = std::max(state_seq, audited_seq) + 1;
  for (const json& line : carried)
    if (line["seq"].get<uint64_t>() > audited_seq) unaudited_.push_back(line);
  if (unaudited_.empty()) return true;
  // A crash came between the state's rename and the audit append: add what is missing.
  std::string append_error;
  if (!newline) {  // a torn last line: end it, so the repaired records start on their own line
    int fd = ::open(audit_path().c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) {
      (void)write_all(fd, "\n");
      ::close(fd);
    }
  }
  if (append(unaudited_, &append_error)) {
    if (repaired) *repaired = unaudited_.size();
    unaudited_.clear();
  }
  // else: they stay in unaudited_ and go out with the next commit.
  return true;
}

bool Store::append(const std::vector<json>& lines, std::string* error) const {
  if (lines.empty()) return true;
  std::string text;
  for (const json& line : lines) text += dump_json(line) + "\n";
  int fd = ::open(audit_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = errno_text("cannot open", audit_path());
    return false;
  }
  bool ok = write_all(fd, text) && ::fsync(fd) == 0;
  if (!ok) *error = errno_text("cannot append to", audit_path());
  ::close(fd);
  return ok;
}

bool Store::commit(const State& state, const std::vector<AuditEntry>& audits, std::string* error,
                   std::string* audit_error) {
  if (!durable()) return true;
  std::vector<json> lines = unaudited_;
  uint64_t seq = next_seq_;
  for (const AuditEntry& e : audits) {
    lines.push_back({{"seq", seq++},
                     {"time", now_rfc3339()},
                     {"actor", e.actor},
                     {"cause", e.cause},
                     {"function", e.function},
                     {"alias", e.alias.empty() ? json(nullptr) : json(e.alias)},
                     {"old", e.old_value},
                     {"new", e.new_value}});
  }
  json doc = to_json(state);
  doc["audit"] = {{"last_seq", seq - 1}, {"unaudited", lines}};
  if (!write_file_atomic(state_path(), dump_json(doc, 1) + "\n", error)) return false;
  next_seq_ = seq;  // the state (and with it these records) is durable from here on
  std::string err;
  if (append(lines, &err)) {
    unaudited_.clear();
  } else {
    unaudited_ = std::move(lines);
    if (audit_error) *audit_error = err;
  }
  return true;
}

}  // namespace sluice::admin
