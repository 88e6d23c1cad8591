// The control plane: reloads, alias changes, rollbacks, publishes, status (see control.h).
#include "control/control.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "config/loader.h"
#include "config/traffic.h"
#include "config/values.h"
#include "control/etcd_store.h"
#include "control/local_store.h"
#include "control/memory_store.h"
#include "control/tls.h"
#include "observe/summary.h"

namespace sluice::control {

void log_line(const std::string& s) {
  std::fprintf(stderr, "%s\n", s.c_str());
  std::fflush(stderr);
}

namespace {

using nlohmann::json;

// "a string", "an array", ... for messages about a JSON value of the wrong type.
std::string json_type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    default:
      return "a number";
  }
}

const config::AliasSpec* find_alias(const config::Config& cfg, const std::string& f,
                                    const std::string& a) {
  for (const config::FunctionSpec& fn : cfg.functions)
    if (fn.name == f)
      for (const config::AliasSpec& al : fn.aliases)
        if (al.name == a) return &al;
  return nullptr;
}

std::vector<std::string> listen_texts(const config::Config& c) {
  std::vector<std::string> out;
  for (const config::ListenSpec& l : c.listen) out.push_back(l.address.text);
  return out;
}

// Keys a running process cannot adopt, where `running` (the config it started with) and `file`
// differ. Everything else applies on reload: routing, functions, aliases, [limits] and
// [upstream] (the workers take them from each snapshot), strict, resolve_interval.
std::vector<std::string> restart_only_changes(const config::Config& running,
                                              const config::Config& file) {
  std::vector<std::string> out;
  if (running.workers != file.workers) out.push_back("workers");
  if (listen_texts(running) != listen_texts(file)) out.push_back("[listen] address");
  if (running.admin.address.text != file.admin.address.text) out.push_back("[admin] address");
  if (running.admin.token_file != file.admin.token_file) out.push_back("[admin] token_file");
  if (running.admin.read_token_file != file.admin.read_token_file)
    out.push_back("[admin] read_token_file");
  if (running.state_dir != file.state_dir) out.push_back("[state] dir");
  if (!(running.store == file.store)) out.push_back("[store]");
  if (running.log.access != file.log.access) out.push_back("[log] access");
  return out;
}

// The etcd store of a config with [store] kind = "etcd"; nullopt with `errors` when its TLS
// files do not make a client context.
std::optional<EtcdStoreOptions> etcd_options(const config::Config& c,
                                             std::vector<std::string>* errors) {
  EtcdStoreOptions o;
  bool https = false;
  for (const std::string& e : c.store.endpoints) https = https || e.rfind("https://", 0) == 0;
  if (https) {
    net::ClientOptions tls;
    tls.ca = c.store.tls_ca;
    tls.cert = c.store.tls_cert;
    tls.key = c.store.tls_key;
    tls.alpn = {};  // the gateway's HTTP/1.1, without ALPN (etcd's server lists h2 only)
    net::ClientBuild built = net::build_client_context(tls, net::unix_now_s());
    for (const net::TlsProblem& p : built.errors) errors->push_back("[store] tls: " + p.message);
    if (!built.context) return std::nullopt;
    o.tls = built.context;
  }
  o.endpoints = c.store.endpoints;
  o.prefix = c.store.prefix;
  o.node = c.store.node;
  if (o.node.empty()) {
    char host[256] = "sluice";
    if (gethostname(host, sizeof host) != 0) std::snprintf(host, sizeof host, "sluice");
    host[sizeof host - 1] = '\0';
    o.node = std::string(host) + "@" + c.admin.address.text;
  }
  o.timeout_ms = c.store.timeout_ms;
  o.lease_ttl_ms = c.store.lease_ttl_ms;
  o.username = c.store.username;
  o.password_file = c.store.password_file;
  if (!c.state_dir.empty()) o.snapshot_path = c.state_dir + "/etcd-snapshot.json";
  return o;
}

// The address a host name resolved to, without port: "10.0.0.5", "::1".
std::string host_text(const routing::ResolvedHost& h) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (h.addr.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&h.addr)->sin_addr, ip, sizeof ip);
  else if (h.addr.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&h.addr)->sin6_addr, ip, sizeof ip);
  return ip;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// What an alias change or a rollback answers once committed.
json alias_answer(const std::string& f, const std::string& a, const TrafficMap& old_map,
                  const TrafficMap& new_map, size_t history_depth) {
  return {{"function", f},
          {"alias", a},
          {"old", traffic_json(old_map)},
          {"new", traffic_json(new_map)},
          {"history_depth", history_depth}};
}

// A mutator's continuation after its commit: `answer` once committed, else the refusal.
Control::ApiDone when_committed(json answer, Control::ApiDone done) {
  return [answer = std::move(answer), done = std::move(done)](ApiResult c) {
    done(c.status == 200 ? ApiResult{200, answer} : std::move(c));
  };
}

}  // namespace

ApiResult api_error(int status, std::string message, std::string field) {
  json body = {{"error", std::move(message)}};
  if (!field.empty()) body["field"] = std::move(field);
  return {status, std::move(body)};
}

ApiResult store_refusal(const CommitResult& r, const Subject& subject) {
  ApiResult out;
  switch (r.status) {
    case CommitResult::Status::kCommitted:
      return {200, json::object()};
    case CommitResult::Status::kConflict:
      out = api_error(409,
                      subject.text() + " was not changed: another writer changed the state since " +
                          "this sluice read it (" + r.error + "); read it again and retry",
                      subject.field);
      out.body["code"] = "conflict";
      break;
    case CommitResult::Status::kUnavailable:
      out = api_error(503,
                      subject.text() + " was not changed: the state store is unavailable (" +
                          r.error + "); retry when it is back",
                      subject.field);
      out.body["code"] = "store-unavailable";
      break;
    case CommitResult::Status::kFailed:
      return api_error(500, "cannot save state: " + r.error);
  }
  if (!subject.name.empty()) out.body[subject.field] = subject.name;
  return out;
}

Control::Control(std::string config_path) : path_(std::move(config_path)) {
  std::filesystem::path p(path_);
  dir_ = p.parent_path().string();
  if (dir_.empty()) dir_ = ".";
  base_ = p.filename().string();
}

Control::Control(std::string source_name, std::string config_text)
    : path_(std::move(source_name)), text_(std::move(config_text)) {}

Control::~Control() = default;

