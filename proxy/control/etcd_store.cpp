// The etcd store (see etcd_store.h).
#include "control/etcd_store.h"

#include <uv.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "control/local_store.h"
#include "net/loop_context.h"

namespace sluice::control {

using nlohmann::json;

struct PrivateLoop {
  uv_loop_t loop{};
  net::LoopContext ctx;
};

namespace {

constexpr const char* kDocs = "docs/";
constexpr const char* kAuditSeq = "audit_seq";
constexpr const char* kAudit = "audit/";
constexpr const char* kLocks = "locks/";
constexpr const char* kFigures = "figures/";
constexpr const char* kNodes = "nodes/";
constexpr int kCommitTries = 8;  // audit sequence races retried before giving up

std::string seq_text(uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llu", static_cast<unsigned long long>(seq));
  return buf;
}

bool starts_with(const std::string& s, const std::string& p) {
  return s.compare(0, p.size(), p) == 0;
}

CommitResult refused(CommitResult::Status status, std::string error) {
  CommitResult r;
  r.status = status;
  r.error = std::move(error);
  return r;
}

// An etcd failure as a commit refusal.
CommitResult refusal_of(const EtcdError& e) {
  using K = EtcdError::Kind;
  std::string msg = e.message;
  if (e.maybe_committed) msg += "; it may have been applied: read it again before retrying";
  if (e.kind == K::kUnavailable || e.kind == K::kTimeout)
    return refused(CommitResult::Status::kUnavailable, "etcd: " + msg);
  return refused(CommitResult::Status::kFailed, "etcd: " + msg);
}

}  // namespace

struct EtcdStore::PendingCommit {
  Change change;
  CommitDone done;
  int tries = 0;
  bool finished = false;
};

EtcdStore::EtcdStore(EtcdStoreOptions options) : options_(std::move(options)) {
  if (options_.load_timeout_ms == 0) options_.load_timeout_ms = options_.timeout_ms;
}

EtcdStore::~EtcdStore() {
  *alive_ = false;
  detach();
  close_private();
}

uint64_t EtcdStore::now_ms() const {
  if (loop_) return uv_now(loop_);
  return uv_hrtime() / 1000000;
}

void EtcdStore::make_client(uv_loop_t* loop) {
  EtcdOptions o;
  o.endpoints = options_.endpoints;
  o.request_timeout_ms = options_.timeout_ms;
  o.connect_timeout_ms = std::min<uint64_t>(1000, options_.timeout_ms);
  o.attempt_timeout_ms = std::max<uint64_t>(options_.timeout_ms / 2, 100);
  o.tls = options_.tls;
  client_ = std::make_unique<EtcdClient>(loop, o);
  client_->set_token(token_);  // a token load() got serves the control loop's client too
}

bool EtcdStore::run_private(const std::function<bool()>& done, uint64_t timeout_ms) {
  const uint64_t start = uv_hrtime() / 1000000;
  uv_timer_t wake;
  uv_timer_init(&private_->loop, &wake);
  uv_timer_start(
      &wake, [](uv_timer_t*) {}, 5, 5);
  bool ok = done();
  while (!ok && uv_hrtime() / 1000000 - start < timeout_ms) {
    uv_run(&private_->loop, UV_RUN_ONCE);
    ok = done();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);
  uv_run(&private_->loop, UV_RUN_NOWAIT);
  return ok;
}

bool EtcdStore::open_private(std::string* error) {
  private_ = std::make_unique<PrivateLoop>();
  uv_loop_init(&private_->loop);
  private_->ctx.loop = &private_->loop;
  private_->loop.data = &private_->ctx;
  make_client(&private_->loop);
  std::string why;
  if (client_->start(&why)) return true;
  *error = "etcd store: " + why;
  return false;
}

void EtcdStore::close_private() {
  if (!private_) return;
  if (client_ && !loop_) client_.reset();
  uv_run(&private_->loop, UV_RUN_DEFAULT);  // the client's handles close
  uv_loop_close(&private_->loop);
  private_.reset();
}

json EtcdStore::describe() const {
  json j = {
      {"kind", kind()},
      {"durable", true},
      {"up", up_},
      {"revision", revision_},
      {"node", options_.node},
      {"endpoints", options_.endpoints},
      {"prefix", options_.prefix},
      {"snapshot", options_.snapshot_path.empty() ? json(nullptr) : json(options_.snapshot_path)},
      {"lease", lease_id_},
      {"leads", json::array()}};
  for (const std::string& job : held_)
    if (leads(job)) j["leads"].push_back(job);
  if (!up_) {
    j["error"] = last_error_;
    if (!down_since_.empty()) j["down_since"] = down_since_;
  }
  return j;
}

namespace {

// etcd refused this client's identity: a token it no longer knows (it restarted), or none at all
// while authentication is on.
bool auth_refused(const std::string& message) {
  return message.find("invalid auth token") != std::string::npos ||
         message.find("user name is empty") != std::string::npos;
}

}  // namespace

void EtcdStore::authenticate() {
  if (options_.username.empty() || auth_pending_ || !client_) return;
  auth_pending_ = true;
  std::weak_ptr<bool> alive = alive_;
  client_->authenticate(options_.username, password_, [this, alive](EtcdResult<std::string> r) {
    if (alive.expired()) return;
    auth_pending_ = false;
    if (!r.ok()) {
      mark_down("authenticating as " + options_.username + ": " + r.error.message);
      auth_stale_ = true;  // the tick tries again
      return;
    }
    token_ = r.value;
    if (client_) client_->set_token(token_);
    auth_stale_ = false;
  });
}

void EtcdStore::mark_down(const std::string& why) {
  if (!options_.username.empty() && auth_refused(why)) auth_stale_ = true;
  if (up_ || down_since_.empty()) down_since_ = now_rfc3339();
  if (up_ || last_error_ != why)
    std::fprintf(stderr,
                 "sluice: store: etcd unavailable: %s (serving the last applied state, "
                 "revision %lld)\n",
                 why.c_str(), static_cast<long long>(revision_));
  up_ = false;
  last_error_ = why;
}

void EtcdStore::mark_up() {
  if (!up_ && !down_since_.empty())
    std::fprintf(stderr, "sluice: store: etcd reachable again (down since %s)\n",
                 down_since_.c_str());
  up_ = true;
  last_error_.clear();
  down_since_.clear();
}

// ---------------------------------------------------------------------------------------------
// Reading

void EtcdStore::read_all(std::function<void(EtcdResult<Read>)> done) {
  etcd::TxnRequest t;  // no compares: every range at one revision
  for (const char* sub : {kDocs, kLocks, kFigures}) {
    etcd::RangeRequest r;
    r.key = key_of(sub);
    r.range_end = etcd::prefix_range_end(r.key);
    t.success.push_back(r);
  }
  etcd::RangeRequest seq;
  seq.key = key_of(kAuditSeq);
  t.success.push_back(seq);
  const std::string prefix = options_.prefix;
  client_->txn(std::move(t), [done = std::move(done), prefix](EtcdResult<etcd::TxnResponse> res) {
    EtcdResult<Read> out;
    out.error = res.error;
    if (!res.ok()) return done(std::move(out));
    Read& r = out.value;
    r.revision = res.value.header.revision;
    if (res.value.responses.size() != 4) {
      out.error.kind = EtcdError::Kind::kBadResponse;
      out.error.message = "a read of the prefix answered " +
                          std::to_string(res.value.responses.size()) + " ranges, not 4";
      return done(std::move(out));
    }
    auto kvs = [&](size_t i) -> const std::vector<etcd::KeyValue>& {
      return std::get<etcd::RangeResponse>(res.value.responses[i]).kvs;
    };
    for (const etcd::KeyValue& kv : kvs(0))
      r.docs[kv.key.substr(prefix.size() + 5)] = {kv.value, kv.mod_revision};
    for (const etcd::KeyValue& kv : kvs(1)) r.locks[kv.key.substr(prefix.size() + 6)] = kv;
    for (const etcd::KeyValue& kv : kvs(2)) r.figures[kv.key.substr(prefix.size() + 8)] = kv.value;
    for (const etcd::KeyValue& kv : kvs(3)) {
      r.audit_seq = std::strtoull(kv.value.c_str(), nullptr, 10);
      r.audit_seq_rev = kv.mod_revision;
    }
    done(std::move(out));
  });
}

namespace {

Document doc_from(const std::string& key, const std::string& bytes, int64_t version,
                  const std::string& origin) {
  Document d;
  d.key = key;
  d.version = static_cast<Version>(version);
  d.origin = origin;
  d.value = json::parse(bytes, nullptr, false);
  if (d.value.is_discarded() || !d.value.is_object()) {
    d.value = nullptr;
    d.unreadable = "not a JSON object";
  }
  return d;
}

}  // namespace

void EtcdStore::adopt(const Read& r, bool notify) {
  std::vector<std::string> changed;
  std::set<std::string> keys;
  for (const auto& [k, d] : docs_) keys.insert(k);
  for (const auto& [k, v] : r.docs) keys.insert(k);
  for (const std::string& k : keys) {
    auto it = r.docs.find(k);
    Document next = it == r.docs.end() ? Document{k, nullptr, 0, "etcd:" + key_of(kDocs + k), ""}
                                       : doc_from(k, it->second.first, it->second.second,
                                                  "etcd:" + key_of(kDocs + k));
    auto cur = docs_.find(k);
    const bool same = cur != docs_.end() && cur->second.value == next.value &&
                      cur->second.unreadable == next.unreadable;
    if (!same) changed.push_back(k);
    docs_[k] = std::move(next);
  }
  revision_ = std::max(revision_, r.revision);
  if (r.audit_seq_rev > audit_seq_rev_ || r.audit_seq_rev == 0) {
    audit_seq_ = r.audit_seq;
    audit_seq_rev_ = r.audit_seq_rev;
  }
  locks_ = r.locks;
  for (auto it = held_.begin(); it != held_.end();) {
    auto l = locks_.find(*it);
    if (l == locks_.end() || l->second.value != options_.node || l->second.lease != lease_id_)
      it = held_.erase(it);
    else
      ++it;
  }
  figures_.clear();
  for (const auto& [k, text] : r.figures) {
    json j = json::parse(text, nullptr, false);
    if (!j.is_discarded()) figures_[k] = std::move(j);
  }
  save_snapshot();
  if (!notify) return;
  for (const std::string& k : changed) {
    const Document d = docs_[k];
    std::vector<Watcher> ws;
    for (const auto& [id, w] : watchers_)
      if (w.first == k) ws.push_back(w.second);
    for (const Watcher& w : ws) w(d);
  }
}

bool EtcdStore::load(std::string* error, std::vector<std::string>* notes) {
  if (options_.node.empty()) {
    *error = "etcd store: no node name";
    return false;
  }
  if (!options_.snapshot_path.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(options_.snapshot_path).parent_path(),
                                        ec);
  }
  if (loop_) {
    *error = "etcd store: load() after attach()";
    return false;
  }
  // A second load() (init() again after a conflict) reuses the first's loop and client.
  if (!private_ && !open_private(error)) return false;
  if (!options_.username.empty() && password_.empty()) {
    std::ifstream in(options_.password_file);
    std::stringstream ss;
    if (in) ss << in.rdbuf();
    password_ = ss.str();
    while (!password_.empty() && (password_.back() == '\n' || password_.back() == '\r'))
      password_.pop_back();
    if (!in || password_.empty()) {
      *error = "[store] password_file " + options_.password_file +
               (in ? " is empty" : " cannot be read") + " (it holds the etcd password of user " +
               options_.username + ")";
      return false;
    }
  }
  std::optional<EtcdResult<Read>> got;
  uv_update_time(&private_->loop);  // the client's deadlines start now, not at the last run
  if (!options_.username.empty() && token_.empty()) {
    std::optional<EtcdResult<std::string>> auth;
    client_->authenticate(options_.username, password_,
                          [&auth](EtcdResult<std::string> r) { auth = std::move(r); });
    run_private([&auth] { return auth.has_value(); }, options_.load_timeout_ms + 1000);
    if (auth && auth->ok()) {
      token_ = auth->value;
      client_->set_token(token_);
    } else if (auth && auth->error.kind != EtcdError::Kind::kUnavailable &&
               auth->error.kind != EtcdError::Kind::kTimeout) {
      *error = "etcd refused user " + options_.username +
               " of [store] username: " + auth->error.message +
               " (check the user and [store] password_file)";
      return false;
    } else {
      got = EtcdResult<Read>{};
      got->error = auth ? auth->error : EtcdError{};
      got->error.kind = EtcdError::Kind::kUnavailable;
      if (!auth) got->error.message = "no answer in time";
    }
  }
  if (!got) {
    read_all([&got](EtcdResult<Read> r) { got = std::move(r); });
    run_private([&got] { return got.has_value(); }, options_.load_timeout_ms + 1000);
  }
  if (got && got->ok()) {
    adopt(got->value, false);
    mark_up();
    if (notes)
      notes->push_back("etcd " + options_.prefix + " read at revision " +
                       std::to_string(revision_) + " (node " + options_.node + ")");
    return true;
  }
  const std::string cause = got ? got->error.message : "no answer in time";
  if (got && got->error.kind != EtcdError::Kind::kUnavailable &&
      got->error.kind != EtcdError::Kind::kTimeout) {
    // etcd answered and refused (authentication, permissions, a malformed answer): starting
    // from an old snapshot would hide a misconfiguration that will not go away by itself.
    *error = "the etcd store refused to be read: " + cause +
             (auth_refused(cause) ? " (etcd has authentication on: set [store] username and "
                                    "password_file)"
                                  : "");
    return false;
  }
  std::string snap_error;
  if (read_snapshot(&snap_error)) {
    mark_down(cause);
    if (notes)
      notes->push_back("etcd cannot be reached (" + cause + "): serving the snapshot " +
                       options_.snapshot_path + " (revision " + std::to_string(revision_) +
                       ") until it can");
    return true;
  }
  std::string endpoints;
  for (const std::string& e : options_.endpoints) endpoints += (endpoints.empty() ? "" : ", ") + e;
  *error = "the etcd store (" + endpoints + ") cannot be reached: " + cause + "; and " +
           (options_.snapshot_path.empty()
                ? std::string("no [state] dir is set to keep a snapshot to start from")
                : snap_error) +
           ". Start etcd (or fix [store] endpoints) and start sluice again";
  return false;
}

