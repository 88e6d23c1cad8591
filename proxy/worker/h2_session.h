// HTTP/2 on a client connection (RFC 9113), framed by nghttp2. Each stream is served by its own
// ClientConn -- the same per-request engine as an HTTP/1.1 connection, so routing, the weighted
// pick, sticky keys, retries, failover, timeouts, metrics and the access log are exactly those of
// HTTP/1.1 -- over an H2Stream: a net::Stream whose reads are the stream's request re-expressed
// as one HTTP/1.1 message, and whose writes (the HTTP/1.1 response that engine produces) are
// parsed back into HEADERS and DATA frames.
//
// Flow control follows back-pressure both ways: request DATA is acknowledged (WINDOW_UPDATE) only
// once the stream's engine has taken it, which it does at the pace its upstream accepts; response
// bytes wait in the stream until the client's window takes them, and a stream whose client stops
// reading makes its engine stop reading its upstream (the HTTP/1.1 high-water rule).
//
// Abuse is bounded per connection: streams cancelled before their response (rapid reset,
// CVE-2023-44487), header blocks that never end or decode to far more than the header limit
// (CONTINUATION floods, HPACK bombs), PING/SETTINGS floods and unacknowledged control frames:
// the connection gets GOAWAY ENHANCE_YOUR_CALM and is closed.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http/parser.h"
#include "net/loop_context.h"
#include "net/outbox.h"
#include "net/stream.h"

namespace sluice::worker {

class ClientConn;
class H2Session;
class Worker;

// One HTTP/2 stream, as the net::Stream its ClientConn serves. Owned by its session.
class H2Stream final : public net::Stream, private http::Sink {
 public:
  H2Stream(H2Session& session, int32_t id, uint32_t max_head_bytes, uint32_t max_headers);
  H2Stream(const H2Stream&) = delete;
  H2Stream& operator=(const H2Stream&) = delete;
  ~H2Stream() override = default;

  // net::Stream, as used by the stream's ClientConn.
  int start_reading() override;
  void stop_reading() override { reading_ = false; }
  bool reading() const override { return reading_; }
  int write(net::Outbox& out) override;
  size_t queued_bytes() const override { return body_.size() - body_off_; }
  int shutdown() override { return 0; }
  void close() override;
  bool closing() const override { return closed_by_conn_; }

 private:
  friend class H2Session;

  // The request, from nghttp2's callbacks.
  // false: the header list is over every limit (the connection is abusive).
  bool add_header(std::string_view name, std::string_view value);
  void head_complete(bool end_stream);  // builds the HTTP/1.1 head and starts the ClientConn
  void request_data(const char* data, size_t len);
  void request_end();
  // Hands the request bytes held while the ClientConn was not reading; acknowledges them.
  void deliver();
  // The response, for nghttp2's data source.
  ssize_t read_body(uint8_t* buf, size_t length, uint32_t* flags);
  void submit_head();
  bool response_complete() const { return response_end_ && queued_bytes() == 0; }
  // Resets every field for stream `id`, keeping the buffers' capacity (a spare stream).
  void reuse(int32_t id);

  // http::Sink: the HTTP/1.1 response the ClientConn writes.
  int on_head(http::Parser& p) override;
  int on_body(http::Parser& p, const char* data, size_t len) override;
  bool on_message_end(http::Parser& p) override;