bool Control::read_config_text(std::string& text, std::string* error) const {
  if (text_) {
    text = *text_;
    return true;
  }
  std::ifstream in(path_, std::ios::binary);
  if (!in) {
    *error = path_ + ": cannot read the file: " + std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  text = ss.str();
  return true;
}

Control::Built Control::build(const config::Config& file, State& next,
                              const routing::HostAddresses& hosts) const {
  Built b;
  std::vector<config::Diagnostic> diags;
  config::Config cfg = compose(file, next, &b.dropped);
  b.table = routing::RoutingTable::build(std::move(cfg), &diags, hosts);
  for (const auto& d : diags) b.errors.push_back(d.to_string());
  if (!b.table && b.errors.empty()) b.errors.push_back("cannot build the routing table");
  return b;
}

std::shared_ptr<const routing::RoutingTable> Control::init() {
  std::string text, err;
  if (!read_config_text(text, &err)) {
    log_line(err);
    return nullptr;
  }
  config::LoadResult r = config::load_string(text, path_);
  for (const auto& w : r.warnings) log_line("warning: " + w.to_string());
  for (const auto& e : r.errors) log_line(e.to_string());
  if (!r.config) {
    log_line("sluice: " + path_ + ": " + std::to_string(r.errors.size()) +
             " error(s); configuration not loaded");
    return nullptr;
  }
  if (!store_ && r.config->store.kind == config::StoreSpec::Kind::kEtcd) {
    std::vector<std::string> errors;
    std::optional<EtcdStoreOptions> o = etcd_options(*r.config, &errors);
    for (const std::string& e : errors) log_line("sluice: " + path_ + ": " + e);
    if (!o) return nullptr;
    store_ = std::make_unique<EtcdStore>(std::move(*o));
  } else if (!store_) {
    if (r.config->state_dir.empty())
      store_ = std::make_unique<MemoryStore>();
    else
      store_ = std::make_unique<LocalStore>(r.config->state_dir);
  }
  std::vector<std::string> notes;
  const bool store_loaded = store_->load(&err, &notes);
  for (const std::string& n : notes) log_line("sluice: audit: " + n);
  if (!store_loaded) {
    log_line("sluice: state: " + err);
    return nullptr;
  }
  State loaded;
  const Document doc = store_->get(kStateDoc);
  if (!doc.unreadable.empty() || (!doc.value.is_null() && !from_json(doc.value, loaded, &err))) {
    log_line("sluice: state: " + doc.origin + ": " +
             (doc.unreadable.empty() ? err : doc.unreadable));
    return nullptr;
  }
  state_version_ = doc.version;
  State next = loaded;
  std::vector<config::Diagnostic> diags;
  check_immutable(*r.config, next, &diags);
  for (const auto& d : diags) log_line(d.to_string());
  if (!diags.empty()) {
    log_line("sluice: " + path_ + ": configuration not loaded");
    return nullptr;
  }
  // Endpoint names resolve once here, before anything serves (a blocking lookup harms no one
  // yet); a name that does not resolve stops the start. From here on, off the loop.
  State probe = next;
  routing::HostAddresses hosts =
      resolve_now(routing::host_names(compose(*r.config, probe, nullptr)));
  Built b = build(*r.config, next, hosts);
  for (const auto& e : b.errors) log_line(e);
  if (!b.table) return nullptr;
  // From the table's config: versions published through the API are in it, not in the file.
  const std::string tls_stamp = tls_files_stamp(b.table->config());
  TlsBuild tls = build_tls(b.table->config(), ticket_keys_, net::unix_now_s());
  for (const auto& w : tls.warnings) log_line("warning: " + w.to_string());
  for (const auto& e : tls.errors) log_line(e.to_string());
  if (!tls.tls) {
    log_line("sluice: " + path_ + ": configuration not loaded");
    return nullptr;
  }
  std::vector<AuditEntry> audits;
  for (const DroppedOverride& d : b.dropped) {
    log_line("sluice: alias " + d.function + ":" + d.alias + ": the file wins over the saved " +
             "override (" + d.why + ")");
    audits.push_back(
        {"file", "file", d.function, d.alias, traffic_json(d.old_map), traffic_json(d.new_map)});
  }
  if (!(next == loaded) || !audits.empty()) {
    // Before the loop runs, every store answers before commit() returns (store.h).
    std::optional<CommitResult> done;
    store_->commit({{{kStateDoc, to_json(next), state_version_}}, audits},
                   [&done](CommitResult c) { done = std::move(c); });
    if (done && done->status == CommitResult::Status::kConflict && store_->shared() &&
        init_attempts_++ < 5) {
      // Another node of the fleet wrote the state first (several starting at once): start
      // again from what it wrote.
      log_line("sluice: state: " + done->error + "; reading it again");
      return init();
    }
    if (!done || !done->committed()) {
      log_line("sluice: state: " + (done ? done->error : "the store did not answer"));
      return nullptr;
    }
    if (!done->audit_lag.empty())
      log_line("sluice: audit: " + done->audit_lag + " (retried with the next change)");
    state_version_ = done->versions[kStateDoc];
  }
  if (!store_->durable()) log_line("sluice: no [state] dir: API changes are kept in memory only");
  store_->watch(kStateDoc, [this](const Document& changed) { apply_stored(changed); });
  file_ = std::move(*r.config);
  state_ = std::move(next);
  current_ = b.table;
  tls_ = std::move(tls.tls);
  tls_stamp_ = tls_stamp;
  if (publish_tls_) publish_tls_(tls_);
  adopt_hosts(std::move(hosts));
  last_seen_hash_ = fnv_hex(text);
  started_ = file_;
  last_reload_ = {{"time", now_rfc3339()},
                  {"cause", "start"},
                  {"result", "ok"},
                  {"errors", json::array()},
                  {"needs_restart", json::array()}};
  return current_;
}

int Control::start_watch(uv_loop_t* loop, uint64_t debounce_ms) {
  if (text_) return 0;  // nothing to watch
  debounce_ms_ = debounce_ms;
  watch_ = new uv_fs_event_t{};
  debounce_ = new uv_timer_t{};
  int rc = uv_timer_init(loop, debounce_);
  if (rc != 0) {
    delete debounce_;
    debounce_ = nullptr;
    delete watch_;
    watch_ = nullptr;
    return rc;
  }
  debounce_->data = this;
  rc = uv_fs_event_init(loop, watch_);
  if (rc == 0) {
    watch_->data = this;
    rc = uv_fs_event_start(watch_, &Control::on_fs_event, dir_.c_str(), 0);
  }
  if (rc != 0) log_line(std::string("sluice: cannot watch ") + dir_ + ": " + uv_err_name(rc));
  return rc;
}

void Control::close() {
  auto free_handle = [](uv_handle_t* h) {
    if (h->type == UV_TIMER)
      delete reinterpret_cast<uv_timer_t*>(h);
    else
      delete reinterpret_cast<uv_fs_event_t*>(h);
  };
  if (watch_) {
    if (watch_->loop)
      uv_close(reinterpret_cast<uv_handle_t*>(watch_), free_handle);
    else
      delete watch_;
    watch_ = nullptr;
  }
  if (debounce_) {
    uv_close(reinterpret_cast<uv_handle_t*>(debounce_), free_handle);
    debounce_ = nullptr;
  }
  if (resolve_timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(resolve_timer_), free_handle);
    resolve_timer_ = nullptr;
  }
  if (resolver_) resolver_->close();  // answers still to come are dropped
  async_resolution_ = false;
}

