// Runs progressive shifts on the control loop: walks an alias from its stable version to a
// candidate in weight steps through the Control (audit cause "shift"), judges the candidate's
// window figures once a second and at each step's end, rolls back (restores the pre-shift map)
// or promotes (candidate 100%), and persists every shift, with its audit records, in the
// Control's store (the "shifts" document: shifts.json in a state directory) so a restart resumes
// it at the same step with a fresh window. Control-loop thread only.
#pragma once

#include <uv.h>

#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/control.h"
#include "control/shift_guard.h"
#include "control/shift_window.h"
#include "control/state.h"
#include "observe/stats.h"
#include "routing/health.h"

namespace sluice::control {

inline constexpr uint64_t kCheckEveryMs = 1000;

// One step's record: what traffic it set and the figures it was judged on.
struct StepRecord {
  size_t index = 0;
  double percent = 0;
  std::string started;  // RFC 3339
  std::string ended;    // empty while running
  std::string outcome;  // "running", "passed", "rolled_back", "aborted", "interrupted"
  std::string reason;
  Figures candidate, stable;
};

// One shift of one alias, running or finished.
struct Shift {
  std::string function, alias, actor;
  Plan plan;
  std::string stable;          // the version with the most traffic at the start
  control::TrafficMap before;  // the pre-shift map, restored on rollback
  size_t step = 0;             // index into plan.steps
  // "pre_traffic" (waiting for the hook), "running", "promoted", "rolled_back", "aborted",
  // "interrupted", "not_started" (the pre_traffic hook said no), "failed" (the engine failed and
  // could not restore the pre-shift map either; the reason names the alias's traffic).
  std::string state = "running";
  std::string reason;             // why it ended (or what it waits for while running)
  std::string started, finished;  // RFC 3339
  std::vector<StepRecord> steps;
  // Runtime only (a restart starts a fresh window):
  uint64_t step_started_ms = 0;
  SeriesWindow candidate_window, stable_window;
  Figures last_candidate, last_stable;
  std::vector<std::string> notes;  // compare_to_stable forgiveness, latest first
  uint64_t hook_id = 0;            // the pre_traffic call this shift waits for
  // A fleet (a shared store): whether this node judged the shift at the last tick. Only the
  // node that leads the alias's job judges; the others publish their window counts for it.
  bool led = false;
};

// Running or about to run: blocks a second shift on the alias.
bool active(const Shift& s);

nlohmann::json to_json(const Shift& s, bool runtime);
// Fills the durable part of `out`; false if the document is not a shift.
bool from_json(const nlohmann::json& j, Shift& out);

// The traffic map a step sets: {stable: 100 - percent, candidate: percent}, plus the other
// versions of the pre-shift map at weight 0 (a shift never starts while they have traffic).
control::TrafficMap step_map(const Shift& s, size_t step);
// `map` plus the pre-shift map's other versions at weight 0, in canonical order.
control::TrafficMap with_idle_others(const Shift& s, control::TrafficMap map);
// The stable version of `map` for a shift to s.plan.to: the other version with the most
// traffic. Sets *refusal (naming the versions) when there is none, or when a third version has
// traffic: a shift moves share between stable and candidate only.
std::string pick_stable(const Shift& s, const control::TrafficMap& map, std::string* refusal);

class ShiftManager {
 public:
  using RegistryGetter = std::function<const observe::Registry*()>;

  // `control` outlives this manager and has run init(): its store keeps the shifts. `registry`
  // is asked on each tick (nullptr: no figures yet).
  ShiftManager(control::Control& control, RegistryGetter registry,
               uint64_t check_every_ms = kCheckEveryMs);
  ~ShiftManager();
  ShiftManager(const ShiftManager&) = delete;
  ShiftManager& operator=(const ShiftManager&) = delete;

  // Endpoint health (the workers' shared registry): a candidate none of whose endpoints is usable
  // (ejected, failing its checks, drained) is rolled back at once. Not set: only a candidate that
  // is gone or has no endpoints cannot serve. `health` outlives this manager.
  void set_health(routing::HealthRegistry* health) { health_ = health; }

