// The in-memory store (see memory_store.h).
#include "control/memory_store.h"

namespace sluice::control {

nlohmann::json MemoryStore::describe() const {
  return {{"kind", kind()},
          {"durable", false},
          {"note", "no [state] dir: API changes are kept in memory only and lost on restart"}};
}

Document MemoryStore::get(const std::string& key) const {
  auto it = docs_.find(key);
  if (it != docs_.end()) return it->second;
  Document absent;
  absent.key = key;
  absent.origin = "memory:" + key;
  return absent;
}

CommitResult MemoryStore::commit_now(Change change) {
  if (std::optional<CommitResult> stale =
          first_conflict(change.puts, [this](const std::string& key) { return get(key).version; }))
    return *stale;
  CommitResult r;
  for (Put& p : change.puts) {
    Document& d = docs_[p.key];
    d.key = p.key;
    d.origin = "memory:" + p.key;
    d.value = std::move(p.value);
    d.unreadable.clear();
    r.versions[p.key] = ++d.version;
  }
  if (!change.audits.empty()) r.first_seq = next_seq_;
  for (const AuditEntry& e : change.audits) {
    r.last_seq = next_seq_;
    audit_.push_back(audit_record(e, next_seq_++));
    if (audit_.size() > kAuditKept) audit_.pop_front();
  }
  return r;
}

void MemoryStore::commit(Change change, CommitDone done) {
  CommitResult r = commit_now(std::move(change));
  if (done) done(std::move(r));
}

}  // namespace sluice::control
