// The one door to the control plane's durable state: named JSON documents, each with a version
// token the writer compares on, an audit log whose records get one sequence number per store, and
// changes made by other writers. LocalStore (a state directory), MemoryStore (none) and EtcdStore
// (a cluster shared by a fleet of sluice nodes). No uv.h: a store that talks to its backend on
// the control loop gets it from attach().
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::control {

// The documents the control plane keeps. A key is [a-z_]+ (a file name, an etcd key suffix).
inline constexpr const char* kStateDoc = "state";    // aliases, published versions (State)
inline constexpr const char* kShiftsDoc = "shifts";  // progressive shifts, running and finished

// What a writer read: 0 = the document does not exist. Only compared for equality; a store bumps
// it on every committed write of the document (an etcd store: the key's mod_revision).
using Version = uint64_t;

struct Document {
  std::string key;
  nlohmann::json value;  // null while absent
  Version version = 0;
  std::string origin;  // where it is kept, for messages: "/var/lib/sluice/state.json"
  // Non-empty: the stored bytes are there (version > 0) but are not JSON; says why ("not valid
  // JSON"). value is null then. What to do about it is the reader's call.
  std::string unreadable;
};

// One audit record. The store adds "seq" (its sequence number) and "time".
struct AuditEntry {
  std::string actor;  // "api:127.0.0.1", "file", "shift", ...
  std::string cause;  // "api", "file", "shift"
  std::string function;
  std::string alias;  // empty for a publish
  nlohmann::json old_value;
  nlohmann::json new_value;
  nlohmann::json extra = nlohmann::json::object();  // more fields (a shift's event, figures...)
};

// Replace `key` with `value` if its version is still `expected` (what the writer read).
struct Put {
  std::string key;
  nlohmann::json value;  // a JSON object
  Version expected = 0;
};

// One atomic change: every put and every audit record, or nothing.
struct Change {
  std::vector<Put> puts;
  std::vector<AuditEntry> audits;
};

struct CommitResult {
  enum class Status {
    kCommitted,
    kConflict,     // a put's document changed since the writer read it: nothing was written
    kUnavailable,  // the store cannot be reached now; nothing was written (or, for a remote
                   // store whose answer was lost, maybe it was: `error` says so)
    kFailed,       // the store refused or failed (a disk error): nothing was written (but see
                   // LocalStore on a change of several documents)
  };
  Status status = Status::kCommitted;
  std::string error;                        // why not committed
  std::string conflict_key;                 // kConflict: the document that moved
  std::map<std::string, Version> versions;  // kCommitted: each put document's new version
  uint64_t first_seq = 0, last_seq = 0;     // kCommitted: the audit records' numbers (0: none)
  // kCommitted, but the records are not in the audit log yet (LocalStore: they are kept with the
  // document and appended by the next commit or the next start). What went wrong, for the log.
  std::string audit_lag;

  bool committed() const { return status == Status::kCommitted; }
};

// Durable control-plane state. Control-loop thread only (before the loop runs: the thread that
// will run it). Each document has one writer at a time per process (the Control writes "state",
// the ShiftManager "shifts"); writers on other processes are told apart by versions.
class Store {
 public:
  using CommitDone = std::function<void(CommitResult)>;
  using Watcher = std::function<void(const Document&)>;
  using WatchId = uint64_t;

  virtual ~Store() = default;

  // "local", "memory", ("etcd").
  virtual const char* kind() const = 0;
  // Whether what is committed survives this process.
  virtual bool durable() const = 0;
  // {"kind": ..., "durable": ..., and where it keeps things or why it does not}: /admin/status.
  virtual nlohmann::json describe() const = 0;

  // Reads every document, once, before the control loop runs (blocking is allowed here and only
  // here). Repairs what a crash left half-done; each line of `notes` says what was repaired, for
  // the log. false with `error` if the state cannot be read: sluice must not start then.
  virtual bool load(std::string* error, std::vector<std::string>* notes) = 0;
  // The document as last loaded, committed or delivered by a watch. Never blocks.
  virtual Document get(const std::string& key) const = 0;

  // Commits `change` atomically. `done` runs exactly once, on the control loop, with the outcome;
  // a store may run it before commit() returns (LocalStore and MemoryStore always do) or later (a
  // remote store, once the write is durable there), but before the control loop runs (start-up)
  // every store runs it before returning. Once it says kCommitted, get() returns the new
  // documents. `done` never runs after the store is destroyed. An exception `done` throws leaves
  // commit() when `done` runs inside it; a store that runs it later catches and logs it.
  virtual void commit(Change change, CommitDone done) = 0;

  // Calls `changed` with `key`'s new document each time another writer changes it (never for
  // this process's own commits), on the control loop, in version order. The receiver applies it
  // as it applies its own commits (for "state": a new routing snapshot, swapped in whole). Local
  // and memory stores have no other writers: their watchers are never called.
  virtual WatchId watch(const std::string& key, Watcher changed) = 0;
  // No call of that watcher follows. Unknown ids are ignored.
  virtual void unwatch(WatchId id) = 0;

  // --- Stores shared by several processes (etcd); the defaults are those of a store this
  // process alone writes.

  // Once the control loop exists: a shared store follows other writers and keeps its lease on
  // `loop` (a uv_loop_t*, as void* to keep uv.h out). 0 or a libuv error code. Before it, only
  // load() and start-up commits run (blocking).
  virtual int attach(void* loop) {
    (void)loop;
    return 0;
  }
  // Stops following the store and lets go of this process's leadership. Safe to call twice.
  virtual void detach() {}
  // Whether the last exchange with the store worked (a local store: always), and the store's
  // revision this process has applied (0: the store has none).
  virtual bool up() const { return true; }
  virtual int64_t revision() const { return 0; }
  // Whether other processes share the documents (then leadership below means something).
  virtual bool shared() const { return false; }
  // This process's name among them ("" when not shared).
  virtual std::string node() const { return ""; }

  // Leadership of a named job ("shift/checkout/prod"): at most one process of the fleet leads it
  // at a time. want_lead() asks for it (again and again, while another holds it); leads() says
  // whether this process holds it now, and stops saying so before another process could take it
  // over. A store without other writers leads every job at once.
  virtual void want_lead(const std::string& job) { (void)job; }
  virtual void drop_lead(const std::string& job) { (void)job; }
  virtual bool leads(const std::string& job) const {
    (void)job;
    return true;
  }
  // The node that leads `job` as far as this process knows ("" if none).
  virtual std::string leader(const std::string& job) const { return leads(job) ? node() : ""; }
  // Figures this process contributes to a job (kept only while this process lives), and those
  // the other live processes published: {node: figures}.
  virtual void publish_figures(const std::string& job, const nlohmann::json& figures) {
    (void)job;
    (void)figures;
  }
  virtual std::map<std::string, nlohmann::json> peer_figures(const std::string& job) const {
    (void)job;
    return {};
  }
};

// JSON text that never throws on bytes that are not UTF-8 (a config path, a request target, an
// error message quoting input): they become U+FFFD. Every JSON the control plane writes (API
// answers, status, documents and audit records) goes through this. `indent` as json::dump.
std::string dump_json(const nlohmann::json& j, int indent = -1);

// RFC 3339 UTC time with milliseconds, now.
std::string now_rfc3339();

// For stores that check versions themselves: the kConflict refusal of the first put whose
// `expected` is not `version_of` its key now, or nullopt if every put is current.
std::optional<CommitResult> first_conflict(
    const std::vector<Put>& puts, const std::function<Version(const std::string&)>& version_of);

// An audit record as stored: {"seq", "time", "actor", "cause", "function", "alias" (null for a
// publish), "old", "new", ...extra}.
nlohmann::json audit_record(const AuditEntry& e, uint64_t seq);

}  // namespace sluice::control