  // Loads the shifts document, resumes running shifts (or rolls back those whose candidate is gone)
  // and starts the check timer on `loop`. Returns a libuv error code (0 on success).
  int start(uv_loop_t* loop);
  // Stops and closes the timer (its close callback frees it). Running shifts stay persisted as
  // running, so the next start resumes them. Safe to call twice.
  void close();

  // POST (start), GET (progress), DELETE (abort and roll back).
  control::ApiResult handle(const std::string& method, const std::string& function,
                            const std::string& alias, const std::string& body,
                            const std::string& actor);
  // 200 once the first step is live; 202 with state "pre_traffic" when a pre_traffic hook must
  // answer 2xx first (called off the loop; the shift starts, or ends "not_started", when it
  // answers or times out).
  control::ApiResult begin(const std::string& function, const std::string& alias,
                           const nlohmann::json& body, const std::string& actor);
  control::ApiResult get(const std::string& function, const std::string& alias) const;
  control::ApiResult abort(const std::string& function, const std::string& alias,
                           const std::string& actor);
  // {"running": n, "shifts": [...]} for /admin/status.
  nlohmann::json status() const;

  // Replaces the clock (default: uv_now of the loop given to start(), else uv_hrtime), for tests.
  void set_clock(std::function<uint64_t()> now_ms) { clock_ = std::move(now_ms); }

  // One judgement pass over every running shift at `now_ms` (the timer calls it; tests too).
  // An error boundary per shift: an exception judging one (reading figures, applying a map,
  // saving state) ends that shift rolled back, or "failed" with the alias's traffic named if the
  // rollback fails too; it never leaves tick().
  void tick(uint64_t now_ms);
  // Earliest time a running shift wants the next tick (step end), capped by the check interval.
  uint64_t next_tick_ms(uint64_t now_ms) const;

  const std::map<std::pair<std::string, std::string>, Shift>& shifts() const { return shifts_; }

  // Starts the shifts a (re)loaded config file asks for: an alias with a shift table whose `to`
  // is neither its last shift's candidate nor already its whole traffic. Does anything only when
  // the routing table is a new generation since the last call (the timer calls it each tick).
  void check_file_shifts();
  // How many distinct routing tables this manager has seen (1 after start()).
  uint64_t table_generation() const { return table_generation_; }

