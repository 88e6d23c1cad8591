// Progressive shifts on the control loop (see shift_manager.h).
#include "control/shift_manager.h"

#include <cstdio>
#include <thread>

#include "config/values.h"
#include "net/http_call.h"

namespace sluice::control {
namespace {

using nlohmann::json;

// JSON text that never throws on a string that is not UTF-8 (bytes from a hook's answer, a
// path): such bytes become U+FFFD.
std::string dump_text(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

// At most `max` bytes of `raw` as valid UTF-8 on one line, for a reason text.
std::string printable(const std::string& raw, size_t max) {
  std::string text = json::parse(dump_text(json(raw.substr(0, max)))).get<std::string>();
  for (char& c : text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return raw.size() > max ? text + "..." : text;
}

// What an exception says, for a log line.
std::string what_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

const config::FunctionSpec* find_function(const config::Config& cfg, const std::string& f) {
  for (const config::FunctionSpec& fn : cfg.functions)
    if (fn.name == f) return &fn;
  return nullptr;
}

const config::AliasSpec* find_alias(const config::Config& cfg, const std::string& f,
                                    const std::string& a) {
  if (const config::FunctionSpec* fn = find_function(cfg, f))
    for (const config::AliasSpec& al : fn->aliases)
      if (al.name == a) return &al;
  return nullptr;
}

const config::VersionSpec* find_version(const config::FunctionSpec& fn, const std::string& v) {
  if (v == config::kLatest) return fn.latest ? &*fn.latest : nullptr;
  std::optional<uint32_t> n = config::parse_version_number(v);
  if (!n) return nullptr;
  auto it = fn.versions.find(*n);
  return it == fn.versions.end() ? nullptr : &it->second;
}

std::string defined_list(const config::FunctionSpec& fn) {
  std::string out;
  for (const auto& [n, v] : fn.versions) out += (out.empty() ? "" : ", ") + std::to_string(n);
  if (fn.latest) out += (out.empty() ? "" : ", ") + std::string(config::kLatest);
  return out.empty() ? "none" : out;
}

std::string alias_name(const Shift& s) {
  return s.function + ":" + s.alias;
}

// Why a pre_traffic hook's answer stops the shift ("" if it may start). A short excerpt of the
// answer is kept (the hook may say why), made valid UTF-8 whatever the hook sent.
std::string hook_refusal(const std::string& url, int status, const std::string& error,
                         const std::string& answer) {
  if (status >= 200 && status <= 299) return "";
  std::string why = "pre_traffic hook " + url + " ";
  if (status == 0) {
    why += "did not answer: " + error;
  } else {
    why += "answered " + std::to_string(status) + " (2xx needed)";
    if (std::string text = printable(answer, 200); !text.empty()) why += ": " + text;
  }
  return why + "; the shift did not start";
}

json step_json(const StepRecord& r) {
  json out = {{"step", r.index + 1},
              {"percent", r.percent},
              {"started", r.started},
              {"outcome", r.outcome},
              {"candidate", to_json(r.candidate)},
              {"stable", to_json(r.stable)}};
  if (!r.ended.empty()) out["ended"] = r.ended;
  if (!r.reason.empty()) out["reason"] = r.reason;
  return out;
}

StepRecord step_from_json(const json& j) {
  StepRecord r;
  r.index = j.value("step", size_t{1}) - 1;
  r.percent = j.value("percent", 0.0);
  r.started = j.value("started", "");
  r.ended = j.value("ended", "");
  r.outcome = j.value("outcome", "");
  r.reason = j.value("reason", "");
  if (j.contains("candidate")) r.candidate = figures_from_json(j["candidate"]);
  if (j.contains("stable")) r.stable = figures_from_json(j["stable"]);
  return r;
}

}  // namespace

json to_json(const Shift& s, bool runtime) {
  json steps = json::array();
  for (const StepRecord& r : s.steps) steps.push_back(step_json(r));
  json out = {{"function", s.function},
              {"alias", s.alias},
              {"candidate", s.plan.to},
              {"stable", s.stable},
              {"plan", to_json(s.plan)},
              {"before", control::traffic_json(s.before)},
              {"step", s.step + 1},
              {"steps_total", s.plan.steps.size()},
              {"percent", s.plan.steps.empty() ? 0.0 : s.plan.steps[s.step]},
              {"state", s.state},
              {"reason", s.reason},
              {"started", s.started},
              {"started_by", s.actor},
              {"history", steps}};
  if (!s.finished.empty()) out["finished"] = s.finished;
  if (runtime && s.state == "running") {
    out["window"] = {{"candidate", to_json(s.last_candidate)}, {"stable", to_json(s.last_stable)}};
    if (!s.notes.empty()) out["notes"] = s.notes;
  }
  return out;
}

bool from_json(const json& j, Shift& out) {
  if (!j.is_object() || !j.contains("plan")) return false;
  PlanError err;
  json plan_json = j["plan"];
  // Files written before guard.min_breach_requests was dropped (min_requests is the one floor).
  if (plan_json.is_object() && plan_json.contains("guard") && plan_json["guard"].is_object())
    plan_json["guard"].erase("min_breach_requests");
  std::optional<Plan> plan = parse_plan(plan_json, &err);
  if (!plan) return false;
  out.plan = std::move(*plan);
  out.function = j.value("function", "");
  out.alias = j.value("alias", "");
  out.stable = j.value("stable", "");
  out.actor = j.value("started_by", "");
  out.state = j.value("state", "");
  out.reason = j.value("reason", "");
  out.started = j.value("started", "");
  out.finished = j.value("finished", "");
  size_t step = j.value("step", size_t{1});
  if (step == 0 || step > out.plan.steps.size()) return false;
  out.step = step - 1;
  out.before.clear();
  if (j.contains("before") && j["before"].is_object())
    for (auto it = j["before"].begin(); it != j["before"].end(); ++it)
      if (it.value().is_number()) out.before.emplace_back(it.key(), it.value().get<double>());
  out.before = control::canonical(std::move(out.before));
  out.steps.clear();
  for (const json& r : j.value("history", json::array())) out.steps.push_back(step_from_json(r));
  return !out.function.empty() && !out.alias.empty() && !out.stable.empty() && !out.state.empty();
}

bool active(const Shift& s) {
  return s.state == "running" || s.state == "pre_traffic";
}

control::TrafficMap step_map(const Shift& s, size_t step) {
  double p = s.plan.steps.at(step);
  return control::canonical(with_idle_others(s, {{s.stable, 100.0 - p}, {s.plan.to, p}}));
}

control::TrafficMap with_idle_others(const Shift& s, control::TrafficMap map) {
  for (const auto& [v, w] : s.before)
    if (v != s.stable && v != s.plan.to && w == 0) map.emplace_back(v, 0.0);
  return control::canonical(std::move(map));
}

std::string pick_stable(const Shift& s, const control::TrafficMap& map, std::string* refusal) {
  const std::string& candidate = s.plan.to;
  std::string stable;
  double best = 0, total = 0, others_weight = 0;
  for (const auto& [v, w] : map) {
    total += w;
    if (v != candidate && w > best) {
      best = w;
      stable = v;
    }
  }
  std::vector<std::string> others;
  for (const auto& [v, w] : map)
    if (v != candidate && v != stable && w > 0) {
      others.push_back(v + " (" + percent_text(w / total) + ")");
      others_weight += w;
    }
  if (stable.empty()) {
    *refusal = "alias " + alias_name(s) + " already sends all its traffic to version " + candidate +
               "; there is no stable version to shift from";
  } else if (!others.empty()) {
    // A shift moves share between two versions only: changing a third one silently (dropping it
    // from the map, or scaling it) would surprise whoever gave it that share.
    control::TrafficMap suggested;
    for (const auto& [v, w] : map)
      suggested.emplace_back(v, v == stable ? w + others_weight : v == candidate ? w : 0.0);
    std::string list;
    for (size_t i = 0; i < others.size(); ++i)
      list += (i == 0 ? "" : i + 1 == others.size() ? " and " : ", ") + others[i];
    *refusal = "alias " + alias_name(s) + " also sends traffic to version" +
               (others.size() > 1 ? "s " : " ") + list + "; a shift only moves traffic between " +
               "the stable version " + stable + " and the candidate " + candidate +
               ". Move the other share first (e.g. sluice alias set " + alias_name(s) + " " +
               control::traffic_text(suggested) + "), then start the shift";
  }
  return stable;
}

int post_json(const std::string& url, const json& body, uint64_t timeout_ms, std::string* error,
              std::string* answer) {
  if (url.rfind("http://", 0) != 0) {
    *error = "not an http:// URL: " + url;
    return 0;
  }
  std::string rest = url.substr(7);
  size_t slash = rest.find('/');
  std::string address = rest.substr(0, slash);
  std::string target = slash == std::string::npos ? "/" : rest.substr(slash);
  std::optional<net::ClientResponse> r = net::http_call(
      address, "POST", target, "", dump_text(body), error, static_cast<int>(timeout_ms), "hook");
  if (r && answer) *answer = r->body;
  return r ? r->status : 0;
}

ShiftManager::ShiftManager(control::Control& control, RegistryGetter registry,
                           uint64_t check_every_ms)
    : control_(control),
      registry_(std::move(registry)),
      check_every_ms_(check_every_ms ? check_every_ms : kCheckEveryMs),
      shifts_version_(control.store().get(control::kShiftsDoc).version) {}

ShiftManager::~ShiftManager() {
  close();
}

int ShiftManager::start(uv_loop_t* loop) {
  loop_ = loop;
  timer_ = new uv_timer_t{};
  int rc = uv_timer_init(loop, timer_);
  if (rc != 0) {
    delete timer_;
    timer_ = nullptr;
    return rc;
  }
  timer_->data = this;
  inbox_ = std::make_shared<HookInbox>();
  inbox_->async = new uv_async_t{};
  rc = uv_async_init(loop, inbox_->async, &ShiftManager::on_hook_result);
  if (rc != 0) {
    delete inbox_->async;
    inbox_.reset();
    close();  // the timer
    return rc;
  }
  inbox_->async->data = this;
  load_and_resume(now_ms());
  if (fleet())
    shifts_watch_ = control_.store().watch(
        control::kShiftsDoc, [this](const control::Document& d) { on_shifts_changed(d); });
  check_file_shifts();
  arm();
  return 0;
}

void ShiftManager::close() {
  if (shifts_watch_) control_.store().unwatch(shifts_watch_);
  shifts_watch_ = 0;
  if (inbox_) {
    std::lock_guard<std::mutex> lock(inbox_->mu);
    inbox_->closed = true;  // hook threads still running drop their result
    uv_close(reinterpret_cast<uv_handle_t*>(inbox_->async),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
    inbox_->async = nullptr;
  }
  inbox_.reset();
  if (!timer_) return;
  uv_timer_stop(timer_);
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(timer_)))
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  timer_ = nullptr;
}

uint64_t ShiftManager::now_ms() const {
  if (clock_) return clock_();
  return loop_ ? uv_now(loop_) : uv_hrtime() / 1000000;
}

std::optional<observe::Snapshot> ShiftManager::snapshot(uint64_t now) const {
  const observe::Registry* reg = registry_ ? registry_() : nullptr;
  if (!reg) return std::nullopt;
  return reg->merged(now);
}

void ShiftManager::arm() {
  if (!timer_) return;
  uint64_t now = now_ms();
  uint64_t at = next_tick_ms(now);
  uv_timer_start(timer_, &ShiftManager::on_timer, at > now ? at - now : 1, 0);
}

void ShiftManager::on_timer(uv_timer_t* t) {
  auto* self = static_cast<ShiftManager*>(t->data);
  // check_file_shifts() and tick() are error boundaries of their own; this one is the last
  // line: no exception may cross into libuv.
  try {
    self->check_file_shifts();
    self->tick(self->now_ms());
  } catch (...) {
    log_line("sluice: shift: check failed: " + what_of(std::current_exception()));
  }
  self->arm();
}

uint64_t ShiftManager::next_tick_ms(uint64_t now) const {
  uint64_t at = now + check_every_ms_;
  for (const auto& [key, s] : shifts_) {
    if (s.state != "running") continue;
    uint64_t end = s.step_started_ms + s.plan.every_ms;
    if (end > now && end < at) at = end;
  }
  return at;
}

control::TrafficMap ShiftManager::current_map(const std::string& f, const std::string& a) const {
  const config::AliasSpec* al = find_alias(control_.table()->config(), f, a);
  return al ? control::traffic_of(*al) : control::TrafficMap{};
}

std::string ShiftManager::cannot_serve(const Shift& s) const {
  const config::FunctionSpec* fn = find_function(control_.table()->config(), s.function);
  if (!fn) return "function " + s.function + " is no longer defined";
  const config::VersionSpec* v = find_version(*fn, s.plan.to);
  if (!v) return "version " + s.plan.to + " is no longer defined";
  if (v->endpoints.empty()) return "version " + s.plan.to + " has no endpoints";
  if (health_) {
    const routing::Function* rf = control_.table()->find_function(s.function);
    const routing::Version* rv = rf ? rf->find_version(s.plan.to) : nullptr;
    if (rv) {
      const uint64_t now = now_ms();
      bool any = false;
      for (const routing::Endpoint& ep : rv->endpoints)
        any = any || health_->get(rv->label, ep.resolved).usable(now);
      if (!any) return "no healthy endpoint";
    }
  }
  return "";
}

bool ShiftManager::apply(const Shift& s, const control::TrafficMap& map, std::string* error) {
  control::ApiResult r = control_.set_alias(
      s.function, s.alias, json{{"traffic", control::traffic_json(map)}}, "shift", "shift");
  // 202: a shared store commits later (the next tick sees whether it did: the step map check).
  if (r.status == 200 || r.status == 202) return true;
  *error = r.body.value("error", "HTTP " + std::to_string(r.status));
  return false;
}

void ShiftManager::audit(const Shift& s, const std::string& event, const std::string& actor,
                         const control::TrafficMap& old_map, const control::TrafficMap& new_map,
                         const std::string& reason) {
  log_line("sluice: shift " + alias_name(s) + ": " + event + " (step " +
           std::to_string(s.step + 1) + "/" + std::to_string(s.plan.steps.size()) + "): " + reason);
  control::AuditEntry e{actor,
                        "shift",
                        s.function,
                        s.alias,
                        control::traffic_json(old_map),
                        control::traffic_json(new_map)};
  e.extra = {
      {"event", event},
      {"candidate", s.plan.to},
      {"stable", s.stable},
      {"step", s.step + 1},
      {"percent", s.plan.steps[s.step]},
      {"reason", reason},
      {"figures", {{"candidate", to_json(s.last_candidate)}, {"stable", to_json(s.last_stable)}}}};
  pending_audits_.push_back(std::move(e));
}

void ShiftManager::persist() {
  if (persisting_) {
    persist_again_ = true;
    return;
  }
  json doc = {{"shifts", json::array()}};
  for (const auto& [key, s] : shifts_)
    if (s.state != "pre_traffic") doc["shifts"].push_back(to_json(s, false));  // not started
  auto written = std::make_shared<std::set<Key>>(unsaved_);
  control::Change change;
  change.puts.push_back({control::kShiftsDoc, std::move(doc), shifts_version_});
  change.audits = std::move(pending_audits_);
  pending_audits_.clear();
  // Kept for a retry: a fleet node that lost a race commits them again after merging.
  auto audits = std::make_shared<std::vector<control::AuditEntry>>(change.audits);
  persisting_ = true;
  // A store that answers later may do so after this manager is gone.
  std::weak_ptr<int> alive = alive_;
  control_.store().commit(
      std::move(change), [this, alive, audits, written](control::CommitResult r) {
        if (alive.expired()) return;
        persisting_ = false;
        if (r.committed()) {
          shifts_version_ = r.versions[control::kShiftsDoc];
          for (const Key& k : *written) unsaved_.erase(k);
          if (!r.audit_lag.empty())
            log_line("sluice: shift: audit: " + r.audit_lag + " (retried with the next change)");
          if (persist_again_) {
            persist_again_ = false;
            persist();
          }
          return;
        }
        if (r.status == control::CommitResult::Status::kConflict && fleet()) {
          // Another node saved the document first: its version arrives by the store's watch, is
          // merged (this node's unsaved changes win for the shifts it changed), and saved again.
          pending_audits_.insert(pending_audits_.begin(), audits->begin(), audits->end());
          persist_again_ = true;
          return;
        }
        log_line("sluice: shift: cannot save state: " + r.error +
                 (audits->empty()
                      ? ""
                      : " (" + std::to_string(audits->size()) + " audit record(s) not kept)"));
        if (fleet() && r.status == control::CommitResult::Status::kUnavailable) {
          // Kept for when the store is back: the next tick saves again.
          pending_audits_.insert(pending_audits_.begin(), audits->begin(), audits->end());
          persist_again_ = true;
        }
      });
}

void ShiftManager::on_shifts_changed(const control::Document& stored) {
  shifts_version_ = stored.version;
  const json& doc = stored.value;
  if (!stored.unreadable.empty() || !doc.is_object() || !doc.contains("shifts") ||
      !doc["shifts"].is_array()) {
    log_line("sluice: shift: another node's shifts document does not parse; kept this node's");
    return;
  }
  const uint64_t now = now_ms();
  std::optional<observe::Snapshot> snap;
  for (const json& j : doc["shifts"]) {
    Shift theirs;
    bool readable = false;
    try {
      readable = from_json(j, theirs);
    } catch (...) {
    }
    if (!readable) continue;
    const Key key{theirs.function, theirs.alias};
    auto it = shifts_.find(key);
    if (it != shifts_.end()) {
      Shift& ours = it->second;
      const bool ours_unsaved = unsaved_.count(key) > 0;
      // A finished shift is final (another node's abort, promotion or rollback wins); a running
      // one this node changed and has not saved yet is kept.
      if (active(theirs) && ours_unsaved && active(ours)) continue;
      if (ours.state == "pre_traffic") continue;  // waiting for its hook here
      if (theirs.started == ours.started && theirs.step == ours.step &&
          theirs.state == ours.state) {
        // The same step: keep this node's windows, take the durable part.
        theirs.step_started_ms = ours.step_started_ms;
        theirs.candidate_window = std::move(ours.candidate_window);
        theirs.stable_window = std::move(ours.stable_window);
        theirs.last_candidate = ours.last_candidate;
        theirs.last_stable = ours.last_stable;
        theirs.led = ours.led;
        ours = std::move(theirs);
        continue;
      }
    }
    if (!snap) snap = snapshot(now);
    Shift& s = shifts_[key] = std::move(theirs);
    if (s.state == "running") fresh_windows(s, now, snap ? &*snap : nullptr);
    if (!active(s)) control_.store().drop_lead(job_of(s));
  }
  if (persist_again_ && !persisting_) {
    persist_again_ = false;
    persist();
  }
}

void ShiftManager::fresh_windows(Shift& s, uint64_t now, const observe::Snapshot* snap) {
  s.step_started_ms = now;
  s.candidate_window = SeriesWindow(snapshot_span_ms());
  s.stable_window = SeriesWindow(snapshot_span_ms());
  s.candidate_window.reset(now, snap ? snap->find(s.function, s.alias, s.plan.to) : nullptr);
  s.stable_window.reset(now, snap ? snap->find(s.function, s.alias, s.stable) : nullptr);
}

void ShiftManager::fleet_figures(Shift& s) {
  control::Store& store = control_.store();
  WindowCounts cand = s.candidate_window.last_counts();
  WindowCounts stable = s.stable_window.last_counts();
  const std::string job = job_of(s);
  store.publish_figures(job, {{"started", s.started},
                              {"step", s.step},
                              {"candidate", to_json(cand)},
                              {"stable", to_json(stable)}});
  for (const auto& [node, j] : store.peer_figures(job)) {
    if (!j.is_object() || j.value("started", "") != s.started || !j.contains("step") ||
        !j["step"].is_number_unsigned() || j["step"].get<size_t>() != s.step)
      continue;  // another shift, or a step this node has not seen (yet)
    cand.add(window_counts_from_json(j.value("candidate", json())));
    stable.add(window_counts_from_json(j.value("stable", json())));
  }
  s.last_candidate = figures_of(cand);
  s.last_stable = figures_of(stable);
}

void ShiftManager::begin_step(Shift& s, size_t step, uint64_t now, const observe::Snapshot* snap) {
  s.step = step;
  s.step_started_ms = now;
  s.candidate_window = SeriesWindow(snapshot_span_ms());
  s.stable_window = SeriesWindow(snapshot_span_ms());
  s.candidate_window.reset(now, snap ? snap->find(s.function, s.alias, s.plan.to) : nullptr);
  s.stable_window.reset(now, snap ? snap->find(s.function, s.alias, s.stable) : nullptr);
  s.last_candidate = {};
  s.last_stable = {};
  s.notes.clear();
  StepRecord r;
  r.index = step;
  r.percent = s.plan.steps[step];
  r.started = control::now_rfc3339();
  r.outcome = "running";
  s.steps.push_back(r);
}

uint64_t ShiftManager::snapshot_span_ms() const {
  const observe::Registry* reg = registry_ ? registry_() : nullptr;
  if (!reg) return 60000;
  return reg->window().slot_ms * reg->window().slots;
}

control::ApiResult ShiftManager::handle(const std::string& method, const std::string& f,
                                        const std::string& a, const std::string& body,
                                        const std::string& actor) {
  try {  // error boundary: a 500 naming the failure, and a shift it left running rolled back
    if (method == "GET") return get(f, a);
    if (method == "DELETE") return abort(f, a, actor);
    if (method == "POST") {
      json doc = json::parse(body, nullptr, false);
      if (doc.is_discarded()) return control::api_error(400, "the body is not valid JSON", "body");
      return begin(f, a, doc, actor);
    }
    return control::api_error(405, method + " is not allowed here (allowed: GET, POST, DELETE)");
  } catch (...) {
    std::exception_ptr e = std::current_exception();
    log_line("sluice: shift " + f + ":" + a + ": " + method + " failed: " + what_of(e));
    // DELETE may have stopped half-way: end it (a GET or a POST changed no stored shift).
    auto it = shifts_.find({f, a});
    if (method == "DELETE" && it != shifts_.end() && active(it->second))
      fail_safe(it->second, "aborting it", e);
    return control::api_error(500, "the shift engine failed: " + what_of(e));
  }
}

control::ApiResult ShiftManager::start_and_store(const Key& key, Shift s) {
  control::ApiResult r = start_shift(s);
  if (r.status != 200) return r;
  Shift& stored = shifts_[key] = std::move(s);
  mark(stored);
  if (fleet()) control_.store().want_lead(job_of(stored));  // the node that started it, first
  persist();
  arm();
  return {200, to_json(stored, true)};
}

control::ApiResult ShiftManager::begin(const std::string& f, const std::string& a, const json& body,
                                       const std::string& actor) {
  const config::Config& cfg = control_.table()->config();
  const config::FunctionSpec* fn = find_function(cfg, f);
  if (!fn) return control::api_error(404, "no function named " + f, "function");
  if (!find_alias(cfg, f, a))
    return control::api_error(404, "function " + f + " has no alias named " + a, "alias");
  Key key{f, a};
  auto it = shifts_.find(key);
  if (it != shifts_.end() && active(it->second))
    return control::api_error(409,
                              "a shift of " + f + ":" + a + " to version " + it->second.plan.to +
                                  " is already running (step " +
                                  std::to_string(it->second.step + 1) + "/" +
                                  std::to_string(it->second.plan.steps.size()) + ", " +
                                  it->second.state + "); abort it first",
                              "alias");
  PlanError perr;
  std::optional<Plan> plan = parse_plan(body, &perr);
  if (!plan) return control::api_error(400, perr.message, perr.field);
  const config::VersionSpec* cand = find_version(*fn, plan->to);
  if (!cand)
    return control::api_error(
        400,
        "version " + plan->to + " of " + f + " is not defined (defined: " + defined_list(*fn) + ")",
        "to");
  if (cand->endpoints.empty())
    return control::api_error(400, "version " + plan->to + " has no endpoints", "to");

  Shift s;
  s.function = f;
  s.alias = a;
  s.actor = actor;
  s.plan = std::move(*plan);
  s.before = current_map(f, a);
  std::string refusal;
  if (pick_stable(s, s.before, &refusal).empty() || !refusal.empty())
    return control::api_error(409, refusal, "to");
  s.started = control::now_rfc3339();
  if (s.plan.pre_traffic.empty()) {
    return start_and_store(key, std::move(s));
  }

  json hook = {{"event", "pre_traffic"},
               {"function", f},
               {"alias", a},
               {"candidate", s.plan.to},
               {"plan", to_json(s.plan)}};
  if (!inbox_) {  // no loop (tests): call the hook in place
    std::string err, answer;
    int status = post_json(s.plan.pre_traffic, hook, s.plan.hook_timeout_ms, &err, &answer);
    if (std::string why = hook_refusal(s.plan.pre_traffic, status, err, answer); !why.empty())
      return control::api_error(424, why, "pre_traffic");
    return start_and_store(key, std::move(s));
  }
  // Off the control loop, so a slow hook never delays another alias's rollback.
  s.state = "pre_traffic";
  s.reason = "waiting for the pre_traffic hook " + s.plan.pre_traffic;
  s.hook_id = next_hook_id_++;
  std::thread([inbox = inbox_, url = s.plan.pre_traffic, hook, timeout = s.plan.hook_timeout_ms, f,
               a, id = s.hook_id]() {
    HookInbox::Result res{f, a, id, 0, "", ""};
    try {  // an exception leaving a thread would end the process
      res.status = post_json(url, hook, timeout, &res.error, &res.answer);
    } catch (...) {
      res.status = 0;
      res.error = "calling the hook failed: " + what_of(std::current_exception());
    }
    std::lock_guard<std::mutex> lock(inbox->mu);
    if (inbox->closed) return;
    try {
      inbox->results.push_back(std::move(res));
    } catch (...) {
      return;  // out of memory: the shift stays waiting; abort ends it
    }
    uv_async_send(inbox->async);
  }).detach();
  Shift& stored = shifts_[key] = std::move(s);
  return {202, to_json(stored, true)};
}

control::ApiResult ShiftManager::start_shift(Shift& s) {
  try {  // error boundary: a shift that failed to start leaves the traffic as it found it
    return start_shift_unguarded(s);
  } catch (...) {
    std::exception_ptr e = std::current_exception();
    std::string traffic = "unknown";
    try {
      std::string err;
      if (s.state == "running" && current_map(s.function, s.alias) != s.before &&
          !apply(s, s.before, &err))
        log_line("sluice: shift " + alias_name(s) + ": cannot restore the pre-shift map: " + err);
      traffic = control::traffic_text(current_map(s.function, s.alias));
    } catch (...) {
    }
    s.state = "not_started";
    log_line("sluice: shift " + alias_name(s) + ": starting failed: " + what_of(e));
    return control::api_error(500, "the shift engine failed while starting the shift (" +
                                       what_of(e) + "); the alias's traffic is " + traffic);
  }
}

control::ApiResult ShiftManager::start_shift_unguarded(Shift& s) {
  s.before = current_map(s.function, s.alias);
  std::string refusal;
  s.stable = pick_stable(s, s.before, &refusal);
  if (!refusal.empty()) return control::api_error(409, refusal, "to");
  if (std::string why = cannot_serve(s); !why.empty())
    return control::api_error(409, "candidate " + s.plan.to + " cannot serve: " + why, "to");
  uint64_t now = now_ms();
  std::optional<observe::Snapshot> snap = snapshot(now);
  s.steps.clear();
  s.state = "running";
  begin_step(s, 0, now, snap ? &*snap : nullptr);
  std::string err;
  control::TrafficMap first = step_map(s, 0);
  if (!apply(s, first, &err))
    return control::api_error(409, "cannot set the first step's traffic: " + err, "alias");
  s.reason = "step 1 started";
  audit(s, "start", s.actor, s.before, first,
        "shift to " + s.plan.to + " from stable " + s.stable + " started");
  return {200, json::object()};
}

void ShiftManager::on_hook_result(uv_async_t* a) {
  auto* self = static_cast<ShiftManager*>(a->data);
  std::vector<HookInbox::Result> results;
  {
    std::lock_guard<std::mutex> lock(self->inbox_->mu);
    results.swap(self->inbox_->results);
  }
  for (const HookInbox::Result& r : results) {
    auto it = self->shifts_.find({r.function, r.alias});
    if (it == self->shifts_.end()) continue;
    Shift& s = it->second;
    if (s.state != "pre_traffic" || s.hook_id != r.id) continue;  // aborted meanwhile
    try {                                                         // error boundary: see fail_safe()
      std::string why = hook_refusal(s.plan.pre_traffic, r.status, r.error, r.answer);
      if (why.empty()) {
        control::ApiResult started = self->start_shift(s);
        if (started.status != 200)
          why = "the shift did not start: " + started.body.value("error", "?");
      }
      if (why.empty()) {
        self->mark(s);
        self->persist();
        self->arm();
      } else {
        s.state = "not_started";
        s.reason = why;
        s.finished = control::now_rfc3339();
        log_line("sluice: shift " + alias_name(s) + ": " + why);
      }
    } catch (...) {
      self->fail_safe(s, "starting it after the pre_traffic hook answered",
                      std::current_exception());
    }
  }
}

void ShiftManager::fail_safe(Shift& s, const std::string& doing,
                             std::exception_ptr error) noexcept {
  const std::string why = "the shift engine failed while " + doing + " (" + what_of(error) + ")";
  log_line("sluice: shift " + alias_name(s) + ": " + why);
  mark(s);
  try {
    if (s.state == "pre_traffic") {  // no traffic was changed yet
      s.state = "not_started";
      s.reason = why + "; the shift did not start";
      s.finished = control::now_rfc3339();
      persist();
      return;
    }
    finish(s, "rolled_back", why + "; rolled back to the pre-shift map", "shift");
    return;
  } catch (...) {
    // Rolling back failed too. Say what the alias's traffic is now, so nobody has to guess.
    std::string now;
    try {
      now = control::traffic_text(current_map(s.function, s.alias));
    } catch (...) {
      now = "unknown";
    }
    const std::string before = control::traffic_text(s.before);
    const std::string second = what_of(std::current_exception());
    if (now == before) {  // the traffic was restored; only recording the outcome failed
      s.state = "rolled_back";
      s.reason = why + "; rolled back to the pre-shift map (recording it failed: " + second + ")";
    } else {
      s.state = "failed";
      s.reason = why + "; rolling back failed too (" + second + "): the alias's traffic is " + now +
                 ", the pre-shift map was " + before;
    }
    s.finished = control::now_rfc3339();
    log_line("sluice: shift " + alias_name(s) + ": " + s.reason);
  }
  try {
    persist();
  } catch (...) {
    log_line("sluice: shift: cannot save state: " + what_of(std::current_exception()));
  }
}

control::ApiResult ShiftManager::get(const std::string& f, const std::string& a) const {
  auto it = shifts_.find({f, a});
  if (it == shifts_.end())
    return control::api_error(404, "no shift has run on " + f + ":" + a + " since the state began",
                              "alias");
  json out = to_json(it->second, true);
  if (fleet()) out["leader"] = control_.store().leader(job_of(it->second));
  return {200, std::move(out)};
}

control::ApiResult ShiftManager::abort(const std::string& f, const std::string& a,
                                       const std::string& actor) {
  auto it = shifts_.find({f, a});
  if (it == shifts_.end() || !active(it->second))
    return control::api_error(404, "no shift is running on " + f + ":" + a, "alias");
  if (it->second.state == "pre_traffic") {  // nothing changed yet: no traffic to restore
    it->second.state = "aborted";
    it->second.reason = "aborted by " + actor + " before the pre_traffic hook answered";
    it->second.finished = control::now_rfc3339();
    return {200, to_json(it->second, true)};
  }
  Shift& s = it->second;
  uint64_t now = now_ms();
  std::optional<observe::Snapshot> snap = snapshot(now);
  s.last_candidate =
      s.candidate_window.sample(now, snap ? snap->find(s.function, s.alias, s.plan.to) : nullptr);
  s.last_stable =
      s.stable_window.sample(now, snap ? snap->find(s.function, s.alias, s.stable) : nullptr);
  finish(s, "aborted", "aborted by " + actor, actor);
  return {200, to_json(s, true)};
}

json ShiftManager::status() const {
  json list = json::array();
  size_t running = 0;
  for (const auto& [key, s] : shifts_) {
    list.push_back(to_json(s, true));
    running += s.state == "running";
  }
  return {{"running", running}, {"shifts", list}};
}

void ShiftManager::finish(Shift& s, const std::string& state, const std::string& reason,
                          const std::string& actor) {
  control::TrafficMap old_map = current_map(s.function, s.alias);
  control::TrafficMap target = old_map;
  std::string note;
  if (state == "promoted") target = with_idle_others(s, {{s.plan.to, 100.0}});
  if (state == "rolled_back" || state == "aborted") target = s.before;
  if (target != old_map) {
    std::string err;
    if (!apply(s, target, &err)) {
      // The pre-shift map may name a version that is gone: fall back to all on stable.
      control::TrafficMap fallback = {{s.stable, 100.0}};
      std::string err2;
      if (state != "promoted" && apply(s, fallback, &err2)) {
        target = fallback;
        note = " (the pre-shift map could not be restored: " + err + "; stable " + s.stable +
               " set to 100%)";
      } else {
        target = old_map;
        note = " (traffic could not be changed: " + err + ")";
      }
    }
  }
  s.state = state;
  s.reason = reason + note;
  s.finished = control::now_rfc3339();
  if (!s.steps.empty() && s.steps.back().outcome == "running") {
    StepRecord& r = s.steps.back();
    r.ended = s.finished;
    r.outcome = state == "promoted" ? "passed" : state;
    r.reason = s.reason;
    r.candidate = s.last_candidate;
    r.stable = s.last_stable;
  }
  audit(s,
        state == "promoted"      ? "promote"
        : state == "rolled_back" ? "rollback"
                                 : state,
        actor, old_map, target, s.reason);
  mark(s);
  persist();
  if (fleet()) control_.store().drop_lead(job_of(s));
  if (!s.plan.post_traffic.empty()) post_hook(s);
}

void ShiftManager::post_hook(const Shift& s) {
  json body = to_json(s, false);
  body["event"] = "post_traffic";
  std::string url = s.plan.post_traffic;
  uint64_t timeout = s.plan.hook_timeout_ms;
  // Off the control loop: the outcome is already durable, the hook only informs.
  std::thread([url, body, timeout]() {
    try {  // an exception leaving a thread would end the process
      std::string err;
      int status = post_json(url, body, timeout, &err);
      if (status < 200 || status > 299)
        log_line("sluice: shift: post_traffic hook " + url + " " +
                 (status == 0 ? "failed: " + err : "answered " + std::to_string(status)));
    } catch (...) {
      log_line("sluice: shift: post_traffic hook " + url +
               " failed: " + what_of(std::current_exception()));
    }
  }).detach();
}

void ShiftManager::tick(uint64_t now) {
  bool any = false;
  for (auto& [key, s] : shifts_) any |= s.state == "running";
  if (!any) return;
  std::optional<observe::Snapshot> snap;
  std::exception_ptr snap_error;
  try {
    snap = snapshot(now);
  } catch (...) {
    snap_error = std::current_exception();
  }
  bool changed = false;
  control::Store& store = control_.store();
  for (auto& [key, s] : shifts_) {
    if (s.state != "running") continue;
    if (fleet()) {
      // One node of the fleet judges each shift: the one that leads its job. The others add
      // their window counts to its figures.
      const std::string job = job_of(s);
      store.want_lead(job);
      if (!store.leads(job)) {
        s.led = false;
        const std::string leader = store.leader(job);
        s.reason = leader.empty() ? "waiting for a node to lead it" : "led by node " + leader;
        if (snap) {
          s.candidate_window.sample(now, snap->find(s.function, s.alias, s.plan.to));
          s.stable_window.sample(now, snap->find(s.function, s.alias, s.stable));
          fleet_figures(s);
        }
        continue;
      }
      if (!store.up()) {
        s.reason = "holding: the state store is unavailable";
        continue;
      }
      if (!s.led) {
        // Taken over (or newly led): the persisted step goes on with a fresh window.
        s.led = true;
        fresh_windows(s, now, snap ? &*snap : nullptr);
        s.reason = "led by node " + store.node() + " from step " + std::to_string(s.step + 1) +
                   " with a fresh window";
        log_line("sluice: shift " + alias_name(s) + ": this node (" + store.node() +
                 ") leads it now, at step " + std::to_string(s.step + 1));
        continue;
      }
    }
    // Error boundary: an exception judging one shift ends that shift (fail_safe), never the
    // process, and the other shifts are still judged.
    try {
      if (snap_error) std::rethrow_exception(snap_error);
      if (tick_one(s, now, snap ? &*snap : nullptr)) {
        changed = true;
        mark(s);
      }
    } catch (...) {
      fail_safe(s, snap_error ? "reading the live figures" : "judging it",
                std::current_exception());
    }
  }
  if (changed || (persist_again_ && !persisting_ && store.up())) {
    persist_again_ = false;
    try {
      persist();
    } catch (...) {
      log_line("sluice: shift: cannot save state: " + what_of(std::current_exception()));
    }
  }
}

bool ShiftManager::tick_one(Shift& s, uint64_t now, const observe::Snapshot* snap) {
  control::TrafficMap expected = step_map(s, s.step);
  control::TrafficMap actual = current_map(s.function, s.alias);
  if (actual != expected && fleet()) {
    // In a fleet the alias's map and the shift record are two documents. A leader that died (or
    // whose write timed out) between the two leaves a map the record does not explain yet: one
    // this shift itself would set. Reconcile instead of calling it an outside change.
    if (s.step > 0 && actual == step_map(s, s.step - 1)) {
      std::string err;
      if (apply(s, expected, &err)) {
        s.reason = "set step " + std::to_string(s.step + 1) + "'s map again (its write was lost)";
        log_line("sluice: shift " + alias_name(s) + ": " + s.reason);
        return false;
      }
    } else if (s.step + 1 < s.plan.steps.size() && actual == step_map(s, s.step + 1)) {
      StepRecord& r = s.steps.back();
      r.ended = control::now_rfc3339();
      r.outcome = "passed";
      r.reason = "the previous leader set step " + std::to_string(s.step + 2) +
                 " before it could record it";
      begin_step(s, s.step + 1, now, snap);
      s.reason = r.reason;
      audit(s, "advance", "shift", expected, actual, s.reason);
      return true;
    } else if (actual == with_idle_others(s, {{s.plan.to, 100.0}})) {
      finish(s, "promoted", "the previous leader promoted it before it could record it", "shift");
      return true;
    } else if (actual == s.before) {
      finish(s, "rolled_back",
             "the alias is back on its pre-shift map (a rollback the previous leader could not "
             "record, or a first step whose write was lost)",
             "shift");
      return true;
    }
  }
  if (actual != expected) {
    finish(s, "interrupted",
           "the alias's traffic was changed outside the shift (now " +
               control::traffic_text(actual) + ", expected " + control::traffic_text(expected) +
               "); the shift stopped and left it as it is",
           "shift");
    return true;
  }
  const observe::SeriesSnapshot* cs = snap ? snap->find(s.function, s.alias, s.plan.to) : nullptr;
  const observe::SeriesSnapshot* ss = snap ? snap->find(s.function, s.alias, s.stable) : nullptr;
  s.last_candidate = s.candidate_window.sample(now, cs);
  s.last_stable = s.stable_window.sample(now, ss);
  if (fleet()) fleet_figures(s);  // the sum over the fleet's live nodes
  if (!s.steps.empty()) {
    s.steps.back().candidate = s.last_candidate;
    s.steps.back().stable = s.last_stable;
  }
  Observation o;
  o.step = s.step;
  o.step_started_ms = s.step_started_ms;
  o.now_ms = now;
  o.candidate = s.last_candidate;
  if (ss || s.last_stable.requests > 0) o.stable = s.last_stable;
  o.cannot_serve_why = cannot_serve(s);
  o.candidate_can_serve = o.cannot_serve_why.empty();
  Decision d = judge(s.plan, o);
  s.notes = d.notes;
  switch (d.verdict) {
    case Verdict::kHold:
      s.reason = d.reason;
      return false;
    case Verdict::kRollback:
      finish(s, "rolled_back", d.reason, "shift");
      return true;
    case Verdict::kPromote:
      s.steps.back().reason = d.reason;
      finish(s, "promoted", d.reason, "shift");
      return true;
    case Verdict::kAdvance:
      break;
  }
  StepRecord& r = s.steps.back();
  r.ended = control::now_rfc3339();
  r.outcome = "passed";
  r.reason = d.reason;
  control::TrafficMap old_map = step_map(s, s.step);
  size_t next = s.step + 1;
  Figures cand = s.last_candidate, stable = s.last_stable;
  begin_step(s, next, now, snap);
  std::string err;
  control::TrafficMap new_map = step_map(s, next);
  if (!apply(s, new_map, &err)) {
    s.steps.back().outcome = "running";
    finish(s, "rolled_back", "cannot set step " + std::to_string(next + 1) + ": " + err, "shift");
    return true;
  }
  s.reason = "step " + std::to_string(next + 1) + " started";
  Figures keep_c = s.last_candidate, keep_s = s.last_stable;
  s.last_candidate = cand;  // the audit line carries the figures that decided
  s.last_stable = stable;
  audit(s, "advance", "shift", old_map, new_map, d.reason);
  s.last_candidate = keep_c;
  s.last_stable = keep_s;
  return true;
}

void ShiftManager::check_file_shifts() {
  std::shared_ptr<const routing::RoutingTable> table = control_.table();
  if (!table || table == seen_table_) return;  // safe: seen_table_ keeps its address taken
  seen_table_ = std::move(table);
  ++table_generation_;
  std::shared_ptr<const routing::RoutingTable> keep = seen_table_;
  for (const config::FunctionSpec& fn : keep->config().functions) {
    for (const config::AliasSpec& al : fn.aliases) {
      if (al.shift_json.empty()) continue;
      json body = json::parse(al.shift_json, nullptr, false);
      PlanError perr;
      std::optional<Plan> plan = parse_plan(body, &perr);
      if (!plan) continue;  // the loader refused such a file already
      auto it = shifts_.find({fn.name, al.name});
      if (it != shifts_.end() && (active(it->second) || it->second.plan.to == plan->to)) continue;
      control::TrafficMap now_map = control::traffic_of(al);
      if (now_map.size() == 1 && now_map[0].first == plan->to) continue;  // already all there
      control::ApiResult r;
      try {  // error boundary: one alias's failure does not stop the others
        r = begin(fn.name, al.name, body, "file");
      } catch (...) {
        r = control::api_error(500,
                               "the shift engine failed: " + what_of(std::current_exception()));
        auto started = shifts_.find({fn.name, al.name});
        if (started != shifts_.end() && active(started->second))
          fail_safe(started->second, "starting it from the config file", std::current_exception());
      }
      if (r.status < 200 || r.status > 299)
        log_line("sluice: shift " + fn.name + ":" + al.name +
                 " from the config file not started: " +
                 r.body.value("error", "HTTP " + std::to_string(r.status)));
    }
  }
}

void ShiftManager::load_and_resume(uint64_t now) {
  const control::Document stored_doc = control_.store().get(control::kShiftsDoc);
  shifts_version_ = stored_doc.version;
  if (stored_doc.version == 0) return;  // no shift has run yet
  const std::string& path = stored_doc.origin;
  const json& doc = stored_doc.value;
  if (!stored_doc.unreadable.empty() || !doc.is_object()) {
    log_line("sluice: shift: " + path + " does not parse; shifts in it are ignored");
    return;
  }
  const json shifts = doc.contains("shifts") && doc["shifts"].is_array() ? doc["shifts"] : json();
  for (const json& j : shifts) {
    Shift s;
    bool readable = false;
    try {  // a hand-edited file may hold any type anywhere: reading it must not throw
      readable = from_json(j, s);
    } catch (...) {
      log_line("sluice: shift: " + what_of(std::current_exception()));
    }
    if (!readable) {
      log_line("sluice: shift: ignoring an unreadable entry in " + path);
      continue;
    }
    Key key{s.function, s.alias};
    Shift& stored = shifts_[key] = std::move(s);
    if (stored.state != "running") continue;
    if (fleet()) {
      // The node that leads it (maybe this one, once it takes the lead) goes on with it.
      std::optional<observe::Snapshot> snap = snapshot(now);
      fresh_windows(stored, now, snap ? &*snap : nullptr);
      continue;
    }
    stored.step_started_ms = now;
    stored.candidate_window = SeriesWindow(snapshot_span_ms());
    stored.stable_window = SeriesWindow(snapshot_span_ms());
    std::optional<observe::Snapshot> snap = snapshot(now);
    stored.candidate_window.reset(
        now, snap ? snap->find(stored.function, stored.alias, stored.plan.to) : nullptr);
    stored.stable_window.reset(
        now, snap ? snap->find(stored.function, stored.alias, stored.stable) : nullptr);
    if (!find_alias(control_.table()->config(), stored.function, stored.alias)) {
      finish(stored, "interrupted", "alias " + alias_name(stored) + " no longer exists", "shift");
      continue;
    }
    std::string why = cannot_serve(stored);
    if (!why.empty()) {
      finish(stored, "rolled_back", "after restart the candidate cannot serve: " + why, "shift");
      continue;
    }
    control::TrafficMap expected = step_map(stored, stored.step);
    control::TrafficMap actual = current_map(stored.function, stored.alias);
    if (actual != expected) {
      finish(stored, "interrupted",
             "after restart the alias's traffic is " + control::traffic_text(actual) +
                 ", not the shift's step map " + control::traffic_text(expected) +
                 " (the config file changed it)",
             "shift");
      continue;
    }
    if (!stored.steps.empty() && stored.steps.back().outcome == "running")
      stored.steps.back().started = control::now_rfc3339();
    stored.reason =
        "resumed after restart at step " + std::to_string(stored.step + 1) + " with a fresh window";
    audit(stored, "resume", "shift", actual, actual, stored.reason);
  }
  if (!fleet()) persist();
}

}  // namespace sluice::control