void Control::on_fs_event(uv_fs_event_t* h, const char* filename, int, int status) {
  auto* self = static_cast<Control*>(h->data);
  if (status < 0 || !self->debounce_) return;
  if (filename && self->base_ != filename && std::string_view(filename) != "..data" &&
      !names_tls_file(self->current_->config(), self->dir_, filename))
    return;
  uv_timer_start(self->debounce_, &Control::on_debounce, self->debounce_ms_, 0);
}

void Control::on_debounce(uv_timer_t* t) {
  auto* self = static_cast<Control*>(t->data);
  std::string text, err;
  try {                                               // a libuv callback: nothing may escape it
    if (!self->read_config_text(text, &err)) return;  // mid-swap; the next event retries
    if (fnv_hex(text) == self->last_seen_hash_ &&
        tls_files_stamp(self->current_->config()) == self->tls_stamp_)
      return;
  } catch (const std::exception& e) {
    log_line(std::string("sluice: config watch: ") + e.what());
    return;
  }
  self->reload("watch");
}

// The public mutators are error boundaries: they run on the control loop from the admin API,
// signals, the file watch and the shift engine's timer, and an exception escaping any of them
// would end the process (data plane included). A failure answers 500 and changes nothing
// the caller can see beyond what was already durable.
void Control::guard(const std::string& what, ApiDone done, const std::function<void(ApiDone)>& body,
                    const std::string& field) noexcept {
  struct Once {  // answers once, whoever asks first: the body, its commit, or this boundary
    ApiDone done;
    bool answered = false;
    void operator()(ApiResult r) {
      if (std::exchange(answered, true)) return;
      if (done) done(std::move(r));
    }
  };
  std::shared_ptr<Once> once;
  auto fail = [&](ApiResult r) {
    if (once)
      (*once)(std::move(r));
    else if (done)
      done(std::move(r));
  };
  try {
    once = std::make_shared<Once>();
    once->done = std::move(done);
    body([once](ApiResult r) { (*once)(std::move(r)); });
    return;
  } catch (const std::exception& e) {
    try {
      log_line("sluice: " + what + " failed: " + e.what());
      fail(api_error(500, what + " failed: " + e.what(), field));
      return;
    } catch (...) {
    }
  } catch (...) {
  }
  try {  // out of memory, or `done` itself threw: a bare 500 if nobody answered yet
    ApiResult r;
    r.status = 500;
    fail(std::move(r));
  } catch (...) {
  }
}

ApiResult Control::answer_now(const std::function<void(ApiDone)>& start) {
  // Shared with `done`, which may run after this returns (a store that answers later).
  auto result = std::make_shared<std::optional<ApiResult>>();
  start([result](ApiResult r) { *result = std::move(r); });
  if (*result) return **result;
  return {202, {{"result", "committing"}}};
}

ApiResult Control::reload(const std::string& cause) {
  // Shared with the callback, which may run after this returns (names still resolving).
  auto result = std::make_shared<std::optional<ApiResult>>();
  reload(cause, [result](ApiResult r) { *result = std::move(r); });
  if (*result) return **result;
  return {202, {{"result", "resolving"}, {"cause", cause}}};
}

void Control::reload(const std::string& cause, ReloadDone done) {
  if (reload_running_) {  // one at a time, in order: the queued one reads the file afresh
    if (!queued_reload_) queued_reload_ = QueuedReload{cause, {}};
    queued_reload_->waiters.push_back(std::move(done));
    return;
  }
  std::vector<ReloadDone> waiters;
  waiters.push_back(std::move(done));
  start_reload(cause, std::move(waiters));
}

void Control::set_alias(const std::string& f, const std::string& a, const json& body,
                        const std::string& actor, const std::string& cause, ApiDone done) {
  guard("alias change", std::move(done), [&](ApiDone d) {
    if (std::optional<ApiResult> now = set_alias_impl(f, a, body, actor, cause, d)) d(*now);
  });
}

ApiResult Control::set_alias(const std::string& f, const std::string& a, const json& body,
                             const std::string& actor, const std::string& cause) {
  return answer_now([&](ApiDone d) { set_alias(f, a, body, actor, cause, std::move(d)); });
}

void Control::rollback(const std::string& f, const std::string& a, const std::string& actor,
                       ApiDone done) {
  guard("rollback", std::move(done), [&](ApiDone d) {
    if (std::optional<ApiResult> now = rollback_impl(f, a, actor, d)) d(*now);
  });
}

ApiResult Control::rollback(const std::string& f, const std::string& a, const std::string& actor) {
  return answer_now([&](ApiDone d) { rollback(f, a, actor, std::move(d)); });
}

void Control::set_endpoint_state(const std::string& f, const std::string& v,
                                 const std::string& endpoint, const json& body,
                                 const std::string& actor, ApiDone done) {
  guard("endpoint state", std::move(done), [&](ApiDone d) {
    if (std::optional<ApiResult> now = set_endpoint_state_impl(f, v, endpoint, body, actor, d))
      d(*now);
  });
}

ApiResult Control::set_endpoint_state(const std::string& f, const std::string& v,
                                      const std::string& endpoint, const json& body,
                                      const std::string& actor) {
  return answer_now(
      [&](ApiDone d) { set_endpoint_state(f, v, endpoint, body, actor, std::move(d)); });
}

