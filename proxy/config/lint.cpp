// Lint: legal but suspicious configurations, reported as warnings.
#include "config/lint.h"

#include <algorithm>
#include <set>
#include <utility>

namespace sluice::config {

std::vector<Diagnostic> lint(const Config& config) {
  std::vector<Diagnostic> out;
  auto warn = [&](SourcePos pos, std::string message) {
    out.push_back(Diagnostic{config.source, pos, std::move(message)});
  };
  for (const FunctionSpec& f : config.functions) {
    std::set<std::string> used;
    for (const AliasSpec& a : f.aliases) {
      const std::string label = f.name + ":" + a.name;
      size_t positive = 0;
      const TrafficShare* only = nullptr;
      for (const TrafficShare& s : a.traffic) {
        used.insert(s.version);
        if (s.weight > 0) {
          ++positive;
          only = &s;
        }
      }
      if (a.name == "prod" || a.name == "production" || a.name == "live") {
        for (const TrafficShare& s : a.traffic) {
          if (s.version == kLatest && s.weight > 0) {
            warn(s.pos, "alias " + label +
                            " sends traffic to $LATEST, which can change under it "
                            "(expected a published version number; publish "
                            "$LATEST first)");
          }
        }
      }
      if (positive == 1 && a.traffic.size() > 1) {
        std::string zeros;
        for (const TrafficShare& s : a.traffic) {
          if (s.weight > 0) continue;
          if (!zeros.empty()) zeros += ", ";
          zeros += s.version;
        }
        warn(a.traffic_pos,
             "alias " + label + " sends 100% of its traffic to version " + only->version +
                 " but still lists " + zeros +
                 " at weight 0 (fine, e.g. after a rollback; remove them when done)");
      }
    }
    for (const RouteSpec& r : config.routes) {
      if (r.function == f.name && r.pinned_version) used.insert(r.target);
    }
    for (const auto& [number, v] : f.versions) {
      if (used.count(v.number)) continue;
      warn(v.pos, "version " + f.name + ":" + v.number +
                      " is not used by any alias or route (expected it in an alias's traffic "
                      "map, or remove it)");
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return a.pos.line != b.pos.line ? a.pos.line < b.pos.line : a.pos.column < b.pos.column;
  });
  return out;
}

}  // namespace sluice::config
