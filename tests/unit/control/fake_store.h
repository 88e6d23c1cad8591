// A store for tests: a MemoryStore whose next commit can be refused (conflict, unavailable), whose
// commits can be held until the test completes them (a store that answers later, as a remote one
// does), and whose documents another writer can change (delivered to the watchers).
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "control/memory_store.h"
#include "control/store.h"

namespace sluice::control::test {

class FakeStore : public Store {
 public:
  std::optional<CommitResult::Status> refuse_next;  // the next commit's outcome, once
  bool hold = false;                                // commits wait for complete()
  size_t commits = 0;                               // commit() calls, refused ones included

  const char* kind() const override { return "fake"; }
  bool durable() const override { return true; }
  nlohmann::json describe() const override { return {{"kind", "fake"}, {"durable", true}}; }
  bool load(std::string*, std::vector<std::string>*) override { return true; }
  Document get(const std::string& key) const override { return memory.get(key); }

  void commit(Change change, CommitDone done) override {
    ++commits;
    if (refuse_next) {
      CommitResult r;
      r.status = *refuse_next;
      r.error = r.status == CommitResult::Status::kConflict
                    ? "document state is at version 7, not 1 as read"
                    : "no etcd member answered within 5000ms";
      refuse_next.reset();
      done(std::move(r));
      return;
    }
    if (hold) {
      held_.emplace_back(std::move(change), std::move(done));
      return;
    }
    done(memory.commit_now(std::move(change)));
  }
  size_t held() const { return held_.size(); }
  // Commits the oldest held change and answers it.
  void complete() {
    auto [change, done] = std::move(held_.front());
    held_.pop_front();
    done(memory.commit_now(std::move(change)));
  }

  // Another writer replaces `key` with `value`; the watchers of `key` hear of it.
  void change_elsewhere(const std::string& key, nlohmann::json value) {
    (void)memory.commit_now({{{key, std::move(value), memory.get(key).version}}, {}});
    const Document d = memory.get(key);
    for (auto& [id, w] : watchers_)
      if (w.first == key) w.second(d);
  }

  WatchId watch(const std::string& key, Watcher changed) override {
    watchers_[++last_watch_] = {key, std::move(changed)};
    return last_watch_;
  }
  void unwatch(WatchId id) override { watchers_.erase(id); }

  MemoryStore memory;

 private:
  std::deque<std::pair<Change, CommitDone>> held_;
  std::map<WatchId, std::pair<std::string, Watcher>> watchers_;
  WatchId last_watch_ = 0;
};

}  // namespace sluice::control::test