std::optional<ApiResult> Control::set_endpoint_state_impl(
    const std::string& f, const std::string& v, const std::string& endpoint, const json& body,
    const std::string& actor, const ApiDone& done) {
  if (!health_) return api_error(503, "endpoint states are not available here", "state");
  if (!body.is_object()) return api_error(400, "expected a JSON object {\"state\": ...}", "body");
  for (auto it = body.begin(); it != body.end(); ++it)
    if (it.key() != "state") return api_error(400, "unknown field \"" + it.key() + "\"", it.key());
  const json* s = body.contains("state") ? &body["state"] : nullptr;
  routing::AdminState wanted;
  if (!s || !s->is_string() || !routing::parse_admin_state(s->get<std::string>(), &wanted))
    return api_error(400, "state must be \"drain\", \"maint\" or \"ready\"", "state");
  const routing::Function* fn = current_->find_function(f);
  if (!fn) return api_error(404, "no function named " + f, "function");
  const routing::Version* ver = fn->find_version(v);
  if (!ver) return api_error(404, "function " + f + " has no version " + v, "version");
  const bool listed =
      std::any_of(ver->endpoints.begin(), ver->endpoints.end(),
                  [&](const routing::Endpoint& e) { return e.address == endpoint; });
  if (!listed) {
    std::string names;
    for (const routing::Endpoint& e : ver->endpoints)
      names += (names.empty() ? "" : ", ") + e.address;
    return api_error(
        404, "version " + ver->label + " has no endpoint " + endpoint + " (it has: " + names + ")",
        "endpoint");
  }
  State next = state_;
  auto& states = next.functions[f].endpoint_states;
  auto& of_version = states[ver->number];
  const std::string old = of_version.count(endpoint) ? of_version[endpoint] : "ready";
  const std::string now = routing::admin_state_name(wanted);
  if (wanted == routing::AdminState::kReady)
    of_version.erase(endpoint);
  else
    of_version[endpoint] = now;
  if (of_version.empty()) states.erase(ver->number);
  json answer = {{"function", f},
                 {"version", ver->number},
                 {"endpoint", endpoint},
                 {"old", old},
                 {"new", now}};
  AuditEntry audit{actor, "api", f, "", old, now};
  audit.extra = {{"event", "endpoint"}, {"version", ver->number}, {"endpoint", endpoint}};
  commit(std::move(next), current_, {audit}, {"endpoint", ver->label + " " + endpoint},
         when_committed(answer, done));
  return std::nullopt;
}

void Control::apply_endpoint_states() {
  if (!health_ || !current_) return;
  for (const auto& v : current_->versions()) {
    const std::map<std::string, std::string>* states = nullptr;
    auto fit = state_.functions.find(v->function);
    if (fit != state_.functions.end()) {
      auto vit = fit->second.endpoint_states.find(v->number);
      if (vit != fit->second.endpoint_states.end()) states = &vit->second;
    }
    for (const routing::Endpoint& ep : v->endpoints) {
      routing::AdminState s = routing::AdminState::kReady;
      if (states) {
        auto it = states->find(ep.address);
        if (it != states->end()) routing::parse_admin_state(it->second, &s);
      }
      health_->get(v->label, ep.resolved).admin.store(uint8_t(s), std::memory_order_relaxed);
    }
  }
}

void Control::publish_version(const std::string& f, const std::string& actor, ApiDone done) {
  guard("publish", std::move(done), [&](ApiDone d) {
    if (std::optional<ApiResult> now = publish_version_impl(f, actor, d)) d(*now);
  });
}

ApiResult Control::publish_version(const std::string& f, const std::string& actor) {
  return answer_now([&](ApiDone d) { publish_version(f, actor, std::move(d)); });
}

void Control::start_reload(const std::string& cause, std::vector<ReloadDone> waiters) {
  reload_running_ = true;
  const uint64_t start_ns = uv_hrtime();
  std::vector<std::string> errors;
  std::optional<config::Config> cfg;
  std::vector<std::string> names;
  try {
    std::string text, err;
    if (!read_config_text(text, &err)) {
      errors.push_back(err);
    } else {
      last_seen_hash_ = fnv_hex(text);
      config::LoadResult r = config::load_string(text, path_);
      for (const auto& w : r.warnings) log_line("warning: " + w.to_string());
      for (const auto& e : r.errors) errors.push_back(e.to_string());
      if (r.config) {
        // Every name the new file's endpoints (and the published versions) use, re-resolved.
        State probe = state_;
        names = routing::host_names(compose(*r.config, probe, nullptr));
        cfg = std::move(r.config);
      }
    }
  } catch (const std::exception& e) {
    errors.push_back(std::string("reload failed: ") + e.what());
  }
  if (!errors.empty() || names.empty() || !async_resolution_) {
    routing::HostAddresses resolved;
    if (errors.empty() && !names.empty()) resolved = resolve_now(names);
    finish_reload(cause, std::move(cfg), std::move(resolved), std::move(errors), start_ns,
                  std::move(waiters));
    return;
  }
  // Off the loop: alias changes, status and the data plane carry on meanwhile.
  auto shared_cfg = std::make_shared<std::optional<config::Config>>(std::move(cfg));
  auto shared_waiters = std::make_shared<std::vector<ReloadDone>>(std::move(waiters));
  resolver_->resolve(
      names, [this, cause, shared_cfg, shared_waiters, start_ns](routing::HostAddresses resolved) {
        finish_reload(cause, std::move(*shared_cfg), std::move(resolved), {}, start_ns,
                      std::move(*shared_waiters));
      });
}

routing::HostAddresses Control::resolve_now(const std::vector<std::string>& names) {
  if (resolver_) return resolver_->resolve_now(names);
  routing::HostAddresses out;
  for (const std::string& n : names) out[n] = routing::resolve_blocking(n);
  return out;
}

routing::HostAddresses Control::merge_hosts(const routing::HostAddresses& fresh) {
  routing::HostAddresses out = hosts_;
  for (const auto& [name, r] : fresh) {
    auto known = hosts_.find(name);
    const bool had = known != hosts_.end() && known->second.ok();
    if (r.ok()) {
      if (had && std::memcmp(&known->second.addr, &r.addr, sizeof r.addr) != 0)
        log_line("sluice: endpoint host " + name + " now resolves to " + host_text(r) + " (was " +
                 host_text(known->second) + ")");
      out[name] = r;
      resolve_failing_.erase(name);
    } else if (had) {
      // A lookup failing for a while must not take a working endpoint away.
      if (resolve_failing_.insert(name).second)
        log_line("sluice: cannot re-resolve endpoint host " + name + ": " + r.error +
                 "; keeping its last address " + host_text(known->second));
    } else {
      out[name] = r;  // never resolved: the build reports it at the endpoint
    }
  }
  return out;
}

