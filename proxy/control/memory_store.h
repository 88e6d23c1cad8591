// A Store in memory: what runs without a [state] dir (changes are lost on restart), and the base
// of tests' fake stores. Synchronous, never unavailable. No uv.h.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "control/store.h"

namespace sluice::control {

class MemoryStore : public Store {
 public:
  // The newest audit records kept (older ones are dropped: memory stays bounded).
  static constexpr size_t kAuditKept = 1024;

  const char* kind() const override { return "memory"; }
  bool durable() const override { return false; }
  nlohmann::json describe() const override;
  bool load(std::string*, std::vector<std::string>*) override { return true; }
  Document get(const std::string& key) const override;
  void commit(Change change, CommitDone done) override;
  WatchId watch(const std::string&, Watcher) override { return ++last_watch_; }
  void unwatch(WatchId) override {}

  // The same as commit(), returned.
  CommitResult commit_now(Change change);
  // The newest audit records as stored (with "seq" and "time"), oldest first.
  const std::deque<nlohmann::json>& audit_log() const { return audit_; }

 private:
  std::map<std::string, Document> docs_;
  std::deque<nlohmann::json> audit_;
  uint64_t next_seq_ = 1;
  WatchId last_watch_ = 0;
};

}  // namespace sluice::control
