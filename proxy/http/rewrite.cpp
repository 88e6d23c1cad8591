// Header rules of a proxy hop (see rewrite.h).
#include "http/rewrite.h"

#include <charconv>

namespace sluice::http {
namespace {

constexpr size_t kMaxConnectionTokens = 16;

bool named_by(std::string_view name, const std::string_view* tokens, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (iequals(name, tokens[i])) return true;
  return false;
}

inline void add(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ", 2);
  out.append(value);
  out.append("\r\n", 2);
}

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
}

void add_content_length(std::string& out, uint64_t length) {
  out.append("Content-Length: ", 16);
  append_uint(out, length);
  out.append("\r\n", 2);
}

// The Connection tokens of every Connection header, protected names left out.
size_t all_connection_tokens(const Parser& m, std::string_view* tokens) {
  size_t n = 0;
  for (const Header& h : m.headers())
    if (h.name.size() == 10 && iequals(h.name, "connection"))
      n += connection_tokens(h.value, tokens + n, kMaxConnectionTokens - n);
  return n;
}

// Upgrade for an upgrading request, less h2c (never forwarded); nothing if h2c was all.
void add_upgrade_without_h2c(std::string& out, std::string_view name, std::string_view value) {
  const size_t start = out.size();
  out.append(name);
  out.append(": ", 2);
  bool any = false;
  for (std::string_view list = value; !list.empty();) {
    std::string_view protocol = next_list_element(list);
    if (protocol.empty() || iequals(protocol, "h2c")) continue;
    if (any) out.append(", ", 2);
    out.append(protocol);
    any = true;
  }
  if (any)
    out.append("\r\n", 2);
  else
    out.resize(start);
}

}  // namespace

bool is_hop_by_hop(std::string_view name) {
  switch (name.size()) {
    case 2:
      return iequals(name, "te");
    case 7:
      return iequals(name, "trailer") || iequals(name, "upgrade");
    case 10:
      return iequals(name, "connection") || iequals(name, "keep-alive");
    case 14:
      return iequals(name, "http2-settings");
    case 16:
      return iequals(name, "proxy-connection");
    case 17:
      return iequals(name, "transfer-encoding");
    default:
      return false;
  }
}

bool is_connection_protected(std::string_view name) {
  switch (name.size()) {
    case 3:
      return iequals(name, "via");
    case 4:
      return iequals(name, "host");
    case 12:
      return iequals(name, "x-request-id");
    case 14:
      return iequals(name, "content-length");
    case 15:
      return iequals(name, "x-forwarded-for");
    case 16:
      return iequals(name, "x-forwarded-host");
    case 17:
      return iequals(name, "transfer-encoding") || iequals(name, "x-forwarded-proto");
    default:
      return false;
  }
}

size_t connection_tokens(std::string_view value, std::string_view* out, size_t cap) {
  size_t n = 0;
  while (!value.empty() && n < cap) {
    std::string_view tok = next_list_element(value);
    if (!tok.empty() && !is_connection_protected(tok)) out[n++] = tok;
  }
  return n;
}