void Control::finish_reload(const std::string& cause, std::optional<config::Config> loaded,
                            routing::HostAddresses resolved, std::vector<std::string> errors,
                            uint64_t start_ns, std::vector<ReloadDone> waiters) noexcept {
  auto finished = [this, waiters = std::move(waiters)](ApiResult result) {
    reload_running_ = false;
    for (const ReloadDone& w : waiters) {
      try {
        if (w) w(result);
      } catch (...) {  // a waiter's own failure must not stop the others or the queue
      }
    }
    if (queued_reload_) {
      QueuedReload next = std::move(*queued_reload_);
      queued_reload_.reset();
      start_reload(next.cause, std::move(next.waiters));
    }
  };
  guard(
      "reload", std::move(finished),
      [&](ApiDone done) {
        apply_reload(cause, std::move(loaded), resolved, std::move(errors), start_ns,
                     std::move(done));
      },
      "config");
}

void Control::apply_reload(const std::string& cause, std::optional<config::Config> loaded,
                           const routing::HostAddresses& resolved, std::vector<std::string> errors,
                           uint64_t start_ns, ApiDone done) {
  std::optional<config::Config> cfg;
  // The state as it is now: alias changes may have landed while the names resolved.
  State next = state_;
  Built b;
  TlsBuild tls;
  std::string tls_stamp;
  routing::HostAddresses hosts = merge_hosts(resolved);
  if (errors.empty() && loaded) {
    std::vector<config::Diagnostic> diags;
    check_immutable(*loaded, next, &diags);
    for (const auto& d : diags) errors.push_back(d.to_string());
    if (diags.empty()) {
      b = build(*loaded, next, hosts);
      errors.insert(errors.end(), b.errors.begin(), b.errors.end());
    }
    if (b.table) {
      // Certificates are read again on every reload: a rotated pair takes effect, a bad one is
      // refused like any bad config and the running contexts stay.
      tls_stamp = tls_files_stamp(b.table->config());
      tls = build_tls(b.table->config(), ticket_keys_, net::unix_now_s());
      for (const auto& w : tls.warnings) log_line("warning: " + w.to_string());
      for (const auto& e : tls.errors) errors.push_back(e.to_string());
      if (tls.tls) cfg = std::move(loaded);
    }
  }
  if (!errors.empty()) return done(conclude_reload(cause, std::move(errors), {}, 0, start_ns));
  // Aliases whose effective map the new file changes: history + audit (cause: file).
  std::vector<AuditEntry> audits;
  for (const config::FunctionSpec& fn : b.table->config().functions) {
    for (const config::AliasSpec& al : fn.aliases) {
      const config::AliasSpec* old = find_alias(current_->config(), fn.name, al.name);
      if (!old) continue;
      TrafficMap before = traffic_of(*old), after = traffic_of(al);
      if (before == after) continue;
      bool dropped = false;
      for (const DroppedOverride& d : b.dropped)
        dropped |= d.function == fn.name && d.alias == al.name;
      if (!dropped) next.functions[fn.name].aliases[al.name].push_history(before);
      audits.push_back(
          {"file", "file", fn.name, al.name, traffic_json(before), traffic_json(after)});
    }
  }
  const size_t changes = audits.size();
  // Shared: the continuation is copied into a std::function and may run after this returns.
  auto adopted = std::make_shared<std::pair<config::Config, routing::HostAddresses>>(
      std::move(*cfg), std::move(hosts));
  auto new_tls = std::make_shared<std::pair<std::shared_ptr<const net::TlsContexts>, std::string>>(
      std::move(tls.tls), std::move(tls_stamp));
  commit(std::move(next), b.table, std::move(audits), {"config", ""},
         [this, cause, start_ns, changes, adopted, new_tls, done](ApiResult c) {
           std::vector<std::string> errors, needs_restart;
           if (c.status != 200) {
             errors.push_back(c.body.value("error", "cannot save state"));
           } else {
             needs_restart = restart_only_changes(started_, adopted->first);
             tls_ = std::move(new_tls->first);
             tls_stamp_ = std::move(new_tls->second);
             if (publish_tls_) publish_tls_(tls_);
             file_ = std::move(adopted->first);
             adopt_hosts(std::move(adopted->second));
             rearm_resolve_timer();
           }
           done(conclude_reload(cause, std::move(errors), needs_restart, changes, start_ns));
         });
}

ApiResult Control::conclude_reload(const std::string& cause, std::vector<std::string> errors,
                                   const std::vector<std::string>& needs_restart, size_t changes,
                                   uint64_t start_ns) {
  // File read + validation + build + state write + publish.
  const double duration_ms = static_cast<double>(uv_hrtime() - start_ns) / 1e6;
  last_reload_ = {{"time", now_rfc3339()},
                  {"cause", cause},
                  {"result", errors.empty() ? "ok" : "error"},
                  {"errors", errors},
                  {"duration_ms", duration_ms}};
  // Against the config the process started with, so it stays listed until a restart (or until
  // the file is changed back), whatever reloads come in between.
  if (errors.empty()) {
    last_reload_["needs_restart"] = needs_restart;
    if (!needs_restart.empty()) last_reload_["note"] = "needs a restart: " + join(needs_restart);
  }
  if (!errors.empty()) {
    ++reloads_error_;
    for (const std::string& e : errors) log_line(e);
    log_line("sluice: reload (" + cause + ") rejected; the running configuration stays");
    ApiResult r = api_error(400, "reload rejected: " + errors.front(), "config");
    r.body["errors"] = errors;
    return r;
  }
  ++reloads_ok_;
  log_line("sluice: configuration reloaded (" + cause + ")" +
           (needs_restart.empty() ? ""
                                  : "; needs a restart: " + join(needs_restart) +
                                        " (the running process keeps its values)"));
  return {
      200,
      {{"result", "ok"}, {"cause", cause}, {"changes", changes}, {"needs_restart", needs_restart}}};
}

void Control::adopt_hosts(routing::HostAddresses hosts) {
  hosts_.clear();
  for (const std::string& name : routing::host_names(current_->config())) {
    auto it = hosts.find(name);
    if (it != hosts.end() && it->second.ok()) hosts_[name] = it->second;
  }
}

