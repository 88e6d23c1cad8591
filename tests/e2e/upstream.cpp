// The e2e test upstream: blocking thread-per-connection HTTP/1.1 server (see upstream.h).
#include "upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace sluice::e2e {
namespace {

constexpr size_t kMaxHead = 1 << 20;

int make_loopback_socket(uint16_t* port_out, int backlog) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("upstream: socket failed");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(*port_out);  // 0: the kernel picks
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      (backlog >= 0 && ::listen(fd, backlog) != 0)) {
    ::close(fd);
    throw std::runtime_error("upstream: bind/listen failed");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port_out = ntohs(addr.sin_port);
  return fd;
}

// Blocking reads and writes on one accepted connection, with a read buffer.
class ConnIo {
 public:
  explicit ConnIo(int fd) : fd_(fd) {}

  // Appends what one recv() returns; false on EOF or error.
  bool fill() {
    char tmp[65536];
    for (;;) {
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n > 0) {
        buf_.append(tmp, static_cast<size_t>(n));
        return true;
      }
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
  }

  // Reads one request head (through the blank line) into `head`; false on EOF / too large.
  bool read_head(std::string& head) {
    for (;;) {
      size_t end = buf_.find("\r\n\r\n");
      if (end != std::string::npos) {
        head = buf_.substr(0, end + 4);
        buf_.erase(0, end + 4);
        return true;
      }
      if (buf_.size() > kMaxHead || !fill()) return false;
    }
  }

  bool send_all(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads the request body per its framing; payload goes to `on_data` (may be empty).
  // False on EOF or bad framing.
  bool read_body(const Headers& h, const std::function<void(std::string_view)>& on_data) {
    auto sink = [&](std::string_view d) {
      if (on_data) on_data(d);
    };
    if (to_lower(h.get("transfer-encoding")).find("chunked") != std::string::npos) {
      ChunkedDecoder dec;
      for (;;) {
        size_t used = dec.feed(buf_, sink);
        buf_.erase(0, used);
        if (dec.error()) return false;
        if (dec.done()) return true;
        if (!fill()) return false;
      }
    }
    if (!h.has("content-length")) return true;
    std::string v = h.get("content-length");
    uint64_t left = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), left);
    if (ec != std::errc() || p != v.data() + v.size()) return false;
    for (;;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf_.size()));
      if (n > 0) {
        sink(std::string_view(buf_).substr(0, n));
        buf_.erase(0, n);
        left -= n;
      }
      if (left == 0) return true;
      if (!fill()) return false;
    }
  }

  std::string& buffer() { return buf_; }
  int fd() const { return fd_; }

 private:
  int fd_;
  std::string buf_;
};

bool parse_request_head(const std::string& head, ReceivedRequest& out) {
  size_t eol = head.find("\r\n");
  if (eol == std::string::npos) return false;
  std::string_view line(head.data(), eol);
  size_t sp1 = line.find(' ');
  size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) return false;
  out.method = std::string(line.substr(0, sp1));
  out.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  out.version = std::string(line.substr(sp2 + 1));
  if (out.version.rfind("HTTP/1.", 0) != 0) return false;
  size_t pos = eol + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    if (end == std::string::npos) return false;
    if (end == pos) break;
    std::string_view h(head.data() + pos, end - pos);
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    out.headers.items.emplace_back(to_lower(h.substr(0, colon)), trim(h.substr(colon + 1)));
    pos = end + 2;
  }
  out.head = head;
  return true;
}

uint64_t query_param(const std::string& query, const std::string& key, uint64_t fallback) {
  size_t pos = 0;
  while (pos < query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string::npos) amp = query.size();
    std::string_view kv(query.data() + pos, amp - pos);
    size_t eq = kv.find('=');
    if (eq != std::string_view::npos && kv.substr(0, eq) == key) {
      uint64_t v = 0;
      auto [p, ec] = std::from_chars(kv.data() + eq + 1, kv.data() + kv.size(), v);
      if (ec == std::errc()) return v;
    }
    pos = amp + 1;
  }
  return fallback;
}

