// The admin listener: connections, HTTP parsing, routing to the control plane (see server.h).
#include "admin/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "config/values.h"
#include "http/parser.h"
#include "http/rewrite.h"
#include "net/listener.h"
#include "net/loop_context.h"
#include "net/stream.h"
#include "observe/prometheus.h"

namespace sluice::admin {

using control::api_error;
using control::dump_json;
namespace {

using nlohmann::json;

constexpr size_t kMaxBodyBytes = 1 << 20;
// Admin clients are few (CLI, scrapers, dashboards) and send small requests at once, so the
// bounds are tight: a slow or idle client cannot hold a slot for long, and at a cap the least
// useful connection (the longest-waiting incomplete head) makes room for a newcomer.
constexpr size_t kMaxConnections = 256;
constexpr size_t kMaxConnectionsPerClient = 32;  // per client IP address
constexpr uint64_t kHeadTimeoutMs = 5000;        // from accept, or from the previous answer
constexpr uint64_t kBodyTimeoutMs = 10000;       // from the end of the head
constexpr uint64_t kLingerMs = 5000;             // discarding input after a closing answer
constexpr uint32_t kMaxHeadBytes = 64 * 1024;
constexpr uint32_t kMaxHeaders = 100;
constexpr size_t kMaxJsonDepth = 32;  // request bodies; a shift plan needs 3

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

AdminServer::Reply json_reply(const ApiResult& r) {
  return {r.status, "application/json", dump_json(r.body, 2) + "\n", false};
}

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

// How deeply arrays and objects nest in JSON text (brackets inside strings do not count).
// Checked before parsing so that no later recursive walk (dump, comparisons) can be driven
// arbitrarily deep by a request.
size_t json_depth(std::string_view text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

// A request body as JSON: nullopt with `error` (400, field "body") naming what is wrong.
std::optional<json> parse_body(const std::string& text, ApiResult* error) {
  if (json_depth(text) > kMaxJsonDepth) {
    *error = api_error(
        400,
        "the body nests arrays or objects deeper than " + std::to_string(kMaxJsonDepth) + " levels",
        "body");
    return std::nullopt;
  }
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 9: ..." minus the tag.
    std::string what = e.what();
    if (size_t tag = what.find("] "); what.rfind("[json.exception", 0) == 0 && tag != what.npos)
      what = what.substr(tag + 2);
    *error = api_error(400, "the body is not valid JSON: " + what, "body");
    return std::nullopt;
  }
}

// For endpoints that take no body: nothing, or an empty JSON object. Sets `error` otherwise.
bool no_body(const std::optional<json>& body, const std::string& what, ApiResult* error) {
  if (!body || (body->is_object() && body->empty())) return true;
  if (body->is_object()) {
    *error = api_error(400,
                       "unknown field " + body->begin().key() + " (" + what +
                           " takes no fields; send no body or {})",
                       body->begin().key());
  } else {
    *error = api_error(400, what + " takes no body (send no body or {})", "body");
  }
  return false;
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
  return config::is_loopback_host(host);  // one definition for the loader and the listener
}

// One admin client connection. Owned by AdminServer::conns_; freed by erase() from the last close
// callback (its stream's or its timer's). Requests are answered synchronously as each message
// ends, in order. One timer bounds each wait: the whole head within kHeadTimeoutMs of the accept
// or of the previous answer, then the whole body within kBodyTimeoutMs of the head.
class AdminConn final : public http::Sink, public net::StreamEvents {
 public:
  enum class Phase { kHead, kBody };

  AdminConn(AdminServer& server, net::LoopContext& ctx)
      : server_(server),
        ctx_(ctx),
        stream_(ctx, *this),
        parser_(HTTP_REQUEST, *this, kMaxHeadBytes, kMaxHeaders),
        wait_started_ms_(uv_now(ctx.loop)) {}

