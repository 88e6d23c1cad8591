// One downstream (client) connection and the request it is serving. Requests on a connection
// are served one at a time in order: the parser pauses at each request's end until its response
// is complete, which is how pipelined requests are answered in order.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/cidr.h"
#include "http/parser.h"
#include "net/listener.h"
#include "net/loop_context.h"
#include "net/stream.h"
#include "net/tls_stream.h"
#include "observe/stats.h"
#include "upstream/connection.h"
#include "worker/h2_session.h"
#include "worker/request.h"
#include "worker/worker.h"  // the transport names this layer uses (net/)

namespace sluice::worker {

class Worker;
class ClientCounts;
struct Snapshot;

class ClientConn final : public http::Sink, public upstream::Borrower, public net::StreamEvents {
 public:
  explicit ClientConn(Worker& worker);
  ~ClientConn() override;
  ClientConn(const ClientConn&) = delete;
  ClientConn& operator=(const ClientConn&) = delete;

  // Accepts from `server` into this connection. Returns false (and closes) on failure.
  // `trusted_proxies`: the accepting listener's ranges; the peer's trust is decided here, once.
  // `tls`: the listener's context (TLS is layered over the TCP stream), or null for plaintext.
  // `h2c`: a plaintext client may speak HTTP/2 with prior knowledge (its first bytes are the
  // connection preface); a TLS client that chose "h2" by ALPN speaks HTTP/2 anyway.
  bool accept(net::Listener& listener, const std::vector<http::Cidr>& trusted_proxies,
              std::shared_ptr<const net::ServerContext> tls, bool h2c = false);
  // Serves one HTTP/2 stream (see H2Session) instead of a socket: `io` carries its request and
  // response; the client's address, trust and TLS are those of the connection it came on.
  bool accept_stream(net::Stream& io, const std::string& client_ip, bool trusted, bool secure);
  // Closes the connection now (teardown starts from: client EOF/error, timeouts, fatal errors,
  // worker drain deadline, shedding). Safe to call twice.
  void close();
  // Graceful stop: close now if idle between requests, else after the current response.
  void drain();
  // The process-wide counters this connection is counted in: it leaves them when it closes.
  void set_counter(std::atomic<uint32_t>* counter) { conn_counter_ = counter; }
  void set_client_counts(ClientCounts* counts) { client_counts_ = counts; }
  const std::string& client_ip() const { return client_ip_; }
  bool has_handles() const { return open_handles_ > 0; }
  // A stream connection (accept_stream) whose handles are all closed may serve another stream
  // after recycle(), which resets every field and keeps the buffers' capacity.
  bool recyclable() const { return stream_conn_ && closing_ && open_handles_ == 0; }
  void recycle();
  // The client sent bytes we have not read yet: it is not silent, we are behind (see shed()).
  bool has_unread_input() const { return tcp_.unread_bytes() > 0; }

  // A worker's waiting connections -- new, keep-alive idle, with a head still arriving, or
  // lingering: the ones that may be shed when a connection limit is reached -- form an intrusive
  // list, lingering ones first, then oldest wait first. The Worker owns the list; a connection
  // joins and leaves it through the Worker.
  ClientConn* wait_prev_ = nullptr;
  ClientConn* wait_next_ = nullptr;
  bool in_wait_list_ = false;

 private:
  friend class H2Session;
  friend class H2Stream;
  // The first bytes (or the TLS handshake's ALPN) say the client speaks HTTP/2.
  bool wants_h2(const char* data, size_t len) const;
  // Switches the connection to HTTP/2 and hands it the first bytes read.
  void start_h2(const char* data, size_t len);

  // http::Sink (client requests)
  void on_message_begin(http::Parser& p) override;
  int on_head(http::Parser& p) override;
  int on_body(http::Parser& p, const char* data, size_t len) override;
  bool on_message_end(http::Parser& p) override;

  // upstream::Borrower
  int on_upstream_head(http::Parser& resp) override;
  int on_upstream_body(const char* data, size_t len) override;
  bool on_upstream_end(http::Parser& resp) override;
  void on_upstream_raw(const char* data, size_t len) override;
  void on_upstream_flush() override;
  void on_upstream_failed(upstream::Failure kind, bool response_started, bool reused,
                          std::string* unsent) override;
  void on_upstream_drained() override;
  void on_upstream_eof() override;

  // net::StreamEvents (the client socket)
  void on_stream_data(const char* data, size_t len) override;
  void on_stream_end(int status) override;
  void on_stream_written(int status) override;
  void on_stream_closed() override;

  static void on_timer(uv_timer_t* t);
  void handle_closed();  // one of the stream and the timer is closed; the last frees this

