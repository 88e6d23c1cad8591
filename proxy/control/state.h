// Runtime-change state kept beside the config file: API alias overrides with their history,
// API-published versions, fingerprints of every published version, version counters; and how
// they combine with the file's Config. It is kept as the store's "state" document (store.h).
// No uv.h.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/model.h"

namespace sluice::control {

inline constexpr size_t kHistoryDepth = 32;  // traffic maps kept per alias

// An alias's traffic map in canonical order: numbered versions ascending, then $LATEST.
using TrafficMap = std::vector<std::pair<std::string, double>>;

TrafficMap canonical(TrafficMap map);
TrafficMap traffic_of(const config::AliasSpec& alias);
std::vector<config::TrafficShare> shares_of(const TrafficMap& map);
// {"3": 90, "4": 10}; integral weights print without a fraction.
nlohmann::json traffic_json(const TrafficMap& map);
// "3=90 4=10"
std::string traffic_text(const TrafficMap& map);

// FNV-1a 64 of `bytes` as 16 hex digits.
std::string fnv_hex(std::string_view bytes);
// Hash of the file's definition of an alias's traffic (what an API override is made over).
std::string alias_file_hash(const config::AliasSpec& alias);

// What a published version may never change (everything but its endpoints), as TOML key ->
// effective value, e.g. {"connect_timeout": "1000ms", "response_timeout": "30000ms", ...}.
using Fingerprint = std::map<std::string, std::string>;
Fingerprint fingerprint_of(const config::VersionSpec& version);

// A version published through the API: a snapshot of $LATEST at the time.
struct PublishedVersion {
  std::vector<config::Endpoint> endpoints;  // address text + weight
  config::UpstreamSettings settings;
  std::string time;  // RFC 3339 UTC
};

struct AliasState {
  std::optional<TrafficMap> override_traffic;  // set through the API
  std::string override_file_hash;              // alias_file_hash() it was made over
  std::deque<TrafficMap> history;              // earlier maps, newest last, <= kHistoryDepth
  void push_history(const TrafficMap& map);
};

struct FunctionState {
  uint32_t next_number = 1;                        // numbers below it are used or reserved forever
  std::map<uint32_t, PublishedVersion> published;  // through the API
  std::map<uint32_t, Fingerprint> fingerprints;    // every published version, file or API
  std::map<std::string, AliasState> aliases;
  // Operator states of endpoints: version number -> endpoint (as written in its endpoints list)
  // -> "drain" or "maint". Absent: ready.
  std::map<std::string, std::map<std::string, std::string>> endpoint_states;
};

struct State {
  std::map<std::string, FunctionState> functions;
};
// Same serialised content.
bool operator==(const State& a, const State& b);

nlohmann::json to_json(const State& state);
// Fills `out` from a "state" document (state.json); false (with `error`) if it does not parse.
bool from_json(const nlohmann::json& doc, State& out, std::string* error);

// Checks that every version the file defines keeps the fingerprint it was published with, and
// records fingerprints of newly seen ones and advances counters in `state`. Errors read like
// `sluice.toml:14:1: version checkout:3 is published and immutable: response_timeout changed;
// publish a new version instead`.
void check_immutable(const config::Config& file, State& state,
                     std::vector<config::Diagnostic>* errors);

// One alias change decided while composing (the file won over an override).
struct DroppedOverride {
  std::string function, alias;
  TrafficMap old_map, new_map;
  std::string why;
};

// The config the data plane runs: the file's, plus API-published versions, with each alias's
// API override applied while the file's definition is still the one it was made over. Overrides
// the file has since changed (or that name versions no longer defined) are removed from `state`
// and reported in `dropped`.
config::Config compose(const config::Config& file, State& state,
                       std::vector<DroppedOverride>* dropped);

// The next number `publish` would give function `fn` (never reused, even after removal).
uint32_t next_version_number(const config::FunctionSpec& fn, const FunctionState& fs);

}  // namespace sluice::control