  // Takes the listener's pending connection. false: it failed and close() ran; the close
  // callback still frees this if has_handles(), else the caller must.
  bool accept(net::Listener& listener) {
    const int rc = listener.accept(stream_);
    if (stream_.open()) ++open_handles_;
    if (rc != 0) {
      close();
      return false;
    }
    return true;
  }
  bool has_handles() const { return open_handles_ > 0; }
  // The client's IP address as text ("?" if unknown).
  std::string peer_ip() const {
    std::string ip;
    return stream_.peer(&ip, nullptr) ? ip : "?";
  }

  void start(std::string peer) {
    peer_ = std::move(peer);
    int rc = uv_timer_init(ctx_.loop, &timer_);
    if (rc == 0) {
      timer_.data = this;
      ++open_handles_;
      rc = stream_.start_reading();
    }
    if (rc == 0) rc = arm(Phase::kHead, kHeadTimeoutMs);
    if (rc != 0) close();
  }

  // Safe to call twice. Teardown starts here from: read error/EOF, write failure, a head or body
  // timeout, a response with Connection: close, shedding by AdminServer (a newcomer needed the
  // slot), AdminServer::close(). The last close callback frees this.
  void close() {
    if (std::exchange(closing_, true)) return;
    *alive_ = false;  // a deferred answer arriving later finds nobody
    server_.forget(this);
    stream_.close();
    if (timer_.data && !uv_is_closing(net::as_handle(&timer_)))
      uv_close(net::as_handle(&timer_),
               [](uv_handle_t* h) { static_cast<AdminConn*>(h->data)->handle_closed(); });
  }

  bool closing() const { return closing_; }
  const std::string& peer() const { return peer_; }
  Phase phase() const { return phase_; }
  // When the current wait (for a head or a body) began, in loop milliseconds.
  uint64_t wait_started_ms() const { return wait_started_ms_; }
  // Sheddable: waiting for bytes, with no answer still being written.
  bool idle_or_incomplete() const {
    return !closing_ && !waiting_ && out_.empty() && stream_.queued_bytes() == 0;
  }
  bool has_unread_input() const { return stream_.unread_bytes() > 0; }

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
    arm(Phase::kBody, kBodyTimeoutMs);
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
    waiting_ = true;
    uv_timer_stop(&timer_);  // no deadline runs while the control plane works on the answer
    in_message_end_ = true;
    std::weak_ptr<bool> alive = alive_;
    server_.handle_async(request_, [this, alive](AdminServer::Reply reply) {
      std::shared_ptr<bool> still = alive.lock();
      if (still && *still) answer(std::move(reply));  // else: closed meanwhile, nobody to tell
    });
    in_message_end_ = false;
    return waiting_;  // still waiting: pause the parser (pipelined bytes wait in held_)
  }

  // net::StreamEvents
  void on_stream_data(const char* data, size_t len) override {
    if (close_after_write_ || closing_) return;  // lingering: discard
    try {  // a libuv callback: nothing may escape it (handle() already answers 500 itself)
      if (waiting_) {  // read before the stop took effect: keep it for later
        held_.append(data, len);
        return;
      }
      consume(data, len);
      flush();
    } catch (...) {
      close();
    }
  }
  void on_stream_end(int) override {
    close();  // also the end of a lingering close
  }
  void on_stream_written(int status) override {
    if (closing_) return;
    if (status < 0) {  // a write, or the FIN of a lingering close, failed
      close();
      return;
    }
    if (close_after_write_ && stream_.queued_bytes() == 0) linger();
  }
  void on_stream_closed() override { handle_closed(); }

 private:
  int arm(Phase phase, uint64_t timeout_ms) {
    phase_ = phase;
    wait_started_ms_ = uv_now(ctx_.loop);
    return uv_timer_start(&timer_, &AdminConn::on_timer, timeout_ms, 0);
  }