  // Feeds new bytes (or none) through the parser, flushes both sides, and completes finished
  // exchanges, continuing with pipelined bytes held meanwhile. The one place requests advance.
  void drive(const char* data, size_t len);
  void on_parse_error();
  int start_upstream(http::Parser& p);  // route, pick, borrow a connection; -1/0 as on_head
  bool connect_upstream(bool fresh);
  // Passive health: the outcome of the current attempt on its endpoint.
  void note_outcome(routing::Outcome outcome);
  // A grpc-status from the upstream: a code the function counts as an error marks the request
  // failed (FailureKind::kGrpcError) though its HTTP status is 200.
  void note_grpc_status(std::string_view value);
  // Another attempt after a failure before any response byte (see may_replay, retry budget):
  // true if one is under way.
  bool retry_elsewhere(upstream::Failure kind, bool stale, std::string* unsent);
  int local_error(int status, const char* reason);  // answer locally; on_head's return value
  void respond_error(int status, const char* reason, bool close_after);
  bool complete_request();  // false: the connection is closing
  void end_request_bookkeeping();
  void record_request();  // metrics series and access log line for the request just ended
  void flush_client();
  void flush_upstream();
  void stop_reading();
  void start_reading();
  void update_reading();
  void release_upstream(bool reusable);
  // Stops taking requests: once the output is flushed, the connection closes -- through a
  // lingering close when the client may still be sending (see linger()).
  void close_when_flushed();
  // Half-closes our side and reads and discards what the client still sends, for a bounded time
  // and size, so that unread bytes do not turn our close into a reset that destroys the
  // response it has not read yet (RFC 9112 §9.6).
  void linger();
  void generate_request_id();
  // The client is not taking our output: stop producing more (reading, pipelined requests).
  bool output_backlogged() const;
  // Closes or lingers once close_when_flushed() and everything is written.
  void finish_if_flushed();
  uint64_t now_ms() const;
  // The loop time by which the connection must make progress in its current state, or kNever.
  uint64_t deadline() const;
  // Arms the timer for deadline() unless it already fires no later. Lazy: progress only moves
  // timestamps; an early firing re-arms for the rest.
  void schedule();
  // Between requests, idle for kIdleTrimAfterMs: frees buffers kept for the next request (the
  // parser's, the outbox's, per-request text, TLS record buffers).
  void trim_idle();
  void on_deadline();
  void set_waiting(bool waiting);
  void leave_counts();  // at close: this connection no longer counts toward any limit
  static constexpr uint64_t kNever = UINT64_MAX;

  Worker& worker_;  // outlives its connections
  net::TcpStream tcp_;
  std::unique_ptr<net::TlsStream> tls_;  // over tcp_ on a TLS listener
  net::Stream* io_ = &tcp_;              // what requests and responses travel over
  uv_timer_t timer_{};
  http::Parser parser_;
  Outbox out_;
  int open_handles_ = 0;
  bool closing_ = false;
  bool peer_eof_ = false;
  bool close_after_response_ = false;  // no keep-alive after the current response
  bool close_when_flushed_ = false;
  bool lingering_ = false;
  bool draining_ = false;
  bool tunnel_ = false;
  bool served_one_ = false;   // a request completed on this connection (keep-alive from now on)
  bool skip_linger_ = false;  // close without lingering (the client never finished a head)
  uint64_t accepted_ms_ = 0;
  uint64_t wait_since_ms_ = 0;       // accept, or the end of the previous response
  uint64_t head_deadline_ms_ = 0;    // the head being read must be complete by then
  uint64_t in_progress_ms_ = 0;      // last bytes read from the client
  uint64_t out_progress_ms_ = 0;     // last time the client took bytes of ours
  uint64_t tunnel_activity_ms_ = 0;  // last bytes either way through a tunnel
  uint64_t linger_start_ms_ = 0;
  uint64_t linger_bytes_ = 0;
  uint64_t armed_due_ms_ = 0;  // when the timer fires; 0 = not armed
  std::string client_ip_;
  std::string pending_in_;  // bytes read after a paused request, parsed when it is done
  std::string work_;        // pending bytes being parsed (swapped with pending_in_)
  std::string chunk_header_;
  std::atomic<uint32_t>* conn_counter_ = nullptr;  // Shared: outlives every worker
  ClientCounts* client_counts_ = nullptr;          // Shared: outlives every worker
  bool trusted_peer_ = false;      // the peer is in its listener's trusted_proxies (set at accept)
  bool idle_trimmed_ = false;      // idle memory given back since the last bytes read (trim_idle)
  bool secure_ = false;            // the client came over TLS (X-Forwarded-Proto)
  bool h2c_ = false;               // HTTP/2 with prior knowledge is allowed (plaintext listener)
  bool stream_conn_ = false;       // serves one HTTP/2 stream (accept_stream)
  std::unique_ptr<H2Session> h2_;  // the connection speaks HTTP/2
  static constexpr uint64_t kIdleTrimAfterMs = 1000;

  RequestContext ctx_;                  // the request being served
  upstream::Connection* up_ = nullptr;  // cleared by on_upstream_failed / release_upstream
  // Per-request text whose capacity is reused across requests.
  std::string upstream_head_;  // the upstream request head (kept for a retry)
  std::string response_head_;  // the client response head being sent
  std::string set_cookie_;     // issued sticky cookie for this response, if any
  std::string abs_target_;     // origin-form of an absolute-form target (see target_of)
};

}  // namespace sluice::worker