Document EtcdStore::get(const std::string& key) const {
  auto it = docs_.find(key);
  if (it != docs_.end()) return it->second;
  Document absent;
  absent.key = key;
  absent.origin = "etcd:" + key_of(kDocs + key);
  return absent;
}

// ---------------------------------------------------------------------------------------------
// The local snapshot

// One snapshot write off the control loop (an fsync can take seconds on a busy disk): the text
// and path are its own, and `alive` tells the after-work callback whether the store is there.
struct EtcdStore::SnapshotWrite {
  uv_work_t req{};
  std::string path, text, error;
  bool ok = false;
  EtcdStore* store = nullptr;
  std::weak_ptr<bool> alive;
};

void EtcdStore::save_snapshot() {
  if (options_.snapshot_path.empty()) return;
  json j = {{"prefix", options_.prefix}, {"revision", revision_}, {"docs", json::object()}};
  for (const auto& [k, d] : docs_)
    if (d.version > 0 && d.unreadable.empty())
      j["docs"][k] = {{"version", d.version}, {"value", d.value}};
  std::string text = dump_json(j, 1) + "\n";
  if (!loop_) {  // before the control loop runs: blocking is allowed
    std::string err;
    if (!write_file_atomic(options_.snapshot_path, text, &err))
      std::fprintf(stderr, "sluice: store: cannot save the etcd snapshot: %s\n", err.c_str());
    return;
  }
  write_snapshot_text(std::move(text));
}

