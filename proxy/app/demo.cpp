// `sluice demo`: demo upstreams on their own loop thread, and the proxy on the embedded config.
#include "app/demo.h"

#include <uv.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>

#include "admin/server.h"
#include "app/serve.h"
#include "app/server.h"
#include "config/loader.h"
#include "demo_config.h"
#include "http/parser.h"
#include "net/listener.h"
#include "net/loop_context.h"
#include "net/stream.h"
#include "routing/table.h"

namespace sluice::app {
namespace {

using net::as_handle;

struct DemoListener;

// One connection to a demo upstream. Answers one request at a time, in order. Owned by its
// listener's `conns`; freed by the last close callback (its stream's or its timer's).
class DemoConn final : public http::Sink, public net::StreamEvents {
 public:
  DemoConn(DemoListener& l, net::LoopContext& ctx);
  bool accept(net::Listener& from);
  bool has_handles() const { return open_handles_ > 0; }
  void close();

 private:
  void on_message_begin(http::Parser&) override {}
  int on_head(http::Parser&) override { return 0; }
  int on_body(http::Parser&, const char*, size_t) override { return 0; }
  bool on_message_end(http::Parser& p) override;
  void on_stream_data(const char* data, size_t len) override { feed(data, len); }
  void on_stream_end(int) override { close(); }
  void on_stream_written(int status) override;
  void on_stream_closed() override { handle_closed(); }
  void answer();
  void feed(const char* data, size_t len);
  void handle_closed();
  static void on_timer(uv_timer_t* t);

  DemoListener& listener_;
  net::LoopContext& ctx_;
  net::TcpStream stream_;
  uv_timer_t timer_{};
  http::Parser parser_;
  net::Outbox out_;
  int open_handles_ = 0;
  bool closing_ = false;
  bool busy_ = false;  // a response is pending (delayed)
  bool keep_alive_ = true;
  bool head_ = false;
  std::string pending_;
};

struct DemoListener {
  DemoListener(net::LoopContext& c, UpstreamSpec s)
      : ctx(c),
        spec(std::move(s)),
        listener(c, 0, [this](net::Listener& from, int status) { on_connection(from, status); }) {}
  net::LoopContext& ctx;
  UpstreamSpec spec;
  net::Listener listener;
  std::mt19937 rng{std::random_device{}()};
  std::unordered_map<DemoConn*, std::unique_ptr<DemoConn>> conns;

  void on_connection(net::Listener& from, int status) {
    if (status < 0) return;
    auto c = std::make_unique<DemoConn>(*this, ctx);
    DemoConn* raw = c.get();
    conns.emplace(raw, std::move(c));
    if (!raw->accept(from) && !raw->has_handles()) conns.erase(raw);
  }
};

DemoConn::DemoConn(DemoListener& l, net::LoopContext& ctx)
    : listener_(l), ctx_(ctx), stream_(ctx, *this), parser_(HTTP_REQUEST, *this, 65536, 100) {}

bool DemoConn::accept(net::Listener& from) {
  if (uv_timer_init(ctx_.loop, &timer_) == 0) {
    timer_.data = this;
    ++open_handles_;
  }
  int rc = from.accept(stream_);
  if (stream_.open()) ++open_handles_;
  if (rc == 0 && !timer_.data) rc = UV_ENOMEM;
  if (rc == 0) rc = stream_.start_reading();
  if (rc != 0) {
    close();
    return false;
  }
  return true;
}

void DemoConn::close() {
  if (std::exchange(closing_, true)) return;
  stream_.close();
  if (timer_.data && !uv_is_closing(as_handle(&timer_)))
    uv_close(as_handle(&timer_),
             [](uv_handle_t* h) { static_cast<DemoConn*>(h->data)->handle_closed(); });
}

void DemoConn::handle_closed() {
  if (--open_handles_ == 0) listener_.conns.erase(this);  // last use of this
}

void DemoConn::feed(const char* data, size_t len) {
  if (busy_) {
    pending_.append(data, len);
    return;
  }
  http::Parser::Result r = parser_.feed(data, len);
  if (r.status == http::Parser::Status::kError) {
    close();
    return;
  }
  if (r.consumed < len) pending_.append(data + r.consumed, len - r.consumed);
}

bool DemoConn::on_message_end(http::Parser& p) {
  keep_alive_ = p.keep_alive();
  head_ = p.method() == HTTP_HEAD;
  const uint32_t delay = listener_.spec.max_delay_ms
                             ? uint32_t(listener_.rng() % (listener_.spec.max_delay_ms + 1))
                             : 0;
  if (delay) {
    busy_ = true;  // what arrives meanwhile waits in pending_
    uv_timer_start(&timer_, &DemoConn::on_timer, delay, 0);
    return true;  // pause: the parser resumes once the answer is out
  }
  answer();
  return closing_ || !keep_alive_;  // answered: parse what was pipelined behind it, if anything
}

void DemoConn::on_timer(uv_timer_t* t) {
  auto* self = static_cast<DemoConn*>(t->data);
  if (self->closing_) return;
  self->busy_ = false;
  self->answer();
  if (self->closing_ || !self->keep_alive_) return;
  self->parser_.resume();
  if (!self->pending_.empty()) {
    std::string more;
    more.swap(self->pending_);
    self->feed(more.data(), more.size());
  }
}

void DemoConn::answer() {
  const UpstreamSpec& spec = listener_.spec;
  const bool fail = spec.fail_percent && listener_.rng() % 100 < spec.fail_percent;
  std::string body =
      fail ? "hello from " + spec.name + ": simulated failure\n" : "hello from " + spec.name + "\n";
  out_.copy(std::string("HTTP/1.1 ") + (fail ? "500 Internal Server Error" : "200 OK") +
            "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\nx-demo-upstream: " + spec.name + (keep_alive_ ? "" : "\r\nConnection: close") +
            "\r\n\r\n" + (head_ ? "" : body));
  if (stream_.write(out_) != 0)
    close();
  else if (!keep_alive_ && stream_.queued_bytes() == 0)
    close();  // else once the answer has left (on_stream_written)
}

void DemoConn::on_stream_written(int status) {
  if (status < 0 || (!keep_alive_ && !busy_ && stream_.queued_bytes() == 0)) close();
}

}  // namespace

struct Upstreams::Impl {
  uv_loop_t loop{};
  net::LoopContext ctx;
  uv_async_t stop_async{};
  std::vector<std::unique_ptr<DemoListener>> listeners;
  std::thread thread;
  bool running = false;