  H2Session& session_;
  int32_t id_;
  uint32_t max_head_bytes_;
  uint32_t max_headers_;
  ClientConn* conn_ = nullptr;           // the engine serving this stream, until it closes us
  net::StreamEvents* events_ = nullptr;  // == conn_ while it is attached
  // Request side.
  std::string method_, path_, authority_, cookie_;
  std::string head_;      // the regular header lines, as HTTP/1.1 header lines
  std::string in_;        // request bytes held while the engine does not read
  size_t unacked_ = 0;    // DATA payload bytes in in_ (acknowledged once delivered)
  uint64_t decoded_ = 0;  // bytes of header list decoded for this stream (abuse bound)
  uint32_t header_count_ = 0;
  bool has_length_ = false;  // content-length given: the body passes as is
  bool chunked_ = false;     // no length: the body is re-chunked for the engine
  bool grpc_ = false;        // content-type application/grpc*
  bool head_request_ = false;
  bool request_ended_ = false;
  bool reading_ = false;
  bool delivering_ = false;
  // Response side.
  http::Parser parser_;
  std::vector<std::string_view> views_;
  std::vector<nghttp2_nv> nv_;
  std::string names_;                   // lower-cased header names for nv_
  std::vector<nghttp2_nv> trailer_nv_;  // the response's trailers, sent after the body
  std::string trailer_text_;            // names and values trailer_nv_ points into
  std::string body_;                    // response body bytes waiting for the client's window
  size_t body_off_ = 0;
  char status_text_[4] = {};
  char grpc_code_[8] = {};
  bool head_parsed_ = false;     // a final head was parsed (nv_ is ready)
  bool head_submitted_ = false;  // ... and handed to nghttp2
  bool trailers_only_ = false;   // a gRPC error answered in one HEADERS frame
  bool response_end_ = false;    // the engine's response is complete
  bool deferred_ = false;        // nghttp2 waits for body bytes (resume_data when they come)
  bool closed_by_conn_ = false;  // the engine is gone
  bool nghttp2_closed_ = false;  // the stream is closed at the HTTP/2 level
  bool reset_sent_ = false;
  bool written_pending_ = false;  // listed in the session's written_
  bool end_sent_ = false;         // our END_STREAM went out (the response is complete)
};

class H2Session final : public net::Deferred {
 public:
  // `io` is `owner`'s transport; `secure`: it is TLS (x-forwarded-proto https).
  H2Session(Worker& worker, ClientConn& owner, net::Stream& io, bool secure);
  ~H2Session();
  H2Session(const H2Session&) = delete;
  H2Session& operator=(const H2Session&) = delete;

  // Creates the nghttp2 session and queues our SETTINGS. False: out of memory.
  bool start();
  void on_data(const char* data, size_t len);  // bytes from the client
  void on_written();                           // the socket took some of our output
  // Graceful stop: GOAWAY with the last stream taken; streams in flight finish, then close.
  void drain();
  // Closes every stream's engine now (the connection is closing).
  void abort();
  // The loop time by which the connection must make progress, or UINT64_MAX.
  uint64_t deadline() const;
  void on_deadline();

 private:
  friend class H2Stream;

  static ssize_t read_cb(nghttp2_session*, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                         nghttp2_data_source* source, void* user);
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                       void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t id, const uint8_t* data,
                           size_t len, void* user);
  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* user);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user);

  H2Stream* stream(int32_t id) const;
  // send() once this loop iteration's events are handled: the frames of every stream that wrote
  // meanwhile leave in one write.
  void send_soon();
  void run_deferred() override;
  // Sends what nghttp2 has for the client (unless called from inside nghttp2: then afterwards),
  // tells streams whose bytes left, frees closed streams and ends a finished session.
  void send();
  // The client misbehaves: GOAWAY ENHANCE_YOUR_CALM, then close once it is out.
  void abuse();
  void set_idle(bool idle);
  // The stream is closed on both sides (HTTP/2 and its engine): freed at the next safe point.
  void retire(H2Stream* s);
  uint64_t now_ms() const;

  Worker& worker_;
  ClientConn& owner_;
  net::Stream& io_;
  bool secure_;
  nghttp2_session* session_ = nullptr;
  net::Outbox out_;
  std::unordered_map<int32_t, std::unique_ptr<H2Stream>> streams_;
  std::vector<std::unique_ptr<H2Stream>> dead_;   // freed outside nghttp2's callbacks
  std::vector<std::unique_ptr<H2Stream>> spare_;  // dead ones, reset for the next streams
  // Frees or keeps (spare_) the dead streams; only where no stream's call is on the stack.
  void bury_dead();
  std::vector<H2Stream*> written_;  // streams whose queued bytes went down
  int depth_ = 0;                   // inside nghttp2_session_mem_recv
  bool sending_ = false;
  bool send_again_ = false;
  bool draining_ = false;
  bool finishing_ = false;  // closing once our output is written
  bool aborted_ = false;
  uint32_t streams_open_ = 0;               // streams open at the HTTP/2 level
  std::vector<int32_t> reset_after_write_;  // answered before their request ended (send())
  uint64_t idle_since_ms_ = 0;              // no stream open since then
  uint64_t head_started_ms_ = 0;            // a header block is arriving since then (0: none)
  uint32_t continuations_ = 0;              // CONTINUATION frames in the current header block
  uint64_t streams_opened_ = 0;
  uint64_t early_resets_ = 0;  // streams the client reset before their response ended
  uint64_t control_window_ms_ = 0;
  uint32_t control_frames_ = 0;  // PING and SETTINGS in the current second
};

}  // namespace sluice::worker