 private:
  using Key = std::pair<std::string, std::string>;
  uint64_t now_ms() const;
  uint64_t snapshot_span_ms() const;  // the registry's window span (60 s by default)
  std::optional<observe::Snapshot> snapshot(uint64_t now_ms) const;
  // Sets `map` on the alias through the Control (cause "shift"). false + `error` if refused.
  bool apply(const Shift& s, const control::TrafficMap& map, std::string* error);
  void begin_step(Shift& s, size_t step, uint64_t now_ms, const observe::Snapshot* snap);
  // Ends a shift: `state` "rolled_back"/"aborted" restore s.before, "promoted" sets the
  // candidate to 100%, "interrupted" leaves traffic as it is.
  void finish(Shift& s, const std::string& state, const std::string& reason,
              const std::string& actor);
  // Why the candidate cannot serve in the running config, or "" if it can.
  std::string cannot_serve(const Shift& s) const;
  control::TrafficMap current_map(const std::string& f, const std::string& a) const;
  // Logs a shift decision and queues its audit record for the next persist().
  void audit(const Shift& s, const std::string& event, const std::string& actor,
             const control::TrafficMap& old_map, const control::TrafficMap& new_map,
             const std::string& reason);
  // Commits the shifts document with the queued audit records (one change: both or neither).
  // One commit at a time; a second call while one is on the wire commits again after it.
  void persist();
  // A fleet: another node changed the shifts document (see on_shifts_changed in the .cpp).
  void on_shifts_changed(const control::Document& doc);
  bool fleet() const { return control_.store().shared(); }
  static std::string job_of(const Shift& s) { return "shift/" + s.function + "/" + s.alias; }
  // A fleet: this node's window counts for `s`, published; the sum with every other live node's
  // counts for the same step, as figures.
  void fleet_figures(Shift& s);
  // Starts fresh windows for `s` at `now` (its current step).
  void fresh_windows(Shift& s, uint64_t now, const observe::Snapshot* snap);
  void load_and_resume(uint64_t now_ms);
  void post_hook(const Shift& s);
  // Sets the first step of `s` (pre-shift map and stable taken now). Non-200 leaves the alias's
  // traffic as it was (an exception is caught: 500, "not_started").
  control::ApiResult start_shift(Shift& s);
  // Starts `s` and, if it started, keeps it as the alias's shift and persists it.
  control::ApiResult start_and_store(const Key& key, Shift s);
  control::ApiResult start_shift_unguarded(Shift& s);
  // Judges one running shift (tick()'s body); true if it changed state. May throw.
  bool tick_one(Shift& s, uint64_t now_ms, const observe::Snapshot* snap);
  // Ends `s` after an exception while `doing` something to it: "not_started" if it was still
  // waiting for its pre_traffic hook, else rolled back; if the rollback throws as well, "failed"
  // with the alias's current and pre-shift maps in the reason. Never throws.
  void fail_safe(Shift& s, const std::string& doing, std::exception_ptr error) noexcept;
  // Results of pre_traffic calls, posted by their threads and read on the loop.
  struct HookInbox {
    std::mutex mu;
    bool closed = false;
    uv_async_t* async = nullptr;  // freed by its close callback
    struct Result {
      std::string function, alias;
      uint64_t id = 0;
      int status = 0;
      std::string error;
      std::string answer;  // the hook's response body
    };
    std::vector<Result> results;
  };
  static void on_hook_result(uv_async_t* a);
  void arm();
  static void on_timer(uv_timer_t* t);

  control::Control& control_;  // outlives this manager (see constructor)
  RegistryGetter registry_;
  routing::HealthRegistry* health_ = nullptr;  // see set_health()
  std::function<uint64_t()> clock_;            // set_clock(); empty = the loop's clock
  uint64_t check_every_ms_;
  control::Version shifts_version_ = 0;  // the store's version this manager last read/wrote
  bool persisting_ = false;              // a commit of the shifts document is on the wire
  bool persist_again_ = false;           // ... and another is needed after it
  // Shifts this node changed and has not saved yet: kept over another node's document when the
  // two are merged (a fleet).
  std::set<std::pair<std::string, std::string>> unsaved_;
  void mark(const Shift& s) { unsaved_.insert({s.function, s.alias}); }
  control::Store::WatchId shifts_watch_ = 0;
  std::vector<control::AuditEntry> pending_audits_;  // decisions persist() has not committed yet
  std::map<Key, Shift> shifts_;                      // latest shift per alias, running or finished
  uv_loop_t* loop_ = nullptr;
  uv_timer_t* timer_ = nullptr;  // freed by its close callback
  // The routing table check_file_shifts() last looked at, held so that no later table can be
  // allocated at its address (comparing a raw pointer to a freed table could miss a reload), and
  // the generation it was: counted here, one per distinct table seen.
  std::shared_ptr<const routing::RoutingTable> seen_table_;
  uint64_t table_generation_ = 0;
  std::shared_ptr<HookInbox> inbox_;                       // shared with pre_traffic threads
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // store callbacks hold it weakly
  uint64_t next_hook_id_ = 1;
};

// POSTs `body` to an http://HOST:PORT/path URL within `timeout_ms`; the HTTP status (and the
// response body in *answer, if given), or 0 with `error` if there was no answer.
int post_json(const std::string& url, const nlohmann::json& body, uint64_t timeout_ms,
              std::string* error, std::string* answer = nullptr);

}  // namespace sluice::control