void Control::set_resolver(std::unique_ptr<Resolver> resolver) {
  if (resolver_) resolver_->close();
  resolver_ = std::move(resolver);
  async_resolution_ = resolver_ != nullptr;
}

int Control::start_resolving(uv_loop_t* loop) {
  if (!resolver_) set_resolver(std::make_unique<UvResolver>(loop));
  resolve_timer_ = new uv_timer_t{};
  int rc = uv_timer_init(loop, resolve_timer_);
  if (rc != 0) {
    delete resolve_timer_;
    resolve_timer_ = nullptr;
    return rc;
  }
  resolve_timer_->data = this;
  rearm_resolve_timer();
  return 0;
}

void Control::rearm_resolve_timer() {
  if (!resolve_timer_) return;
  const uint64_t every = file_.upstream.resolve_interval_ms;
  if (every == resolve_every_ms_ && uv_is_active(reinterpret_cast<uv_handle_t*>(resolve_timer_)))
    return;
  resolve_every_ms_ = every;
  uv_timer_stop(resolve_timer_);
  if (every > 0) uv_timer_start(resolve_timer_, &Control::on_resolve_timer, every, every);
}

void Control::on_resolve_timer(uv_timer_t* t) {
  static_cast<Control*>(t->data)->refresh_names();
}

void Control::refresh_names() {
  if (refresh_running_ || !async_resolution_) return;
  std::vector<std::string> names = routing::host_names(current_->config());
  if (names.empty()) return;
  refresh_running_ = true;
  resolver_->resolve(names, [this](routing::HostAddresses fresh) {
    refresh_running_ = false;
    try {  // runs from a libuv callback
      apply_refresh(fresh);
    } catch (const std::exception& e) {
      log_line(std::string("sluice: re-resolving endpoint hosts failed: ") + e.what());
    }
  });
}

void Control::apply_refresh(const routing::HostAddresses& fresh) {
  routing::HostAddresses merged = merge_hosts(fresh);
  bool changed = false;
  for (const auto& [name, h] : merged) {
    auto it = hosts_.find(name);
    if (h.ok() && (it == hosts_.end() || std::memcmp(&it->second.addr, &h.addr, sizeof h.addr)))
      changed = true;
  }
  if (!changed) return;
  State next = state_;
  Built b = build(file_, next, merged);
  if (!b.table) {
    for (const std::string& e : b.errors) log_line("sluice: re-resolution: " + e);
    return;
  }
  auto hosts = std::make_shared<routing::HostAddresses>(std::move(merged));
  commit(std::move(next), b.table, {}, {"config", ""}, [this, hosts](ApiResult c) {
    if (c.status == 200) adopt_hosts(std::move(*hosts));
  });
}

void Control::commit(State next, std::shared_ptr<const routing::RoutingTable> table,
                     std::vector<AuditEntry> audits, Subject subject, ApiDone then) {
  auto adopt = [this](State&& adopted, std::shared_ptr<const routing::RoutingTable> t) {
    state_ = std::move(adopted);
    current_ = t;
    apply_endpoint_states();
    if (publish_) publish_(std::move(t));
  };
  if (next == state_ && audits.empty()) {  // nothing to store: a new snapshot only
    adopt(std::move(next), std::move(table));
    return then({200, json::object()});
  }
  Change change;
  change.puts.push_back({kStateDoc, to_json(next), state_version_});
  change.audits = std::move(audits);
  // Shared: the store's callback is a copyable std::function and may run after this returns.
  auto pending = std::make_shared<std::pair<State, std::shared_ptr<const routing::RoutingTable>>>(
      std::move(next), std::move(table));
  store_->commit(std::move(change), [this, pending, adopt, subject = std::move(subject),
                                     then = std::move(then)](CommitResult r) {
    if (!r.committed()) {
      log_line("sluice: state: " + subject.text() + " not changed: " + r.error);
      return then(store_refusal(r, subject));
    }
    // The change is durable and its records are with it; the log may catch up later.
    if (!r.audit_lag.empty())
      log_line("sluice: audit: " + r.audit_lag +
               " (kept in the state, retried with the next change)");
    state_version_ = r.versions[kStateDoc];
    adopt(std::move(pending->first), std::move(pending->second));
    then({200, json::object()});
  });
}

void Control::apply_stored(const Document& doc) noexcept {
  try {
    State next;
    std::string err = doc.unreadable;
    if (err.empty() && !doc.value.is_null()) from_json(doc.value, next, &err);
    Built b;
    if (err.empty()) {
      b = build(file_, next, hosts_);
      if (!b.table) err = b.errors.front();
    }
    if (!err.empty()) {
      // Keep the version read before: this sluice's next write then conflicts instead of
      // overwriting a change it could not apply.
      log_line("sluice: state: another writer's change (version " + std::to_string(doc.version) +
               ") cannot be applied: " + err + "; the running state stays");
      return;
    }
    state_version_ = doc.version;
    state_ = std::move(next);
    current_ = b.table;
    apply_endpoint_states();
    if (publish_) publish_(std::move(b.table));
    log_line("sluice: state: applied another writer's change (version " +
             std::to_string(doc.version) + ")");
  } catch (const std::exception& e) {
    log_line(std::string("sluice: state: applying another writer's change failed: ") + e.what());
  } catch (...) {
  }
}

const config::FunctionSpec* Control::file_function(const std::string& name) const {
  for (const config::FunctionSpec& fn : current_->config().functions)
    if (fn.name == name) return &fn;
  return nullptr;
}

const config::AliasSpec* Control::file_alias(const std::string& f, const std::string& a) const {
  return find_alias(file_, f, a);
}

TrafficMap Control::effective(const std::string& f, const std::string& a) const {
  const config::AliasSpec* al = find_alias(current_->config(), f, a);
  return al ? traffic_of(*al) : TrafficMap{};
}

