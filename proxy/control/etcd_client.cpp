// The etcd v3 JSON gateway client: connections, failover, deadlines, watches (see etcd_client.h).
//
// Shape: calls wait in queue_ until a connection is free (at most max_connections serve calls
// at once); each call tries each endpoint at most once, starting from the preferred one. A Conn
// is one TCP connection that serves one exchange at a time (a call, or one watch's stream) and
// returns to the idle pool after a keep-alive answer. Conns own themselves: they are freed by
// their last close callback, so the client can be destroyed while they close.
//
// A Conn reads and writes through a net::TcpStream on the control loop (its reads land in the
// loop's shared buffer), or, for an https:// endpoint, through a net::TlsStream over it (the
// handshake completes before on_stream_connected). An auth token is one more header.
#include "control/etcd_client.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "http/parser.h"
#include "net/loop_context.h"
#include "net/stream.h"
#include "net/tls_stream.h"

namespace sluice::control {
namespace {

using nlohmann::json;

constexpr uint32_t kMaxHeadBytes = 64 * 1024;
constexpr uint32_t kMaxHeaders = 100;
using net::as_handle;

EtcdError make_error(EtcdError::Kind kind, std::string message) {
  EtcdError e;
  e.kind = kind;
  e.message = std::move(message);
  return e;
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// etcd refused before proposing anything: safe to send anywhere else, writes included.
bool is_no_leader(const EtcdError& e) {
  return e.grpc_code == 14 && contains(e.message, "no leader");
}

// An error etcd answered with (gRPC status through the gateway) as an EtcdError.
EtcdError from_gateway(const etcd::GatewayError& g, const std::string& where) {
  EtcdError e;
  e.grpc_code = g.grpc_code;
  e.message = where + ": " + g.message;
  switch (g.grpc_code) {
    case 1:   // Canceled
    case 8:   // ResourceExhausted: too many requests, no space
    case 10:  // Aborted
    case 14:  // Unavailable: no leader, request timed out, leader changed, server stopped
      e.kind = EtcdError::Kind::kUnavailable;
      // "request timed out" and "leader changed" come after the proposal: it may still commit.
      e.maybe_committed = g.grpc_code == 14 && !contains(g.message, "no leader");
      break;
    case 4:  // DeadlineExceeded
      e.kind = EtcdError::Kind::kTimeout;
      e.maybe_committed = true;
      break;
    case 5:  // NotFound: requested lease not found
      e.kind = EtcdError::Kind::kNotFound;
      break;
    case 11:  // OutOfRange: compacted or future revision
      e.kind = contains(g.message, "compacted") ? EtcdError::Kind::kCompacted
                                                : EtcdError::Kind::kRejected;
      break;
    case 2:  // Unknown: the gateway's own "context deadline exceeded"
      if (contains(g.message, "deadline exceeded")) {
        e.kind = EtcdError::Kind::kTimeout;
        e.maybe_committed = true;
        break;
      }
      e.kind = EtcdError::Kind::kRejected;
      break;
    default:  // InvalidArgument, PermissionDenied, FailedPrecondition, Unauthenticated, ...
      e.kind = EtcdError::Kind::kRejected;
      break;
  }
  return e;
}

// A non-200 answer: the gateway's error document, or the status alone.
EtcdError from_http_error(int status, const std::string& body, const std::string& where) {
  json j = json::parse(body, nullptr, false);
  etcd::GatewayError g;
  if (!j.is_discarded() && etcd::decode_error(j, g)) return from_gateway(g, where);
  const bool unavailable = status == 502 || status == 503 || status == 504;
  return make_error(unavailable ? EtcdError::Kind::kUnavailable : EtcdError::Kind::kBadResponse,
                    where + ": HTTP " + std::to_string(status) + " without an etcd error body");
}

void log_callback_exception(const char* what) {
  std::fprintf(stderr, "sluice: etcd client: a callback threw: %s\n", what);
  std::fflush(stderr);
}

}  // namespace

const char* to_string(EtcdError::Kind kind) {
  switch (kind) {
    case EtcdError::Kind::kNone:
      return "ok";
    case EtcdError::Kind::kUnavailable:
      return "unavailable";
    case EtcdError::Kind::kTimeout:
      return "timeout";
    case EtcdError::Kind::kConflict:
      return "conflict";
    case EtcdError::Kind::kCompacted:
      return "compacted";
    case EtcdError::Kind::kNotFound:
      return "not-found";
    case EtcdError::Kind::kBadResponse:
      return "bad-response";
    case EtcdError::Kind::kRejected:
      return "rejected";
  }
  return "?";
}

// One request waiting for, or on, a connection.
struct EtcdClient::Call {
  RequestId id = 0;
  const char* path = "";
  std::string body;
  bool idempotent = false;      // may be sent to another endpoint after it was sent once
  bool require_leader = false;  // Grpc-Metadata-hasleader: a member without leader says so
  bool stream_result = false;   // the answer is a stream of {"result":...} (lease keepalive)
  bool cancelled = false;       // cancel() while on the wire: the answer is dropped
  bool without_token = false;   // authenticate: a stale token would be refused first
  uint64_t deadline_ms = 0;     // loop time
  std::vector<bool> tried;      // per endpoint
  std::string failures;         // "endpoint: why" of each failed try
  // Turns the outcome into the typed result and runs the caller's callback (in dispatch()).
  std::function<void(EtcdError, std::string)> complete;
};

// One watch: what to (re-)create and where it stands.
struct EtcdClient::Watch {
  RequestId id = 0;
  etcd::WatchCreateRequest request;
  std::shared_ptr<WatchCallbacks> callbacks;  // shared with ready callbacks in flight
  int64_t next_revision = 0;                  // resume point; 0 until the first created
  size_t endpoint = 0;                        // connected to, or to try next
  Conn* conn = nullptr;  // the stream's connection; cleared by Conn::close(), which it owns
  bool created = false;  // the current stream confirmed the watch
  uint64_t retry_delay_ms = 0;
  bool retry_pending = false;  // waiting to reconnect at retry_at_ms
  uint64_t retry_at_ms = 0;
  uint64_t duplicates = 0;
};

// One TCP connection to one endpoint. Owns itself: close() detaches it from the client and the
// last close callback deletes it. Teardown starts from: a failed connect/write/read, a timeout,
// an answer that forbids reuse, the idle pool being full or idle too long, a watch ending or
// being cancelled, EtcdClient::close().
class EtcdClient::Conn final : public http::Sink, public net::StreamEvents {
 public:
  enum class State { kConnecting, kIdle, kBusy, kStreaming };

