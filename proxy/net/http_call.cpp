// A blocking HTTP/1.1 client exchange (see http_call.h).
#include "net/http_call.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "http/parser.h"

namespace sluice::net {
namespace {

// Keeps the response body; done at the end of the message.
class BodySink : public http::Sink {
 public:
  int on_head(http::Parser&) override { return 0; }
  int on_body(http::Parser&, const char* data, size_t len) override {
    body.append(data, len);
    return 0;
  }
  bool on_message_end(http::Parser&) override {
    done = true;
    return true;
  }
  std::string body;
  bool done = false;
};

}  // namespace

std::optional<ClientResponse> http_call(const std::string& address, const std::string& method,
                                        const std::string& target, const std::string& token,
                                        const std::string& body, std::string* error, int timeout_ms,
                                        const char* peer) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    *error = std::string(peer) + " address " + address + " has no port (expected HOST:PORT)";
    return std::nullopt;
  }
  std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "0.0.0.0" || host == "*") host = "127.0.0.1";
  if (host == "::") host = "::1";
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    *error =
        "cannot resolve " + std::string(peer) + " address " + address + ": " + ::gai_strerror(rc);
    return std::nullopt;
  }
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  if (fd >= 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  if (fd < 0 || ::connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    *error =
        "cannot connect to " + std::string(peer) + " at " + address + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    ::freeaddrinfo(res);
    return std::nullopt;
  }
  ::freeaddrinfo(res);
  std::string req =
      method + " " + target + " HTTP/1.1\r\nHost: " + address +
      "\r\nUser-Agent: sluice-cli\r\nAccept: application/json\r\nConnection: close\r\n";
  if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT")
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  for (size_t off = 0; off < req.size();) {
    ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      *error =
          "cannot send to " + std::string(peer) + " at " + address + ": " + std::strerror(errno);
      ::close(fd);
      return std::nullopt;
    }
    off += static_cast<size_t>(n);
  }
  BodySink sink;
  http::Parser parser(HTTP_RESPONSE, sink, 64 * 1024, 100);
  char buf[16384];
  bool ok = true;
  while (!sink.done) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error =
          "no answer from " + std::string(peer) + " at " + address + ": " + std::strerror(errno);
      ok = false;
      break;
    }
    if (n == 0) {
      if (!parser.finish() && !sink.done) {
        *error = std::string(peer) + " at " + address + " closed the connection without an answer";
        ok = false;
      }
      break;
    }
    if (parser.feed(buf, static_cast<size_t>(n)).status == http::Parser::Status::kError) {
      *error = std::string(peer) + " at " + address + " sent an invalid HTTP response";
      ok = false;
      break;
    }
  }
  ::close(fd);
  if (!ok) return std::nullopt;
  return ClientResponse{parser.status_code(), std::move(sink.body)};
}

}  // namespace sluice::net