void build_upstream_request(const Parser& req, const UpstreamRequestInfo& info, std::string& out) {
  out.clear();
  out.append(req.method_name());
  out.push_back(' ');
  out.append(info.target.empty() ? req.url() : info.target);
  out.append(" HTTP/1.1\r\n", 11);

  std::string_view tokens[kMaxConnectionTokens];
  const size_t ntok = all_connection_tokens(req, tokens);
  const bool trusted = info.trusted_peer;
  std::string_view via, host, request_id, xff;
  size_t xff_count = 0;  // non-empty X-Forwarded-For values from a trusted peer
  bool kept_proto = false, kept_host = false;
  for (const Header& h : req.headers()) {
    const std::string_view n = h.name;
    if (is_hop_by_hop(n)) {
      if (info.upgrade && n.size() == 7 && iequals(n, "upgrade"))
        add_upgrade_without_h2c(out, n, h.value);
      continue;
    }
    // Protected names (is_connection_protected) are settled here, before the Connection check.
    switch (n.size()) {
      case 3:
        if (iequals(n, "via")) {
          via = h.value;
          continue;
        }
        break;
      case 4:
        if (iequals(n, "host")) {
          // Replaced by the absolute-form authority, or (empty) by the fallback below.
          if (!info.host.empty() || h.value.empty()) continue;
          host = h.value;
          add(out, n, h.value);
          continue;
        }
        break;
      case 12:
        if (iequals(n, "x-request-id")) {
          if (h.value.empty()) continue;  // an empty id is replaced by a generated one
          if (request_id.empty()) request_id = h.value;
          add(out, n, h.value);
          continue;
        }
        break;
      case 14:
        if (iequals(n, "content-length")) continue;  // written from the parse below
        break;
      case 15:
        if (iequals(n, "x-forwarded-for")) {
          if (trusted && !h.value.empty()) {
            xff = h.value;
            ++xff_count;
          }
          continue;
        }
        break;
      case 16:
        if (iequals(n, "x-forwarded-host")) {
          if (trusted) {
            kept_host = true;
            add(out, n, h.value);
          }
          continue;
        }
        break;
      case 17:
        if (iequals(n, "x-forwarded-proto")) {
          if (trusted) {
            kept_proto = true;
            add(out, n, h.value);
          }
          continue;
        }
        break;
    }
    if (ntok && named_by(n, tokens, ntok)) continue;
    add(out, n, h.value);
  }

  if (!info.host.empty()) {
    add(out, "Host", info.host);
    host = info.host;
  } else if (host.empty() && !info.fallback_host.empty()) {
    add(out, "Host", info.fallback_host);  // HTTP/1.0 without Host: the upstream still gets one
  }
  out.append("X-Forwarded-For: ", 17);
  if (xff_count == 1) {
    out.append(xff);
    out.append(", ", 2);
  } else if (xff_count > 1) {  // several headers make one list (RFC 9110 §5.3), in order
    for (const Header& h : req.headers()) {
      if (h.name.size() != 15 || h.value.empty() || !iequals(h.name, "x-forwarded-for")) continue;
      out.append(h.value);
      out.append(", ", 2);
    }
  }
  out.append(info.client_ip);
  out.append("\r\n", 2);
  if (!kept_proto) {
    if (info.tls)
      out.append("X-Forwarded-Proto: https\r\n", 26);
    else
      out.append("X-Forwarded-Proto: http\r\n", 25);
  }
  if (!kept_host && !host.empty()) add(out, "X-Forwarded-Host", host);
  out.append("Via: ", 5);
  if (!via.empty()) {
    out.append(via);
    out.append(", ", 2);
  }
  out.append(req.http_major() == 1 && req.http_minor() == 0 ? "1.0 sluice\r\n" : "1.1 sluice\r\n",
             12);
  if (request_id.empty() && !info.request_id.empty()) add(out, "x-request-id", info.request_id);
  if (info.chunked_body)
    out.append("Transfer-Encoding: chunked\r\n", 28);
  else if (req.has_content_length())
    add_content_length(out, req.content_length());
  if (info.upgrade) out.append("Connection: upgrade\r\n", 21);
  out.append("\r\n", 2);
}

void build_client_response(const Parser& resp, const ClientResponseInfo& info, std::string& out) {
  out.clear();
  const int status = resp.status_code();
  out.append(info.http10_client ? "HTTP/1.0 " : "HTTP/1.1 ", 9);
  append_uint(out, static_cast<uint64_t>(status));
  out.push_back(' ');
  std::string_view reason = resp.reason();
  out.append(reason.empty() ? status_text(status) : reason);
  out.append("\r\n", 2);

  std::string_view tokens[kMaxConnectionTokens];
  const size_t ntok = all_connection_tokens(resp, tokens);
  const bool interim = status >= 100 && status < 200;
  for (const Header& h : resp.headers()) {
    const std::string_view n = h.name;
    if (is_hop_by_hop(n)) {
      if (info.upgrade && iequals(n, "upgrade")) add(out, n, h.value);
      continue;
    }
    if (n.size() == 14 && iequals(n, "content-length")) continue;  // written from the parse below
    if (ntok && named_by(n, tokens, ntok)) continue;
    add(out, n, h.value);
  }
  if (!interim) {
    if (!info.version_header.empty()) add(out, info.version_header, info.version_label);
    if (!info.set_cookie.empty()) add(out, "Set-Cookie", info.set_cookie);
  }
  if (info.upgrade) {
    out.append("Connection: upgrade\r\n", 21);
  } else if (!interim) {
    // A HEAD or 304 answer keeps the length of the body it stands for (RFC 9110 §8.6).
    if (info.chunked)
      out.append("Transfer-Encoding: chunked\r\n", 28);
    else if (resp.has_content_length())
      add_content_length(out, resp.content_length());
    if (!info.keep_alive)
      out.append("Connection: close\r\n", 19);
    else if (info.http10_client)
      out.append("Connection: keep-alive\r\n", 24);
  }
  out.append("\r\n", 2);
}

void build_error_response(int status, std::string_view reason, bool close, std::string& out) {
  out.clear();
  out.append("HTTP/1.1 ", 9);
  append_uint(out, static_cast<uint64_t>(status));
  out.push_back(' ');
  out.append(status_text(status));
  out.append("\r\nContent-Type: text/plain\r\nContent-Length: ");
  append_uint(out, reason.size() + 1);
  out.append("\r\nx-sluice-error: ");
  out.append(reason);
  if (close) out.append("\r\nConnection: close");
  out.append("\r\n\r\n", 4);
  out.append(reason);
  out.push_back('\n');
}

std::string_view status_text(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Content Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

void append_chunk_header(size_t len, std::string& out) {
  char buf[20];
  auto r = std::to_chars(buf, buf + sizeof buf, len, 16);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
  out.append("\r\n", 2);
}

}  // namespace sluice::http
