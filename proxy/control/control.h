// The control plane: the config file, the durable runtime state and the published routing
// snapshot. Reloads (file watch, SIGHUP, API), alias changes, rollbacks and publishes all go
// through here, and everything it keeps goes through one Store (store.h). Every method runs on
// the control loop thread only.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/model.h"
#include "control/resolver.h"
#include "control/state.h"
#include "control/store.h"
#include "net/tls_context.h"
#include "observe/prometheus.h"
#include "observe/stats.h"
#include "routing/health.h"
#include "routing/table.h"

namespace sluice::control {

// What an API call answers: an HTTP status and a JSON body.
struct ApiResult {
  int status = 200;
  nlohmann::json body;
};

// {"error": message, "field": field} with `status`.
ApiResult api_error(int status, std::string message, std::string field = "");

// What a change was about, for the answers a store's refusal becomes: field "alias" and name
// "checkout:prod", field "function" and name "checkout", field "config" and no name.
struct Subject {
  std::string field, name;
  std::string text() const { return name.empty() ? field : field + " " + name; }
};
// The answer to a commit the store did not make: 409 {"error", "code": "conflict", "field",
// <field>: <name>} when another writer changed the state first, 503 "store-unavailable" when the
// store cannot be reached, 500 when it failed. Nothing was changed in each case.
ApiResult store_refusal(const CommitResult& r, const Subject& subject);

// One line to stderr, flushed (the control plane's log).
void log_line(const std::string& s);

class Control {
 public:
  using Publisher = std::function<void(std::shared_ptr<const routing::RoutingTable>)>;

  explicit Control(std::string config_path);
  // A config given as text (e.g. the demo's embedded file): `source_name` names it in messages;
  // nothing is watched and a reload re-reads the same text.
  Control(std::string source_name, std::string config_text);
  ~Control();
  Control(const Control&) = delete;
  Control& operator=(const Control&) = delete;

  // Where the state is kept. Before init() only; without it, init() keeps the state in the
  // file's [state] dir (a LocalStore), or in memory (a MemoryStore) when it names none.
  void set_store(std::unique_ptr<Store> store) { store_ = std::move(store); }
  // Loads and validates the file, loads the store (repairing what a crash cut off), checks
  // published versions, and builds the first snapshot. Prints every diagnostic to stderr;
  // nullptr if sluice cannot start.
  std::shared_ptr<const routing::RoutingTable> init();
  // The store init() loaded (the ShiftManager keeps its documents there too). After init() only.
  Store& store() { return *store_; }

  // Where snapshots go (the process's Server::publish, wired by app/serve.cpp).
  void set_publisher(Publisher p) { publish_ = std::move(p); }
  // Where the listeners' TLS contexts go: after init() and after every reload that succeeds
  // (each rebuilds them from the files, so a rotated certificate takes effect).
  using TlsPublisher = std::function<void(std::shared_ptr<const net::TlsContexts>)>;
  void set_tls_publisher(TlsPublisher p) { publish_tls_ = std::move(p); }
  std::shared_ptr<const net::TlsContexts> tls_contexts() const { return tls_; }

  // Endpoint host names: resolved once (blocking) by init(), then only off the loop. Replaces
  // the resolver (tests: a fake, which also makes reloads and refreshes asynchronous).
  void set_resolver(std::unique_ptr<Resolver> resolver);
  // Uses a UvResolver on `loop` (unless one was set) for reloads, and re-resolves every endpoint
  // host name every [upstream] resolve_interval (a reload re-arms it). A libuv error code.
  int start_resolving(uv_loop_t* loop);
  // One re-resolution of the running config's host names (the timer's job; tests call it):
  // changed addresses publish a new snapshot; a failed lookup keeps the last good address.
  void refresh_names();
  // Host name -> the address the running snapshot uses.
  const routing::HostAddresses& hosts() const { return hosts_; }

  // Watches the config file's directory on `loop` (rename-saves, in-place writes, symlink and
  // Kubernetes `..data` swaps), debounced by `debounce_ms`. Returns a libuv error code.
  int start_watch(uv_loop_t* loop, uint64_t debounce_ms = 100);
  // Closes the watch handles (their close callbacks run on the loop). Safe to call twice.
  void close();

