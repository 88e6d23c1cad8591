// Active health checks (see health_check.h).
#include "upstream/health_check.h"

#include <algorithm>
#include <set>
#include <utility>

#include "http/parser.h"
#include "net/outbox.h"
#include "net/stream.h"
#include "net/tls_stream.h"

namespace sluice::upstream {

// One check: connect, GET the path, read the status line, report, close. Owns itself: freed
// when both its stream and its deadline timer are closed. Its target may go away first
// (abandon()), after which it reports to nobody.
class HealthProbe final : public net::StreamEvents, public http::Sink {
 public:
  HealthProbe(net::LoopContext& ctx, HealthChecker::Target& target)
      : target_(&target), tcp_(ctx, *this), parser_(HTTP_RESPONSE, *this, 16 * 1024, 100) {}

  void start(net::LoopContext& ctx) {
    if (uv_timer_init(ctx.loop, &deadline_) != 0) {
      finish(false);
      return;
    }
    deadline_.data = this;
    ++open_handles_;
    uv_timer_start(
        &deadline_, [](uv_timer_t* t) { static_cast<HealthProbe*>(t->data)->finish(false); },
        target_->spec.timeout_ms, 0);
    const int rc = tcp_.connect(reinterpret_cast<const sockaddr*>(&target_->addr));
    if (tcp_.open()) ++open_handles_;
    if (rc != 0) {
      finish(false);
      return;
    }
    if (target_->tls_required) {
      // Checked the way requests reach it: over TLS, with the same verification.
      std::unique_ptr<net::TlsEngine> engine;
      if (target_->tls) engine = net::TlsEngine::client(target_->tls, target_->server_name);
      if (!engine) {
        finish(false);
        return;
      }
      tls_ = std::make_unique<net::TlsStream>(tcp_, *this, std::move(engine));
      io_ = tls_.get();
    }
  }
  // The target goes away: stop now (handles closed with their callbacks, so that a loop shutting
  // down finds nothing of ours open), reporting to nobody.
  void abandon() {
    target_ = nullptr;
    finish(false);
  }

  // net::StreamEvents
  void on_stream_connected(int status) override {
    if (done_) return;
    if (status < 0) {
      finish(false);
      return;
    }
    request_ = "GET " + target_->spec.path + " HTTP/1.1\r\nHost: " + target_->host +
               "\r\nUser-Agent: sluice-health\r\nConnection: close\r\n\r\n";
    out_.borrow(request_);
    if (io_->write(out_) < 0) {
      finish(false);
      return;
    }
    io_->start_reading();
  }
  void on_stream_data(const char* data, size_t len) override {
    if (done_) return;
    if (parser_.feed(data, len).status == http::Parser::Status::kError && !done_) finish(false);
  }
  void on_stream_end(int) override {
    if (!done_) finish(false);  // closed before a status line
  }
  void on_stream_written(int status) override {
    if (status < 0 && !done_) finish(false);
  }
  void on_stream_closed() override { handle_closed(); }

  // http::Sink: the status line and headers are all a check needs.
  int on_head(http::Parser& p) override {
    const int status = p.status_code();
    if (status >= 100 && status < 200) return 0;  // interim: wait for the final answer
    const auto& expect = target_->spec.expect;
    finish(std::find(expect.begin(), expect.end(), status) != expect.end());
    return -1;  // stop parsing: the body does not matter
  }
  int on_body(http::Parser&, const char*, size_t) override { return 0; }
  bool on_message_end(http::Parser&) override { return true; }

 private:
  // Reports once (if the target is still there) and closes; the last close frees this.
  void finish(bool pass) {
    if (done_) return;
    done_ = true;
    HealthChecker::Target* t = std::exchange(target_, nullptr);
    if (t) {
      t->probe = nullptr;
      t->report(pass);
    }
    io_->close();
    if (deadline_.data && !uv_is_closing(net::as_handle(&deadline_)))
      uv_close(net::as_handle(&deadline_),
               [](uv_handle_t* h) { static_cast<HealthProbe*>(h->data)->handle_closed(); });
    if (open_handles_ == 0) delete this;  // nothing was ever opened
  }
  void handle_closed() {
    if (--open_handles_ == 0) delete this;  // last use of this
  }

