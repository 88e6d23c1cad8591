// One downstream (client) connection and the request it is serving. Requests on a connection
// are served one at a time in order: the parser pauses at each request's end until its response
// is complete, which is how pipelined requests are answered in order.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "http/parser.h"
#include "observe/stats.h"
#include "upstream/connection.h"
#include "worker/context.h"

namespace sluice::worker {

class Worker;
struct Snapshot;

class ClientConn final : public http::Sink, public upstream::Borrower {
 public:
  explicit ClientConn(Worker& worker);
  ~ClientConn() override;
  ClientConn(const ClientConn&) = delete;
  ClientConn& operator=(const ClientConn&) = delete;

  // Accepts from `server` into this connection. Returns false (and closes) on failure.
  bool accept(uv_stream_t* server);
  // Closes the connection now (teardown starts from: client EOF/error, timeouts, fatal errors,
  // worker drain deadline). Safe to call twice.
  void close();
  // Graceful stop: close now if idle between requests, else after the current response.
  void drain();
  // The process-wide connection counter this connection decrements when it is destroyed.
  void set_counter(std::atomic<uint32_t>* counter);

 private:
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
  void on_upstream_failed(upstream::Failure kind, bool response_started, bool reused) override;
  void on_upstream_drained() override;

  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_timer(uv_timer_t* t);
  static void on_closed(uv_handle_t* h);

  // Feeds new bytes (or none) through the parser, flushes both sides, and completes finished
  // exchanges, continuing with pipelined bytes held meanwhile. The one place requests advance.
  void drive(const char* data, size_t len);
  void on_parse_error();
  int start_upstream(http::Parser& p);  // route, pick, borrow a connection; -1/0 as on_head
  bool connect_upstream(bool fresh);
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
  void arm_timer(uint32_t ms);
  void reset_request();
  void release_upstream(bool reusable);
  void close_when_flushed();

  Worker& worker_;  // outlives its connections
  uv_tcp_t socket_{};
  uv_timer_t timer_{};
  http::Parser parser_;
  Outbox out_;
  int open_handles_ = 0;
  bool closing_ = false;
  bool reading_ = false;
  bool peer_eof_ = false;
  bool close_after_response_ = false;  // no keep-alive after the current response
  bool close_when_flushed_ = false;
  bool draining_ = false;
  std::string client_ip_;
  std::string pending_in_;  // bytes read after a paused request, parsed when it is done
  std::string work_;        // pending bytes being parsed (swapped with pending_in_)
  std::string chunk_header_;
  std::atomic<uint32_t>* conn_counter_ = nullptr;

  // The request being served. Snapshot and version pointers stay valid while `snapshot_` is held.
  Snapshot* snapshot_ = nullptr;
  const routing::Version* version_ = nullptr;
  const routing::Function* function_ = nullptr;
  std::atomic<int32_t>* concurrency_ = nullptr;  // counted in-flight slot, released at finish
  const routing::Alias* alias_ = nullptr;        // nullptr when the route pins a version
  const routing::Endpoint* endpoint_ = nullptr;
  upstream::Pool* pool_ = nullptr;
  upstream::Connection* up_ = nullptr;  // cleared by on_upstream_failed / release_upstream
  bool in_request_ = false;
  bool request_done_ = false;      // the client's request message ended
  bool response_done_ = false;     // the response to the client is complete
  bool response_started_ = false;  // a response head was queued for the client
  bool response_flushed_ = false;  // ... and handed to the socket
  bool local_response_ = false;    // answered by sluice itself; body (if any) is discarded
  bool request_has_body_ = false;
  bool request_chunked_ = false;
  bool head_request_ = false;
  bool http10_ = false;
  bool client_keep_alive_ = true;
  bool upgrade_requested_ = false;
  bool tunnel_ = false;
  bool chunk_response_ = false;  // re-chunk the upstream body for the client
  bool retried_ = false;
  bool request_bytes_sent_ = false;  // body bytes went upstream (no transparent retry)
  uint64_t body_bytes_in_ = 0;
  // Figures for metrics and the access log.
  observe::Series* series_ = nullptr;  // owned by the worker's stats; lives as long as the worker
  uint64_t start_ns_ = 0;
  uint64_t upstream_start_ns_ = 0;
  uint64_t upstream_end_ns_ = 0;
  uint64_t bytes_out_ = 0;
  int status_ = 0;
  observe::FailureKind failure_ = observe::FailureKind::kNone;
  bool accounted_ = false;     // this request's figures were recorded
  std::string upstream_head_;  // the upstream request head (kept for a retry)
  std::string response_head_;  // the client response head being sent
  std::string set_cookie_;     // issued sticky cookie for this response, if any
  std::string request_id_;
  std::string abs_target_;     // origin-form target of an absolute-form request, else empty
  std::string_view abs_host_;  // its authority (points into the parser's head)
};

}  // namespace sluice::worker
