// An asynchronous client for etcd's v3 JSON gateway over HTTP/1.1 on a libuv loop (sluice's
// control loop): KV range/put/delete/txn/compact, leases, and watches that resume from the last
// seen revision across endpoints. The building block of the etcd store (issue 14).
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "control/etcd_codec.h"
#include "net/tls_context.h"

namespace sluice::control {

struct EtcdError {
  enum class Kind {
    kNone,
    kUnavailable,  // no endpoint answered, a member has no leader, or the connection broke
    kTimeout,      // the request's deadline passed
    kConflict,     // a txn's compares failed (the value still carries the failure branch)
    kCompacted,    // a read or watch below the compacted revision
    kNotFound,     // the lease does not exist (expired or revoked)
    kBadResponse,  // the bytes or JSON did not have the gateway's shape
    kRejected,     // etcd refused the request (invalid argument, permission, future revision...)
  };
  Kind kind = Kind::kNone;
  std::string message;           // what happened and where ("127.0.0.1:2379: ...")
  int grpc_code = 0;             // etcd's status code when etcd answered with an error
  int64_t compact_revision = 0;  // kCompacted from a watch: the oldest revision still kept
  // The request (a write) reached a member and no answer came back: it may have been applied.
  // Re-read to find out; a compare-and-swap write can also simply be retried (it then fails with
  // kConflict if the first try won).
  bool maybe_committed = false;

  bool ok() const { return kind == Kind::kNone; }
  explicit operator bool() const { return !ok(); }  // true when there is an error
};

const char* to_string(EtcdError::Kind kind);

template <typename T>
struct EtcdResult {
  EtcdError error;
  T value{};  // valid when error.ok(), and for a txn with kConflict (the failure branch)
  bool ok() const { return error.ok(); }
};

struct EtcdOptions {
  // "http://host:port" or "host:port", host an IP literal or localhost. Tried in order; the
  // client stays on the endpoint that last worked and moves to the next on a failure.
  std::vector<std::string> endpoints;
  uint64_t request_timeout_ms = 5000;  // one request, all its tries together
  uint64_t connect_timeout_ms = 1000;  // one TCP connect; then the next endpoint
  // An idempotent request (range, keepalive, revoke) waiting this long for one endpoint's answer
  // is tried on the next endpoint it has not tried; the last one gets the rest of the deadline.
  // Writes wait for their endpoint until the request deadline: moving them would make their
  // outcome unknown.
  uint64_t attempt_timeout_ms = 2000;
  size_t max_connections = 16;  // requests on the wire at once (watches excluded); others queue
  size_t max_idle_per_endpoint = 4;
  uint64_t idle_timeout_ms = 30000;  // an idle keep-alive connection is closed after this
  size_t max_response_bytes = 64u << 20;
  // A broken watch stream is re-created at once on the next endpoint, then after a delay that
  // doubles from min to max while it keeps failing.
  uint64_t watch_retry_min_ms = 50;
  uint64_t watch_retry_max_ms = 2000;
  // For https:// endpoints (required when there is one): the CA to verify etcd's certificate
  // against (it must name the endpoint's IP address) and the client certificate etcd may ask for.
  std::shared_ptr<const net::ClientContext> tls;
};

// One client per control loop. Loop thread only; not thread-safe.
//
// Callbacks: every completion and watch callback runs on the loop, from a libuv callback, never
// inside the call that started the request. A callback never runs after cancel()/cancel_watch()
// of its request, after close(), or after the client is destroyed; a callback may call any
// method, close() or destroy the client. An exception a callback throws is caught and logged.
//
// Lifetime: the client may be destroyed at any time on the loop thread (the destructor calls
// close()). Its libuv handles belong to heap objects that free themselves in their close
// callbacks, so they need the loop to run once more after close(); nothing in them refers back
// to the client by then.
class EtcdClient {
 public:
  using RequestId = uint64_t;  // 0 is never an id
  template <typename T>
  using Callback = std::function<void(EtcdResult<T>)>;

  // `loop` must outlive the client's handles (run it after close() until they are closed). Its
  // data must be its net::LoopContext (as on the control loop: app/server.cpp), whose read
  // buffer the connections share.
  EtcdClient(uv_loop_t* loop, EtcdOptions options);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  // Parses the endpoints and starts the client's timer. false with `error` if an endpoint is
  // not a supported URL, there are none, or libuv refused the timer. Before start() and after
  // close(), every request returns 0 and its callback never runs.
  bool start(std::string* error);
  // Cancels every request and watch (no callback runs) and closes every connection. Idempotent.
  void close();

  // KV. `range` is idempotent (tried on the next endpoint after a failure); the writes are
  // tried on the next endpoint only while nothing was sent, or when the member said it has no
  // leader (etcd rejected it before proposing).
  RequestId range(etcd::RangeRequest request, Callback<etcd::RangeResponse> done);
  RequestId put(etcd::PutRequest request, Callback<etcd::PutResponse> done);
  RequestId delete_range(etcd::DeleteRequest request, Callback<etcd::DeleteResponse> done);
  // A txn whose compares failed completes with kConflict and the failure branch's responses.
  RequestId txn(etcd::TxnRequest request, Callback<etcd::TxnResponse> done);
  RequestId compact(etcd::CompactionRequest request, Callback<etcd::ResponseHeader> done);

