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
// HTTP2-Settings belongs to the h2c upgrade, which sluice never forwards (RFC 9113 §3.1).
bool is_hop_by_hop(std::string_view name);

// True for headers that a Connection token never removes: those sluice frames the message by
// (Content-Length, Transfer-Encoding; both are written by sluice itself from the parse), routes
// by (Host) or identifies and forwards by (x-request-id, X-Forwarded-*, Via: sluice sets, keeps or
// appends to them by its own rules). Naming one in Connection would otherwise forward a body with
// no framing (request smuggling on a pooled connection) or a request with no Host.
bool is_connection_protected(std::string_view name);

// Lists the header names a Connection header value may remove ("close, X-Foo" ->
// {"close","X-Foo"}), leaving out protected names (is_connection_protected). Returns how many were
// stored (at most `cap`; the rest are ignored and so forwarded).
size_t connection_tokens(std::string_view value, std::string_view* out, size_t cap);

struct UpstreamRequestInfo {
  std::string_view client_ip;   // the peer's address: the X-Forwarded-For entry sluice adds
  std::string_view request_id;  // used when the request carries no (or an empty) x-request-id
  // For an absolute-form request (GET http://host/path): the origin-form target and the
  // authority, which replace the request target and the Host header (RFC 9112 §3.2.2).
  std::string_view target;
  std::string_view host;
  // The Host sent when the request has none (HTTP/1.0) or an empty one: the endpoint's address.
  std::string_view fallback_host;
  // The peer is a trusted proxy ([listen] trusted_proxies): its X-Forwarded-For is appended to
  // and its X-Forwarded-Proto/-Host are kept. Otherwise all three are replaced by sluice's own.
  bool trusted_peer = false;
  bool tls = false;           // the client reached sluice over TLS: X-Forwarded-Proto: https
  bool chunked_body = false;  // the body is re-chunked by the proxy
  bool upgrade = false;       // keep Upgrade (less h2c) and send Connection: upgrade
};

// Builds "METHOD url HTTP/1.1\r\n...\r\n\r\n" for the upstream from a parsed request, in one
// pass over its headers with no allocation beyond `out`'s capacity. The body framing header is
// sluice's own: Transfer-Encoding: chunked when it re-chunks, else the parsed Content-Length.
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

// Builds the status line and headers for the client from a parsed upstream response. As for
// requests, the framing header is sluice's own (chunked, or the parsed Content-Length).
void build_client_response(const Parser& resp, const ClientResponseInfo& info, std::string& out);

// A complete generated response with `x-sluice-error: reason` and a short text body.
void build_error_response(int status, std::string_view reason, bool close, std::string& out);

std::string_view status_text(int status);

// Appends "<hex>\r\n" (a chunk header) to out.
void append_chunk_header(size_t len, std::string& out);

}  // namespace sluice::http