  // The mutators below never throw (an exception inside becomes a logged 500). Each answers once
  // its change is committed to the store and live (or refused): `done` runs then, before the
  // call returns when the store completes at once (local, memory), later otherwise. The forms
  // without `done` return that answer, or 202 {"result": "committing"} when the store answers
  // later (the change then applies, or not, when it does).
  using ApiDone = std::function<void(ApiResult)>;
  // Re-reads the file; publishes it if valid, else keeps the running snapshot. `cause`: "watch",
  // "sighup", "api". 200 with the outcome, or 400 with "errors" (file:line:col strings). The
  // file's host names are resolved afresh, off the loop once start_resolving() ran: `done` then
  // runs later. Reloads run one at a time, in order.
  using ReloadDone = std::function<void(ApiResult)>;
  void reload(const std::string& cause, ReloadDone done);
  // The same, answering at once: the outcome, or 202 {"result": "resolving"} while names resolve.
  ApiResult reload(const std::string& cause);
  // Body {"traffic": {"3": 90, "4": 10}}. `cause` goes to the audit record ("api"; "shift" for
  // progressive shifts, shift_manager.h).
  void set_alias(const std::string& function, const std::string& alias, const nlohmann::json& body,
                 const std::string& actor, const std::string& cause, ApiDone done);
  ApiResult set_alias(const std::string& function, const std::string& alias,
                      const nlohmann::json& body, const std::string& actor,
                      const std::string& cause = "api");
  void rollback(const std::string& function, const std::string& alias, const std::string& actor,
                ApiDone done);
  ApiResult rollback(const std::string& function, const std::string& alias,
                     const std::string& actor);
  // Publishes $LATEST as the function's next version number.
  void publish_version(const std::string& function, const std::string& actor, ApiDone done);
  ApiResult publish_version(const std::string& function, const std::string& actor);

  // Sets an endpoint of a version to drain, maint or ready (body {"state": "drain"}): persisted
  // and audited like an alias change, then applied to the workers' shared endpoint health.
  // `endpoint` is as written in the version's endpoints list ("10.0.0.5:8080").
  void set_endpoint_state(const std::string& function, const std::string& version,
                          const std::string& endpoint, const nlohmann::json& body,
                          const std::string& actor, ApiDone done);
  ApiResult set_endpoint_state(const std::string& function, const std::string& version,
                               const std::string& endpoint, const nlohmann::json& body,
                               const std::string& actor);

  // Endpoint health (the workers' shared registry): the operator states kept in the state go
  // there (now and after every change), and /admin/status and /metrics show it. It outlives
  // this. Without it, neither shows health and endpoint states cannot be set.
  void set_health(routing::HealthRegistry* health) {
    health_ = health;
    apply_endpoint_states();
  }

  // GET /admin/status. `live`: merged observe figures, or nullptr when not available.
  nlohmann::json status(const observe::Snapshot* live) const;
  // Families the control plane owns for GET /metrics: reloads, alias weights, build info.
  void write_metrics(observe::PrometheusWriter& w) const;

  std::shared_ptr<const routing::RoutingTable> table() const { return current_; }
  const config::Config& file_config() const { return file_; }
  const State& state() const { return state_; }
  // The store's version of the "state" document this state was read from or committed as.
  Version state_version() const { return state_version_; }
  uint64_t reloads_ok() const { return reloads_ok_; }
  uint64_t reloads_error() const { return reloads_error_; }

