// The admin listener: connections, HTTP parsing, routing to the control plane (see server.h).
#include "admin/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "http/parser.h"
#include "http/rewrite.h"
#include "observe/prometheus.h"
#include "worker/context.h"

namespace sluice::admin {
namespace {

using nlohmann::json;

constexpr size_t kMaxBodyBytes = 1 << 20;
constexpr size_t kMaxConnections = 256;
constexpr uint64_t kIdleTimeoutMs = 60000;  // admin clients are few: CLI, scrapers, dashboards
constexpr uint32_t kMaxHeadBytes = 64 * 1024;
constexpr uint32_t kMaxHeaders = 100;

struct WriteOp {
  uv_write_t req{};
  std::string bytes;
};

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) parts.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

std::string peer_ip(uv_tcp_t* tcp) {
  sockaddr_storage a{};
  int len = sizeof a;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&a), &len) != 0) return "?";
  char buf[INET6_ADDRSTRLEN] = "?";
  if (a.ss_family == AF_INET)
    uv_ip4_name(reinterpret_cast<sockaddr_in*>(&a), buf, sizeof buf);
  else
    uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&a), buf, sizeof buf);
  return buf;
}

AdminServer::Reply json_reply(const ApiResult& r) {
  return {r.status, "application/json", r.body.dump(2) + "\n", false};
}

}  // namespace

bool token_equals(std::string_view presented, std::string_view expected) {
  // Always walks the whole expected token; a length mismatch only sets a bit.
  unsigned char diff = presented.size() != expected.size() ? 1 : 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    unsigned char p = i < presented.size() ? static_cast<unsigned char>(presented[i]) : 0;
    diff |= static_cast<unsigned char>(p ^ static_cast<unsigned char>(expected[i]));
  }
  return diff == 0 && !expected.empty();
}

bool is_loopback_host(std::string_view host) {
  return host == "localhost" || host == "::1" || host.substr(0, 4) == "127.";
}

// One admin client connection. Owned by AdminServer::conns_; freed by erase() from the close
// callback. Requests are answered synchronously as each message ends, in order.
class AdminConn final : public http::Sink {
 public:
  explicit AdminConn(AdminServer& server)
      : server_(server), parser_(HTTP_REQUEST, *this, kMaxHeadBytes, kMaxHeaders) {}

  uv_tcp_t tcp_{};
  uv_timer_t idle_timer_{};  // closes a connection idle for kIdleTimeoutMs

  void start() {
    tcp_.data = this;
    peer_ = peer_ip(&tcp_);
    int rc = uv_timer_init(tcp_.loop, &idle_timer_);
    if (rc == 0) {
      idle_timer_.data = this;
      ++open_handles_;
      rc = uv_timer_start(&idle_timer_, &AdminConn::on_idle, kIdleTimeoutMs, kIdleTimeoutMs);
    }
    if (rc == 0)
      rc = uv_read_start(worker::as_stream(&tcp_), &worker::LoopContext::on_alloc, &on_read);
    if (rc != 0) close();
  }

  // Safe to call twice. Teardown starts here from: read error/EOF, write failure, idle timeout,
  // a response with Connection: close, AdminServer::close(). The last close callback frees this.
  void close() {
    if (std::exchange(closing_, true)) return;
    for (uv_handle_t* h : {worker::as_handle(&tcp_), worker::as_handle(&idle_timer_)})
      if (h->data && !uv_is_closing(h)) uv_close(h, &AdminConn::on_closed);
  }

  int on_head(http::Parser& p) override {
    request_ = {};
    request_.method = std::string(p.method_name());
    request_.target = std::string(p.url());
    request_.authorization = std::string(p.header("authorization"));
    request_.peer = peer_;
    keep_alive_ = p.keep_alive();
    head_request_ = request_.method == "HEAD";
    if (p.has_content_length() && p.content_length() > kMaxBodyBytes) {
      too_large_ = true;
      return -1;
    }
    return 0;
  }
  int on_body(http::Parser&, const char* data, size_t len) override {
    if (request_.body.size() + len > kMaxBodyBytes) {
      too_large_ = true;
      return -1;
    }
    request_.body.append(data, len);
    return 0;
  }
  bool on_message_end(http::Parser&) override {
    respond(server_.handle(request_), !keep_alive_);
    return false;
  }