  // Parses `len` bytes; on a pause (an answer still to come) keeps the rest and stops reading.
  void consume(const char* data, size_t len) {
    http::Parser::Result r = parser_.feed(data, len);
    if (r.status == http::Parser::Status::kPaused) {
      held_.append(data + r.consumed, len - r.consumed);
      stream_.stop_reading();
    } else if (r.status == http::Parser::Status::kError) {
      reject_malformed();
    } else if (r.status == http::Parser::Status::kUpgrade) {
      refuse(400, "the admin API does not upgrade connections", "upgrade");
    }
  }

  // The control plane's answer to the current request, now (inside on_message_end) or later.
  void answer(AdminServer::Reply reply) {
    waiting_ = false;
    respond(reply, !keep_alive_);
    arm(Phase::kHead, kHeadTimeoutMs);  // the next head is due from this answer on
    if (in_message_end_) return;        // on_stream_data goes on parsing, then flushes
    // A deferred answer: send it, parse what arrived meanwhile, and read again.
    try {
      flush();
      if (closing_ || close_after_write_) return;
      parser_.resume();
      std::string held = std::move(held_);
      held_.clear();
      if (!held.empty()) consume(held.data(), held.size());
      flush();
      if (!waiting_ && !closing_ && !close_after_write_ && stream_.start_reading() != 0) close();
    } catch (...) {
      close();
    }
  }

  void reject_malformed() {
    if (too_large_) {
      refuse(413,
             "the request body is over the admin API's limit of " + std::to_string(kMaxBodyBytes) +
                 " bytes",
             "body");
      return;
    }
    switch (parser_.error()) {
      case http::ParseError::kHeadTooLarge:
        refuse(431, "the request head is over " + std::to_string(kMaxHeadBytes) + " bytes", "head");
        return;
      case http::ParseError::kTooManyHeaders:
        refuse(431, "the request has over " + std::to_string(kMaxHeaders) + " headers", "head");
        return;
      default: {
        // llhttp's reason names the part ("Invalid characters in url", "Invalid method ...").
        const std::string reason = parser_.error_reason() ? parser_.error_reason() : "";
        const bool in_target = reason.find(" url") != std::string::npos;
        refuse(400, "malformed request: " + reason, in_target ? "target" : "request");
      }
    }
  }

  // Answers `status` with a JSON error and closes after it is written.
  void refuse(int status, const std::string& message, const std::string& field) {
    head_request_ = false;
    respond({status, "application/json", dump_json(api_error(status, message, field).body) + "\n"},
            true);
  }

  void respond(const AdminServer::Reply& reply, bool close_after) {
    std::string head = "HTTP/1.1 " + std::to_string(reply.status) + " " +
                       std::string(http::status_text(reply.status)) + "\r\n";
    head += "Content-Type: " + reply.content_type + "\r\n";
    head += "Content-Length: " + std::to_string(reply.body.size()) + "\r\n";
    head += "Cache-Control: no-store\r\n";
    if (reply.unauthorized) head += "WWW-Authenticate: Bearer realm=\"sluice\"\r\n";
    if (close_after) head += "Connection: close\r\n";
    head += "\r\n";
    out_.copy(head);
    if (!head_request_) out_.copy(reply.body);  // HEAD: same head, no body
    if (close_after) close_after_write_ = true;
  }

  // Sends what respond() gathered; after a closing answer has left, lingers.
  void flush() {
    if (closing_) return;
    if (!out_.empty() && stream_.write(out_) != 0) {
      close();
      return;
    }
    if (close_after_write_ && stream_.queued_bytes() == 0) linger();
  }

  // A lingering close: FIN after the answer, then read and discard what the client still sends
  // (a refused 2 MiB body, say) until it closes or kLingerMs pass. Closing with unread bytes
  // would send a reset that can destroy the answer before the client reads it.
  void linger() {
    if (std::exchange(lingering_, true)) return;
    if (stream_.shutdown() != 0) {  // a failure later arrives as on_stream_written(< 0)
      close();
      return;
    }
    stream_.start_reading();
    uv_timer_start(&timer_, &AdminConn::on_timer, kLingerMs, 0);
  }

  void handle_closed() {
    if (--open_handles_ == 0) server_.erase(this);  // last use of this
  }

