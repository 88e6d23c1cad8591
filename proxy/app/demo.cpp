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
#include "net/loop_context.h"
#include "routing/table.h"

namespace sluice::app {
namespace {

using net::as_handle;
using net::as_stream;

struct Listener;

// One connection to a demo upstream. Answers one request at a time, in order.
class DemoConn final : public http::Sink {
 public:
  explicit DemoConn(Listener& l);
  bool accept(uv_stream_t* server);
  void close();

 private:
  void on_message_begin(http::Parser&) override {}
  int on_head(http::Parser&) override { return 0; }
  int on_body(http::Parser&, const char*, size_t) override { return 0; }
  bool on_message_end(http::Parser& p) override;
  void respond();
  void feed(const char* data, size_t len);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_timer(uv_timer_t* t);
  static void on_write(uv_write_t* req, int status);
  static void on_closed(uv_handle_t* h);

  Listener& listener_;
  uv_tcp_t socket_{};
  uv_timer_t timer_{};
  http::Parser parser_;
  int open_handles_ = 0;
  bool closing_ = false;
  bool busy_ = false;  // a response is pending (delayed)
  bool keep_alive_ = true;
  bool head_ = false;
  std::string pending_;
};

struct Listener {
  UpstreamSpec spec;
  uv_tcp_t tcp{};
  std::mt19937 rng{std::random_device{}()};
  std::unordered_map<DemoConn*, std::unique_ptr<DemoConn>> conns;
  static void on_connection(uv_stream_t* s, int status) {
    auto* self = static_cast<Listener*>(s->data);
    if (status < 0) return;
    auto c = std::make_unique<DemoConn>(*self);
    DemoConn* raw = c.get();
    self->conns.emplace(raw, std::move(c));
    raw->accept(s);
  }
};

struct DemoWrite {
  uv_write_t req{};
  std::string bytes;
};

DemoConn::DemoConn(Listener& l) : listener_(l), parser_(HTTP_REQUEST, *this, 65536, 100) {}

bool DemoConn::accept(uv_stream_t* server) {
  uv_tcp_init(server->loop, &socket_);
  socket_.data = this;
  ++open_handles_;
  uv_timer_init(server->loop, &timer_);
  timer_.data = this;
  ++open_handles_;
  if (uv_accept(server, as_stream(&socket_)) != 0) {
    close();
    return false;
  }
  uv_tcp_nodelay(&socket_, 1);
  uv_read_start(as_stream(&socket_), &net::LoopContext::on_alloc, &DemoConn::on_read);
  return true;
}

void DemoConn::close() {
  if (std::exchange(closing_, true)) return;
  for (uv_handle_t* h : {as_handle(&socket_), as_handle(&timer_)})
    if (!uv_is_closing(h)) uv_close(h, &DemoConn::on_closed);
}

void DemoConn::on_closed(uv_handle_t* h) {
  auto* self = static_cast<DemoConn*>(h->data);
  if (--self->open_handles_ == 0) self->listener_.conns.erase(self);  // last use of self
}

void DemoConn::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<DemoConn*>(s->data);
  if (nread < 0) {
    self->close();
    return;
  }
  if (nread > 0) self->feed(buf->base, size_t(nread));
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
  busy_ = true;
  const uint32_t delay = listener_.spec.max_delay_ms
                             ? uint32_t(listener_.rng() % (listener_.spec.max_delay_ms + 1))
                             : 0;
  if (delay)
    uv_timer_start(&timer_, &DemoConn::on_timer, delay, 0);
  else
    respond();
  return true;
}

void DemoConn::on_timer(uv_timer_t* t) {
  static_cast<DemoConn*>(t->data)->respond();
}

void DemoConn::respond() {
  if (closing_) return;
  const UpstreamSpec& spec = listener_.spec;
  const bool fail = spec.fail_percent && listener_.rng() % 100 < spec.fail_percent;
  std::string body =
      fail ? "hello from " + spec.name + ": simulated failure\n" : "hello from " + spec.name + "\n";
  auto* w = new DemoWrite;
  w->bytes = std::string("HTTP/1.1 ") + (fail ? "500 Internal Server Error" : "200 OK") +
             "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\nx-demo-upstream: " + spec.name + (keep_alive_ ? "" : "\r\nConnection: close") +
             "\r\n\r\n" + (head_ ? "" : body);
  uv_buf_t buf = uv_buf_init(w->bytes.data(), unsigned(w->bytes.size()));
  w->req.data = w;
  if (uv_write(&w->req, as_stream(&socket_), &buf, 1, &DemoConn::on_write) != 0) {
    delete w;
    close();
    return;
  }
  busy_ = false;
  if (!keep_alive_) return;  // closed after the write completes
  parser_.resume();
  if (!pending_.empty()) {
    std::string more;
    more.swap(pending_);
    feed(more.data(), more.size());
  }
}

void DemoConn::on_write(uv_write_t* req, int status) {
  auto* w = static_cast<DemoWrite*>(req->data);
  auto* self = static_cast<DemoConn*>(req->handle->data);
  delete w;
  if (status < 0 || (!self->keep_alive_ && !self->busy_)) self->close();
}

}  // namespace

struct Upstreams::Impl {
  uv_loop_t loop{};
  net::LoopContext ctx;
  uv_async_t stop_async{};
  std::vector<std::unique_ptr<Listener>> listeners;
  std::thread thread;
  bool running = false;

  static void on_stop(uv_async_t* a) {
    auto* self = static_cast<Impl*>(a->data);
    for (auto& l : self->listeners) {
      std::vector<DemoConn*> all;
      for (auto& [c, owned] : l->conns) all.push_back(c);
      for (DemoConn* c : all) c->close();
      uv_close(as_handle(&l->tcp), nullptr);
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
    auto l = std::make_unique<Listener>();
    l->spec = spec;
    uv_tcp_init(&m.loop, &l->tcp);
    l->tcp.data = l.get();
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", spec.port, &addr);
    int rc = uv_tcp_bind(&l->tcp, reinterpret_cast<const sockaddr*>(&addr), 0);
    if (rc == 0) rc = uv_listen(as_stream(&l->tcp), 512, &Listener::on_connection);
    if (rc != 0) {
      *error = "demo upstream " + spec.name +
               " cannot listen on 127.0.0.1:" + std::to_string(spec.port) + ": " + uv_strerror(rc);
      uv_close(as_handle(&l->tcp), nullptr);
      m.listeners.push_back(std::move(l));
      Impl::on_stop(&m.stop_async);
      m.listeners.clear();
      uv_run(&m.loop, UV_RUN_DEFAULT);
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
