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
#include "net/loop_context.h"
#include "net/stream.h"
#include "net/tls_stream.h"
#include "routing/table.h"
#include "upstream/h2_client.h"

namespace sluice::upstream {

// How an upstream attempt failed. kConnect and kConnectTimeout: the connection was never
// established, so nothing of the request reached the upstream.
// kTls: the TLS handshake failed (verification, protocol, alert); nothing was sent either.
enum class Failure { kConnect, kConnectTimeout, kTimeout, kReset, kBadResponse, kTls };

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
  // `response_started`: some response bytes had arrived. `unsent`: when the connection was never
  // established, the request bytes queued for it (head and any body so far), which the borrower
  // may move to another connection; nullptr otherwise.
  virtual void on_upstream_failed(Failure kind, bool response_started, bool reused,
                                  std::string* unsent) = 0;
  // The upstream's write queue went back under the high-water mark.
  virtual void on_upstream_drained() = 0;
  // The connection ended without failing anyone: the upstream closed a tunnel cleanly (a
  // WebSocket that ends normally), or closed or broke after a complete response. The connection
  // has detached itself from the borrower.
  virtual void on_upstream_eof() = 0;
};

class Pool;

class Connection final : public http::Sink, public net::StreamEvents {
 public:
  // Starts connecting to the pool's endpoint. Returns nullptr if the socket could not be created.
  static Connection* open(Pool& pool, uint32_t connect_timeout_ms);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Lends this connection to `b` for one exchange. `response_timeout_ms` bounds every silence of
  // the upstream while it owes us something: from the end of the request until the first response
  // byte, between response reads, and while our writes to it make no progress.
  void lend(Borrower* b, uint32_t response_timeout_ms, bool head_request);
  // The borrower has queued the whole request (head and body). The wait for the response starts
  // once those bytes have left our write queue.
  void end_of_request();
  // The borrower is done. If `reusable` and the exchange ended cleanly, the connection goes back
  // to its pool; otherwise it closes. Either way no more borrower callbacks come.
  void release(bool reusable);
  // Closes now; the borrower (if any) is detached first without a callback.
  void close();

  // Bytes for the upstream; borrowed pieces must stay valid until flush().
  net::Outbox& out() { return out_; }
  // Sends what out() holds (or keeps it until the connection is established).
  void flush();
  void start_tunnel();  // after 101: relay raw bytes; the borrower times the tunnel
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

  // net::StreamEvents (the upstream socket)
  void on_stream_data(const char* data, size_t len) override;
  void on_stream_end(int status) override;
  void on_stream_written(int status) override;
  void on_stream_connected(int status) override;
  void on_stream_closed() override;  // also the timer's close: the last one frees this

  static void on_timer(uv_timer_t* t);
  void fail(Failure kind);
  void write_failed();
  void go_idle();
  void start_reading();
  uint64_t now_ms() const;
  // The loop time by which something must happen, or kNever (see lend() and Pool).
  uint64_t deadline() const;
  // Arms the timer for deadline() unless it is already due no later. The timer is lazy: progress
  // only moves timestamps, and an early firing re-arms for the rest.
  void schedule();
  static constexpr uint64_t kNever = UINT64_MAX;

  Pool& pool_;  // pools live as long as their worker, which outlives its connections
  net::TcpStream tcp_;
  std::unique_ptr<net::TlsStream> tls_;  // over tcp_ when the pool's version speaks TLS
  std::unique_ptr<H2Channel> h2_;        // instead of tcp_ when the pool speaks HTTP/2
  net::Stream* io_ = &tcp_;              // what the exchange travels over
  uv_timer_t timer_{};
  http::Parser parser_;
  net::Outbox out_;
  std::string pre_connect_;       // bytes queued before the connection is established
  Borrower* borrower_ = nullptr;  // the request using this connection; it calls release()
  int open_handles_ = 0;
  uint32_t connect_timeout_ms_ = 0;
  uint32_t response_timeout_ms_ = 0;
  uint64_t since_ms_ = 0;      // start of the current wait: open, idle, end of request
  uint64_t progress_ms_ = 0;   // last read from or write progress to the upstream
  uint64_t armed_due_ms_ = 0;  // when the timer fires; 0 = not armed
  bool connected_ = false;
  bool closing_ = false;
  bool reused_ = false;
  bool paused_ = false;
  bool tunnel_ = false;
  bool request_sent_ = false;       // end_of_request() was called for this exchange
  bool awaiting_response_ = false;  // request sent, no response byte yet
  bool response_started_ = false;
  bool response_done_ = false;
  bool head_request_ = false;
  bool broken_ = false;        // must not be reused (extra bytes, close requested, parse error)
  bool write_failed_ = false;  // writing to the upstream failed; the read side decides the outcome
};

