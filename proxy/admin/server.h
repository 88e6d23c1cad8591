// The admin listener: JSON API and Prometheus metrics over HTTP/1.1 on the control loop, parsed
// with the data plane's llhttp glue. Mutating calls need the bearer token when one is configured.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/model.h"
#include "control/control.h"
#include "control/shift_manager.h"
#include "observe/stats.h"

namespace sluice::net {
class Listener;
struct LoopContext;
}  // namespace sluice::net

namespace sluice::admin {

using control::ApiResult;
using control::Control;

// Compares a presented token with the expected one in time independent of where they differ.
bool token_equals(std::string_view presented, std::string_view expected);
// 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(std::string_view host);

class AdminConn;

class AdminServer {
 public:
  // `control` and `registry` (nullable) must outlive this server. `config_dir` resolves a
  // relative token_file.
  AdminServer(Control& control, config::AdminSpec spec, std::string config_dir = ".");
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Live per-version figures for /admin/status and /metrics (Server::stats()); without one,
  // both render without them.
  void set_registry(const observe::Registry* registry) { registry_ = registry; }
  // GET /readyz answers 200 "ok" while `ready` returns true, else 503 (unset: 503). GET /healthz
  // answers 200 while the process serves. Both need no token and reveal nothing else.
  void set_ready(std::function<bool()> ready) { ready_ = std::move(ready); }

  // Reads the token files (if any), refuses a non-loopback address without a token, binds,
  // listens and prints `sluice: admin on HOST:PORT`. false with `error` on failure. `loop`'s
  // data must be its net::LoopContext (as on the control loop: app/server.cpp).
  bool start(uv_loop_t* loop, std::string* error);
  // The token part of start(), on its own (tests call handle() without a listener). Off
  // loopback, or with read_token_file, every endpoint needs a token; mutating ones need
  // token_file's, reads accept either.
  bool load_tokens(std::string* error);
  // Stops listening and closes every connection (close callbacks run on the loop). Idempotent.
  void close();
  const std::string& bound() const { return bound_; }

  struct Request {
    std::string method;  // "GET", "PUT", ...
    std::string target;  // path and query as sent
    std::string authorization;
    std::string body;
    std::string peer;  // client IP, for the audit actor
  };
  struct Reply {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    bool unauthorized = false;  // adds WWW-Authenticate
    bool deferred = false;      // handle_async only: the answer comes later through `done`
  };
  // Routes one request to the control plane. Runs synchronously on the control loop. Never
  // throws: any exception (from a handler, the control plane or a hook) becomes a 500 answer.
  // POST /admin/reload answers 202 if the file's host names are still resolving.
  Reply handle(const Request& request) noexcept;
  using ReplyDone = std::function<void(Reply)>;
  // The same, but an answer that must wait (POST /admin/reload while the file's host names
  // resolve, off the loop) comes later: `done` runs exactly once, now or later on the loop,
  // unless the control plane closes first.
  void handle_async(const Request& request, ReplyDone done) noexcept;

  // Hooks for proxy/shift/ (progressive shifts): `extension` is asked, after the token check,
  // about every /admin/... path handle() does not know (`path`: its segments); nullopt means
  // not handled (404). `status_extension` adds to the GET /admin/status body.
  using Extension = std::function<std::optional<ApiResult>(
      const Request&, const std::vector<std::string>& path, const std::string& actor)>;
  void set_extension(Extension e) { extension_ = std::move(e); }
  void set_status_extension(std::function<void(nlohmann::json&)> f) {
    status_extension_ = std::move(f);
  }

  // Serves progressive shifts: /admin/functions/{f}/aliases/{a}/shift (POST, GET, DELETE),
  // GET /admin/shifts, and a "shifts" section in /admin/status. `shifts` must outlive this
  // server or the server must be closed first.
  void attach_shifts(control::ShiftManager& shifts);

  // Connection bookkeeping (AdminConn only): forget() when it starts closing (frees its slot),
  // erase() from its last close callback (frees it).
  void forget(AdminConn* conn);
  void erase(AdminConn* conn);

 private:
  void on_connection(net::Listener& from, int status);
  // The connection to close so a newcomer fits: waiting for a head before waiting for a body,
  // longest wait first; only those of `peer` when given. nullptr if every one is answering.
  AdminConn* least_useful(const std::string* peer) const;
  bool has_token(const Request& r, const std::string& token) const;
  bool authorized(const Request& r, bool mutating) const;
  // handle() without the error boundary; `later` set: may defer (Reply::deferred) and answer
  // through it.
  Reply route(const Request& request, const ReplyDone* later);
  static Reply internal_error(const Request& request, const char* what) noexcept;

  Control& control_;
  config::AdminSpec spec_;
  std::string config_dir_;
  std::string token_;                            // empty: no token configured
  std::string read_token_;                       // empty: none; allows GET/HEAD only
  bool reads_need_token_ = false;                // off loopback, or with a read token
  const observe::Registry* registry_ = nullptr;  // kept alive by the caller
  net::LoopContext* ctx_ = nullptr;              // the loop's, from start()
  net::Listener* listener_ = nullptr;            // freed by its close callback
  std::string bound_;
  std::unordered_map<AdminConn*, std::unique_ptr<AdminConn>> conns_;  // open and closing
  std::unordered_map<std::string, size_t> per_peer_;  // open connections per client IP
  size_t open_ = 0;                                   // open (not closing) connections
  uint64_t shed_ = 0;
  bool closed_ = false;
  Extension extension_;                                    // proxy/shift/ hook
  std::function<void(nlohmann::json&)> status_extension_;  // proxy/shift/ hook
  std::function<bool()> ready_;                            // /readyz (admin/serve.cpp)
};

}  // namespace sluice::admin
