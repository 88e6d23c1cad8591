// Header rules of a proxy hop (see rewrite.h).
#include "http/rewrite.h"

#include <charconv>

namespace sluice::http {
namespace {

constexpr size_t kMaxConnectionTokens = 16;

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

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

}  // namespace

bool is_hop_by_hop(std::string_view name) {
  switch (name.size()) {
    case 2:
      return iequals(name, "te");
    case 7:
      return iequals(name, "trailer") || iequals(name, "upgrade");
    case 10:
      return iequals(name, "connection") || iequals(name, "keep-alive");
    case 16:
      return iequals(name, "proxy-connection");
    case 17:
      return iequals(name, "transfer-encoding");
    default:
      return false;
  }
}

size_t connection_tokens(std::string_view value, std::string_view* out, size_t cap) {
  size_t n = 0;
  while (!value.empty() && n < cap) {
    size_t comma = value.find(',');
    std::string_view tok = trim(value.substr(0, comma));
    if (!tok.empty()) out[n++] = tok;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
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
  size_t ntok = 0;
  std::string_view xff, via, host, request_id;
  for (const Header& h : req.headers())
    if (iequals(h.name, "connection"))
      ntok += connection_tokens(h.value, tokens + ntok, kMaxConnectionTokens - ntok);

  for (const Header& h : req.headers()) {
    const std::string_view n = h.name;
    if (is_hop_by_hop(n)) {
      if (info.upgrade && iequals(n, "upgrade")) add(out, n, h.value);
      continue;
    }
    if (ntok && named_by(n, tokens, ntok)) continue;
    switch (n.size()) {
      case 3:
        if (iequals(n, "via")) {
          via = h.value;
          continue;
        }
        break;
      case 4:
        if (iequals(n, "host")) {
          if (!info.host.empty()) continue;  // replaced by the absolute-form authority
          host = h.value;
        }
        break;
      case 12:
        if (iequals(n, "x-request-id")) request_id = h.value;
        break;
      case 14:
        if (iequals(n, "content-length") && info.chunked_body) continue;
        break;
      case 15:
        if (iequals(n, "x-forwarded-for")) {
          xff = h.value;
          continue;
        }
        break;
      case 16:
        if (iequals(n, "x-forwarded-host")) continue;
        break;
      case 17:
        if (iequals(n, "x-forwarded-proto")) continue;
        break;
    }
    add(out, n, h.value);
  }

  if (!info.host.empty()) {
    add(out, "Host", info.host);
    host = info.host;
  }
  out.append("X-Forwarded-For: ", 17);
  if (!xff.empty()) {
    out.append(xff);
    out.append(", ", 2);
  }
  out.append(info.client_ip);
  out.append("\r\nX-Forwarded-Proto: http\r\n", 27);
  if (!host.empty()) add(out, "X-Forwarded-Host", host);
  out.append("Via: ", 5);
  if (!via.empty()) {
    out.append(via);
    out.append(", ", 2);
  }
  out.append(req.http_major() == 1 && req.http_minor() == 0 ? "1.0 sluice\r\n" : "1.1 sluice\r\n",
             12);
  if (request_id.empty()) add(out, "x-request-id", info.request_id);
  if (info.chunked_body) out.append("Transfer-Encoding: chunked\r\n", 28);
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
  size_t ntok = 0;
  for (const Header& h : resp.headers())
    if (iequals(h.name, "connection"))
      ntok += connection_tokens(h.value, tokens + ntok, kMaxConnectionTokens - ntok);

  const bool interim = status >= 100 && status < 200;
  for (const Header& h : resp.headers()) {
    const std::string_view n = h.name;
    if (is_hop_by_hop(n)) {
      if (info.upgrade && iequals(n, "upgrade")) add(out, n, h.value);
      continue;
    }
    if (ntok && named_by(n, tokens, ntok)) continue;
    if (info.chunked && n.size() == 14 && iequals(n, "content-length")) continue;
    add(out, n, h.value);
  }
  if (!interim) {
    if (!info.version_header.empty()) add(out, info.version_header, info.version_label);
    if (!info.set_cookie.empty()) add(out, "Set-Cookie", info.set_cookie);
  }
  if (info.upgrade) {
    out.append("Connection: upgrade\r\n", 21);
  } else if (!interim) {
    if (info.chunked) out.append("Transfer-Encoding: chunked\r\n", 28);
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