// Idle keep-alive connections to one endpoint, per worker. Lives as long as its worker.
//
// How many idle connections it keeps: as many as the recent peak of connections lent at once
// needed (so a steady load of N concurrent requests reuses N connections instead of opening new
// ones), never more than `max_idle`. The peak is the highest of the current and the previous
// kPeakWindowMs window, so the bound follows a load that drops within two windows.
class Pool {
 public:
  static constexpr uint64_t kPeakWindowMs = 10000;

  Pool(net::LoopContext& ctx, routing::Endpoint endpoint, uint32_t max_idle,
       uint32_t idle_timeout_ms)
      : ctx_(ctx),
        endpoint_(std::move(endpoint)),
        max_idle_(max_idle),
        idle_timeout_ms_(idle_timeout_ms) {}
  // Connections of this pool speak TLS with `context` (null: required but not built, so every
  // connect fails), checking `server_name`; resumable sessions live in `sessions` (the worker's).
  void use_tls(std::shared_ptr<const net::ClientContext> context, std::string server_name,
               net::ClientSessionCache* sessions) {
    tls_required_ = true;
    tls_ = std::move(context);
    server_name_ = std::move(server_name);
    sessions_ = sessions;
    session_key_ = endpoint_.resolved + "|" + server_name_;
  }
  bool tls_required() const { return tls_required_; }
  // Connections of this pool speak HTTP/2 (h2 over the TLS set by use_tls, or h2c): they are
  // channels multiplexed over a few sessions (upstream/h2_client.h).
  void use_h2() { h2_ = true; }
  bool h2() const { return h2_; }
  ~Pool();

  // An idle connection (most recently used first), or nullptr.
  Connection* take_idle();
  const routing::Endpoint& endpoint() const { return endpoint_; }
  net::LoopContext& context() { return ctx_; }
  void close_all();   // closes every connection (at shutdown)
  void close_idle();  // closes the idle ones (the endpoint was drained)
  size_t idle_count() const { return idle_.size(); }
  uint32_t busy_count() const { return busy_; }
  // Applies a reloaded [upstream] section: idle connections over the new cap close now, and idle
  // timers use the new timeout from their next wait.
  void configure(uint32_t max_idle, uint32_t idle_timeout_ms);
  // The highest number of connections lent at once in the current and previous window.
  uint32_t recent_peak() const;

 private:
  friend class Connection;
  friend class H2Client;
  // A channel on a session with room (a new session if none); null if no socket could be made.
  std::unique_ptr<H2Channel> h2_channel(net::StreamEvents& owner);
  void erase_h2(H2Client* c);  // last use of c
  void add_idle(Connection* c);
  void remove_idle(Connection* c);
  void erase(Connection* c);  // last use of c
  void lent();                // a connection was lent (busy + 1)
  void returned();            // a lent connection came back or closed (busy - 1)
  void roll_window();         // starts a new peak window when the current one is over

  net::LoopContext& ctx_;
  routing::Endpoint endpoint_;
  bool tls_required_ = false;
  std::shared_ptr<const net::ClientContext> tls_;
  std::string server_name_;
  std::string session_key_;
  net::ClientSessionCache* sessions_ = nullptr;
  uint32_t max_idle_;
  uint32_t idle_timeout_ms_;
  uint32_t busy_ = 0;
  uint32_t peak_ = 0;       // highest busy_ in the current window
  uint32_t prev_peak_ = 0;  // ... in the previous one
  uint64_t window_start_ms_ = 0;
  std::vector<Connection*> idle_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> all_;
  bool h2_ = false;
  std::vector<std::unique_ptr<H2Client>> h2_clients_;
  // The concurrent streams the endpoint's last session allowed (SETTINGS); a session still
  // connecting takes no more channels than that. 100 until one says otherwise.
  uint32_t h2_stream_limit_ = 100;
};

}  // namespace sluice::upstream
