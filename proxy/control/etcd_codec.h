// The etcd v3 JSON gateway's wire model and codec: request/response types, base64, JSON
// encoding and decoding of gateway messages, watch-stream framing, endpoint parsing. Pure: no
// uv.h. Shapes follow etcd 3.4's api/etcdserverpb/rpc.proto through grpc-gateway's jsonpb:
// snake_case field names, int64 as strings, bytes as base64, fields at their default omitted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace sluice::control::etcd {

// Standard base64 (RFC 4648 §4) with padding, as jsonpb writes `bytes` fields.
std::string base64_encode(std::string_view bytes);
// Accepts the standard and the URL-safe alphabet, with or without padding (jsonpb reads both).
// nullopt on any other byte or a length no encoding produces.
std::optional<std::string> base64_decode(std::string_view text);

// The range_end that makes [prefix, range_end) every key starting with `prefix`: the prefix
// with its last byte below 0xff incremented and the rest dropped; "\0" (every key) when the
// prefix is empty or all 0xff.
std::string prefix_range_end(std::string_view prefix);

// One etcd member's client URL: "http://host:port", "https://host:port" or "host:port". Host: an
// IP literal (IPv6 in brackets) or "localhost".
struct Endpoint {
  std::string text;  // as configured, for messages
  std::string host;  // IP literal without brackets ("localhost" becomes 127.0.0.1)
  uint16_t port = 0;
  bool tls = false;  // https://
};
// nullopt with `error` set when `text` is not such a URL.
std::optional<Endpoint> parse_endpoint(std::string_view text, std::string* error);

// ---------------------------------------------------------------------------------------------
// Messages (a subset of rpc.proto: what sluice's store needs)

struct ResponseHeader {
  uint64_t cluster_id = 0;
  uint64_t member_id = 0;
  int64_t revision = 0;  // the store's revision when the request was served
  uint64_t raft_term = 0;
};

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;  // 0: the key does not exist (a delete event)
  int64_t lease = 0;
};

struct RangeRequest {
  std::string key;
  std::string range_end;  // empty: `key` only; prefix_range_end(key): every key under it
  int64_t revision = 0;   // 0: the newest; else a historical read (kCompacted below compaction)
  int64_t limit = 0;
  bool keys_only = false;
  bool count_only = false;
  bool serializable = false;  // served by the member alone: works without quorum, may be stale
};
struct RangeResponse {
  ResponseHeader header;
  std::vector<KeyValue> kvs;
  bool more = false;
  int64_t count = 0;
};

struct PutRequest {
  std::string key;
  std::string value;
  int64_t lease = 0;  // 0: none
  bool prev_kv = false;
};
struct PutResponse {
  ResponseHeader header;
  std::optional<KeyValue> prev_kv;
};

struct DeleteRequest {
  std::string key;
  std::string range_end;
  bool prev_kv = false;
};
struct DeleteResponse {
  ResponseHeader header;
  int64_t deleted = 0;
  std::vector<KeyValue> prev_kvs;
};

struct Compare {
  enum class Target { kVersion, kCreateRevision, kModRevision, kValue, kLease };
  enum class Result { kEqual, kGreater, kLess, kNotEqual };
  std::string key;
  std::string range_end;  // empty: `key` only
  Target target = Target::kModRevision;
  Result result = Result::kEqual;
  int64_t number = 0;  // version / create_revision / mod_revision / lease
  std::string value;   // kValue

  // The compare-and-swap guard: the key's mod_revision is still `revision` (0: it does not exist).
  static Compare mod_revision(std::string key, int64_t revision, Result r = Result::kEqual);
  static Compare version(std::string key, int64_t version, Result r = Result::kEqual);
  static Compare create_revision(std::string key, int64_t revision, Result r = Result::kEqual);
  static Compare value_is(std::string key, std::string value, Result r = Result::kEqual);
};

using Op = std::variant<RangeRequest, PutRequest, DeleteRequest>;
using OpResponse = std::variant<RangeResponse, PutResponse, DeleteResponse>;

struct TxnRequest {
  std::vector<Compare> compare;  // all must hold for `success` to run, else `failure` runs
  std::vector<Op> success;
  std::vector<Op> failure;
};
struct TxnResponse {
  ResponseHeader header;
  bool succeeded = false;
  std::vector<OpResponse> responses;  // one per op of the branch that ran, in order
};