 private:
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    auto* self = static_cast<AdminConn*>(s->data);
    if (nread < 0) {
      self->close();
      return;
    }
    if (nread == 0 || self->close_after_write_) return;
    uv_timer_again(&self->idle_timer_);
    http::Parser::Result r = self->parser_.feed(buf->base, static_cast<size_t>(nread));
    if (r.status == http::Parser::Status::kError || r.status == http::Parser::Status::kUpgrade) {
      int status = self->too_large_ ? 413 : 400;
      json body = {{"error", self->too_large_ ? "request body too large" : "malformed request"}};
      self->respond({status, "application/json", body.dump() + "\n", false}, true);
    }
    self->flush();
  }

  void respond(const AdminServer::Reply& reply, bool close_after) {
    out_ += "HTTP/1.1 " + std::to_string(reply.status) + " " +
            std::string(http::status_text(reply.status)) + "\r\n";
    out_ += "Content-Type: " + reply.content_type + "\r\n";
    out_ += "Content-Length: " + std::to_string(reply.body.size()) + "\r\n";
    out_ += "Cache-Control: no-store\r\n";
    if (reply.unauthorized) out_ += "WWW-Authenticate: Bearer realm=\"sluice\"\r\n";
    if (close_after) out_ += "Connection: close\r\n";
    out_ += "\r\n";
    if (!head_request_) out_ += reply.body;  // HEAD: same head, no body
    if (close_after) close_after_write_ = true;
  }

  void flush() {
    if (out_.empty()) {
      if (close_after_write_ && pending_writes_ == 0) close();
      return;
    }
    auto op = std::make_unique<WriteOp>();
    op->bytes = std::move(out_);
    out_.clear();
    op->req.data = op.get();
    uv_buf_t b = uv_buf_init(op->bytes.data(), static_cast<unsigned>(op->bytes.size()));
    int rc = uv_write(&op->req, worker::as_stream(&tcp_), &b, 1, &AdminConn::on_written);
    if (rc != 0) {
      close();
      return;
    }
    op.release();
    ++pending_writes_;
  }

  static void on_written(uv_write_t* req, int status) {
    std::unique_ptr<WriteOp> op(static_cast<WriteOp*>(req->data));
    auto* self = static_cast<AdminConn*>(req->handle->data);
    --self->pending_writes_;
    if (status < 0) {
      self->close();
      return;
    }
    if (self->close_after_write_ && self->pending_writes_ == 0) {
      uv_shutdown_t* sd = new uv_shutdown_t{};
      if (uv_shutdown(sd, worker::as_stream(&self->tcp_), [](uv_shutdown_t* r, int) {
            auto* c = static_cast<AdminConn*>(r->handle->data);
            delete r;
            c->close();
          }) != 0) {
        delete sd;
        self->close();
      }
    }
  }

  static void on_closed(uv_handle_t* h) {
    auto* self = static_cast<AdminConn*>(h->data);
    if (--self->open_handles_ == 0) self->server_.erase(self);  // last use of self
  }

  static void on_idle(uv_timer_t* t) { static_cast<AdminConn*>(t->data)->close(); }

  AdminServer& server_;  // outlives its connections (close() closes them first)
  http::Parser parser_;
  AdminServer::Request request_;
  std::string peer_;
  std::string out_;
  bool keep_alive_ = true;
  bool head_request_ = false;
  bool too_large_ = false;
  bool close_after_write_ = false;
  bool closing_ = false;
  int pending_writes_ = 0;
  int open_handles_ = 1;  // tcp_ (initialised by AdminServer::on_connection), then the timer
};

