// Header rules of a proxy hop: builds the upstream request head and the client response head
// (hop-by-hop removal, X-Forwarded-*, Via, x-request-id, version header) and generated error
// responses. Pure: writes into caller-owned strings whose capacity is reused; no uv.h.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "http/parser.h"

namespace sluice::http {

// True for headers that apply to one hop only (RFC 9110 §7.6.1), independent of Connection.
bool is_hop_by_hop(std::string_view name);

// Lists the header names a Connection header value names ("close, X-Foo" -> {"close","X-Foo"}).
// Returns how many were stored (at most `cap`; the rest are ignored and so forwarded).
size_t connection_tokens(std::string_view value, std::string_view* out, size_t cap);

struct UpstreamRequestInfo {
  std::string_view client_ip;   // appended to X-Forwarded-For
  std::string_view request_id;  // used when the request carries no x-request-id
  // For an absolute-form request (GET http://host/path): the origin-form target and the
  // authority, which replace the request target and the Host header (RFC 9112 §3.2.2).
  std::string_view target;
  std::string_view host;
  bool chunked_body = false;  // the body is re-chunked by the proxy
  bool upgrade = false;       // keep Upgrade and send Connection: upgrade
};

// Builds "METHOD url HTTP/1.1\r\n...\r\n\r\n" for the upstream from a parsed request.
void build_upstream_request(const Parser& req, const UpstreamRequestInfo& info, std::string& out);

struct ClientResponseInfo {
  std::string_view version_header;  // name; empty = none
  std::string_view version_label;   // "checkout:4"
  std::string_view set_cookie;      // a full Set-Cookie value to add; empty = none
  bool http10_client = false;       // answer as HTTP/1.0 framing rules require
  bool keep_alive = true;           // the client connection stays open after this response
  bool chunked = false;             // the proxy chunk-encodes the body it forwards
  bool upgrade = false;             // 101: keep Upgrade, send Connection: upgrade
};

// Builds the status line and headers for the client from a parsed upstream response.
void build_client_response(const Parser& resp, const ClientResponseInfo& info, std::string& out);

// A complete generated response with `x-sluice-error: reason` and a short text body.
void build_error_response(int status, std::string_view reason, bool close, std::string& out);

std::string_view status_text(int status);

// Appends "<hex>\r\n" (a chunk header) to out.
void append_chunk_header(size_t len, std::string& out);

}  // namespace sluice::http
