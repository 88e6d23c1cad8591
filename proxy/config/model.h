// Plain, validated configuration values: what the TOML file says, with no toml++ types.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "http/cidr.h"

namespace sluice::config {

// 1-based position in the source file (0 = unknown, e.g. a built-in default).
struct SourcePos {
  uint32_t line = 0;
  uint32_t column = 0;
};

// A parsed "host:port" / "[v6]:port" socket address. `host` is an IP literal or a name; names
// of endpoints are resolved by the control plane at start and then off its loop (never on the
// request path), see routing::HostAddresses.
struct SocketAddress {
  std::string text;  // as written, e.g. "127.0.0.1:8080"
  std::string host;  // without brackets
  uint16_t port = 0;
};

struct Endpoint {
  SocketAddress address;
  uint32_t weight = 1;  // > 0
  SourcePos pos;
};

// Active health checks of a version's endpoints (run by the control loop, never on the request
// path): GET `path` every `interval`; `healthy` passes in a row make an endpoint up, `unhealthy`
// failures in a row (a status not in `expect`, no answer within `timeout`, a refused connect)
// make it down.
struct HealthCheckSpec {
  std::string path = "/healthz";
  uint32_t interval_ms = 5000;
  uint32_t timeout_ms = 1000;
  uint32_t healthy = 2;
  uint32_t unhealthy = 3;
  std::vector<int> expect = {200};
  bool start_unhealthy = false;  // endpoints start down until `healthy` passes (default: up)
  SourcePos pos;
};

// Passive health (outlier ejection, Envoy's model): consecutive failures of one endpoint eject
// it for base_ejection_time, doubled at each ejection up to max_ejection_time; at most
// max_ejection_percent of a version's endpoints are ejected at once (at least one may be).
// A count of 0 turns that trigger off.
struct OutlierSpec {
  uint32_t consecutive_failures = 5;  // connect failures, timeouts, resets, bad responses
  uint32_t consecutive_5xx = 5;
  uint32_t base_ejection_ms = 30000;
  uint32_t max_ejection_ms = 300000;
  uint32_t max_ejection_percent = 50;
};

// A version's `tls = true` or `tls = { ... }`: its endpoints are reached over TLS.
struct UpstreamTlsSpec {
  bool verify = true;       // chain and name; false only for labs and tests
  std::string ca;           // PEM bundle of trusted CAs; empty = the system store
  std::string server_name;  // SNI and the name verified; empty = each endpoint's host
  std::string cert, key;    // client certificate for mTLS; empty = none
  bool h2 = false;          // offer only "h2" by ALPN (the version's protocol is "h2")
  SourcePos pos, ca_pos, cert_pos, key_pos;