  // Leases. keepalive renews once (call it every TTL/3); a lease that is gone: kNotFound.
  RequestId lease_grant(etcd::LeaseGrantRequest request, Callback<etcd::LeaseGrantResponse> done);
  RequestId lease_keepalive(int64_t id, Callback<etcd::LeaseKeepAliveResponse> done);
  RequestId lease_revoke(int64_t id, Callback<etcd::ResponseHeader> done);

  // etcd authentication: a token for user `name` (the gateway's /v3/auth/authenticate). Every
  // request after set_token() carries it; etcd forgets simple tokens when it restarts (then
  // requests fail with grpc_code 16, "invalid auth token": authenticate again).
  RequestId authenticate(const std::string& name, const std::string& password,
                         Callback<std::string> done);
  void set_token(std::string token);
  const std::string& token() const { return token_; }

  // Forgets a request: its callback will not run. A write already sent may still be applied.
  // false if `id` is not pending (done, cancelled or unknown).
  bool cancel(RequestId id);

  // A watch over [key, range_end) from `start_revision` (0: from the next change). It survives
  // broken streams, member failures and endpoint changes: each time it re-creates the watch
  // from (last delivered revision + 1), so every event arrives once, in revision order.
  struct WatchCallbacks {
    // The stream is (re-)established: `endpoint` index into the endpoints, `revision` the
    // store's revision then. Optional.
    std::function<void(size_t endpoint, int64_t revision)> on_connected;
    // Events of one or more revisions, ascending; never one revision split in two calls.
    std::function<void(std::vector<etcd::Event>&&, int64_t header_revision)> on_events;
    // kCompacted (compact_revision set: re-read, then watch from the read's revision + 1) and
    // kRejected end the watch: no callback follows. Other kinds (unavailable, timeout, a bad
    // message) are transient: the watch retries by itself, from where it was, and
    // on_connected says when it is back. Optional.
    std::function<void(const EtcdError&)> on_error;
  };
  RequestId watch(etcd::WatchCreateRequest request, WatchCallbacks callbacks);
  // Ends a watch; none of its callbacks runs afterwards. false if it is not active.
  bool cancel_watch(RequestId id);

  // For tests and status: the revision a watch will resume from (0: not yet known), the
  // endpoint index it is connected to (SIZE_MAX: none), events it dropped as already delivered.
  int64_t watch_next_revision(RequestId id) const;
  size_t watch_endpoint(RequestId id) const;
  uint64_t watch_duplicates_dropped(RequestId id) const;

  const std::vector<etcd::Endpoint>& endpoints() const { return endpoints_; }
  size_t preferred_endpoint() const { return preferred_; }
  size_t open_connections() const { return conns_.size(); }
  size_t idle_connections() const;
  uint64_t connections_opened() const { return connections_opened_; }

  // Internal: one HTTP/1.1 connection to one endpoint; one exchange at a time.
  class Conn;
  struct Call;
  struct Watch;
  struct Ready {
    RequestId id;
    std::function<void()> run;
  };

 private:
  RequestId submit(std::unique_ptr<Call> call);
  void pump();
  Conn* take_idle(size_t endpoint);
  Conn* open_conn(size_t endpoint, std::string* error);
  size_t idle_on(size_t endpoint) const;
  // What a connection reports, from inside its libuv callbacks; the connection has already
  // handed the call over (and closed itself if it cannot be reused).
  void on_call_response(size_t endpoint, std::unique_ptr<Call> call, int status, std::string body);
  void on_call_failed(size_t endpoint, std::unique_ptr<Call> call, EtcdError error, bool sent,
                      bool endpoint_fault);
  void on_watch_message(Watch& w, const std::string& doc);
  void on_watch_ended(Watch& w, EtcdError error);
  void on_conn_closed(Conn* conn);
  void mark_endpoint_failed(size_t endpoint);
  void retry_or_fail(std::unique_ptr<Call> call, EtcdError error);
  // An error answer from `endpoint`: retried on another member where that is safe, else final.
  void answer_error(size_t endpoint, std::unique_ptr<Call> call, EtcdError error);
  void finish(std::unique_ptr<Call> call, EtcdError error, std::string body);
  void connect_watch(Watch& w);
  void end_watch(Watch& w, EtcdError error);
  void schedule();
  static void on_tick(uv_timer_t* timer);
  void tick();
  // Runs the callbacks made ready so far. Call only as the last thing a libuv callback does:
  // a callback may destroy the client.
  void dispatch();
  uint64_t now_ms() const { return uv_now(loop_); }

  uv_loop_t* loop_;
  EtcdOptions options_;
  std::vector<etcd::Endpoint> endpoints_;
  size_t preferred_ = 0;
  bool started_ = false;
  bool closed_ = false;
  RequestId next_id_ = 1;
  uv_timer_t* tick_ = nullptr;  // heap: freed by its close callback, which may run after ~
  std::deque<std::unique_ptr<Call>> queue_;  // waiting for a connection
  std::unordered_set<Conn*> conns_;          // open, not closing; they own themselves
  std::unordered_map<RequestId, std::unique_ptr<Watch>> watches_;
  std::deque<Ready> ready_;
  size_t busy_ = 0;    // connections serving a call
  std::string token_;  // etcd authentication (set_token)
  uint64_t connections_opened_ = 0;
  // Set false by the destructor: dispatch() stops at once when a callback destroyed the client.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace sluice::control