void EtcdStore::write_snapshot_text(std::string text) {
  if (snapshot_writing_) {  // the newest waits for the one being written; older ones are moot
    snapshot_pending_ = std::move(text);
    return;
  }
  auto* w = new SnapshotWrite;
  w->path = options_.snapshot_path;
  w->text = std::move(text);
  w->store = this;
  w->alive = alive_;
  w->req.data = w;
  snapshot_writing_ = true;
  if (const int rc =
          uv_queue_work(loop_, &w->req, &EtcdStore::snapshot_work, &EtcdStore::snapshot_done);
      rc != 0) {
    delete w;
    snapshot_writing_ = false;
    std::fprintf(stderr, "sluice: store: cannot queue the etcd snapshot write: %s\n",
                 uv_strerror(rc));
  }
}

void EtcdStore::snapshot_work(uv_work_t* r) {
  auto* w = static_cast<SnapshotWrite*>(r->data);
  w->ok = write_file_atomic(w->path, w->text, &w->error);
}

void EtcdStore::snapshot_done(uv_work_t* r, int) {
  std::unique_ptr<SnapshotWrite> w(static_cast<SnapshotWrite*>(r->data));
  if (!w->ok)
    std::fprintf(stderr, "sluice: store: cannot save the etcd snapshot: %s\n", w->error.c_str());
  if (w->alive.expired()) return;
  EtcdStore* self = w->store;
  self->snapshot_writing_ = false;
  if (!self->snapshot_pending_.empty() && self->loop_) {
    std::string next = std::move(self->snapshot_pending_);
    self->snapshot_pending_.clear();
    self->write_snapshot_text(std::move(next));
  }
}