  // `ctx`: the loop's; the stream's reads land in its buffer, consumed or copied at once (the
  // parser copies heads, bodies are appended).
  Conn(EtcdClient* client, size_t endpoint, net::LoopContext& ctx)
      : client_(client),
        endpoint_(endpoint),
        stream_(ctx, *this),
        parser_(HTTP_RESPONSE, *this, kMaxHeadBytes, kMaxHeaders),
        splitter_(client->options_.max_response_bytes) {
    io_ = &stream_;
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  State state() const { return state_; }
  size_t endpoint() const { return endpoint_; }
  Call* call() const { return call_.get(); }
  uint64_t idle_since_ms() const { return idle_since_ms_; }

  // Starts the connect. false: the connection is closed already (and frees itself) and `error`
  // says why; the caller must not touch it.
  bool connect(const sockaddr* addr, std::string* error) {
    int rc = uv_timer_init(client_->loop_, &timer_);
    if (rc == 0) {
      timer_.data = this;
      ++open_handles_;
      rc = stream_.connect(addr);
      if (stream_.open()) ++open_handles_;
    }
    if (rc != 0) {
      *error = std::string("connect: ") + uv_strerror(rc);
      close();
      return false;
    }
    const etcd::Endpoint& ep = client_->endpoints_[endpoint_];
    if (ep.tls) {
      // The certificate must name the endpoint's IP address (an IP SAN): there is no host name.
      std::unique_ptr<net::TlsEngine> engine;
      if (client_->options_.tls) engine = net::TlsEngine::client(client_->options_.tls, ep.host);
      if (!engine) {
        *error = "TLS: cannot start a client session";
        close();
        return false;
      }
      tls_ = std::make_unique<net::TlsStream>(stream_, *this, std::move(engine));
      io_ = tls_.get();
    }
    arm(client_->now_ms() + client_->options_.connect_timeout_ms);
    return true;
  }

  // Serves `call` now (idle) or once connected (connecting).
  void start_call(std::unique_ptr<Call> call) {
    call_ = std::move(call);
    ++client_->busy_;
    if (state_ == State::kIdle) {
      state_ = State::kBusy;
      send_request();
    } else {
      arm_connect();
    }
  }

  // Streams `watch` (a fresh connection, still connecting).
  void start_watch(Watch* watch) {
    watch_ = watch;
    watch->conn = this;
    stream_.keepalive(30);  // a peer that vanished without a FIN still ends the stream
  }

  void detach_watch() {
    if (watch_) watch_->conn = nullptr;
    watch_ = nullptr;
  }

  // Safe to call twice. Drops a call still attached (its callback never runs).
  void close() {
    if (std::exchange(closing_, true)) return;
    detach_watch();
    if (client_) {
      if (call_) --client_->busy_;
      client_->on_conn_closed(this);
      client_ = nullptr;
    }
    call_.reset();
    if (open_handles_ == 0) {
      delete this;
      return;
    }
    stream_.close();
    if (timer_.data && !uv_is_closing(as_handle(&timer_)))
      uv_close(as_handle(&timer_),
               [](uv_handle_t* h) { static_cast<Conn*>(h->data)->handle_closed(); });
  }

  // http::Sink
  int on_head(http::Parser& p) override {
    status_ = p.status_code();
    return 0;
  }
  int on_body(http::Parser&, const char* data, size_t len) override {
    if (state_ == State::kStreaming && status_ == 200)
      return splitter_.feed({data, len}, docs_) ? 0 : -1;
    if (body_.size() + len > client_->options_.max_response_bytes) {
      too_large_ = true;
      return -1;
    }
    body_.append(data, len);
    return 0;
  }
  bool on_message_end(http::Parser& p) override {
    message_done_ = true;
    keep_alive_ = p.keep_alive();
    return true;  // anything after the answer is not ours: feed() reports it as unconsumed
  }

 private:
  std::string where() const { return client_->endpoints_[endpoint_].text; }

  void arm(uint64_t at_ms) {
    uint64_t now = client_->now_ms();
    uv_timer_start(&timer_, &Conn::on_timer, at_ms > now ? at_ms - now : 0, 0);
  }
  void arm_connect() {
    uint64_t at = client_->now_ms() + client_->options_.connect_timeout_ms;
    if (call_) at = std::min(at, call_->deadline_ms);
    arm(at);
  }
  // The deadline of the current exchange's answer.
  uint64_t answer_deadline() const {
    const EtcdOptions& o = client_->options_;
    if (watch_) return client_->now_ms() + o.attempt_timeout_ms;  // for the created response
    uint64_t at = call_->deadline_ms;
    // Only worth cutting short when there is an endpoint left to move to: the last one gets
    // the rest of the deadline (slow is better than unavailable).
    const bool untried =
        std::find(call_->tried.begin(), call_->tried.end(), false) != call_->tried.end();
    if (call_->idempotent && untried) at = std::min(at, client_->now_ms() + o.attempt_timeout_ms);
    return at;
  }

  void begin_exchange() {
    parser_.reset();
    splitter_.reset();
    body_.clear();
    docs_.clear();
    status_ = 0;
    message_done_ = keep_alive_ = too_large_ = false;
    sent_ = false;
  }

  void send_request() {
    begin_exchange();
    const etcd::Endpoint& ep = client_->endpoints_[endpoint_];
    const char* path = watch_ ? "/v3/watch" : call_->path;
    const bool leader = watch_ ? true : call_->require_leader;
    std::string body = watch_ ? etcd::encode(watch_->request) : call_->body;
    std::string request = "POST ";
    request += path;
    request += " HTTP/1.1\r\nHost: ";
    request += ep.host.find(':') != std::string::npos ? "[" + ep.host + "]" : ep.host;
    request += ":" + std::to_string(ep.port);
    request += "\r\nContent-Type: application/json\r\nContent-Length: ";
    request += std::to_string(body.size());
    // gRPC metadata "hasleader": a member that lost its leader fails the request (and ends a
    // watch) at once instead of holding it until etcd's own timeout.
    if (leader) request += "\r\nGrpc-Metadata-hasleader: true";
    // etcd authentication: the token of the last authenticate() that worked.
    if (!client_->token_.empty() && (watch_ || !call_->without_token))
      request += "\r\nAuthorization: " + client_->token_;
    request += "\r\n\r\n";
    request += body;
    out_.borrow(request);  // what the kernel does not take at once is copied
    if (int rc = io_->write(out_); rc != 0) {
      fail(make_error(EtcdError::Kind::kUnavailable, where() + ": write: " + uv_strerror(rc)),
           true);
      return;
    }
    sent_ = true;
    arm(answer_deadline());
  }

  // The exchange failed; hands the call or watch back to the client and closes. Runs inside a
  // libuv callback of this connection; nothing touches `this` afterwards.
  void fail(EtcdError error, bool endpoint_fault) {
    EtcdClient* client = client_;
    const size_t endpoint = endpoint_;
    if (call_) {
      std::unique_ptr<Call> call = std::move(call_);
      --client->busy_;
      const bool sent = sent_;
      close();
      client->on_call_failed(endpoint, std::move(call), std::move(error), sent, endpoint_fault);
    } else if (Watch* w = watch_) {
      close();
      client->on_watch_ended(*w, std::move(error));
    } else {
      close();
    }
  }

  void answer_done(const char* extra_bytes_note) {
    EtcdClient* client = client_;
    uv_timer_stop(&timer_);
    std::unique_ptr<Call> call = std::move(call_);
    --client->busy_;
    // Not while the request is still going out: the answer came early, the connection is out
    // of step.
    bool reusable = keep_alive_ && io_->queued_bytes() == 0 && extra_bytes_note == nullptr &&
                    client->idle_on(endpoint_) < client->options_.max_idle_per_endpoint;
    const int status = status_;
    std::string body = std::move(body_);
    if (reusable) {
      state_ = State::kIdle;
      idle_since_ms_ = client->now_ms();
      arm(idle_since_ms_ + client->options_.idle_timeout_ms);
    } else {
      close();
    }
    client->on_call_response(endpoint_, std::move(call), status, std::move(body));
  }

  // net::StreamEvents. Each is a libuv callback of this connection: it ends with dispatch().
  void on_stream_connected(int status) override {
    if (closing_) return;
    EtcdClient* client = client_;
    if (status < 0 && tls_ && tls_->tcp_connected()) {
      // The handshake failed: a certificate etcd or this node refused, or not TLS at all.
      const net::TlsEngine& e = tls_->engine();
      fail(make_error(EtcdError::Kind::kUnavailable,
                      where() + ": TLS handshake: " + net::to_string(e.failure()) +
                          (e.failure_detail().empty() ? "" : " (" + e.failure_detail() + ")")),
           true);
    } else if (status < 0) {
      fail(make_error(EtcdError::Kind::kUnavailable, where() + ": connect: " + uv_strerror(status)),
           true);
    } else if (int rc = io_->start_reading(); rc != 0) {
      fail(make_error(EtcdError::Kind::kUnavailable, where() + ": read: " + uv_strerror(rc)), true);
    } else {
      state_ = watch_ ? State::kStreaming : State::kBusy;
      send_request();
    }
    client->dispatch();  // last: a callback may destroy the client
  }

  void on_stream_written(int status) override {
    if (status == 0 || status == UV_ECANCELED || closing_) return;
    EtcdClient* client = client_;
    if (state_ == State::kIdle) {  // the answer came before the write finished failing
      close();
      return;
    }
    fail(make_error(EtcdError::Kind::kUnavailable, where() + ": write: " + uv_strerror(status)),
         true);
    client->dispatch();
  }

  void on_stream_data(const char* data, size_t len) override {
    if (closing_) return;
    EtcdClient* client = client_;
    try {
      on_bytes(data, len);
    } catch (const std::exception& e) {  // bad_alloc: give the exchange up, keep the process
      if (!closing_) fail(make_error(EtcdError::Kind::kBadResponse, e.what()), false);
    }
    client->dispatch();
  }

  void on_stream_end(int status) override {
    if (closing_) return;
    EtcdClient* client = client_;
    try {
      on_eof(status);
    } catch (const std::exception& e) {
      if (!closing_) fail(make_error(EtcdError::Kind::kBadResponse, e.what()), false);
    }
    client->dispatch();
  }

  void on_stream_closed() override { handle_closed(); }

  void on_bytes(const char* data, size_t len) {
    if (state_ == State::kIdle) {  // nothing was asked: the connection is out of step
      close();
      return;
    }
    http::Parser::Result r = parser_.feed(data, len);
    if (r.status == http::Parser::Status::kError || r.status == http::Parser::Status::kUpgrade) {
      std::string why = too_large_ ? "the answer exceeds max_response_bytes"
                        : splitter_.failed()
                            ? splitter_.error()
                            : std::string("malformed HTTP answer: ") + parser_.error_reason();
      fail(make_error(EtcdError::Kind::kBadResponse, where() + ": " + why), false);
      return;
    }
    if (state_ == State::kStreaming) {
      on_stream_progress();
      return;
    }
    if (message_done_) answer_done(r.consumed < len ? "extra bytes" : nullptr);
  }

  void on_eof(int err) {
    if (state_ == State::kIdle) {
      close();
      return;
    }
    // An answer delimited by the end of the connection ends here.
    if (parser_.in_message() && parser_.needs_eof() && parser_.finish() && message_done_) {
      keep_alive_ = false;
      if (state_ == State::kStreaming)
        on_stream_progress();
      else
        answer_done(nullptr);
      return;
    }
    std::string tls_why;  // TLS 1.3: etcd refuses a client certificate after our handshake
    if (tls_ && tls_->failure() != net::TlsFailure::kNone)
      tls_why =
          " (TLS: " + std::string(net::to_string(tls_->failure())) +
          (tls_->engine().failure_detail().empty() ? "" : ": " + tls_->engine().failure_detail()) +
          ")";
    EtcdError e = make_error(
        EtcdError::Kind::kUnavailable,
        where() + ": connection " + (err == UV_EOF ? std::string("closed") : uv_strerror(err)) +
            (state_ == State::kStreaming ? "" : " before the answer") + tls_why);
    if (state_ != State::kStreaming && sent_) e.maybe_committed = true;
    fail(std::move(e), true);
  }

  // A watch stream's documents so far, then its end if it ended.
  void on_stream_progress() {
    EtcdClient* client = client_;
    std::vector<std::string> docs = std::move(docs_);
    docs_.clear();
    for (const std::string& doc : docs) {
      if (closing_ || !watch_) return;
      client->on_watch_message(*watch_, doc);
    }
    if (closing_ || !watch_ || !message_done_) return;
    EtcdError e = status_ == 200
                      ? make_error(EtcdError::Kind::kUnavailable, where() + ": watch stream ended")
                      : from_http_error(status_, body_, where());
    fail(std::move(e), true);
  }

  static void on_timer(uv_timer_t* t) {
    auto* self = static_cast<Conn*>(t->data);
    if (self->closing_) return;
    EtcdClient* client = self->client_;
    const uint64_t now = client->now_ms();
    switch (self->state_) {
      case State::kIdle:
        self->close();
        break;
      case State::kConnecting:
        if (self->call_ && now >= self->call_->deadline_ms)
          self->fail(make_error(EtcdError::Kind::kTimeout,
                                self->where() + ": no connection before the deadline"),
                     true);
        else
          self->fail(make_error(EtcdError::Kind::kUnavailable, self->where() + ": connect timeout"),
                     true);
        break;
      case State::kBusy: {
        const bool deadline = now >= self->call_->deadline_ms;
        EtcdError e =
            make_error(deadline ? EtcdError::Kind::kTimeout : EtcdError::Kind::kUnavailable,
                       self->where() + ": no answer in time");
        e.maybe_committed = !self->call_->idempotent;
        self->fail(std::move(e), true);
        break;
      }
      case State::kStreaming:
        self->fail(make_error(EtcdError::Kind::kTimeout,
                              self->where() + ": the watch was not confirmed in time"),
                   true);
        break;
    }
    client->dispatch();
  }

 public:
  // The watch's created response arrived: the stream is healthy, no timer needed.
  void watch_confirmed() { uv_timer_stop(&timer_); }

 private:
  void handle_closed() {
    if (--open_handles_ == 0) delete this;  // last use of this
  }

  EtcdClient* client_;  // null once closing: the client may be gone by then
  const size_t endpoint_;
  State state_ = State::kConnecting;
  net::TcpStream stream_;                // calls nothing after close() but on_stream_closed()
  std::unique_ptr<net::TlsStream> tls_;  // over stream_, for an https:// endpoint
  net::Stream* io_ = nullptr;            // tls_ or stream_: where requests and answers go
  uv_timer_t timer_{};                   // connect timeout, answer deadline, idle timeout
  net::Outbox out_;                      // the request, until the stream takes it (at once)
  http::Parser parser_;
  etcd::StreamSplitter splitter_;
  std::unique_ptr<Call> call_;
  Watch* watch_ = nullptr;  // owned by the client's watches_; detach_watch() before it goes
  std::string body_;
  std::vector<std::string> docs_;
  int status_ = 0;
  int open_handles_ = 0;
  bool closing_ = false;
  bool sent_ = false;
  bool message_done_ = false;
  bool keep_alive_ = false;
  bool too_large_ = false;
  uint64_t idle_since_ms_ = 0;
};

// ---------------------------------------------------------------------------------------------

namespace {

// The completion of a call answering T: decodes the body, lets `post` refine the result (a txn
// that failed its compares is kConflict), runs `done`.
template <typename T, typename Decode, typename Post>
std::function<void(EtcdError, std::string)> completion(EtcdClient::Callback<T> done, Decode decode,
                                                       Post post) {
  return [done = std::move(done), decode, post](EtcdError error, std::string body) {
    EtcdResult<T> r;
    r.error = std::move(error);
    if (r.error.ok()) {
      json j = json::parse(body, nullptr, false);
      std::string why;
      if (j.is_discarded())
        r.error = make_error(EtcdError::Kind::kBadResponse, "the answer is not JSON");
      else if (!decode(j, r.value, &why))
        r.error = make_error(EtcdError::Kind::kBadResponse, "unexpected answer: " + why);
      else
        post(r);
    }
    if (done) done(std::move(r));
  };
}

template <typename T>
std::function<void(EtcdError, std::string)> completion(EtcdClient::Callback<T> done) {
  return completion<T>(
      std::move(done),
      [](const json& j, T& out, std::string* why) { return etcd::decode(j, out, why); },
      [](EtcdResult<T>&) {});
}

// Calls answered by a header alone (compact, lease revoke).
std::function<void(EtcdError, std::string)> header_completion(
    EtcdClient::Callback<etcd::ResponseHeader> done) {
  return completion<etcd::ResponseHeader>(
      std::move(done),
      [](const json& j, etcd::ResponseHeader& out, std::string* why) {
        if (!j.is_object()) {
          *why = "not a JSON object";
          return false;
        }
        auto it = j.find("header");
        return it == j.end() || etcd::decode(*it, out, why);
      },
      [](EtcdResult<etcd::ResponseHeader>&) {});
}

}  // namespace

EtcdClient::EtcdClient(uv_loop_t* loop, EtcdOptions options)
    : loop_(loop), options_(std::move(options)) {}

EtcdClient::~EtcdClient() {
  *alive_ = false;
  close();
}

bool EtcdClient::start(std::string* error) {
  if (started_ || closed_) {
    *error = "the etcd client was started or closed already";
    return false;
  }
  if (options_.endpoints.empty()) {
    *error = "no etcd endpoints";
    return false;
  }
  for (const std::string& text : options_.endpoints) {
    std::optional<etcd::Endpoint> ep = etcd::parse_endpoint(text, error);
    if (!ep) return false;
    if (ep->tls && !options_.tls) {
      *error = "etcd endpoint \"" + text + "\": https:// needs TLS settings (a CA to verify with)";
      return false;
    }
    endpoints_.push_back(std::move(*ep));
  }
  tick_ = new uv_timer_t{};
  if (int rc = uv_timer_init(loop_, tick_); rc != 0) {
    delete tick_;
    tick_ = nullptr;
    *error = std::string("etcd client timer: ") + uv_strerror(rc);
    return false;
  }
  tick_->data = this;
  started_ = true;
  return true;
}

void EtcdClient::close() {
  if (std::exchange(closed_, true)) return;
  queue_.clear();
  ready_.clear();
  for (auto& [id, w] : watches_)
    if (Conn* c = w->conn) {
      c->detach_watch();
      c->close();
    }
  watches_.clear();
  std::vector<Conn*> open(conns_.begin(), conns_.end());
  for (Conn* c : open) c->close();
  if (tick_) {
    tick_->data = nullptr;
    uv_close(as_handle(tick_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    tick_ = nullptr;
  }
}

size_t EtcdClient::idle_connections() const {
  size_t n = 0;
  for (Conn* c : conns_) n += c->state() == Conn::State::kIdle;
  return n;
}

size_t EtcdClient::idle_on(size_t endpoint) const {
  size_t n = 0;
  for (Conn* c : conns_) n += c->state() == Conn::State::kIdle && c->endpoint() == endpoint;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Calls

EtcdClient::RequestId EtcdClient::submit(std::unique_ptr<Call> call) {
  if (!started_ || closed_) return 0;
  call->id = next_id_++;
  call->deadline_ms = now_ms() + options_.request_timeout_ms;
  call->tried.assign(endpoints_.size(), false);
  RequestId id = call->id;
  queue_.push_back(std::move(call));
  pump();
  schedule();
  return id;
}

namespace {
std::unique_ptr<EtcdClient::Call> make_call(const char* path, std::string body, bool idempotent,
                                            bool require_leader) {
  auto call = std::make_unique<EtcdClient::Call>();
  call->path = path;
  call->body = std::move(body);
  call->idempotent = idempotent;
  call->require_leader = require_leader;
  return call;
}
}  // namespace

EtcdClient::RequestId EtcdClient::range(etcd::RangeRequest r, Callback<etcd::RangeResponse> done) {
  auto call = make_call("/v3/kv/range", etcd::encode(r), true, !r.serializable);
  call->complete = completion<etcd::RangeResponse>(std::move(done));
  return submit(std::move(call));
}

EtcdClient::RequestId EtcdClient::put(etcd::PutRequest r, Callback<etcd::PutResponse> done) {
  auto call = make_call("/v3/kv/put", etcd::encode(r), false, true);
  call->complete = completion<etcd::PutResponse>(std::move(done));
  return submit(std::move(call));
}

EtcdClient::RequestId EtcdClient::delete_range(etcd::DeleteRequest r,
                                               Callback<etcd::DeleteResponse> done) {
  auto call = make_call("/v3/kv/deleterange", etcd::encode(r), false, true);
  call->complete = completion<etcd::DeleteResponse>(std::move(done));
  return submit(std::move(call));
}

EtcdClient::RequestId EtcdClient::txn(etcd::TxnRequest r, Callback<etcd::TxnResponse> done) {
  auto call = make_call("/v3/kv/txn", etcd::encode(r), false, true);
  call->complete = completion<etcd::TxnResponse>(
      std::move(done),
      [](const json& j, etcd::TxnResponse& out, std::string* why) {
        return etcd::decode(j, out, why);
      },
      [](EtcdResult<etcd::TxnResponse>& res) {
        if (!res.value.succeeded)
          res.error = make_error(EtcdError::Kind::kConflict, "the txn's compares failed");
      });
  return submit(std::move(call));
}

EtcdClient::RequestId EtcdClient::compact(etcd::CompactionRequest r,
                                          Callback<etcd::ResponseHeader> done) {
  auto call = make_call("/v3/kv/compaction", etcd::encode(r), false, true);
  call->complete = header_completion(std::move(done));
  return submit(std::move(call));
}

EtcdClient::RequestId EtcdClient::lease_grant(etcd::LeaseGrantRequest r,
                                              Callback<etcd::LeaseGrantResponse> done) {
  auto call = make_call("/v3/lease/grant", etcd::encode(r), false, true);
  call->complete = completion<etcd::LeaseGrantResponse>(
      std::move(done),
      [](const json& j, etcd::LeaseGrantResponse& out, std::string* why) {
        return etcd::decode(j, out, why);
      },
      [](EtcdResult<etcd::LeaseGrantResponse>& res) {
        if (!res.value.error.empty())
          res.error = make_error(EtcdError::Kind::kRejected, "lease grant: " + res.value.error);
      });
  return submit(std::move(call));
}

EtcdClient::RequestId EtcdClient::authenticate(const std::string& name, const std::string& password,
                                               Callback<std::string> done) {
  const std::string body = json{{"name", name}, {"password", password}}.dump();
  // Sent without the current token: a stale one would be refused before the password is read.
  auto call = make_call("/v3/auth/authenticate", body, true, true);
  call->without_token = true;
  call->complete = completion<std::string>(
      std::move(done),
      [](const json& j, std::string& out, std::string* why) {
        auto it = j.is_object() ? j.find("token") : j.end();
        if (it == j.end() || !it->is_string() || it->get<std::string>().empty()) {
          *why = "no token in the answer";
          return false;
        }
        out = it->get<std::string>();
        // It goes into a header line: nothing that could end or split it.
        for (char c : out)
          if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
            *why = "the token has a control character or a space";
            return false;
          }
        return true;
      },
      [](EtcdResult<std::string>&) {});
  return submit(std::move(call));
}

void EtcdClient::set_token(std::string token) {
  token_ = std::move(token);
}

EtcdClient::RequestId EtcdClient::lease_keepalive(int64_t id,
                                                  Callback<etcd::LeaseKeepAliveResponse> done) {
  auto call = make_call("/v3/lease/keepalive", etcd::encode_lease_id(id), true, true);
  call->stream_result = true;
  call->complete = completion<etcd::LeaseKeepAliveResponse>(
      std::move(done),
      [](const json& j, etcd::LeaseKeepAliveResponse& out, std::string* why) {
        return etcd::decode(j, out, why);
      },
      [](EtcdResult<etcd::LeaseKeepAliveResponse>& res) {
        if (res.value.ttl_s <= 0)
          res.error = make_error(EtcdError::Kind::kNotFound, "the lease does not exist");
      });
  return submit(std::move(call));
}

EtcdClient::RequestId EtcdClient::lease_revoke(int64_t id, Callback<etcd::ResponseHeader> done) {
  auto call = make_call("/v3/lease/revoke", etcd::encode_lease_id(id), true, true);
  call->complete = header_completion(std::move(done));
  return submit(std::move(call));
}

bool EtcdClient::cancel(RequestId id) {
  if (id == 0 || closed_ || watches_.count(id)) return false;
  for (auto it = queue_.begin(); it != queue_.end(); ++it)
    if ((*it)->id == id) {
      queue_.erase(it);
      return true;
    }
  for (Conn* c : conns_)
    if (Call* call = c->call(); call && call->id == id && !call->cancelled) {
      call->cancelled = true;  // the connection finishes the exchange and stays reusable
      call->complete = nullptr;
      return true;
    }
  for (auto it = ready_.begin(); it != ready_.end(); ++it)
    if (it->id == id) {
      ready_.erase(it);
      return true;
    }
  return false;
}

void EtcdClient::pump() {
  while (!queue_.empty() && busy_ < options_.max_connections && !closed_) {
    std::unique_ptr<Call> call = std::move(queue_.front());
    queue_.pop_front();
    if (call->cancelled) continue;
    if (now_ms() >= call->deadline_ms) {
      std::string why = call->failures.empty() ? "" : " (" + call->failures + ")";
      finish(std::move(call),
             make_error(EtcdError::Kind::kTimeout, "no answer before the deadline" + why), {});
      continue;
    }
    // The first untried endpoint from the preferred one on.
    size_t n = endpoints_.size(), endpoint = n;
    for (size_t k = 0; k < n; ++k)
      if (size_t e = (preferred_ + k) % n; !call->tried[e]) {
        endpoint = e;
        break;
      }
    if (endpoint == n) {
      finish(std::move(call),
             make_error(EtcdError::Kind::kUnavailable,
                        "no etcd endpoint answered (" + call->failures + ")"),
             {});
      continue;
    }
    call->tried[endpoint] = true;
    if (Conn* idle = take_idle(endpoint)) {
      idle->start_call(std::move(call));
      continue;
    }
    std::string error;
    Conn* conn = open_conn(endpoint, &error);
    if (!conn) {
      mark_endpoint_failed(endpoint);
      call->failures += (call->failures.empty() ? "" : "; ") + error;
      queue_.push_front(std::move(call));  // the next endpoint, at once
      continue;
    }
    conn->start_call(std::move(call));
  }
}

EtcdClient::Conn* EtcdClient::take_idle(size_t endpoint) {
  Conn* best = nullptr;
  for (Conn* c : conns_)
    if (c->state() == Conn::State::kIdle && c->endpoint() == endpoint &&
        (!best || c->idle_since_ms() > best->idle_since_ms()))
      best = c;  // the most recently used: the least likely to have been closed by the peer
  return best;
}

EtcdClient::Conn* EtcdClient::open_conn(size_t endpoint, std::string* error) {
  const etcd::Endpoint& ep = endpoints_[endpoint];
  sockaddr_storage addr{};
  if (uv_ip4_addr(ep.host.c_str(), ep.port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(ep.host.c_str(), ep.port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0) {
    *error = ep.text + ": not an IP address";
    return nullptr;
  }
  auto* conn = new Conn(this, endpoint, net::context_of(loop_));
  conns_.insert(conn);
  std::string why;
  if (!conn->connect(reinterpret_cast<const sockaddr*>(&addr), &why)) {  // closed and detached
    *error = ep.text + ": " + why;
    return nullptr;
  }
  ++connections_opened_;
  return conn;
}

void EtcdClient::on_conn_closed(Conn* conn) {
  conns_.erase(conn);
}

void EtcdClient::mark_endpoint_failed(size_t endpoint) {
  if (preferred_ == endpoint) preferred_ = (endpoint + 1) % endpoints_.size();
}

void EtcdClient::on_call_response(size_t endpoint, std::unique_ptr<Call> call, int status,
                                  std::string body) {
  const std::string& where = endpoints_[endpoint].text;
  if (status == 200) {
    preferred_ = endpoint;
    if (call->stream_result) {
      // {"result":{...}} or {"error":{...}}, one per request sent (we send one).
      etcd::StreamSplitter splitter(options_.max_response_bytes);
      std::vector<std::string> docs;
      json j;
      if (splitter.feed(body, docs) && !docs.empty()) j = json::parse(docs[0], nullptr, false);
      etcd::GatewayError g;
      if (j.is_object() && j.contains("result")) {
        body = j["result"].dump();
      } else if (j.is_object() && etcd::decode_error(j, g)) {
        status = 0;  // handled as an error answer below
        answer_error(endpoint, std::move(call), from_gateway(g, where));
        return;
      } else {
        finish(std::move(call),
               make_error(EtcdError::Kind::kBadResponse, where + ": empty or malformed stream"),
               {});
        pump();
        return;
      }
    }
    finish(std::move(call), {}, std::move(body));
    pump();
    return;
  }
  answer_error(endpoint, std::move(call), from_http_error(status, body, where));
}

void EtcdClient::answer_error(size_t endpoint, std::unique_ptr<Call> call, EtcdError e) {
  // No leader, or an idempotent call the member could not serve: another member may.
  if (is_no_leader(e) || (e.kind == EtcdError::Kind::kUnavailable && call->idempotent)) {
    mark_endpoint_failed(endpoint);
    call->failures += (call->failures.empty() ? "" : "; ") + e.message;
    retry_or_fail(std::move(call), std::move(e));
  } else {
    finish(std::move(call), std::move(e), {});
  }
  pump();
}

void EtcdClient::on_call_failed(size_t endpoint, std::unique_ptr<Call> call, EtcdError error,
                                bool sent, bool endpoint_fault) {
  if (endpoint_fault) mark_endpoint_failed(endpoint);
  call->failures += (call->failures.empty() ? "" : "; ") + error.message;
  if (error.kind == EtcdError::Kind::kTimeout || (sent && !call->idempotent)) {
    error.maybe_committed = error.maybe_committed || (sent && !call->idempotent);
    finish(std::move(call), std::move(error), {});
  } else {
    retry_or_fail(std::move(call), std::move(error));
  }
  pump();
}

void EtcdClient::retry_or_fail(std::unique_ptr<Call> call, EtcdError error) {
  const bool untried =
      std::find(call->tried.begin(), call->tried.end(), false) != call->tried.end();
  if (untried && now_ms() < call->deadline_ms && !closed_) {
    queue_.push_front(std::move(call));  // pump() picks the next endpoint
    return;
  }
  if (endpoints_.size() > 1) {
    error.message = "no etcd endpoint answered (" + call->failures + ")";
  }
  finish(std::move(call), std::move(error), {});
}

void EtcdClient::finish(std::unique_ptr<Call> call, EtcdError error, std::string body) {
  if (call->cancelled || !call->complete || closed_) return;
  if (call->idempotent) error.maybe_committed = false;  // nothing to commit
  ready_.push_back({call->id, [complete = std::move(call->complete), error = std::move(error),
                               body = std::move(body)]() mutable {
                      complete(std::move(error), std::move(body));
                    }});
  schedule();
}

// ---------------------------------------------------------------------------------------------
// Watches

EtcdClient::RequestId EtcdClient::watch(etcd::WatchCreateRequest request,
                                        WatchCallbacks callbacks) {
  if (!started_ || closed_) return 0;
  auto w = std::make_unique<Watch>();
  w->id = next_id_++;
  w->request = std::move(request);
  w->next_revision = w->request.start_revision;
  w->callbacks = std::make_shared<WatchCallbacks>(std::move(callbacks));
  w->endpoint = preferred_;
  w->retry_pending = true;  // connect from the tick: no callback inside this call
  w->retry_at_ms = now_ms();
  RequestId id = w->id;
  watches_.emplace(id, std::move(w));
  schedule();
  return id;
}

bool EtcdClient::cancel_watch(RequestId id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return false;
  if (Conn* c = it->second->conn) {
    c->detach_watch();
    c->close();
  }
  watches_.erase(it);
  std::erase_if(ready_, [id](const Ready& r) { return r.id == id; });
  return true;
}

int64_t EtcdClient::watch_next_revision(RequestId id) const {
  auto it = watches_.find(id);
  return it == watches_.end() ? 0 : it->second->next_revision;
}

size_t EtcdClient::watch_endpoint(RequestId id) const {
  auto it = watches_.find(id);
  return it == watches_.end() || !it->second->created ? SIZE_MAX : it->second->endpoint;
}

uint64_t EtcdClient::watch_duplicates_dropped(RequestId id) const {
  auto it = watches_.find(id);
  return it == watches_.end() ? 0 : it->second->duplicates;
}

void EtcdClient::connect_watch(Watch& w) {
  w.retry_pending = false;
  w.created = false;
  w.request.start_revision = w.next_revision;
  std::string error;
  Conn* conn = open_conn(w.endpoint, &error);
  if (!conn) {
    on_watch_ended(w, make_error(EtcdError::Kind::kUnavailable, error));
    return;
  }
  conn->start_watch(&w);
}

void EtcdClient::on_watch_message(Watch& w, const std::string& doc) {
  const std::string& where = endpoints_[w.endpoint].text;
  json j = json::parse(doc, nullptr, false);
  etcd::GatewayError g;
  if (!j.is_discarded() && etcd::decode_error(j, g)) {
    EtcdError e = from_gateway(g, where);
    if (e.kind == EtcdError::Kind::kCompacted || e.kind == EtcdError::Kind::kRejected) {
      end_watch(w, std::move(e));
    } else {
      if (w.conn) w.conn->close();  // the stream ends after an error: go elsewhere
      on_watch_ended(w, std::move(e));
    }
    return;
  }
  etcd::WatchResponse r;
  std::string why;
  const json* result = nullptr;
  if (!j.is_discarded() && j.is_object())
    if (auto it = j.find("result"); it != j.end()) result = &*it;
  if (!result || !etcd::decode(*result, r, &why)) {
    if (w.conn) w.conn->close();
    on_watch_ended(
        w, make_error(EtcdError::Kind::kBadResponse,
                      where + ": unexpected watch message" + (why.empty() ? "" : ": " + why)));
    return;
  }
  if (r.canceled) {
    EtcdError e;
    if (r.compact_revision > 0) {
      e = make_error(EtcdError::Kind::kCompacted,
                     where + ": revision " + std::to_string(w.next_revision) +
                         " is compacted (oldest kept: " + std::to_string(r.compact_revision) + ")");
      e.compact_revision = r.compact_revision;
    } else {
      e = make_error(
          EtcdError::Kind::kRejected,
          where + ": watch cancelled" + (r.cancel_reason.empty() ? "" : ": " + r.cancel_reason));
    }
    end_watch(w, std::move(e));
    return;
  }
  if (r.created) {
    w.created = true;
    w.retry_delay_ms = 0;
    preferred_ = w.endpoint;
    if (w.next_revision == 0) w.next_revision = r.header.revision + 1;
    if (w.conn) w.conn->watch_confirmed();
    if (w.callbacks->on_connected)
      ready_.push_back({w.id, [cb = w.callbacks, endpoint = w.endpoint, rev = r.header.revision] {
                          cb->on_connected(endpoint, rev);
                        }});
  }
  if (r.events.empty()) return;
  // Drop what was delivered before a reconnect (etcd resends from the start revision on).
  std::vector<etcd::Event> fresh;
  fresh.reserve(r.events.size());
  for (etcd::Event& e : r.events) {
    if (e.kv.mod_revision < w.next_revision) {
      ++w.duplicates;
      continue;
    }
    fresh.push_back(std::move(e));
  }
  if (fresh.empty()) return;
  w.next_revision = fresh.back().kv.mod_revision + 1;
  if (w.callbacks->on_events)
    ready_.push_back(
        {w.id, [cb = w.callbacks, events = std::move(fresh), rev = r.header.revision]() mutable {
           cb->on_events(std::move(events), rev);
         }});
}

void EtcdClient::on_watch_ended(Watch& w, EtcdError error) {
  if (closed_) return;
  w.conn = nullptr;
  if (error.kind == EtcdError::Kind::kCompacted || error.kind == EtcdError::Kind::kRejected) {
    end_watch(w, std::move(error));  // retrying cannot help
    return;
  }
  mark_endpoint_failed(w.endpoint);
  w.endpoint = (w.endpoint + 1) % endpoints_.size();
  // A stream that was working retries at once elsewhere; one that keeps failing backs off.
  if (w.created) {
    w.retry_delay_ms = 0;
  } else {
    w.retry_delay_ms = w.retry_delay_ms == 0
                           ? options_.watch_retry_min_ms
                           : std::min(w.retry_delay_ms * 2, options_.watch_retry_max_ms);
  }
  w.created = false;
  w.retry_pending = true;
  w.retry_at_ms = now_ms() + w.retry_delay_ms;
  if (w.callbacks->on_error)
    ready_.push_back({w.id, [cb = w.callbacks, error = std::move(error)] { cb->on_error(error); }});
  schedule();
}

void EtcdClient::end_watch(Watch& w, EtcdError error) {
  if (Conn* c = w.conn) {
    c->detach_watch();
    c->close();
  }
  RequestId id = w.id;
  if (w.callbacks->on_error)
    ready_.push_back({id, [cb = w.callbacks, error = std::move(error)] { cb->on_error(error); }});
  watches_.erase(id);  // `w` is gone
  schedule();
}

// ---------------------------------------------------------------------------------------------
// The tick: deferred callbacks, queued deadlines, watch reconnects.

void EtcdClient::schedule() {
  if (!tick_ || closed_) return;
  uint64_t now = now_ms(), at = UINT64_MAX;
  if (!ready_.empty()) at = now;
  for (const auto& call : queue_) at = std::min(at, call->deadline_ms);
  for (const auto& [id, w] : watches_)
    if (!w->conn && w->retry_pending) at = std::min(at, w->retry_at_ms);
  if (at == UINT64_MAX) {
    uv_timer_stop(tick_);
    return;
  }
  uv_timer_start(tick_, &EtcdClient::on_tick, at > now ? at - now : 0, 0);
}

void EtcdClient::on_tick(uv_timer_t* timer) {
  auto* self = static_cast<EtcdClient*>(timer->data);
  if (!self) return;
  try {
    self->tick();
  } catch (const std::exception& e) {  // bad_alloc at worst; the next tick tries again
    log_callback_exception(e.what());
  }
  self->dispatch();
}

void EtcdClient::tick() {
  const uint64_t now = now_ms();
  std::vector<Watch*> due;
  for (auto& [id, w] : watches_)
    if (!w->conn && w->retry_pending && w->retry_at_ms <= now) due.push_back(w.get());
  for (Watch* w : due)
    if (watches_.count(w->id)) connect_watch(*w);
  pump();
  // Calls still queued past their deadline (pump() stopped at max_connections).
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (now >= (*it)->deadline_ms) {
      std::unique_ptr<Call> call = std::move(*it);
      it = queue_.erase(it);
      finish(std::move(call), make_error(EtcdError::Kind::kTimeout, "queued past the deadline"),
             {});
    } else {
      ++it;
    }
  }
  schedule();
}

void EtcdClient::dispatch() {
  if (ready_.empty()) return;
  std::shared_ptr<bool> alive = alive_;
  while (!ready_.empty()) {
    Ready r = std::move(ready_.front());
    ready_.pop_front();
    try {
      r.run();
    } catch (const std::exception& e) {
      log_callback_exception(e.what());
    } catch (...) {
      log_callback_exception("a non-standard exception");
    }
    if (!*alive) return;  // the callback destroyed the client
  }
  schedule();
}

}  // namespace sluice::control
