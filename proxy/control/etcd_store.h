// An etcd cluster as the Store of a fleet of sluice nodes (docs/fleet.md). Every node keeps its
// documents, audit log, shift leadership and shift figures under one key prefix:
//
//   <prefix>docs/<key>           a document's JSON; its version is the key's mod_revision
//   <prefix>audit_seq            the last audit record's sequence number
//   <prefix>audit/<16 digits>    audit records, the last `audit_kept` of them
//   <prefix>locks/<job>          the node leading a job, attached to that node's lease
//   <prefix>figures/<node>/<job> a node's figures for a job, attached to its lease
//   <prefix>nodes/<node>         a live node, attached to its lease
//
// Writes are transactions that compare each document's mod_revision with what this node read
// (a lost update is impossible: the loser gets kConflict). Other writers' changes arrive by one
// watch over the prefix, resumed from the last applied revision + 1; below a compaction the
// store re-reads the prefix and hands on only the documents whose content changed. The
// documents and their revision are kept in a local snapshot file (when configured) each time
// they change, so a node can start while etcd is down; with neither etcd nor a snapshot, load()
// fails.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "control/etcd_client.h"
#include "control/store.h"

namespace sluice::control {

struct EtcdStoreOptions {
  std::vector<std::string> endpoints;  // "http://host:port"
  std::string prefix = "/sluice/";
  std::string node;               // this process's name in the fleet (unique per process)
  uint64_t timeout_ms = 2000;     // one request's deadline
  uint64_t lease_ttl_ms = 10000;  // the node lease: leadership and figures
  std::string snapshot_path;      // empty: none (the node cannot start while etcd is down)
  uint64_t audit_kept = 10000;    // audit records kept in etcd
  uint64_t load_timeout_ms = 0;   // load()'s read; 0 = timeout_ms
  // etcd authentication: a user and the file holding its password (read by load(); a trailing
  // newline is not part of it). Empty: etcd without authentication.
  std::string username;
  std::string password_file;
  // https:// endpoints: verification and the client certificate (see EtcdOptions::tls).
  std::shared_ptr<const net::ClientContext> tls;
};

class EtcdStore : public Store {
 public:
  explicit EtcdStore(EtcdStoreOptions options);
  ~EtcdStore() override;

  const char* kind() const override { return "etcd"; }
  bool durable() const override { return true; }
  nlohmann::json describe() const override;
  bool load(std::string* error, std::vector<std::string>* notes) override;
  Document get(const std::string& key) const override;
  void commit(Change change, CommitDone done) override;
  WatchId watch(const std::string& key, Watcher changed) override;
  void unwatch(WatchId id) override;

  int attach(void* loop) override;
  void detach() override;
  bool up() const override { return up_; }
  int64_t revision() const override { return revision_; }
  bool shared() const override { return true; }
  std::string node() const override { return options_.node; }
  void want_lead(const std::string& job) override;
  void drop_lead(const std::string& job) override;
  bool leads(const std::string& job) const override;
  std::string leader(const std::string& job) const override;
  void publish_figures(const std::string& job, const nlohmann::json& figures) override;
  std::map<std::string, nlohmann::json> peer_figures(const std::string& job) const override;

  // For tests and status.
  int64_t lease() const { return lease_id_; }
  uint64_t resyncs() const { return resyncs_; }

 private:
  struct PendingCommit;
  // Everything read under the prefix at one revision (docs, audit_seq, locks, figures).
  struct Read {
    int64_t revision = 0;
    std::map<std::string, std::pair<std::string, int64_t>> docs;  // key -> (bytes, mod_revision)
    uint64_t audit_seq = 0;
    int64_t audit_seq_rev = 0;
    std::map<std::string, etcd::KeyValue> locks;  // job -> kv
    std::map<std::string, std::string> figures;   // "<node>/<job>" -> json text
  };

  std::string key_of(const std::string& sub) const { return options_.prefix + sub; }
  void make_client(uv_loop_t* loop);
  // Runs the private loop until `done` holds or `timeout_ms` passes (before attach()).
  bool run_private(const std::function<bool()>& done, uint64_t timeout_ms);
  // A private loop with a started client on it. false with `error` if the client refused to
  // start (its endpoints); the loop is then still there for close_private().
  bool open_private(std::string* error);
  void close_private();
  void read_all(std::function<void(EtcdResult<Read>)> done);
  // Adopts a full read: documents whose content changed go to the watchers (`notify`).
  void adopt(const Read& r, bool notify);
  void send_commit(std::shared_ptr<PendingCommit> pc);
  void on_events(std::vector<etcd::Event>&& events, int64_t header_revision);
  void apply_doc(const std::string& key, const etcd::KeyValue& kv, bool deleted);
  void flush_held_events();
  void start_watch();
  void resync();
  // Writes the snapshot file: at once before attach(), else on libuv's thread pool, one write
  // at a time (the newest text waits; the ones it replaces are never written).
  void save_snapshot();
  struct SnapshotWrite;
  void write_snapshot_text(std::string text);
  static void snapshot_work(uv_work_t* r);
  static void snapshot_done(uv_work_t* r, int status);
  bool read_snapshot(std::string* error);
  void mark_down(const std::string& why);
  // Authenticates (username set) and hands the token to the client; again whenever etcd says
  // the token is invalid (etcd forgets tokens when it restarts).
  void authenticate();
  void mark_up();
  // The node lease, leadership and figures: every tick.
  static void on_tick(uv_timer_t* t);
  void tick();
  void grant_lease();
  void try_acquire(const std::string& job);
  void lost_lease(const std::string& why);
  uint64_t now_ms() const;

  EtcdStoreOptions options_;
  // Before attach(): a private loop for load() and start-up commits.
  std::unique_ptr<struct PrivateLoop> private_;
  uv_loop_t* loop_ = nullptr;  // the control loop, once attached
  std::unique_ptr<EtcdClient> client_;
  uv_timer_t* timer_ = nullptr;  // freed by its close callback

  std::map<std::string, Document> docs_;
  int64_t revision_ = 0;  // the last revision applied (documents, locks, figures)
  uint64_t audit_seq_ = 0;
  int64_t audit_seq_rev_ = 0;
  bool up_ = false;
  std::string last_error_;
  std::string down_since_;
  EtcdClient::RequestId watch_id_ = 0;
  uint64_t resyncs_ = 0;
  bool resyncing_ = false;

  std::map<WatchId, std::pair<std::string, Watcher>> watchers_;
  WatchId next_watch_ = 1;
  size_t commits_in_flight_ = 0;
  // Document events that arrived while a commit was in flight: handed on (if not this process's
  // own) once none is.
  std::vector<std::pair<std::string, etcd::KeyValue>> held_events_;

  // Leadership.
  int64_t lease_id_ = 0;
  bool lease_pending_ = false;
  bool keepalive_pending_ = false;
  bool probe_pending_ = false;
  std::string password_;  // read from password_file by load()
  std::string token_;     // the last token etcd gave (username set)
  bool auth_stale_ = false, auth_pending_ = false;
  uint64_t last_keepalive_ms_ = 0;     // when the last keepalive that worked was sent
  uint64_t lease_valid_until_ms_ = 0;  // leads() holds until then (ttl minus a margin)
  std::set<std::string> wanted_, held_, acquiring_;
  std::map<std::string, etcd::KeyValue> locks_;    // job -> the lock key's kv (value = node)
  std::map<std::string, nlohmann::json> figures_;  // "<node>/<job>" -> figures
  std::set<std::string> publishing_;               // jobs whose figures are on the wire
  bool snapshot_writing_ = false;
  std::string snapshot_pending_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace sluice::control