std::optional<ApiResult> Control::set_alias_impl(const std::string& f, const std::string& a,
                                                 const json& body, const std::string& actor,
                                                 const std::string& cause, const ApiDone& done) {
  const config::FunctionSpec* fn = file_function(f);
  if (!fn) return api_error(404, "no function named " + f, "function");
  const config::AliasSpec* file_al = file_alias(f, a);
  if (!file_al) return api_error(404, "function " + f + " has no alias named " + a, "alias");
  if (!body.is_object()) return api_error(400, "the body must be a JSON object", "body");
  for (auto it = body.begin(); it != body.end(); ++it)
    if (it.key() != "traffic")
      return api_error(400, "unknown field " + it.key() + " (expected only traffic)", it.key());
  if (!body.contains("traffic"))
    return api_error(400,
                     "the body has no traffic (expected {\"traffic\": {\"<version>\": <weight>}})",
                     "traffic");
  if (!body["traffic"].is_object())
    return api_error(400,
                     std::string("traffic must be an object of version -> weight, not ") +
                         json_type_name(body["traffic"]),
                     "traffic");
  // The same checks as the file loader's (config/traffic.h): a map the file would refuse is
  // refused here too, naming the API field instead of a file position.
  std::vector<config::TrafficEntry> entries;
  for (auto it = body["traffic"].begin(); it != body["traffic"].end(); ++it) {
    config::TrafficEntry e;
    e.version = it.key();
    const json& v = it.value();
    if (v.is_number()) {
      e.weight = v.get<double>();
      if (v.is_number_float()) {
        std::ostringstream text;  // as the loader shows a TOML float: 1e13 -> "1e+13"
        text << *e.weight;
        e.weight_text = text.str();
      } else {
        e.weight_text = v.dump();
      }
    } else {
      e.type_name = json_type_name(v);
    }
    entries.push_back(std::move(e));
  }
  const std::vector<config::TrafficIssue> issues = config::check_traffic(*fn, f + ":" + a, entries);
  if (!issues.empty()) {
    const config::TrafficIssue& first = issues.front();
    return api_error(400, first.message,
                     first.at == config::TrafficIssue::At::kMap
                         ? "traffic"
                         : "traffic." + entries[first.index].version);
  }
  TrafficMap map;
  for (const config::TrafficEntry& e : entries) map.emplace_back(e.version, *e.weight);
  map = canonical(std::move(map));

  TrafficMap old = effective(f, a);
  State next = state_;
  AliasState& as = next.functions[f].aliases[a];
  if (map != old) as.push_history(old);
  as.override_traffic = map;
  as.override_file_hash = alias_file_hash(*file_al);
  Built b = build(file_, next, hosts_);
  if (!b.table) return api_error(400, b.errors.front(), "traffic");
  std::vector<AuditEntry> audits;
  if (map != old) audits.push_back({actor, cause, f, a, traffic_json(old), traffic_json(map)});
  size_t depth = as.history.size();
  commit(std::move(next), b.table, std::move(audits), {"alias", f + ":" + a},
         when_committed(alias_answer(f, a, old, map, depth), done));
  return std::nullopt;
}

std::optional<ApiResult> Control::rollback_impl(const std::string& f, const std::string& a,
                                                const std::string& actor, const ApiDone& done) {
  if (!file_function(f)) return api_error(404, "no function named " + f, "function");
  const config::AliasSpec* file_al = file_alias(f, a);
  if (!file_al) return api_error(404, "function " + f + " has no alias named " + a, "alias");
  State next = state_;
  AliasState& as = next.functions[f].aliases[a];
  if (as.history.empty())
    return api_error(409, "alias " + f + ":" + a + " has no earlier traffic map to roll back to",
                     "alias");
  TrafficMap old = effective(f, a);
  TrafficMap target = as.history.back();
  as.history.pop_back();
  as.override_traffic = target;
  as.override_file_hash = alias_file_hash(*file_al);
  Built b = build(file_, next, hosts_);
  if (!b.table) return api_error(409, "cannot roll back: " + b.errors.front(), "alias");
  for (const DroppedOverride& d : b.dropped)  // e.g. the earlier map names a removed version
    if (d.function == f && d.alias == a)
      return api_error(
          409,
          "cannot roll back alias " + f + ":" + a + " to " + traffic_text(target) + ": " + d.why,
          "alias");
  size_t depth = as.history.size();
  commit(std::move(next), b.table, {{actor, "api", f, a, traffic_json(old), traffic_json(target)}},
         {"alias", f + ":" + a}, when_committed(alias_answer(f, a, old, target, depth), done));
  return std::nullopt;
}

std::optional<ApiResult> Control::publish_version_impl(const std::string& f,
                                                       const std::string& actor,
                                                       const ApiDone& done) {
  const config::FunctionSpec* fn = file_function(f);
  if (!fn) return api_error(404, "no function named " + f, "function");
  if (!fn->latest)
    return api_error(409,
                     "function " + f + " has no $LATEST to publish (add [functions." + f +
                         ".latest] to the file)",
                     "latest");
  State next = state_;
  FunctionState& fs = next.functions[f];
  uint32_t n = next_version_number(*fn, fs);
  PublishedVersion pv;
  pv.endpoints = fn->latest->endpoints;
  pv.settings = fn->latest->settings;
  pv.time = now_rfc3339();
  config::VersionSpec as_version = *fn->latest;
  fs.fingerprints[n] = fingerprint_of(as_version);
  fs.published[n] = std::move(pv);
  fs.next_number = n + 1;
  Built b = build(file_, next, hosts_);
  if (!b.table) return api_error(500, b.errors.front());
  json eps = json::array();
  for (const config::Endpoint& e : fn->latest->endpoints) eps.push_back(e.address.text);
  commit(
      std::move(next), b.table,
      {{actor, "api", f, "", nullptr, {{"version", std::to_string(n)}, {"endpoints", eps}}}},
      {"function", f},
      when_committed({{"function", f}, {"version", std::to_string(n)}, {"endpoints", eps}}, done));
  return std::nullopt;
}

json Control::endpoint_health_json(const std::string& function, const std::string& number) const {
  json out = json::array();
  if (!health_) return out;
  const routing::Function* f = current_->find_function(function);
  const routing::Version* v = f ? f->find_version(number) : nullptr;
  if (!v) return out;
  const uint64_t now = uv_hrtime() / 1000000;
  for (const routing::Endpoint& ep : v->endpoints) {
    const routing::EndpointHealth& h = health_->get(v->label, ep.resolved);
    json e = {{"endpoint", ep.address},
              {"state", routing::admin_state_name(h.admin_state())},
              {"checks", !v->health            ? "none"
                         : h.checked_up.load() ? "up"
                                               : "down"},
              {"ejected", h.ejected(now)},
              {"ejections", h.ejections_total.load()},
              {"usable", h.usable(now)}};
    if (h.ejected(now)) e["ejected_for_ms"] = h.ejected_until_ms.load() - now;
    out.push_back(std::move(e));
  }
  return out;
}

