// HTTP/2 to upstreams (RFC 9113), framed by nghttp2, for versions with protocol = "h2" (TLS,
// ALPN h2) or "h2c" (plaintext, prior knowledge).
//
// An upstream::Connection keeps speaking HTTP/1.1 -- its timeouts, its pool, its borrower and
// retries are those of every other connection -- over an H2Channel: a net::Stream that turns each
// HTTP/1.1 request written to it into one stream of a multiplexed H2Client session, and each
// stream's response back into HTTP/1.1 bytes (chunked, with its trailers, which is where gRPC puts
// its status). Many channels share one session; a pool opens another session when the upstream's
// SETTINGS_MAX_CONCURRENT_STREAMS is taken, or after a GOAWAY.
//
// Response bytes are acknowledged (WINDOW_UPDATE) only once the channel's connection has taken
// them, so a client that stops reading stops its own stream, not the session.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/parser.h"
#include "net/loop_context.h"
#include "net/outbox.h"
#include "net/stream.h"
#include "net/tls_stream.h"

namespace sluice::upstream {

class H2Client;
class Pool;

class H2Channel final : public net::Stream, private http::Sink {
 public:
  H2Channel(H2Client& client, net::StreamEvents& owner);
  ~H2Channel() override;
  H2Channel(const H2Channel&) = delete;
  H2Channel& operator=(const H2Channel&) = delete;

  // The session is up: no on_stream_connected() will follow, requests may be written now.
  bool ready() const;

  int start_reading() override;
  void stop_reading() override { reading_ = false; }
  bool reading() const override { return reading_; }
  int write(net::Outbox& out) override;
  size_t queued_bytes() const override { return body_.size() - body_off_; }
  int shutdown() override { return 0; }
  void close() override;
  bool closing() const override { return closed_; }

 private:
  friend class H2Client;

  // From the session.
  void connected(int status);
  void session_ended(int status);  // the session's connection is gone (or going: GOAWAY)
  void response_header(std::string_view name, std::string_view value);
  void response_headers_done(bool end_stream);
  void response_data(const uint8_t* data, size_t len);
  void stream_closed(uint32_t error_code);
  ssize_t read_body(uint8_t* buf, size_t length, uint32_t* flags);
  void deliver();
  void submit();

  // http::Sink: the HTTP/1.1 request the connection writes.
  int on_head(http::Parser& p) override;
  int on_body(http::Parser& p, const char* data, size_t len) override;
  bool on_message_end(http::Parser& p) override;

  H2Client* client_;           // null once the session is gone
  net::StreamEvents* events_;  // the connection; null once closed
  http::Parser request_;
  std::vector<std::string_view> views_;
  // The request being sent.
  std::vector<nghttp2_nv> nv_;
  std::string nv_text_;  // names and values nv_ points into
  std::string body_;     // request body bytes waiting for the upstream's window
  size_t body_off_ = 0;
  int32_t stream_id_ = -1;  // the current exchange's stream; -1 between exchanges
  bool head_ready_ = false;
  bool request_end_ = false;
  bool deferred_ = false;
  bool head_request_ = false;
  // The response being received.
  std::string in_;      // HTTP/1.1 response bytes waiting for the connection to read
  size_t unacked_ = 0;  // DATA bytes in in_ not yet acknowledged to the upstream
  int status_ = 0;
  bool final_seen_ = false;  // the final response head arrived; later HEADERS are trailers
  bool chunked_ = false;     // the body is chunked for the connection (no content-length)
  bool response_end_ = false;
  std::string fields_;  // header (or trailer) lines of the HEADERS frame being received
  bool has_length_ = false;
  bool reading_ = false;
  bool delivering_ = false;
  bool closed_ = false;
  bool written_pending_ = false;
};

// One HTTP/2 connection to an endpoint, owned by its pool; shared by the pool's channels.
class H2Client final : public net::StreamEvents, public net::Deferred {
 public:
  explicit H2Client(Pool& pool);
  ~H2Client() override;
  H2Client(const H2Client&) = delete;
  H2Client& operator=(const H2Client&) = delete;

  // Starts connecting (TCP, then TLS with ALPN h2 when the pool speaks TLS). False: it failed
  // (closed() says whether a socket is closing, after which the pool frees this).
  bool open();
  // Whether another channel may join: not failing, no GOAWAY, fewer channels than the upstream's
  // concurrent-stream limit.
  bool has_room() const;
  bool connected() const { return session_ != nullptr && !broken_; }
  void attach(H2Channel* c) { channels_.push_back(c); }
  void detach(H2Channel* c);
  void close();  // closes the connection; its channels are told
  bool closed() const { return closing_; }

 private:
  friend class H2Channel;

  void on_stream_data(const char* data, size_t len) override;
  void on_stream_end(int status) override;
  void on_stream_written(int status) override;
  void on_stream_connected(int status) override;
  void on_stream_closed() override;

  bool start_session();
  void send();
  // send() after this loop iteration's events: the requests of every channel that wrote
  // meanwhile leave in one write.
  void send_soon();
  void run_deferred() override { send(); }
  void fail(int status);  // the connection broke: every channel hears it, then it closes
  H2Channel* channel(int32_t stream_id) const;
  size_t stream_limit() const;  // the upstream's SETTINGS_MAX_CONCURRENT_STREAMS, capped

  static ssize_t read_cb(nghttp2_session*, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                         nghttp2_data_source* source, void* user);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                       void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t id, const uint8_t* data,
                           size_t len, void* user);
  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* user);

  Pool& pool_;
  net::TcpStream tcp_;
  std::unique_ptr<net::TlsStream> tls_;
  net::Stream* io_ = &tcp_;
  nghttp2_session* session_ = nullptr;
  net::Outbox out_;
  std::vector<H2Channel*> channels_;
  std::vector<H2Channel*> written_;  // channels whose queued request bytes went down
  int depth_ = 0;
  bool sending_ = false;
  bool send_again_ = false;
  bool broken_ = false;         // failed or GOAWAY received: no new channel
  bool settings_seen_ = false;  // the upstream's SETTINGS arrived
  bool closing_ = false;
};

}  // namespace sluice::upstream