  HealthChecker::Target* target_;  // owned by the checker; cleared by abandon() or finish()
  net::TcpStream tcp_;
  std::unique_ptr<net::TlsStream> tls_;  // over tcp_ for a version that speaks TLS
  net::Stream* io_ = &tcp_;
  uv_timer_t deadline_{};
  http::Parser parser_;
  net::Outbox out_;
  std::string request_;
  int open_handles_ = 0;
  bool done_ = false;
};

void HealthChecker::Target::report(bool pass) {
  int32_t& streak = health->check_streak;
  if (pass) {
    streak = std::max(streak, 0) + 1;
    if (streak >= int32_t(spec.healthy)) {
      if (!health->checked_up.load(std::memory_order_relaxed))
        health->checked_up.store(true, std::memory_order_relaxed);
      // Passing its checks readmits an endpoint passive health ejected (as Envoy does by
      // default): an endpoint that came back need not wait out its ejection.
      const uint64_t now = uv_now(timer.loop);
      if (health->ejected(now)) health->ejected_until_ms.store(now, std::memory_order_relaxed);
    }
  } else {
    streak = std::min(streak, 0) - 1;
    if (health->checked_up.load(std::memory_order_relaxed) && -streak >= int32_t(spec.unhealthy))
      health->checked_up.store(false, std::memory_order_relaxed);
  }
}

HealthChecker::HealthChecker(net::LoopContext& ctx, routing::HealthRegistry& registry)
    : ctx_(ctx), registry_(registry) {}

HealthChecker::~HealthChecker() {
  close();
}

void HealthChecker::update(const routing::RoutingTable& table, const net::TlsContexts* tls) {
  if (closed_) return;
  std::set<std::pair<std::string, std::string>> wanted;
  for (const auto& v : table.versions()) {
    for (const routing::Endpoint& ep : v->endpoints) {
      auto key = std::make_pair(v->label, ep.resolved);
      if (!v->health) {
        // No checks (any more): as far as checks go, the endpoint is up.
        if (!targets_.count(key)) continue;
        registry_.get(v->label, ep.resolved).checked_up.store(true, std::memory_order_relaxed);
        continue;
      }
      wanted.insert(key);
      auto it = targets_.find(key);
      Target* t = it != targets_.end() ? it->second : nullptr;
      if (t) {
        t->spec = *v->health;  // from the next check on
        set_tls(*t, *v, ep, tls);
        continue;
      }
      t = new Target;
      t->owner = this;
      t->health = &registry_.get(v->label, ep.resolved);
      t->spec = *v->health;
      t->addr = ep.sockaddr;
      t->host = ep.address;
      set_tls(*t, *v, ep, tls);
      t->health->check_streak = 0;
      t->health->checked_up.store(!t->spec.start_unhealthy, std::memory_order_relaxed);
      if (uv_timer_init(ctx_.loop, &t->timer) != 0) {
        delete t;
        continue;
      }
      t->timer.data = t;
      targets_.emplace(key, t);
      uv_timer_start(&t->timer, &HealthChecker::on_timer, 0, t->spec.interval_ms);  // at once
    }
  }
  for (auto it = targets_.begin(); it != targets_.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    Target* t = it->second;
    if (t->probe) std::exchange(t->probe, nullptr)->abandon();
    t->health->checked_up.store(true, std::memory_order_relaxed);
    uv_close(net::as_handle(&t->timer),
             [](uv_handle_t* h) { delete static_cast<Target*>(h->data); });
    it = targets_.erase(it);
  }
}

void HealthChecker::set_tls(Target& t, const routing::Version& v, const routing::Endpoint& ep,
                            const net::TlsContexts* tls) {
  t.tls_required = v.tls.has_value();
  t.tls = nullptr;
  t.server_name.clear();
  if (!v.tls) return;
  if (const auto* found = tls ? tls->upstream(v.tls->identity()) : nullptr) t.tls = *found;
  t.server_name = v.tls_server_name(ep);
}

void HealthChecker::on_timer(uv_timer_t* timer) {
  auto* t = static_cast<Target*>(timer->data);
  // A changed interval applies from here.
  if (uv_timer_get_repeat(timer) != t->spec.interval_ms)
    uv_timer_set_repeat(timer, t->spec.interval_ms);
  if (t->probe) return;  // the previous check is still running (its timeout ends it)
  t->probe = new HealthProbe(t->owner->ctx_, *t);
  t->probe->start(t->owner->ctx_);
}

void HealthChecker::close() {
  if (std::exchange(closed_, true)) return;
  for (auto& [key, t] : targets_) {
    if (t->probe) std::exchange(t->probe, nullptr)->abandon();
    uv_close(net::as_handle(&t->timer),
             [](uv_handle_t* h) { delete static_cast<Target*>(h->data); });
  }
  targets_.clear();
}

}  // namespace sluice::upstream