  // The head or the body did not arrive in time. A connection that sent nothing is closed
  // silently (as an idle keep-alive would be); one mid-request gets a 408 first.
  static void on_timer(uv_timer_t* t) {
    auto* self = static_cast<AdminConn*>(t->data);
    if (self->closing_) return;
    if (self->close_after_write_) {  // its last answer had this long to be read
      self->close();
      return;
    }
    try {
      if (self->phase_ == Phase::kBody) {
        self->refuse(408,
                     "the request body did not arrive within " +
                         std::to_string(kBodyTimeoutMs / 1000) + " s of its head",
                     "body");
      } else if (self->parser_.in_message()) {
        self->refuse(408,
                     "the request head did not arrive within " +
                         std::to_string(kHeadTimeoutMs / 1000) + " s",
                     "head");
      } else {
        self->close();
        return;
      }
      self->flush();
    } catch (...) {
      self->close();
    }
  }

  AdminServer& server_;    // outlives its connections (close() closes them first)
  net::LoopContext& ctx_;  // the control loop's
  net::TcpStream stream_;
  uv_timer_t timer_{};  // the head or body deadline, then the lingering close's
  http::Parser parser_;
  AdminServer::Request request_;
  std::string peer_;
  net::Outbox out_;
  Phase phase_ = Phase::kHead;
  uint64_t wait_started_ms_ = 0;
  std::string held_;  // bytes after a request whose answer is deferred, parsed once it is sent
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // false once closing
  bool waiting_ = false;         // the current request's answer has not come yet
  bool in_message_end_ = false;  // inside on_message_end: an answer now is not deferred
  bool keep_alive_ = true;
  bool head_request_ = false;
  bool too_large_ = false;
  bool close_after_write_ = false;
  bool lingering_ = false;
  bool closing_ = false;
  int open_handles_ = 0;  // the stream once accepted, then the timer
};

AdminServer::AdminServer(Control& control, config::AdminSpec spec, std::string config_dir)
    : control_(control), spec_(std::move(spec)), config_dir_(std::move(config_dir)) {}

AdminServer::~AdminServer() = default;

bool AdminServer::start(uv_loop_t* loop, std::string* error) {
  if (!load_tokens(error)) return false;
  std::string host = spec_.address.host == "localhost" ? "127.0.0.1" : spec_.address.host;
  sockaddr_storage addr{};
  if (uv_ip4_addr(host.c_str(), spec_.address.port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(host.c_str(), spec_.address.port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0) {
    *error = "admin address " + spec_.address.text + " is not an IP address";
    return false;
  }
  ctx_ = &net::context_of(loop);
  listener_ = new net::Listener(
      *ctx_, 0, [this](net::Listener& from, int status) { on_connection(from, status); });
  if (int rc = listener_->bind(reinterpret_cast<sockaddr*>(&addr), 128); rc != 0) {
    *error = "cannot listen on admin address " + spec_.address.text + ": " + uv_strerror(rc);
    close();
    return false;
  }
  const uint16_t port = listener_->port();
  bound_ =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  std::fprintf(stderr, "sluice: admin on %s\n", bound_.c_str());
  std::fflush(stderr);
  return true;
}

void AdminServer::close() {
  if (std::exchange(closed_, true)) return;
  if (net::Listener* l = std::exchange(listener_, nullptr)) l->close([l] { delete l; });
  std::vector<AdminConn*> open;
  for (auto& [raw, owned] : conns_) open.push_back(raw);
  for (AdminConn* c : open) c->close();
}

void AdminServer::erase(AdminConn* conn) {
  conns_.erase(conn);
}

void AdminServer::forget(AdminConn* conn) {
  if (conn->peer().empty()) return;  // never started: not counted
  auto it = per_peer_.find(conn->peer());
  if (it != per_peer_.end() && --it->second == 0) per_peer_.erase(it);
  --open_;
}

AdminConn* AdminServer::least_useful(const std::string* peer) const {
  // Waiting for a head before waiting for a body (a head-complete request is closer to being
  // useful), then whoever has waited longest. Linear: at most kMaxConnections entries.
  AdminConn* best = nullptr;
  for (const auto& [raw, owned] : conns_) {
    if (!raw->idle_or_incomplete() || raw->peer().empty() || (peer && raw->peer() != *peer))
      continue;
    // Bytes waiting unread: not a silent client -- the loop accepted a burst of newcomers before
    // reading it (an operator's call was shed that way in a storm of reconnecting slow clients).
    if (raw->has_unread_input()) continue;
    if (!best) {
      best = raw;
      continue;
    }
    const bool raw_head = raw->phase() == AdminConn::Phase::kHead;
    const bool best_head = best->phase() == AdminConn::Phase::kHead;
    if (raw_head != best_head) {
      if (raw_head) best = raw;
    } else if (raw->wait_started_ms() < best->wait_started_ms()) {
      best = raw;
    }
  }
  return best;
}

void AdminServer::on_connection(net::Listener& from, int status) {
  if (status < 0 || closed_) return;
  auto conn = std::make_unique<AdminConn>(*this, *ctx_);
  AdminConn* raw = conn.get();
  conns_[raw] = std::move(conn);
  // Always accepted, so that it leaves the backlog; then it either gets a slot or is closed.
  if (!raw->accept(from)) {
    if (!raw->has_handles()) conns_.erase(raw);  // nothing to close: free it now
    return;                                      // else its close callback frees it
  }
  std::string peer = raw->peer_ip();
  // At a cap, shed rather than refuse: a slow or idle client must not lock the operator out
  // (256 connections dribbling one byte every 5 s once made every call fail for 22 s). The
  // newcomer is refused only when every slot is busy answering.
  auto make_room = [&](const std::string* same_peer) {
    AdminConn* victim = least_useful(same_peer);
    if (!victim) return false;
    victim->close();
    return true;
  };
  auto count = per_peer_.find(peer);
  const size_t mine = count == per_peer_.end() ? 0 : count->second;
  if ((mine >= kMaxConnectionsPerClient && !make_room(&peer)) ||
      (open_ >= kMaxConnections && !make_room(nullptr))) {
    raw->close();
    return;
  }
  ++per_peer_[peer];
  ++open_;
  raw->start(std::move(peer));
}

bool AdminServer::load_tokens(std::string* error) {
  auto read_token = [&](const std::string& file, const char* key, std::string* out) {
    std::filesystem::path p(file);
    if (p.is_relative()) p = std::filesystem::path(config_dir_) / p;
    std::ifstream in(p, std::ios::binary);
    if (!in) {
      *error =
          std::string("cannot read admin ") + key + " " + p.string() + ": " + std::strerror(errno);
      return false;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    *out = ss.str();
    while (!out->empty() && std::isspace(static_cast<unsigned char>(out->back()))) out->pop_back();
    if (out->empty()) {
      *error = std::string("admin ") + key + " " + p.string() + " is empty";
      return false;
    }
    return true;
  };
  token_.clear();
  read_token_.clear();
  if (!spec_.token_file.empty() && !read_token(spec_.token_file, "token_file", &token_))
    return false;
  if (!spec_.read_token_file.empty() &&
      !read_token(spec_.read_token_file, "read_token_file", &read_token_))
    return false;
  if (!read_token_.empty() && token_.empty()) {
    *error = "admin read_token_file needs token_file too (mutating calls need the full token)";
    return false;
  }
  if (!read_token_.empty() && token_equals(read_token_, token_)) {
    *error = "admin read_token_file holds the same token as token_file";
    return false;
  }
  if (!config::is_loopback_host(spec_.address.host) && token_.empty()) {
    *error = "admin address " + spec_.address.text +
             " is not loopback: refusing to start without [admin] token_file";
    return false;
  }
  // Off loopback every endpoint needs a token: /admin/status exposes the whole topology and
  // /metrics every function, alias and version.
  reads_need_token_ = !config::is_loopback_host(spec_.address.host) || !read_token_.empty();
  return true;
}

bool AdminServer::has_token(const Request& r, const std::string& token) const {
  if (token.empty()) return false;
  std::string_view auth = r.authorization;
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() < kBearer.size() || !http::iequals(auth.substr(0, kBearer.size()), kBearer))
    return false;
  return token_equals(auth.substr(kBearer.size()), token);
}

bool AdminServer::authorized(const Request& r, bool mutating) const {
  if (mutating) return token_.empty() || has_token(r, token_);
  if (!reads_need_token_) return true;
  return has_token(r, token_) || has_token(r, read_token_);
}

AdminServer::Reply AdminServer::handle(const Request& r) noexcept {
  // The error boundary: nothing a request does (bad bytes, a bug, a throwing hook) may end the
  // process, since the data plane runs in it too.
  try {
    return route(r, nullptr);
  } catch (const std::exception& e) {
    return internal_error(r, e.what());
  } catch (...) {
    return internal_error(r, "unknown exception");
  }
}

void AdminServer::handle_async(const Request& r, ReplyDone done) noexcept {
  Reply rep;
  try {
    rep = route(r, &done);
  } catch (const std::exception& e) {
    rep = internal_error(r, e.what());
  } catch (...) {
    rep = internal_error(r, "unknown exception");
  }
  if (rep.deferred) return;
  try {
    done(std::move(rep));
  } catch (...) {
  }
}

AdminServer::Reply AdminServer::internal_error(const Request& r, const char* what) noexcept {
  try {
    std::string line = "sluice: admin: " + r.method + " " + r.target + " failed: " + what;
    for (char& c : line)
      if (static_cast<unsigned char>(c) < 0x20) c = '?';  // one log line, whatever was sent
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
    return json_reply(api_error(500, std::string("internal error: ") + what));
  } catch (...) {
    return {500, "application/json", "{\"error\": \"internal error\"}\n", false};
  }
}

AdminServer::Reply AdminServer::route(const Request& r, const ReplyDone* later) {
  if (!valid_utf8(r.target))
    return json_reply(api_error(400, "the request target is not valid UTF-8", "target"));
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

  // Orchestrator probes: before the token check (kubelet has no token, even off loopback), and
  // they reveal nothing but ok / not ready.
  if (p.size() == 1 && (p[0] == "healthz" || p[0] == "readyz")) {
    if (m != "GET" && m != "HEAD") return method_not_allowed("GET, HEAD");
    const bool ok = p[0] == "healthz" || (ready_ && ready_());
    return {ok ? 200 : 503, "text/plain; charset=utf-8", ok ? "ok\n" : "not ready\n", false};
  }
  // The token check comes before anything about the target is revealed (even a 404).
  if (!authorized(r, mutating)) {
    const bool read_token = mutating && has_token(r, read_token_);
    Reply rep = json_reply(api_error(401,
                                     r.authorization.empty() ? "missing bearer token"
                                     : read_token ? "the read token cannot change anything"
                                                  : "wrong bearer token",
                                     "authorization"));
    rep.unauthorized = true;
    return rep;
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

  const std::string actor = "api:" + r.peer;
  // Every body is JSON of bounded depth, whichever handler (or hook) reads it afterwards.
  std::optional<json> body;
  if (!r.body.empty()) {
    ApiResult bad;
    body = parse_body(r.body, &bad);
    if (!body) return json_reply(bad);
  }
  ApiResult bad_body;
  auto takes_no_body = [&](const std::string& what) { return no_body(body, what, &bad_body); };
  // A change answers once its store committed it (an etcd store: later, on the loop).
  using ApiDone = control::Control::ApiDone;
  auto deferred = [&later](const std::function<void(ApiDone)>& start) -> Reply {
    auto done = *later;
    start([done](ApiResult result) {
      Reply rep;
      try {
        rep = json_reply(result);
      } catch (...) {
        rep = {500, "application/json", "{\"error\": \"internal error\"}\n"};
      }
      done(std::move(rep));
    });
    Reply rep;
    rep.deferred = true;
    return rep;
  };

  if (p.size() == 2 && p[1] == "status") {
    if (m != "GET" && m != "HEAD") return method_not_allowed("GET, HEAD");
    if (!takes_no_body("GET /admin/status")) return json_reply(bad_body);
    std::optional<observe::Snapshot> snap = live();
    json out = control_.status(snap ? &*snap : nullptr);
    if (status_extension_) status_extension_(out);
    return json_reply({200, std::move(out)});
  }
  if (p.size() == 2 && p[1] == "reload") {
    if (m != "POST") return method_not_allowed("POST");
    if (!takes_no_body("POST /admin/reload")) return json_reply(bad_body);
    if (!later) return json_reply(control_.reload("api"));
    return deferred([this](ApiDone done) { control_.reload("api", std::move(done)); });
  }
  if (p.size() >= 3 && p[1] == "functions") {
    const std::string& f = p[2];
    if (p.size() == 4 && p[3] == "versions") {
      if (m != "POST") return method_not_allowed("POST");
      if (!takes_no_body("publishing a version")) return json_reply(bad_body);
      if (!later) return json_reply(control_.publish_version(f, actor));
      return deferred([&](ApiDone done) { control_.publish_version(f, actor, std::move(done)); });
    }
    if (p.size() == 5 && p[3] == "aliases") {
      if (m != "PUT") return method_not_allowed("PUT");
      if (!body)
        return json_reply(
            api_error(400, "the body is empty (expected {\"traffic\": {...}})", "body"));
      if (!later) return json_reply(control_.set_alias(f, p[4], *body, actor));
      return deferred(
          [&](ApiDone done) { control_.set_alias(f, p[4], *body, actor, "api", std::move(done)); });
    }
    if (p.size() == 6 && p[3] == "aliases" && p[5] == "rollback") {
      if (m != "POST") return method_not_allowed("POST");
      if (!takes_no_body("rollback")) return json_reply(bad_body);
      if (!later) return json_reply(control_.rollback(f, p[4], actor));
      return deferred([&](ApiDone done) { control_.rollback(f, p[4], actor, std::move(done)); });
    }
    // /admin/functions/{f}/versions/{v}/endpoints/{host:port}: drain, maint, ready
    if (p.size() == 7 && p[3] == "versions" && p[5] == "endpoints") {
      if (m != "PUT") return method_not_allowed("PUT");
      if (!body)
        return json_reply(
            api_error(400, "the body is empty (expected {\"state\": \"drain\"})", "body"));
      if (!later) return json_reply(control_.set_endpoint_state(f, p[4], p[6], *body, actor));
      return deferred([&](ApiDone done) {
        control_.set_endpoint_state(f, p[4], p[6], *body, actor, std::move(done));
      });
    }
  }
  if (extension_)
    if (std::optional<ApiResult> x = extension_(r, p, actor)) return json_reply(*x);
  return json_reply(api_error(404, "no such endpoint"));
}

void AdminServer::attach_shifts(control::ShiftManager& shifts) {
  set_extension([&shifts](const Request& r, const std::vector<std::string>& p,
                          const std::string& actor) -> std::optional<control::ApiResult> {
    // /admin/functions/{f}/aliases/{a}/shift
    if (p.size() == 6 && p[0] == "admin" && p[1] == "functions" && p[3] == "aliases" &&
        p[5] == "shift")
      return shifts.handle(r.method, p[2], p[4], r.body, actor);
    if (p.size() == 2 && p[0] == "admin" && p[1] == "shifts") {
      if (r.method != "GET")
        return control::api_error(405, r.method + " is not allowed here (allowed: GET)");
      return control::ApiResult{200, shifts.status()};
    }
    return std::nullopt;
  });
  set_status_extension([&shifts](json& body) { body["shifts"] = shifts.status()["shifts"]; });
}

}  // namespace sluice::admin