  static void on_stop(uv_async_t* a) {
    auto* self = static_cast<Impl*>(a->data);
    for (auto& l : self->listeners) {
      std::vector<DemoConn*> all;
      for (auto& [c, owned] : l->conns) all.push_back(c);
      for (DemoConn* c : all) c->close();
      l->listener.close();
    }
    uv_close(as_handle(&self->stop_async), nullptr);
  }
};

Upstreams::Upstreams() : impl_(std::make_unique<Impl>()) {}
Upstreams::~Upstreams() {
  stop();
}

bool Upstreams::start(const std::vector<UpstreamSpec>& specs, std::string* error) {
  Impl& m = *impl_;
  uv_loop_init(&m.loop);
  m.loop.data = &m.ctx;
  m.ctx.loop = &m.loop;
  uv_async_init(&m.loop, &m.stop_async, &Impl::on_stop);
  m.stop_async.data = &m;
  for (const UpstreamSpec& spec : specs) {
    auto l = std::make_unique<DemoListener>(m.ctx, spec);
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", spec.port, &addr);
    if (int rc = l->listener.bind(reinterpret_cast<const sockaddr*>(&addr), 512); rc != 0) {
      *error = "demo upstream " + spec.name +
               " cannot listen on 127.0.0.1:" + std::to_string(spec.port) + ": " + uv_strerror(rc);
      m.listeners.push_back(std::move(l));
      Impl::on_stop(&m.stop_async);     // closes every listener, this one too
      uv_run(&m.loop, UV_RUN_DEFAULT);  // the close callbacks, before the listeners go
      m.listeners.clear();
      uv_loop_close(&m.loop);
      return false;
    }
    m.listeners.push_back(std::move(l));
  }
  m.running = true;
  m.thread = std::thread([&m] {
    uv_run(&m.loop, UV_RUN_DEFAULT);
    uv_loop_close(&m.loop);
  });
  return true;
}

void Upstreams::stop() {
  if (!impl_->running) return;
  impl_->running = false;
  uv_async_send(&impl_->stop_async);
  impl_->thread.join();
}

int run_demo() {
  Upstreams upstreams;
  std::string error;
  if (!upstreams.start({{"v1", 9101, 0, 0}, {"v2", 9102, 0, 0}, {"v3", 9103, 20, 120}}, &error)) {
    std::fprintf(stderr, "sluice demo: %s\n", error.c_str());
    return 1;
  }
  // The admin listener ([admin] in demo.toml) comes with app::serve, so the canary can be
  // moved and rolled back with `sluice alias set` / `sluice rollback` while the demo runs.
  app::ServeOptions options;
  options.config_path = "demo.toml";
  options.config_text = std::string(kDemoToml);
  options.on_ready = [](app::Server& s, const admin::AdminServer& adm) {
    const std::string addr = s.bound().empty() ? "127.0.0.1:8080" : s.bound().front();
    const std::string admin_addr = adm.bound();
    std::printf(
        "\nsluice demo is running: function `hello`, versions 1, 2, 3 (3 fails 20%% of requests)\n"
        "alias hello:prod sends 90%% to version 1 and 10%% to version 2.\n\n"
        "Try:\n"
        "  curl -i http://%s/                      # see x-sluice-version: hello:1 or hello:2\n"
        "  for i in $(seq 20); do curl -s http://%s/; done | sort | uniq -c\n"
        "  curl -s -H 'x-sluice-version: 2' http://%s/   # allow_override is off: still "
        "weighted\n"
        "  sluice alias set hello:prod 1=50 2=50 --admin %s   # move the canary\n"
        "  sluice rollback hello:prod --admin %s              # and back, for the next request\n"
        "  sluice status --admin %s\n\n"
        "Press Ctrl-C to stop.\n",
        addr.c_str(), addr.c_str(), addr.c_str(), admin_addr.c_str(), admin_addr.c_str(),
        admin_addr.c_str());
    std::fflush(stdout);
  };
  int rc = app::serve(options);
  upstreams.stop();
  return rc;
}

}  // namespace sluice::app