bool has_token(const std::string& value, const std::string& token) {
  std::string v = to_lower(value);
  size_t pos = 0;
  while (pos <= v.size()) {
    size_t comma = v.find(',', pos);
    if (comma == std::string::npos) comma = v.size();
    if (trim(std::string_view(v).substr(pos, comma - pos)) == token) return true;
    pos = comma + 1;
  }
  return false;
}

const char* reason_for(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Whatever";
  }
}

}  // namespace

Upstream::Upstream(std::string name, uint16_t port) : name_(std::move(name)), port_(port) {
  listen_fd_ = make_loopback_socket(&port_, 1024);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
  acceptor_ = std::thread([this] { accept_loop(); });
}

Upstream::~Upstream() {
  stop();
}

void Upstream::stop() {
  if (stopping_.exchange(true)) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(wake_fd_, &one, sizeof one);
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    for (auto& c : conns_)
      if (!c->closed) ::shutdown(c->fd, SHUT_RDWR);
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (auto& t : threads) t.join();
  ::close(listen_fd_);
  ::close(wake_fd_);
}

size_t Upstream::open_connections() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (auto& c : conns_) n += !c->closed;
  return n;
}

std::vector<ReceivedRequest> Upstream::received() const {
  std::lock_guard lock(mu_);
  return received_;
}

size_t Upstream::count_target(const std::string& prefix) const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (auto& r : received_) n += r.target.rfind(prefix, 0) == 0;
  return n;
}

void Upstream::reset_counts() {
  std::lock_guard lock(mu_);
  received_.clear();
  requests_ = 0;
  connections_ = 0;
}

bool Upstream::wait_ms(int ms) {
  std::unique_lock lock(mu_);
  return !cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_.load(); });
}

void Upstream::accept_loop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (stopping_) return;
    if (rc < 0) continue;
    if (!(fds[0].revents & POLLIN)) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto conn = std::make_shared<Conn>();
    conn->fd = fd;
    size_t ordinal = ++connections_;
    std::lock_guard lock(mu_);
    conns_.push_back(conn);
    threads_.emplace_back([this, conn, ordinal] { serve(conn, ordinal); });
  }
}