bool EtcdStore::read_snapshot(std::string* error) {
  if (options_.snapshot_path.empty()) {
    *error = "no snapshot is configured";
    return false;
  }
  std::ifstream in(options_.snapshot_path);
  if (!in) {
    *error = "there is no snapshot at " + options_.snapshot_path + " to start from";
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (!j.is_object() || !j.contains("revision") || !j["revision"].is_number_integer() ||
      !j.contains("docs") || !j["docs"].is_object()) {
    *error = "the snapshot " + options_.snapshot_path + " is not one sluice wrote";
    return false;
  }
  if (j.value("prefix", "") != options_.prefix) {
    *error = "the snapshot " + options_.snapshot_path + " is of prefix " +
             dump_json(j.value("prefix", json(nullptr))) + ", not " + options_.prefix;
    return false;
  }
  for (const auto& [k, d] : j["docs"].items()) {
    if (!d.is_object() || !d.contains("value") || !d["value"].is_object()) continue;
    Document doc;
    doc.key = k;
    doc.value = d["value"];
    doc.version = d.value("version", Version{0});
    doc.origin = options_.snapshot_path + " (etcd:" + key_of(kDocs + k) + ")";
    docs_[k] = std::move(doc);
  }
  revision_ = j["revision"].get<int64_t>();
  return true;
}

// ---------------------------------------------------------------------------------------------
// Writing

void EtcdStore::commit(Change change, CommitDone done) {
  if (!client_) {
    if (done) done(refused(CommitResult::Status::kUnavailable, "etcd: the store is closed"));
    return;
  }
  auto pc = std::make_shared<PendingCommit>();
  pc->change = std::move(change);
  pc->done = std::move(done);
  ++commits_in_flight_;
  if (!loop_ && private_) uv_update_time(&private_->loop);  // see load()
  send_commit(pc);
  if (!loop_) {
    // Start-up: answer before returning (store.h).
    run_private([&pc] { return pc->finished; }, options_.timeout_ms * kCommitTries + 1000);
    if (!pc->finished) {
      pc->finished = true;
      --commits_in_flight_;
      if (pc->done) pc->done(refused(CommitResult::Status::kUnavailable, "etcd: no answer"));
    }
  }
}

void EtcdStore::send_commit(std::shared_ptr<PendingCommit> pc) {
  etcd::TxnRequest t;
  for (const Put& p : pc->change.puts)
    t.compare.push_back(
        etcd::Compare::mod_revision(key_of(kDocs + p.key), static_cast<int64_t>(p.expected)));
  const uint64_t first = audit_seq_ + 1;
  uint64_t seq = audit_seq_;
  if (!pc->change.audits.empty()) {
    t.compare.push_back(etcd::Compare::mod_revision(key_of(kAuditSeq), audit_seq_rev_));
    for (const AuditEntry& e : pc->change.audits) {
      etcd::PutRequest put;
      put.key = key_of(kAudit + seq_text(++seq));
      put.value = dump_json(audit_record(e, seq));
      t.success.push_back(put);
    }
    etcd::PutRequest counter;
    counter.key = key_of(kAuditSeq);
    counter.value = std::to_string(seq);
    t.success.push_back(counter);
    if (seq > options_.audit_kept) {
      etcd::DeleteRequest old;
      old.key = key_of(std::string(kAudit) + seq_text(0));
      old.range_end = key_of(kAudit + seq_text(seq - options_.audit_kept + 1));
      t.success.push_back(old);
    }
  }
  for (const Put& p : pc->change.puts) {
    etcd::PutRequest put;
    put.key = key_of(kDocs + p.key);
    put.value = dump_json(p.value);
    t.success.push_back(put);
    etcd::RangeRequest now;
    now.key = put.key;
    t.failure.push_back(now);
  }
  etcd::RangeRequest counter_now;
  counter_now.key = key_of(kAuditSeq);
  t.failure.push_back(counter_now);

  std::weak_ptr<bool> alive = alive_;
  client_->txn(std::move(t), [this, alive, pc, first, seq](EtcdResult<etcd::TxnResponse> res) {
    if (alive.expired() || pc->finished) return;
    auto finish = [this, pc](CommitResult r) {
      pc->finished = true;
      if (commits_in_flight_ > 0) --commits_in_flight_;
      if (pc->done) {
        try {
          pc->done(std::move(r));
        } catch (const std::exception& e) {
          std::fprintf(stderr, "sluice: store: a commit's callback failed: %s\n", e.what());
        }
      }
      flush_held_events();
    };
    if (res.error.kind == EtcdError::Kind::kConflict) {
      // Which compare failed: a document (a real conflict) or only the audit counter (another
      // node audited a change of another document: take its number and try again).
      const auto& rs = res.value.responses;
      const auto& puts = pc->change.puts;
      for (size_t i = 0; i < puts.size() && i < rs.size(); ++i) {
        const auto& kvs = std::get<etcd::RangeResponse>(rs[i]).kvs;
        const int64_t now = kvs.empty() ? 0 : kvs.front().mod_revision;
        if (now != static_cast<int64_t>(puts[i].expected)) {
          CommitResult r = refused(CommitResult::Status::kConflict,
                                   "etcd: " + key_of(kDocs + puts[i].key) + " is at revision " +
                                       std::to_string(now) + ", this sluice read revision " +
                                       std::to_string(puts[i].expected));
          r.conflict_key = puts[i].key;
          return finish(std::move(r));
        }
      }
      if (!rs.empty()) {
        const auto& kvs = std::get<etcd::RangeResponse>(rs.back()).kvs;
        audit_seq_ = kvs.empty() ? 0 : std::strtoull(kvs.front().value.c_str(), nullptr, 10);
        audit_seq_rev_ = kvs.empty() ? 0 : kvs.front().mod_revision;
      }
      if (++pc->tries < kCommitTries) return send_commit(pc);
      return finish(refused(CommitResult::Status::kFailed,
                            "etcd: the audit sequence kept moving; nothing was written"));
    }
    if (!res.ok()) {
      if (!options_.username.empty() && auth_refused(res.error.message)) {
        // etcd forgot this node's token (unused too long, or auth turned off and on): nothing
        // was written; the store authenticates again and the next try works.
        mark_down(res.error.message);
        authenticate();
        return finish(refused(CommitResult::Status::kUnavailable,
                              "etcd: " + res.error.message + " (authenticating again)"));
      }
      if (res.error.kind == EtcdError::Kind::kUnavailable ||
          res.error.kind == EtcdError::Kind::kTimeout)
        mark_down(res.error.message);
      return finish(refusal_of(res.error));
    }
    mark_up();
    const int64_t rev = res.value.header.revision;
    CommitResult r;
    for (Put& p : pc->change.puts) {
      Document& d = docs_[p.key];
      d.key = p.key;
      d.origin = "etcd:" + key_of(kDocs + p.key);
      d.value = std::move(p.value);
      d.unreadable.clear();
      d.version = static_cast<Version>(rev);
      r.versions[p.key] = d.version;
    }
    if (!pc->change.audits.empty()) {
      audit_seq_ = seq;
      audit_seq_rev_ = rev;
      r.first_seq = first;
      r.last_seq = seq;
    }
    revision_ = std::max(revision_, rev);
    save_snapshot();
    finish(std::move(r));
  });
}

// ---------------------------------------------------------------------------------------------
// Following other writers

Store::WatchId EtcdStore::watch(const std::string& key, Watcher changed) {
  const WatchId id = next_watch_++;
  watchers_[id] = {key, std::move(changed)};
  return id;
}

void EtcdStore::unwatch(WatchId id) {
  watchers_.erase(id);
}

void EtcdStore::apply_doc(const std::string& key, const etcd::KeyValue& kv, bool deleted) {
  Document& cur = docs_[key];
  const auto rev = static_cast<Version>(kv.mod_revision);
  if (cur.version >= rev) return;  // already known: this process's own commit, or older
  Document next = deleted ? Document{key, nullptr, rev, "etcd:" + key_of(kDocs + key), ""}
                          : doc_from(key, kv.value, kv.mod_revision, "etcd:" + key_of(kDocs + key));
  cur = next;
  std::vector<Watcher> ws;
  for (const auto& [id, w] : watchers_)
    if (w.first == key) ws.push_back(w.second);
  for (const Watcher& w : ws) w(next);
}

void EtcdStore::flush_held_events() {
  if (commits_in_flight_ > 0 || held_events_.empty()) return;
  auto held = std::move(held_events_);
  held_events_.clear();
  bool changed = false;
  for (const auto& [key, kv] : held) {
    const Version before = docs_[key].version;
    apply_doc(key, kv, kv.version == 0);
    changed = changed || docs_[key].version != before;
  }
  if (changed) save_snapshot();
}

void EtcdStore::on_events(std::vector<etcd::Event>&& events, int64_t header_revision) {
  // Not `up` by itself: a member that has not noticed it lost its leader yet replays history to
  // a re-created watch. The tick's read, which needs the quorum, says so.
  bool docs_changed = false;
  std::vector<std::string> released;
  for (etcd::Event& ev : events) {
    if (!starts_with(ev.kv.key, options_.prefix)) continue;
    const std::string sub = ev.kv.key.substr(options_.prefix.size());
    const bool deleted = ev.type == etcd::Event::Type::kDelete;
    if (deleted) ev.kv.version = 0;
    if (starts_with(sub, kDocs)) {
      const std::string key = sub.substr(5);
      if (commits_in_flight_ > 0) {
        held_events_.emplace_back(key, ev.kv);
      } else {
        const Version before = docs_[key].version;
        apply_doc(key, ev.kv, deleted);
        docs_changed = docs_changed || docs_[key].version != before;
      }
    } else if (sub == kAuditSeq) {
      if (!deleted && ev.kv.mod_revision > audit_seq_rev_) {
        audit_seq_ = std::strtoull(ev.kv.value.c_str(), nullptr, 10);
        audit_seq_rev_ = ev.kv.mod_revision;
      }
    } else if (starts_with(sub, kLocks)) {
      const std::string job = sub.substr(6);
      if (deleted) {
        locks_.erase(job);
        held_.erase(job);
        released.push_back(job);
      } else {
        locks_[job] = ev.kv;
        if (ev.kv.value != options_.node || ev.kv.lease != lease_id_) held_.erase(job);
      }
    } else if (starts_with(sub, kFigures)) {
      const std::string k = sub.substr(8);
      if (deleted) {
        figures_.erase(k);
      } else {
        json j = json::parse(ev.kv.value, nullptr, false);
        if (!j.is_discarded()) figures_[k] = std::move(j);
      }
    }
  }
  revision_ = std::max(revision_, header_revision);
  if (docs_changed) save_snapshot();
  for (const std::string& job : released)
    if (wanted_.count(job)) try_acquire(job);
}

void EtcdStore::start_watch() {
  etcd::WatchCreateRequest w;
  w.key = options_.prefix;
  w.range_end = etcd::prefix_range_end(w.key);
  w.start_revision = revision_ + 1;
  EtcdClient::WatchCallbacks cb;
  std::weak_ptr<bool> alive = alive_;
  cb.on_events = [this, alive](std::vector<etcd::Event>&& events, int64_t rev) {
    if (!alive.expired()) on_events(std::move(events), rev);
  };
  // Not `up` on connecting: a member without quorum still takes a watch. Only answers that
  // needed the quorum (a commit, a full read, the tick's read) say so.
  cb.on_error = [this, alive](const EtcdError& e) {
    if (alive.expired()) return;
    if (e.kind == EtcdError::Kind::kCompacted) {
      std::fprintf(stderr,
                   "sluice: store: etcd compacted past revision %lld (oldest kept %lld): "
                   "re-reading %s\n",
                   static_cast<long long>(revision_ + 1),
                   static_cast<long long>(e.compact_revision), options_.prefix.c_str());
      watch_id_ = 0;
      resync();
    } else if (e.kind == EtcdError::Kind::kRejected) {
      watch_id_ = 0;
      mark_down("the watch was refused: " + e.message);
      resync();
    } else {
      mark_down(e.message);
    }
  };
  watch_id_ = client_->watch(std::move(w), std::move(cb));
}

void EtcdStore::resync() {
  if (resyncing_ || !client_) return;
  resyncing_ = true;
  ++resyncs_;
  std::weak_ptr<bool> alive = alive_;
  read_all([this, alive](EtcdResult<Read> r) {
    if (alive.expired()) return;
    resyncing_ = false;
    if (!r.ok()) {
      mark_down(r.error.message);
      // Tried again by the tick.
      return;
    }
    mark_up();
    held_events_.clear();
    adopt(r.value, true);
    revision_ = r.value.revision;
    if (watch_id_ == 0) start_watch();
  });
}

// ---------------------------------------------------------------------------------------------
// On the control loop

int EtcdStore::attach(void* loop_ptr) {
  auto* loop = static_cast<uv_loop_t*>(loop_ptr);
  client_.reset();
  close_private();
  loop_ = loop;
  make_client(loop);
  std::string why;
  if (!client_->start(&why)) {
    std::fprintf(stderr, "sluice: store: %s\n", why.c_str());
    return UV_EINVAL;
  }
  timer_ = new uv_timer_t;
  uv_timer_init(loop, timer_);
  timer_->data = this;
  const uint64_t every = std::clamp<uint64_t>(options_.lease_ttl_ms / 4, 200, 1000);
  uv_timer_start(timer_, &EtcdStore::on_tick, every, every);
  start_watch();
  grant_lease();
  return 0;
}

void EtcdStore::detach() {
  if (!loop_) return;
  if (timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
  const int64_t lease = lease_id_;
  held_.clear();
  wanted_.clear();
  lease_id_ = 0;
  client_.reset();  // its handles close on the control loop
  if (lease != 0) {
    // The lease goes now, not in lease_ttl, so another node takes the jobs this one led at once.
    // On a private loop: the control loop is stopping.
    std::string why;
    if (open_private(&why)) {
      bool done = false;
      client_->lease_revoke(lease, [&done](EtcdResult<etcd::ResponseHeader>) { done = true; });
      run_private([&done] { return done; }, std::min<uint64_t>(options_.timeout_ms, 1000));
    }
    client_.reset();
    close_private();
  }
  loop_ = nullptr;
}

void EtcdStore::on_tick(uv_timer_t* t) {
  static_cast<EtcdStore*>(t->data)->tick();
}

void EtcdStore::tick() {
  if (!client_) return;
  if (auth_stale_) authenticate();
  if (watch_id_ == 0 && !resyncing_) resync();
  const uint64_t now = now_ms();
  if (lease_id_ == 0) {
    grant_lease();
  } else if (!keepalive_pending_ && now - last_keepalive_ms_ >= options_.lease_ttl_ms / 3) {
    keepalive_pending_ = true;
    const uint64_t sent = now;
    const int64_t id = lease_id_;
    std::weak_ptr<bool> alive = alive_;
    client_->lease_keepalive(id,
                             [this, alive, sent, id](EtcdResult<etcd::LeaseKeepAliveResponse> r) {
                               if (alive.expired()) return;
                               keepalive_pending_ = false;
                               if (id != lease_id_) return;
                               if (r.ok() && r.value.ttl_s > 0) {
                                 // Not `up` by itself: a leader that lost its quorum renews leases
                                 // until it steps down.
                                 last_keepalive_ms_ = sent;
                                 // Leadership holds until the lease could have run out at etcd,
                                 // minus a margin for clocks and the watch: counted from when this
                                 // keepalive was sent.
                                 lease_valid_until_ms_ = sent + options_.lease_ttl_ms * 3 / 4;
                                 return;
                               }
                               if (r.ok() || r.error.kind == EtcdError::Kind::kNotFound)
                                 return lost_lease("the lease expired");
                               mark_down(r.error.message);
                             });
  }
  if (!probe_pending_) {
    // A cheap linearizable read (it needs the cluster's quorum) keeps `up` current.
    etcd::RangeRequest probe;
    probe.key = key_of(kAuditSeq);
    probe.count_only = true;
    probe_pending_ = true;
    std::weak_ptr<bool> alive = alive_;
    client_->range(std::move(probe), [this, alive](EtcdResult<etcd::RangeResponse> r) {
      if (alive.expired()) return;
      probe_pending_ = false;
      if (r.ok())
        mark_up();
      else
        mark_down(r.error.message);
    });
  }
  for (const std::string& job : wanted_)
    if (!held_.count(job) && !locks_.count(job)) try_acquire(job);
}

void EtcdStore::grant_lease() {
  if (lease_pending_ || !client_) return;
  lease_pending_ = true;
  etcd::LeaseGrantRequest g;
  g.ttl_s = static_cast<int64_t>(options_.lease_ttl_ms / 1000);
  const uint64_t sent = now_ms();
  std::weak_ptr<bool> alive = alive_;
  client_->lease_grant(g, [this, alive, sent](EtcdResult<etcd::LeaseGrantResponse> r) {
    if (alive.expired()) return;
    lease_pending_ = false;
    if (!r.ok() || r.value.id == 0) {
      mark_down(r.ok() ? r.value.error : r.error.message);
      return;
    }
    lease_id_ = r.value.id;
    last_keepalive_ms_ = sent;
    lease_valid_until_ms_ = sent + options_.lease_ttl_ms * 3 / 4;
    etcd::PutRequest presence;
    presence.key = key_of(kNodes + options_.node);
    presence.value = dump_json({{"node", options_.node}, {"since", now_rfc3339()}});
    presence.lease = lease_id_;
    client_->put(presence, [](EtcdResult<etcd::PutResponse>) {});
    for (const std::string& job : wanted_) try_acquire(job);
  });
}

void EtcdStore::lost_lease(const std::string& why) {
  if (!held_.empty())
    std::fprintf(stderr, "sluice: store: %s: this node no longer leads %zu job(s)\n", why.c_str(),
                 held_.size());
  held_.clear();
  lease_id_ = 0;
  grant_lease();
}

void EtcdStore::want_lead(const std::string& job) {
  if (wanted_.insert(job).second && !held_.count(job)) try_acquire(job);
}

void EtcdStore::drop_lead(const std::string& job) {
  wanted_.erase(job);
  if (!held_.erase(job) || !client_ || lease_id_ == 0) return;
  etcd::TxnRequest t;
  t.compare.push_back(etcd::Compare::value_is(key_of(kLocks + job), options_.node));
  etcd::DeleteRequest del;
  del.key = key_of(kLocks + job);
  t.success.push_back(del);
  client_->txn(std::move(t), [](EtcdResult<etcd::TxnResponse>) {});
}

bool EtcdStore::leads(const std::string& job) const {
  return held_.count(job) && lease_id_ != 0 && now_ms() < lease_valid_until_ms_;
}

std::string EtcdStore::leader(const std::string& job) const {
  if (leads(job)) return options_.node;
  auto it = locks_.find(job);
  return it == locks_.end() ? "" : it->second.value;
}

void EtcdStore::try_acquire(const std::string& job) {
  if (!client_ || lease_id_ == 0 || acquiring_.count(job)) return;
  acquiring_.insert(job);
  const std::string key = key_of(kLocks + job);
  etcd::TxnRequest t;
  t.compare.push_back(etcd::Compare::create_revision(key, 0));
  etcd::PutRequest put;
  put.key = key;
  put.value = options_.node;
  put.lease = lease_id_;
  t.success.push_back(put);
  etcd::RangeRequest now;
  now.key = key;
  t.failure.push_back(now);
  const int64_t lease = lease_id_;
  std::weak_ptr<bool> alive = alive_;
  client_->txn(std::move(t), [this, alive, job, lease](EtcdResult<etcd::TxnResponse> r) {
    if (alive.expired()) return;
    acquiring_.erase(job);
    if (lease != lease_id_ || !wanted_.count(job)) return;
    if (r.ok()) {
      etcd::KeyValue kv;
      kv.value = options_.node;
      kv.lease = lease;
      kv.mod_revision = r.value.header.revision;
      locks_[job] = kv;
      held_.insert(job);
      std::fprintf(stderr, "sluice: store: this node (%s) now leads %s\n", options_.node.c_str(),
                   job.c_str());
      return;
    }
    if (r.error.kind == EtcdError::Kind::kConflict && !r.value.responses.empty()) {
      const auto& kvs = std::get<etcd::RangeResponse>(r.value.responses.front()).kvs;
      if (kvs.empty()) return;  // released meanwhile: the next tick tries again
      locks_[job] = kvs.front();
      if (kvs.front().value == options_.node && kvs.front().lease == lease) held_.insert(job);
    }
  });
}

void EtcdStore::publish_figures(const std::string& job, const json& figures) {
  if (!client_ || lease_id_ == 0 || publishing_.count(job)) return;
  publishing_.insert(job);
  etcd::PutRequest put;
  put.key = key_of(kFigures + options_.node + "/" + job);
  put.value = dump_json(figures);
  put.lease = lease_id_;
  std::weak_ptr<bool> alive = alive_;
  client_->put(std::move(put), [this, alive, job](EtcdResult<etcd::PutResponse>) {
    if (!alive.expired()) publishing_.erase(job);
  });
}

std::map<std::string, json> EtcdStore::peer_figures(const std::string& job) const {
  std::map<std::string, json> out;
  const std::string suffix = "/" + job;
  for (const auto& [k, j] : figures_) {
    if (k.size() <= suffix.size() || k.compare(k.size() - suffix.size(), suffix.size(), suffix))
      continue;
    const std::string node = k.substr(0, k.size() - suffix.size());
    if (node != options_.node) out[node] = j;
  }
  return out;
}

}  // namespace sluice::control