struct CompactionRequest {
  int64_t revision = 0;
  bool physical = false;  // answer only once the compaction is applied to the backend
};

struct LeaseGrantRequest {
  int64_t ttl_s = 0;
  int64_t id = 0;  // 0: etcd chooses
};
struct LeaseGrantResponse {
  ResponseHeader header;
  int64_t id = 0;
  int64_t ttl_s = 0;
  std::string error;
};
struct LeaseKeepAliveResponse {
  ResponseHeader header;
  int64_t id = 0;
  int64_t ttl_s = 0;  // 0: the lease does not exist (expired or revoked)
};

struct WatchCreateRequest {
  std::string key;
  std::string range_end;
  int64_t start_revision = 0;  // 0: from the next change
  bool prev_kv = false;
  bool progress_notify = false;
};

struct Event {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // a delete carries the key and its mod_revision (the deleting revision) only
  std::optional<KeyValue> prev_kv;
};

struct WatchResponse {
  ResponseHeader header;
  int64_t watch_id = 0;
  bool created = false;
  bool canceled = false;
  int64_t compact_revision = 0;  // with canceled: the start revision was compacted
  std::string cancel_reason;
  bool fragment = false;
  std::vector<Event> events;
};

// An error the gateway reported: HTTP error bodies {"error","message","code"} and stream
// errors {"error":{"grpc_code","http_code","message","http_status"}} both land here.
struct GatewayError {
  int grpc_code = 2;  // codes.Unknown when absent
  std::string message;
};

// ---------------------------------------------------------------------------------------------
// Encoding: the JSON body of the gateway request. Only bad_alloc can throw.

std::string encode(const RangeRequest& r);
std::string encode(const PutRequest& r);
std::string encode(const DeleteRequest& r);
std::string encode(const TxnRequest& r);
std::string encode(const CompactionRequest& r);
std::string encode(const LeaseGrantRequest& r);
std::string encode_lease_id(int64_t id);  // {"ID": ...}: keepalive, revoke, timetolive
std::string encode(const WatchCreateRequest& r);

// Decoding: false with `why` naming the offending field when the document does not have the
// message's shape (a missing field is its default, as jsonpb omits defaults). Never throws.
bool decode(const nlohmann::json& j, ResponseHeader& out, std::string* why);
bool decode(const nlohmann::json& j, KeyValue& out, std::string* why);
bool decode(const nlohmann::json& j, RangeResponse& out, std::string* why);
bool decode(const nlohmann::json& j, PutResponse& out, std::string* why);
bool decode(const nlohmann::json& j, DeleteResponse& out, std::string* why);
bool decode(const nlohmann::json& j, TxnResponse& out, std::string* why);
bool decode(const nlohmann::json& j, LeaseGrantResponse& out, std::string* why);
bool decode(const nlohmann::json& j, LeaseKeepAliveResponse& out, std::string* why);
bool decode(const nlohmann::json& j, WatchResponse& out, std::string* why);
// An error document (either shape above); false if `j` carries no "error" member.
bool decode_error(const nlohmann::json& j, GatewayError& out);

// A JSON int64/uint64 as jsonpb writes it (a decimal string) or as a number.
bool json_int(const nlohmann::json& j, int64_t& out);
bool json_uint(const nlohmann::json& j, uint64_t& out);

// ---------------------------------------------------------------------------------------------
// Streams

// Splits a streamed response body (the gateway writes one JSON object per message, each followed
// by "\n", but chunk boundaries fall anywhere) into complete top-level objects. It tracks braces
// outside strings, so it needs no delimiter; whitespace between objects is skipped. Bounded: an
// object over `max_object_bytes` or a byte outside an object other than whitespace fails the
// stream for good.
class StreamSplitter {
 public:
  explicit StreamSplitter(size_t max_object_bytes) : max_object_bytes_(max_object_bytes) {}
  // Appends every object completed by `bytes` to `out`. false once the stream is malformed.
  bool feed(std::string_view bytes, std::vector<std::string>& out);
  bool failed() const { return failed_; }
  const std::string& error() const { return error_; }
  // Bytes of an object begun and not yet complete (a stream that ends here was cut).
  size_t pending_bytes() const { return current_.size(); }
  void reset();

 private:
  size_t max_object_bytes_;
  std::string current_;
  int depth_ = 0;
  bool in_string_ = false;
  bool escaped_ = false;
  bool failed_ = false;
  std::string error_;
};

}  // namespace sluice::control::etcd