void Upstream::serve(std::shared_ptr<Conn> conn, size_t ordinal) {
  ConnIo io(conn->fd);
  size_t served_here = 0;  // requests already read on this connection
  while (!stopping_) {
    std::string head;
    if (!io.read_head(head)) break;
    ReceivedRequest req;
    if (!parse_request_head(head, req)) {
      io.send_all("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
      break;
    }
    req.connection = ordinal;
    const bool reused = served_here++ > 0;
    {
      std::lock_guard lock(mu_);
      received_.push_back(req);
    }
    ++requests_;

    const bool http10 = req.version == "HTTP/1.0";
    const std::string conn_header = req.headers.get("connection");
    bool keep = http10 ? has_token(conn_header, "keep-alive") : !has_token(conn_header, "close");
    const bool head_req = req.method == "HEAD";
    size_t q = req.target.find('?');
    const std::string path = req.target.substr(0, q);
    const std::string query = q == std::string::npos ? "" : req.target.substr(q + 1);
    const std::string common = "x-upstream: " + name_ + "\r\nx-target: " + req.target +
                               "\r\nx-conn: " + std::to_string(ordinal) + "\r\n";

    auto respond = [&](int status, const std::string& extra, const std::string& body) {
      std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason_for(status) + "\r\n";
      out += common + extra;
      if (status == 304)
        out += "content-length: 12\r\n";
      else if (status != 204)
        out += "content-length: " + std::to_string(body.size()) + "\r\n";
      if (!keep) out += "connection: close\r\n";
      out += "\r\n";
      if (!head_req && status != 204 && status != 304) out += body;
      return io.send_all(out);
    };

    if (to_lower(req.headers.get("expect")) == "100-continue" && path != "/close" &&
        path != "/bad") {
      if (!io.send_all("HTTP/1.1 100 Continue\r\n\r\n")) break;
    }

    if (path == "/close") break;
    if (path == "/early") {
      // Answers without reading the request body (an upload refused early), then closes.
      keep = false;
      respond(200, "", "early " + name_ + "\n");
      break;
    }
    if (path == "/stall-body") {
      if (!io.read_body(req.headers, nullptr)) break;
      io.send_all("HTTP/1.1 200 OK\r\n" + common + "content-length: 1000\r\n\r\nfirst-ten!");
      wait_ms(60000);  // stalls mid-body until the proxy gives up (or the upstream stops)
      break;
    }
    if (path == "/close-if-reused" && reused) break;
    if (path == "/bad") {
      io.send_all("HTTP/1.1 2x0 Broken\r\nx-upstream: " + name_ + "\r\n\r\n");
      break;
    }
    if (path == "/count-body") {
      if (!wait_ms(static_cast<int>(query_param(query, "delay_ms", 0)))) break;
      Fnv fnv;
      if (!io.read_body(req.headers, [&](std::string_view d) { fnv.add(d); })) break;
      char text[96];
      std::snprintf(text, sizeof text, "bytes=%llu hash=%016llx",
                    static_cast<unsigned long long>(fnv.bytes),
                    static_cast<unsigned long long>(fnv.hash));
      if (!respond(200, "content-type: text/plain\r\n", text)) break;
    } else if (path == "/echo") {
      std::string out = "HTTP/1.1 200 OK\r\n" + common;
      out += http10 ? "connection: close\r\n\r\n" : "transfer-encoding: chunked\r\n";
      if (!http10 && !keep) out += "connection: close\r\n";
      if (!http10) out += "\r\n";
      if (!io.send_all(out)) break;
      bool ok = io.read_body(req.headers, [&](std::string_view d) {
        if (d.empty() || head_req) return;
        char size[32];
        std::snprintf(size, sizeof size, "%zx\r\n", d.size());
        if (http10) {
          io.send_all(d);
        } else {
          io.send_all(size);
          io.send_all(d);
          io.send_all("\r\n");
        }
      });
      if (!ok) break;
      if (http10) break;
      if (!head_req && !io.send_all("0\r\n\r\n")) break;
    } else if (path == "/download") {
      if (!io.read_body(req.headers, nullptr)) break;
      uint64_t n = query_param(query, "bytes", 0);
      std::string out = "HTTP/1.1 200 OK\r\n" + common + "content-length: " + std::to_string(n) +
                        "\r\ncontent-type: application/octet-stream\r\n" +
                        (keep ? "" : "connection: close\r\n") + "\r\n";
      if (!io.send_all(out)) break;
      if (!head_req) {
        std::string block(65536, '\0');
        bool ok = true;
        for (uint64_t off = 0; off < n && ok; off += block.size()) {
          size_t len = static_cast<size_t>(std::min<uint64_t>(block.size(), n - off));
          fill_pattern(off, block.data(), len);
          ok = io.send_all(std::string_view(block.data(), len));
        }
        if (!ok) break;
      }
    } else if (path.rfind("/status/", 0) == 0) {
      if (!io.read_body(req.headers, nullptr)) break;
      int status = std::atoi(path.c_str() + 8);
      if (status < 200 || status > 599) status = 500;
      if (!respond(status, "", "status " + std::to_string(status) + "\n")) break;
    } else if (path == "/slow") {
      if (!io.read_body(req.headers, nullptr)) break;
      if (!wait_ms(static_cast<int>(query_param(query, "ms", 1000)))) break;
      if (!respond(200, "", "slow " + name_)) break;
    } else if (path == "/ws") {
      if (!has_token(req.headers.get("upgrade"), "websocket")) {
        keep = false;
        respond(400, "", "not an upgrade\n");
        break;
      }
      std::string out =
          "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
          "connection: Upgrade\r\n" +
          common + "\r\n";
      if (!io.send_all(out)) break;
      const uint64_t close_after = query_param(query, "close_after", 0);
      uint64_t echoed = 0;
      while (!stopping_) {
        if (!io.buffer().empty()) {
          std::string data;
          data.swap(io.buffer());
          if (!io.send_all(data)) break;
          echoed += data.size();
          if (close_after && echoed >= close_after) break;  // the server ends the session
        }
        if (!io.fill()) break;
      }
      break;
    } else if (path == "/headers") {
      if (!io.read_body(req.headers, nullptr)) break;
      if (!respond(200, "content-type: text/plain\r\n", req.head)) break;
    } else if (path == "/early-hints") {
      if (!io.read_body(req.headers, nullptr)) break;
      if (!io.send_all("HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"))
        break;
      if (!respond(200, "", "after hints")) break;
    } else if (path == "/hop-response") {
      if (!io.read_body(req.headers, nullptr)) break;
      if (!respond(200,
                   "connection: x-up-hop\r\nx-up-hop: secret\r\nkeep-alive: timeout=5\r\n"
                   "x-kept: yes\r\n",
                   "hop"))
        break;
    } else if (path == "/resp-te-cl") {
      if (!io.read_body(req.headers, nullptr)) break;
      io.send_all("HTTP/1.1 200 OK\r\n" + common +
                  "transfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
      break;
    } else if (path == "/resp-dup-cl") {
      if (!io.read_body(req.headers, nullptr)) break;
      io.send_all("HTTP/1.1 200 OK\r\n" + common +
                  "content-length: 3\r\ncontent-length: 5\r\n\r\nabcde");
      break;
    } else if (path == "/eof-body") {
      if (!io.read_body(req.headers, nullptr)) break;
      io.send_all("HTTP/1.1 200 OK\r\n" + common + "connection: close\r\n\r\nbody-until-close");
      break;
    } else if (path == "/truncated") {
      if (!io.read_body(req.headers, nullptr)) break;
      io.send_all("HTTP/1.1 200 OK\r\n" + common + "content-length: 1000\r\n\r\nonly-this");
      break;
    } else if (path == "/bad-chunked") {
      if (!io.read_body(req.headers, nullptr)) break;
      io.send_all("HTTP/1.1 200 OK\r\n" + common +
                  "transfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\ngarbage\r\n");
      break;
    } else if (path == "/close-if-reused") {
      if (!io.read_body(req.headers, nullptr)) break;
      if (!respond(200, "", "fresh")) break;
    } else if (path == "/close-after") {
      if (!io.read_body(req.headers, nullptr)) break;
      respond(200, "", "closing");
      break;
    } else {
      if (!io.read_body(req.headers, nullptr)) break;
      if (!respond(200, "content-type: text/plain\r\n", "hello from " + name_ + "\n")) break;
    }
    if (!keep) break;
  }
  std::lock_guard lock(mu_);
  conn->closed = true;
  ::close(conn->fd);
}

uint16_t unused_port() {
  uint16_t port = 0;
  int fd = make_loopback_socket(&port, -1);
  ::close(fd);
  return port;
}

BlackholeListener::BlackholeListener() {
  listen_fd_ = make_loopback_socket(&port_, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port_);
  for (int i = 0; i < 3; ++i) {  // backlog 0 holds one; the rest stay in SYN_SENT
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    [[maybe_unused]] int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    fillers_.push_back(fd);
  }
}

BlackholeListener::~BlackholeListener() {
  for (int fd : fillers_) ::close(fd);
  ::close(listen_fd_);
}

}  // namespace sluice::e2e