json Control::status(const observe::Snapshot* live) const {
  json fns = json::array();
  const config::Config& cfg = current_->config();
  for (const config::FunctionSpec& fn : cfg.functions) {
    auto fit = state_.functions.find(fn.name);
    const FunctionState* fs = fit == state_.functions.end() ? nullptr : &fit->second;
    json versions = json::array();
    auto version_json = [&](const std::string& number, const config::VersionSpec& v,
                            const std::string& source) {
      json eps = json::array();
      for (const config::Endpoint& e : v.endpoints) eps.push_back(e.address.text);
      json out = {{"number", number}, {"source", source}, {"endpoints", eps}};
      for (const auto& [k, val] : fingerprint_of(v)) out[k] = val;
      if (json h = endpoint_health_json(fn.name, number); !h.empty()) out["health"] = h;
      versions.push_back(out);
    };
    const config::FunctionSpec* ff = nullptr;  // the file's own definition
    for (const config::FunctionSpec& x : file_.functions)
      if (x.name == fn.name) ff = &x;
    for (const auto& [n, v] : fn.versions)
      version_json(std::to_string(n), v, ff && ff->versions.count(n) ? "file" : "api");
    if (fn.latest) version_json(config::kLatest, *fn.latest, "file");
    json aliases = json::array();
    for (const config::AliasSpec& al : fn.aliases) {
      const AliasState* as = nullptr;
      if (fs) {
        auto ait = fs->aliases.find(al.name);
        if (ait != fs->aliases.end()) as = &ait->second;
      }
      TrafficMap map = traffic_of(al);
      double sum = 0;
      for (const auto& [v, w] : map) sum += w;
      json per_version = json::array();
      for (const auto& [v, w] : map) {
        json pv = {{"version", v},
                   {"weight", traffic_json({{v, w}})[v]},
                   {"share", sum > 0 ? w / sum : 0.0}};
        if (live) {
          if (const observe::SeriesSnapshot* s = live->find(fn.name, al.name, v))
            pv.update(json(observe::summarize(*s)));
        }
        per_version.push_back(pv);
      }
      json history = json::array();
      if (as)
        for (auto it = as->history.rbegin(); it != as->history.rend(); ++it)
          history.push_back(traffic_json(*it));
      aliases.push_back({{"name", al.name},
                         {"traffic", traffic_json(map)},
                         {"source", as && as->override_traffic ? "api" : "file"},
                         {"history_depth", history.size()},
                         {"history", history},
                         {"versions", per_version}});
    }
    json f = {{"name", fn.name}, {"versions", versions}, {"aliases", aliases}};
    if (ff) f["next_version"] = next_version_number(*ff, fs ? *fs : FunctionState{});
    fns.push_back(f);
  }
  json state = store_->describe();
  json hosts = json::object();
  for (const auto& [name, h] : hosts_) {
    json entry = {{"address", host_text(h)}};
    if (resolve_failing_.count(name)) entry["note"] = "the last re-resolution failed; kept";
    hosts[name] = entry;
  }
  json resolution = {{"every", config::format_duration_ms(file_.upstream.resolve_interval_ms)},
                     {"hosts", hosts}};
  return {{"config", path_},
          {"state", state},
          {"store", state},
          {"resolution", resolution},
          {"reloads", {{"ok", reloads_ok_}, {"error", reloads_error_}, {"last", last_reload_}}},
          {"live_figures", live != nullptr},
          {"functions", fns}};
}

void Control::write_metrics(observe::PrometheusWriter& w) const {
  w.family("sluice_config_reloads_total", "counter", "Configuration reloads, by result.");
  w.sample("sluice_config_reloads_total", {{"result", "ok"}}, reloads_ok_);
  w.sample("sluice_config_reloads_total", {{"result", "error"}}, reloads_error_);
  w.family("sluice_store_up", "gauge",
           "1 if the last exchange with the state store worked (a local store: always 1).");
  w.sample("sluice_store_up", {}, uint64_t(store_->up()));
  w.family("sluice_store_revision", "gauge",
           "The state store's revision this node has applied (etcd; 0 for a local store).");
  w.sample("sluice_store_revision", {}, uint64_t(store_->revision()));
  w.family("sluice_alias_weight", "gauge", "Current traffic weight of a version in an alias.");
  for (const config::FunctionSpec& fn : current_->config().functions)
    for (const config::AliasSpec& al : fn.aliases)
      for (const auto& [v, weight] : traffic_of(al))
        w.sample("sluice_alias_weight", {{"function", fn.name}, {"alias", al.name}, {"version", v}},
                 weight);
  if (health_) {
    // Every endpoint of the running table: usable now (1) or not (0), and how often it was ejected.
    const uint64_t now = uv_hrtime() / 1000000;
    w.family("sluice_endpoint_up", "gauge",
             "1 if the endpoint takes new requests (ready, passing its checks, not ejected).");
    for (const auto& v : current_->versions())
      for (const routing::Endpoint& ep : v->endpoints)
        w.sample("sluice_endpoint_up",
                 {{"function", v->function}, {"version", v->number}, {"endpoint", ep.address}},
                 uint64_t(health_->get(v->label, ep.resolved).usable(now)));
    w.family("sluice_upstream_ejections_total", "counter",
             "Passive-health ejections of an endpoint (consecutive failures or 5xx).");
    for (const auto& v : current_->versions())
      for (const routing::Endpoint& ep : v->endpoints)
        w.sample("sluice_upstream_ejections_total",
                 {{"function", v->function}, {"version", v->number}, {"endpoint", ep.address}},
                 health_->get(v->label, ep.resolved).ejections_total.load());
  }
  if (tls_ && !tls_->listeners.empty()) {
    // Seconds until each served certificate expires (negative once it has), by listener and the
    // certificate's first name.
    w.family("sluice_tls_certificate_expiry_seconds", "gauge",
             "Seconds until a listener's certificate expires (negative: expired).");
    const int64_t now = net::unix_now_s();
    for (const net::TlsContexts::Listener& e : tls_->listeners)
      for (const net::CertificateInfo& c : e.context->certificates())
        w.sample("sluice_tls_certificate_expiry_seconds",
                 {{"listener", e.address}, {"name", c.names.empty() ? c.subject : c.names[0]}},
                 c.not_after_s - now);
  }
  w.family("sluice_build_info", "gauge", "Build information.");
  w.sample("sluice_build_info", {{"version", SLUICE_VERSION}}, uint64_t{1});
}

}  // namespace sluice::control
