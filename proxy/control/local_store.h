// The state directory as a Store: one file per document (state.json, shifts.json), written
// atomically and durably, and audit.jsonl, appended and fsynced. Synchronous: every commit is on
// disk when its callback runs, before commit() returns. No uv.h.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/store.h"

namespace sluice::control {

// The audit log never misses a change a document shows. Each record gets a sequence number, and
// each document file written carries, under "audit", the number of the last record of its
// commit plus every record not yet known to be in audit.jsonl. commit() writes the documents
// first (the change's point of no return), then appends the records; a crash in between leaves
// the records in the files, and the next load() appends those missing from audit.jsonl, in
// sequence order, whichever documents carry them. (Writing the audit first instead would record
// changes that a crash then never applies.)
//
// A commit writes one file per put, each atomically; a crash between two files of one commit
// keeps the first. The control plane puts one document per commit.
//
// Versions are counted in memory: 1 for a file found at load, +1 per commit. Nothing else
// writes the directory while sluice runs, so a conflict means a writer of this process put on a
// version it read before another commit of the same document.
class LocalStore : public Store {
 public:
  // `dir` is created by load() if needed.
  explicit LocalStore(std::string dir);

  const char* kind() const override { return "local"; }
  bool durable() const override { return true; }
  nlohmann::json describe() const override;
  bool load(std::string* error, std::vector<std::string>* notes) override;
  Document get(const std::string& key) const override;
  void commit(Change change, CommitDone done) override;
  WatchId watch(const std::string&, Watcher) override { return ++last_watch_; }
  void unwatch(WatchId) override {}

  // The same as commit(), returned.
  CommitResult commit_now(Change change);

  // How many audit records the last load() appended (a crash had cut them off).
  size_t repaired() const { return repaired_; }
  const std::string& dir() const { return dir_; }
  std::string path_of(const std::string& key) const { return dir_ + "/" + key + ".json"; }
  std::string audit_path() const { return dir_ + "/audit.jsonl"; }

 private:
  bool append(const std::vector<nlohmann::json>& lines, std::string* error) const;

  std::string dir_;
  std::map<std::string, Document> docs_;   // every document that exists (or is unreadable)
  uint64_t next_seq_ = 1;                  // the next audit record's number
  std::vector<nlohmann::json> unaudited_;  // records in a document file but maybe not in the log
  size_t repaired_ = 0;
  WatchId last_watch_ = 0;
};

// Writes `content` to `path` atomically and durably: temp file, fsync, rename, fsync directory.
bool write_file_atomic(const std::string& path, std::string_view content, std::string* error);

}  // namespace sluice::control
