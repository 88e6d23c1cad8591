// What every store shares: JSON text, timestamps and the audit record's shape (see store.h).
#include "control/store.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace sluice::control {

using nlohmann::json;

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

std::optional<CommitResult> first_conflict(
    const std::vector<Put>& puts, const std::function<Version(const std::string&)>& version_of) {
  for (const Put& p : puts) {
    const Version now = version_of(p.key);
    if (now == p.expected) continue;
    CommitResult r;
    r.status = CommitResult::Status::kConflict;
    r.conflict_key = p.key;
    r.error = "document " + p.key + " is at version " + std::to_string(now) + ", not " +
              std::to_string(p.expected) + " as read";
    return r;
  }
  return std::nullopt;
}

json audit_record(const AuditEntry& e, uint64_t seq) {
  json line = e.extra.is_object() ? e.extra : json::object();
  // The common fields win over an `extra` field of the same name.
  line["seq"] = seq;
  line["time"] = now_rfc3339();
  line["actor"] = e.actor;
  line["cause"] = e.cause;
  line["function"] = e.function;
  line["alias"] = e.alias.empty() ? json(nullptr) : json(e.alias);
  line["old"] = e.old_value;
  line["new"] = e.new_value;
  return line;
}

}  // namespace sluice::control