AdminServer::AdminServer(Control& control, config::AdminSpec spec, std::string config_dir)
    : control_(control), spec_(std::move(spec)), config_dir_(std::move(config_dir)) {}

AdminServer::~AdminServer() = default;

bool AdminServer::start(uv_loop_t* loop, std::string* error) {
  if (!spec_.token_file.empty()) {
    std::filesystem::path p(spec_.token_file);
    if (p.is_relative()) p = std::filesystem::path(config_dir_) / p;
    std::ifstream in(p, std::ios::binary);
    if (!in) {
      *error = "cannot read admin token_file " + p.string() + ": " + std::strerror(errno);
      return false;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    token_ = ss.str();
    while (!token_.empty() && std::isspace(static_cast<unsigned char>(token_.back())))
      token_.pop_back();
    if (token_.empty()) {
      *error = "admin token_file " + p.string() + " is empty";
      return false;
    }
  }
  if (!is_loopback_host(spec_.address.host) && token_.empty()) {
    *error = "admin address " + spec_.address.text +
             " is not loopback: refusing to start without [admin] token_file";
    return false;
  }
  std::string host = spec_.address.host == "localhost" ? "127.0.0.1" : spec_.address.host;
  sockaddr_storage addr{};
  if (uv_ip4_addr(host.c_str(), spec_.address.port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(host.c_str(), spec_.address.port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0) {
    *error = "admin address " + spec_.address.text + " is not an IP address";
    return false;
  }
  listener_ = new uv_tcp_t{};
  int rc = uv_tcp_init(loop, listener_);
  if (rc != 0) {
    delete listener_;
    listener_ = nullptr;
    *error = std::string("admin listener: uv_tcp_init: ") + uv_err_name(rc);
    return false;
  }
  listener_->data = this;
  rc = uv_tcp_bind(listener_, reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(worker::as_stream(listener_), 128, &AdminServer::on_connection);
  if (rc != 0) {
    *error = "cannot listen on admin address " + spec_.address.text + ": " + uv_strerror(rc);
    close();
    return false;
  }
  sockaddr_storage got{};
  int len = sizeof got;
  uv_tcp_getsockname(listener_, reinterpret_cast<sockaddr*>(&got), &len);
  uint16_t port =
      ntohs(got.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&got)->sin_port
                                     : reinterpret_cast<sockaddr_in6*>(&got)->sin6_port);
  bound_ =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  std::fprintf(stderr, "sluice: admin on %s\n", bound_.c_str());
  std::fflush(stderr);
  return true;
}

void AdminServer::close() {
  if (std::exchange(closed_, true)) return;
  if (listener_) {
    uv_close(worker::as_handle(listener_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    listener_ = nullptr;
  }
  std::vector<AdminConn*> open;
  for (auto& [raw, owned] : conns_) open.push_back(raw);
  for (AdminConn* c : open) c->close();
}

void AdminServer::erase(AdminConn* conn) {
  conns_.erase(conn);
}

void AdminServer::on_connection(uv_stream_t* s, int status) {
  auto* self = static_cast<AdminServer*>(s->data);
  if (status < 0 || self->closed_) return;
  auto conn = std::make_unique<AdminConn>(*self);
  // Over the cap the connection is still accepted (so it leaves the backlog) and then closed.
  const bool over_cap = self->conns_.size() >= kMaxConnections;
  if (uv_tcp_init(s->loop, &conn->tcp_) != 0) return;
  conn->tcp_.data = conn.get();
  AdminConn* raw = conn.get();
  self->conns_[raw] = std::move(conn);
  if (uv_accept(s, worker::as_stream(&raw->tcp_)) != 0) {
    raw->close();
    return;
  }
  if (over_cap) {
    raw->close();
    return;
  }
  uv_tcp_nodelay(&raw->tcp_, 1);
  raw->start();
}

bool AdminServer::authorized(const Request& r) const {
  if (token_.empty()) return true;
  std::string_view auth = r.authorization;
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() < kBearer.size() || !http::iequals(auth.substr(0, kBearer.size()), kBearer))
    return false;
  return token_equals(auth.substr(kBearer.size()), token_);
}

AdminServer::Reply AdminServer::handle(const Request& r) {
  std::string_view target = r.target;
  target = target.substr(0, target.find('?'));
  std::vector<std::string> p = split_path(target);
  const std::string& m = r.method;
  const bool mutating = m != "GET" && m != "HEAD";

  auto method_not_allowed = [&](const char* allow) {
    Reply rep = json_reply(api_error(405, m + " is not allowed here (allowed: " + allow + ")"));
    return rep;
  };
  auto live = [&]() -> std::optional<observe::Snapshot> {
    if (!registry_) return std::nullopt;
    return registry_->merged(uv_hrtime() / 1000000);
  };

  if (p.size() == 1 && (p[0] == "healthz" || p[0] == "readyz")) {  // probes: no token, no detail
    if (m != "GET" && m != "HEAD") return method_not_allowed("GET, HEAD");
    const bool ok = p[0] == "healthz" || (ready_ && ready_());
    return {ok ? 200 : 503, "text/plain; charset=utf-8", ok ? "ok\n" : "not ready\n", false};
  }
  if (p.size() == 1 && p[0] == "metrics") {
    if (m != "GET" && m != "HEAD") return method_not_allowed("GET, HEAD");
    std::optional<observe::Snapshot> snap = live();
    std::string text = observe::render_prometheus(
        snap ? *snap : observe::Snapshot{},
        [this](observe::PrometheusWriter& w) { control_.write_metrics(w); });
    return {200, std::string(observe::kPrometheusContentType), std::move(text), false};
  }
  if (p.empty() || p[0] != "admin") return json_reply(api_error(404, "no such endpoint"));

  // Every mutating call needs the token, before anything about the target is revealed.
  if (mutating && !authorized(r)) {
    Reply rep = json_reply(
        api_error(401, r.authorization.empty() ? "missing bearer token" : "wrong bearer token",
                  "authorization"));
    rep.unauthorized = true;
    return rep;
  }
  const std::string actor = "api:" + r.peer;

  if (p.size() == 2 && p[1] == "status") {
    if (m != "GET" && m != "HEAD") return method_not_allowed("GET, HEAD");
    std::optional<observe::Snapshot> snap = live();
    json body = control_.status(snap ? &*snap : nullptr);
    if (status_extension_) status_extension_(body);
    return json_reply({200, std::move(body)});
  }
  if (p.size() == 2 && p[1] == "reload") {
    if (m != "POST") return method_not_allowed("POST");
    return json_reply(control_.reload("api"));
  }
  if (p.size() >= 3 && p[1] == "functions") {
    const std::string& f = p[2];
    if (p.size() == 4 && p[3] == "versions") {
      if (m != "POST") return method_not_allowed("POST");
      return json_reply(control_.publish_version(f, actor));
    }
    if (p.size() == 5 && p[3] == "aliases") {
      if (m != "PUT") return method_not_allowed("PUT");
      json body = json::parse(r.body, nullptr, false);
      if (body.is_discarded())
        return json_reply(api_error(400, "the body is not valid JSON", "body"));
      return json_reply(control_.set_alias(f, p[4], body, actor));
    }
    if (p.size() == 6 && p[3] == "aliases" && p[5] == "rollback") {
      if (m != "POST") return method_not_allowed("POST");
      return json_reply(control_.rollback(f, p[4], actor));
    }
  }
  if (extension_)
    if (std::optional<ApiResult> x = extension_(r, p, actor)) return json_reply(*x);
  return json_reply(api_error(404, "no such endpoint"));
}

}  // namespace sluice::admin
