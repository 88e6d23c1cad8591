// One keep-alive connection to an upstream endpoint, and the per-worker pool of idle ones.
// A connection is either connecting, busy (lent to one request: its Borrower), or idle in its pool.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "http/parser.h"
#include "routing/table.h"
#include "worker/context.h"

namespace sluice::upstream {

enum class Failure { kConnect, kTimeout, kReset, kBadResponse };

// The request side that borrows a connection. Callbacks run on the worker's loop.
class Borrower {
 public:
  virtual ~Borrower() = default;
  // Response parse events (see http::Sink); the connection forwards them.
  virtual int on_upstream_head(http::Parser& resp) = 0;
  virtual int on_upstream_body(const char* data, size_t len) = 0;
  virtual bool on_upstream_end(http::Parser& resp) = 0;
  // Raw bytes after a 101 (tunnel mode).
  virtual void on_upstream_raw(const char* data, size_t len) = 0;
  // Called once after a batch of upstream bytes was handled (flush point).
  virtual void on_upstream_flush() = 0;
  // The connection failed or closed; it has already detached itself from the borrower.
  // `response_started`: some response bytes had arrived.
  virtual void on_upstream_failed(Failure kind, bool response_started, bool reused) = 0;
  // The upstream's write queue went back under the high-water mark.
  virtual void on_upstream_drained() = 0;
};

class Pool;

class Connection final : public http::Sink {
 public:
  // Starts connecting to the pool's endpoint. Returns nullptr if the socket could not be created.
  static Connection* open(Pool& pool, uint32_t connect_timeout_ms);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Lends this connection to `b` for one exchange. `response_timeout_ms` runs from when the
  // request head is flushed until the first response byte.
  void lend(Borrower* b, uint32_t response_timeout_ms, bool head_request);
  // The borrower is done. If `reusable` and the exchange ended cleanly, the connection goes back
  // to its pool; otherwise it closes. Either way no more borrower callbacks come.
  void release(bool reusable);
  // Closes now; the borrower (if any) is detached first without a callback.
  void close();

  // Bytes for the upstream; borrowed pieces must stay valid until flush().
  worker::Outbox& out() { return out_; }
  // Sends what out() holds (or keeps it until the connection is established).
  void flush();
  void start_tunnel();  // after 101: relay raw bytes
  void pause_reading();
  void resume_reading();
  size_t queued_bytes() const;
  bool reused() const { return reused_; }
  bool exchange_complete() const { return response_done_; }
  const routing::Endpoint& endpoint() const;
  ~Connection() override = default;

 private:
  friend class Pool;
  explicit Connection(Pool& pool);

  int on_head(http::Parser& p) override;
  int on_body(http::Parser& p, const char* data, size_t len) override;
  bool on_message_end(http::Parser& p) override;

  static void on_connect(uv_connect_t* req, int status);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_timer(uv_timer_t* t);
  static void on_closed(uv_handle_t* h);
  void fail(Failure kind);
  void go_idle();
  void start_reading();

  Pool& pool_;  // pools live as long as their worker, which outlives its connections
  uv_tcp_t socket_{};
  uv_timer_t timer_{};
  uv_connect_t connect_req_{};
  http::Parser parser_;
  worker::Outbox out_;
  std::string pre_connect_;       // bytes queued before the connection is established
  Borrower* borrower_ = nullptr;  // the request using this connection; it calls release()
  int open_handles_ = 0;
  uint32_t response_timeout_ms_ = 0;
  bool connected_ = false;
  bool closing_ = false;
  bool reused_ = false;
  bool reading_ = false;
  bool paused_ = false;
  bool tunnel_ = false;
  bool awaiting_response_ = false;  // head sent, no response byte yet
  bool response_started_ = false;
  bool response_done_ = false;
  bool head_request_ = false;
  bool broken_ = false;  // must not be reused (extra bytes, close requested, parse error)
};

// Idle keep-alive connections to one endpoint, per worker. Lives as long as its worker.
class Pool {
 public:
  Pool(worker::LoopContext& ctx, routing::Endpoint endpoint, uint32_t max_idle,
       uint32_t idle_timeout_ms)
      : ctx_(ctx),
        endpoint_(std::move(endpoint)),
        max_idle_(max_idle),
        idle_timeout_ms_(idle_timeout_ms) {}
  ~Pool();

  // An idle connection (most recently used first), or nullptr.
  Connection* take_idle();
  const routing::Endpoint& endpoint() const { return endpoint_; }
  worker::LoopContext& context() { return ctx_; }
  void close_all();  // closes idle connections (at shutdown)
  size_t idle_count() const { return idle_.size(); }

 private:
  friend class Connection;
  void add_idle(Connection* c);
  void remove_idle(Connection* c);
  void erase(Connection* c);  // last use of c

  worker::LoopContext& ctx_;
  routing::Endpoint endpoint_;
  uint32_t max_idle_;
  uint32_t idle_timeout_ms_;
  std::vector<Connection*> idle_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> all_;
};

}  // namespace sluice::upstream