 private:
  struct Built {
    std::shared_ptr<const routing::RoutingTable> table;
    std::vector<DroppedOverride> dropped;
    std::vector<std::string> errors;
  };
  // file + next -> table (next loses overrides the file has since changed); no name lookups.
  Built build(const config::Config& file, State& next, const routing::HostAddresses& hosts) const;
  struct QueuedReload {
    std::string cause;
    std::vector<ReloadDone> waiters;
  };
  void start_reload(const std::string& cause, std::vector<ReloadDone> waiters);
  void finish_reload(const std::string& cause, std::optional<config::Config> loaded,
                     routing::HostAddresses resolved, std::vector<std::string> errors,
                     uint64_t start_ns, std::vector<ReloadDone> waiters) noexcept;
  // Validates and commits a loaded file; `done` gets the reload's answer.
  void apply_reload(const std::string& cause, std::optional<config::Config> loaded,
                    const routing::HostAddresses& resolved, std::vector<std::string> errors,
                    uint64_t start_ns, ApiDone done);
  // The reload's bookkeeping and answer once its outcome is known.
  ApiResult conclude_reload(const std::string& cause, std::vector<std::string> errors,
                            const std::vector<std::string>& needs_restart, size_t changes,
                            uint64_t start_ns);
  routing::HostAddresses resolve_now(const std::vector<std::string>& names);
  // hosts_ updated by `fresh`: a failed lookup keeps a name's last good address.
  routing::HostAddresses merge_hosts(const routing::HostAddresses& fresh);
  // Keeps the resolved names the running snapshot uses.
  void adopt_hosts(routing::HostAddresses hosts);
  void apply_refresh(const routing::HostAddresses& fresh);
  void rearm_resolve_timer();
  static void on_resolve_timer(uv_timer_t* t);
  // The public mutators run these inside guard(): an exception before `done` ran becomes a
  // logged 500 through `done`; `done` runs exactly once.
  static void guard(const std::string& what, ApiDone done, const std::function<void(ApiDone)>& body,
                    const std::string& field = "") noexcept;
  // Runs `start` with a `done` that keeps the answer: the answer, or 202 if none came yet.
  static ApiResult answer_now(const std::function<void(ApiDone)>& start);
  // Each answers a refusal at once, or commits and returns nullopt: `done` answers then.
  std::optional<ApiResult> set_alias_impl(const std::string& function, const std::string& alias,
                                          const nlohmann::json& body, const std::string& actor,
                                          const std::string& cause, const ApiDone& done);
  std::optional<ApiResult> rollback_impl(const std::string& function, const std::string& alias,
                                         const std::string& actor, const ApiDone& done);
  std::optional<ApiResult> publish_version_impl(const std::string& function,
                                                const std::string& actor, const ApiDone& done);
  std::optional<ApiResult> set_endpoint_state_impl(const std::string& function,
                                                   const std::string& version,
                                                   const std::string& endpoint,
                                                   const nlohmann::json& body,
                                                   const std::string& actor, const ApiDone& done);
  // Copies the operator states of the running state onto the endpoints of the running table
  // (an endpoint the state does not name is ready).
  void apply_endpoint_states();
  // Commits `next` with `audits` to the store; once committed, adopts `next` and publishes
  // `table`, then `then` gets 200. A refusal (see store_refusal) changes nothing. Nothing to store
  // (`next` is the running state and no audit): adopts and publishes at once.
  void commit(State next, std::shared_ptr<const routing::RoutingTable> table,
              std::vector<AuditEntry> audits, Subject subject, ApiDone then);
  // Adopts a "state" document another writer committed: a new snapshot, swapped in whole.
  void apply_stored(const Document& doc) noexcept;
  const config::FunctionSpec* file_function(const std::string& name) const;
  const config::AliasSpec* file_alias(const std::string& function, const std::string& alias) const;
  TrafficMap effective(const std::string& function, const std::string& alias) const;
  // [{endpoint, state, checks, ejected, ejections, usable}] of a version of the running table.
  nlohmann::json endpoint_health_json(const std::string& function, const std::string& number) const;
  bool read_config_text(std::string& text, std::string* error) const;

  static void on_fs_event(uv_fs_event_t* h, const char* filename, int events, int status);
  static void on_debounce(uv_timer_t* t);

  const std::string path_;
  std::optional<std::string> text_;  // set: the config comes from this text, not from path_
  std::string dir_, base_;           // the watched directory and the file's name in it
  config::Config file_;              // the last good file config
  config::Config started_;           // the file config at start: what restart-only keys run
  State state_;
  Version state_version_ = 0;     // the store's version of state_ (what the next write compares)
  std::unique_ptr<Store> store_;  // set by set_store() or init()
  std::shared_ptr<const routing::RoutingTable> current_;
  // Session ticket keys of every listener, across reloads; the contexts built from the file.
  std::shared_ptr<net::TicketKeyRing> ticket_keys_ =
      std::make_shared<net::TicketKeyRing>(net::TicketKeyRing::Options{});
  std::shared_ptr<const net::TlsContexts> tls_;
  std::string tls_stamp_;  // tls_files_stamp() when tls_ was built
  TlsPublisher publish_tls_;
  Publisher publish_;
  routing::HealthRegistry* health_ = nullptr;  // see set_health()

  int init_attempts_ = 0;  // init() again after a conflict with another node starting
  uint64_t reloads_ok_ = 0, reloads_error_ = 0;
  nlohmann::json last_reload_;  // {time, cause, result, errors, needs_restart}
  std::string last_seen_hash_;  // content hash of the last file text tried

  // Watch handles; heap-allocated so their close callbacks may outlive a close() call site.
  uv_fs_event_t* watch_ = nullptr;
  uv_timer_t* debounce_ = nullptr;
  uint64_t debounce_ms_ = 100;

  // Name resolution (see set_resolver / start_resolving).
  std::unique_ptr<Resolver> resolver_;
  bool async_resolution_ = false;
  routing::HostAddresses hosts_;           // what the running snapshot uses
  std::set<std::string> resolve_failing_;  // names whose last re-resolution failed (logged once)
  uv_timer_t* resolve_timer_ = nullptr;    // freed by its close callback
  uint64_t resolve_every_ms_ = 0;
  bool refresh_running_ = false;
  bool reload_running_ = false;
  std::optional<QueuedReload> queued_reload_;
};

}  // namespace sluice::control
