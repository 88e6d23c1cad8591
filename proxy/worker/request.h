// One request's state on a client connection (RequestContext, a value reset by assignment), the
// rule for replaying it on another upstream connection, and its access-log record. No socket.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/parser.h"
#include "observe/access_log.h"
#include "observe/stats.h"
#include "routing/table.h"
#include "upstream/connection.h"
#include "worker/route.h"

namespace sluice::worker {

struct Snapshot;

// Everything about the request being served on a connection. A plain value: it is reset with
// `ctx_ = {}` when the next request starts, never field by field, so nothing of one request can
// leak into the next (its log line, its id, its flags). Buffers whose capacity is worth keeping
// live on the connection instead.
struct RequestContext {
  // The routing decision; the pointers stay valid while `snapshot` is held.
  Snapshot* snapshot = nullptr;
  const routing::Function* function = nullptr;
  const routing::Alias* alias = nullptr;  // nullptr when the route pins a version
  const routing::Version* version = nullptr;
  const routing::Endpoint* endpoint = nullptr;
  upstream::Pool* pool = nullptr;
  std::atomic<int32_t>* concurrency = nullptr;  // counted in-flight slot, released at the end
  observe::Series* series = nullptr;  // owned by the worker's stats; lives as long as the worker

  bool active = false;            // a request has begun (its first byte arrived)
  bool request_done = false;      // the client's request message ended
  bool response_done = false;     // the response to the client is complete
  bool response_started = false;  // a response head was queued for the client
  bool response_flushed = false;  // ... and handed to the socket
  bool local_response = false;    // answered by sluice itself; body (if any) is discarded
  bool has_body = false;
  bool chunked = false;
  bool head_request = false;
  bool http10 = false;
  bool keep_alive = true;
  bool upgrade_requested = false;
  bool chunk_response = false;  // re-chunk the upstream body for the client
  bool retried = false;         // another attempt was made after a failure
  uint8_t attempts = 0;         // upstream attempts so far (the first included)
  bool stale_retried = false;   // a dead pooled connection was replaced by a fresh one once
  uint64_t tried = 0;           // bit i: endpoint i of `version` failed this request
  RouteChoice choice;           // how the version was chosen (for a failover to another one)
  bool body_sent = false;       // body bytes went upstream (no transparent retry)
  // The gRPC client's grpc-timeout, shorter than the version's response_timeout, bounds the
  // wait: a timeout then is the client's deadline passing, not the version failing.
  bool client_deadline = false;
  bool deadline_passed = false;  // ... and it did: answered 504 grpc-deadline, counted as a 499
  bool accounted = false;        // this request's figures were recorded
  uint64_t body_bytes_in = 0;
  uint64_t start_ns = 0;
  uint64_t upstream_start_ns = 0;
  uint64_t upstream_end_ns = 0;
  uint64_t bytes_out = 0;
  int status = 0;
  // How the final upstream attempt failed. Client faults (a client too slow or gone) never set
  // it: they must not count against the version.
  observe::FailureKind failure = observe::FailureKind::kNone;
  char request_id[32] = {};  // generated when the client sent none
  uint8_t request_id_len = 0;

  std::string_view generated_id() const { return {request_id, request_id_len}; }
};

// Whether a request whose upstream attempt failed before any response byte may be sent again:
// always when nothing of it reached the upstream (`nothing_sent`: the connection never came up,
// and its bytes are handed back); otherwise only for an idempotent method with no body (bodies
// are streamed, never kept, so they cannot be replayed). Timeouts and bad responses are the
// upstream's answer, not retried once the request went out.
bool may_replay(const RequestContext& ctx, uint8_t method, upstream::Failure kind,
                bool nothing_sent);
// Whether the request's retry budget allows another attempt at `now_ns`: fewer than
// `version.retries` retries so far, and within `version.retry_timeout_ms` of its start.
bool retry_budget_left(const RequestContext& ctx, const routing::Version& version, uint64_t now_ns);

// The access-log line of a finished request. `status` is what the client got (499 if nothing),
// `now_ns` the end. Borrowed views: valid while `req` and `ctx` are unchanged.
observe::AccessRecord access_record(const RequestContext& ctx, const http::Parser& req,
                                    std::string_view client_ip, int status, uint64_t now_ns,
                                    uint64_t upstream_us);

}  // namespace sluice::worker