  // What makes two specs need different client contexts (server_name does not: it is per
  // connection). Contexts are shared by every version whose spec has this identity.
  std::string identity() const {
    return std::string(verify ? "verify" : "no-verify") + "|" + ca + "|" + cert + "|" + key +
           (h2 ? "|h2" : "");
  }
};

// How a version's endpoints are spoken to: HTTP/1.1, HTTP/2 over TLS (ALPN h2), or HTTP/2 over
// plaintext with prior knowledge (h2c).
enum class Protocol : uint8_t { kHttp1, kH2, kH2c };
std::string_view protocol_name(Protocol p);  // "http1", "h2", "h2c"

// Request settings a version inherits from its function when it does not set them.
struct UpstreamSettings {
  std::optional<uint32_t> connect_timeout_ms;   // default 1000
  std::optional<uint32_t> response_timeout_ms;  // default 30000 (until the first response byte)
  std::optional<uint32_t> max_concurrency;      // default 0 = unlimited
  // Operational settings (not part of a published version's fingerprint: like its endpoints,
  // they may change on a published version).
  std::optional<uint32_t> retries;           // default 2: further attempts after a failure
  std::optional<uint32_t> retry_timeout_ms;  // default 10000: no new attempt after this
  std::optional<HealthCheckSpec> health;     // default: no active checks
  std::optional<OutlierSpec> outlier;        // default: OutlierSpec{}
  std::optional<UpstreamTlsSpec> tls;        // default: plaintext
  std::optional<Protocol> protocol;          // default: kHttp1
  SourcePos protocol_pos;
};

inline constexpr const char* kLatest = "$LATEST";

struct VersionSpec {
  std::string number;  // "1", "2", ... or kLatest
  std::vector<Endpoint> endpoints;
  UpstreamSettings settings;  // already merged with the function's defaults by the loader
  SourcePos pos;              // position of the [functions.f.versions.N] table
};

enum class Selection { kRandom, kExact };

struct StickySpec {
  enum class Kind { kNone, kHeader, kCookie };
  Kind kind = Kind::kNone;
  std::string name;    // header name (lower-cased) or cookie name
  bool issue = false;  // cookie only: draw a point and Set-Cookie it when absent
};

struct TrafficShare {
  std::string version;  // a version number or kLatest
  double weight = 0;    // >= 0
  SourcePos pos;
};

struct AliasSpec {
  std::string name;
  std::vector<TrafficShare> traffic;  // in file order
  SourcePos traffic_pos;              // position of the traffic table
  Selection selection = Selection::kRandom;
  StickySpec sticky;
  bool allow_override = false;
  // [functions.f.aliases.a.shift] as JSON text, validated by config::parse_plan (proxy/shift/);
  // empty = none. Loading a file whose `to` differs from the alias's last shift starts one.
  std::string shift_json;
  SourcePos shift_pos;
  SourcePos pos;
};

struct FunctionSpec {
  std::string name;
  std::string version_header = "x-sluice-version";  // empty: do not add the header
  // gRPC statuses that count as errors of the version (bit n: status n). Default: UNKNOWN (2),
  // DEADLINE_EXCEEDED (4), RESOURCE_EXHAUSTED (8), INTERNAL (13), UNAVAILABLE (14), DATA_LOSS (15).
  uint32_t grpc_errors = (1u << 2) | (1u << 4) | (1u << 8) | (1u << 13) | (1u << 14) | (1u << 15);
  UpstreamSettings defaults;                 // function-level request settings
  std::optional<VersionSpec> latest;         // $LATEST
  std::map<uint32_t, VersionSpec> versions;  // published, keyed by number
  std::vector<AliasSpec> aliases;
  SourcePos pos;
};

struct RouteSpec {
  std::string host;               // empty = any host; lower-case, no port
  std::string path_prefix = "/";  // starts with '/'
  std::string function;           // target "function:alias" or "function:version"
  std::string target;             // alias name, version number or kLatest
  bool pinned_version = false;    // target names a version, not an alias
  SourcePos pos;
};

// One certificate and its key (PEM files; relative paths are relative to the config file).
struct TlsPairSpec {
  std::string cert;
  std::string key;
  SourcePos cert_pos;
  SourcePos key_pos;
};

// A listener's `tls = { ... }`.
struct TlsSpec {
  // Chosen by SNI from each certificate's names; [0] also serves clients without SNI or with a
  // name no certificate has.
  std::vector<TlsPairSpec> certificates;
  std::string min_version = "TLSv1.2";  // "TLSv1.2" or "TLSv1.3"
  std::string ciphers;                  // TLS 1.2 list (OpenSSL syntax); empty = the default
  std::string ciphersuites;             // TLS 1.3 suites; empty = the default
  SourcePos pos;                        // the tls key
  SourcePos min_version_pos, ciphers_pos, ciphersuites_pos;
};

struct ListenSpec {
  SocketAddress address;
  std::optional<TlsSpec> tls;  // set: the listener speaks HTTPS only
  SourcePos pos;
  // Peers whose X-Forwarded-For/-Proto/-Host are believed (appended to / kept); empty = nobody.
  std::vector<http::Cidr> trusted_proxies;
  // HTTP/2: a TLS listener offers "h2" by ALPN (preferred) unless `http2 = false`; a plaintext
  // listener takes HTTP/2 with prior knowledge (h2c) only when `h2c = true`.
  bool http2 = true;
  bool h2c = false;
};

struct AdminSpec {
  SocketAddress address{"127.0.0.1:9901", "127.0.0.1", 9901};
  std::string token_file;  // empty = no token (only allowed on loopback)
  // A second token that allows reads only (GET/HEAD: status, metrics, shift progress); empty =
  // none. Off loopback every endpoint needs one of the two.
  std::string read_token_file;
};

struct LimitsSpec {
  // A new connection's first request head must be complete this long after the accept; a later
  // head on a keep-alive connection, this long after its first byte.
  uint32_t header_timeout_ms = 10000;
  // A TLS client must complete its handshake this long after the accept.
  uint32_t handshake_timeout_ms = 10000;
  uint32_t idle_timeout_ms = 60000;
  uint32_t body_timeout_ms = 60000;           // silence while reading a request body; then 408
  uint32_t send_timeout_ms = 60000;           // a client taking none of our output this long is cut
  uint32_t tunnel_idle_timeout_ms = 3600000;  // an upgraded tunnel with no bytes either way
  uint32_t max_connections_per_client = 1024;  // per client address, across workers
  uint32_t max_header_bytes = 65536;
  uint32_t max_headers = 100;
  uint64_t max_body_size = 0;  // 0 = unlimited
  uint32_t max_connections = 10000;
  uint32_t drain_timeout_ms = 30000;      // graceful stop: how long in-flight requests may finish
  uint32_t max_concurrent_streams = 100;  // HTTP/2: open streams per client connection
};

// Upstream keep-alive pools, per endpoint per worker.
struct UpstreamPoolSpec {
  // Idle connections kept per endpoint per worker, at most; within it a pool keeps what the
  // recent peak of concurrent requests needed (upstream/connection.h).
  uint32_t keepalive = 1024;
  uint32_t idle_timeout_ms = 60000;  // an idle pooled connection is closed after this
  // Endpoint host names are resolved again this often (and on every reload); 0 = only then.
  uint32_t resolve_interval_ms = 30000;
};

struct LogSpec {
  std::string access = "stdout";  // a path, "stdout" or "off"
};

// Where the control plane keeps its runtime state ([store]): the [state] dir (or memory), or an
// etcd cluster shared by a fleet of sluice nodes (docs/fleet.md).
struct StoreSpec {
  enum class Kind { kLocal, kEtcd };
  Kind kind = Kind::kLocal;
  std::vector<std::string> endpoints;  // "http://host:port"; kEtcd only
  std::string prefix = "/sluice/";
  std::string node;  // empty = "<hostname>@<admin address>"
  uint32_t timeout_ms = 2000;
  uint32_t lease_ttl_ms = 10000;
  std::string username;       // etcd authentication; empty = none
  std::string password_file;  // resolved against the config file's directory
  // TLS to https:// endpoints: the CA that signs etcd's certificates (empty = the system store)
  // and a client certificate for etcd's --client-cert-auth (both or neither). Resolved paths.
  std::string tls_ca, tls_cert, tls_key;
  SourcePos pos;  // the [store] table, for messages
  bool operator==(const StoreSpec& o) const {
    return kind == o.kind && endpoints == o.endpoints && prefix == o.prefix && node == o.node &&
           timeout_ms == o.timeout_ms && lease_ttl_ms == o.lease_ttl_ms && username == o.username &&
           password_file == o.password_file && tls_ca == o.tls_ca && tls_cert == o.tls_cert &&
           tls_key == o.tls_key;
  }
};

struct Config {
  std::string source;    // file path the config came from (for messages)
  uint32_t workers = 0;  // 0 = CPU count
  bool strict = false;   // lint warnings are errors
  std::vector<ListenSpec> listen;
  AdminSpec admin;
  std::string state_dir;  // empty = no durable state
  StoreSpec store;
  LimitsSpec limits;
  UpstreamPoolSpec upstream;
  LogSpec log;
  std::vector<FunctionSpec> functions;  // in file order
  std::vector<RouteSpec> routes;        // in file order
};

// One problem found in a file, formatted "file:line:col: message".
struct Diagnostic {
  std::string file;
  SourcePos pos;
  std::string message;
  std::string to_string() const;
};

}  // namespace sluice::config
