// The etcd v3 JSON gateway codec (see etcd_codec.h).
#include "control/etcd_codec.h"

#include <arpa/inet.h>

#include <array>
#include <charconv>
#include <nlohmann/json.hpp>

namespace sluice::control::etcd {
namespace {

using nlohmann::json;

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 0..63 for both alphabets' bytes, -1 for anything else.
constexpr std::array<int8_t, 256> kDecodeTable = [] {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kAlphabet[i])] = int8_t(i);
  t['-'] = 62;
  t['_'] = 63;
  return t;
}();

void set_why(std::string* why, std::string text) {
  if (why) *why = std::move(text);
}

// The member `snake` of object `j`, or its lowerCamelCase spelling (jsonpb without OrigName);
// nullptr if neither is there.
const json* member(const json& j, std::string_view snake) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(snake);
  if (it != j.end()) return &*it;
  if (snake.find('_') == std::string_view::npos) return nullptr;
  std::string camel;
  camel.reserve(snake.size());
  bool upper = false;
  for (char c : snake) {
    if (c == '_') {
      upper = true;
      continue;
    }
    camel += upper && c >= 'a' && c <= 'z' ? char(c - 'a' + 'A') : c;
    upper = false;
  }
  it = j.find(camel);
  return it == j.end() ? nullptr : &*it;
}

bool get_int(const json& j, std::string_view name, int64_t& out, std::string* why) {
  const json* v = member(j, name);
  if (!v || v->is_null()) return true;
  if (json_int(*v, out)) return true;
  set_why(why, std::string(name) + " is not an int64");
  return false;
}

bool get_uint(const json& j, std::string_view name, uint64_t& out, std::string* why) {
  const json* v = member(j, name);
  if (!v || v->is_null()) return true;
  if (json_uint(*v, out)) return true;
  set_why(why, std::string(name) + " is not a uint64");
  return false;
}

bool get_bool(const json& j, std::string_view name, bool& out, std::string* why) {
  const json* v = member(j, name);
  if (!v || v->is_null()) return true;
  if (v->is_boolean()) {
    out = v->get<bool>();
    return true;
  }
  set_why(why, std::string(name) + " is not a boolean");
  return false;
}

bool get_string(const json& j, std::string_view name, std::string& out, std::string* why) {
  const json* v = member(j, name);
  if (!v || v->is_null()) return true;
  if (v->is_string()) {
    out = v->get<std::string>();
    return true;
  }
  set_why(why, std::string(name) + " is not a string");
  return false;
}

bool get_bytes(const json& j, std::string_view name, std::string& out, std::string* why) {
  const json* v = member(j, name);
  if (!v || v->is_null()) return true;
  if (v->is_string())
    if (std::optional<std::string> bytes = base64_decode(v->get_ref<const std::string&>())) {
      out = std::move(*bytes);
      return true;
    }
  set_why(why, std::string(name) + " is not base64");
  return false;
}

template <typename T>
bool get_message(const json& j, std::string_view name, T& out, std::string* why) {
  const json* v = member(j, name);
  if (!v || v->is_null()) return true;
  if (!decode(*v, out, why)) {
    if (why) *why = std::string(name) + "." + *why;
    return false;
  }
  return true;
}

template <typename T>
bool get_messages(const json& j, std::string_view name, std::vector<T>& out, std::string* why) {
  const json* v = member(j, name);
  if (!v || v->is_null()) return true;
  if (!v->is_array()) {
    set_why(why, std::string(name) + " is not an array");
    return false;
  }
  out.clear();
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    T item;
    if (!decode((*v)[i], item, why)) {
      if (why) *why = std::string(name) + "[" + std::to_string(i) + "]." + *why;
      return false;
    }
    out.push_back(std::move(item));
  }
  return true;
}

bool require_object(const json& j, std::string* why) {
  if (j.is_object()) return true;
  set_why(why, "not a JSON object");
  return false;
}

std::string i64(int64_t v) {
  return std::to_string(v);
}

json range_json(const RangeRequest& r) {
  json j = {{"key", base64_encode(r.key)}};
  if (!r.range_end.empty()) j["range_end"] = base64_encode(r.range_end);
  if (r.revision) j["revision"] = i64(r.revision);
  if (r.limit) j["limit"] = i64(r.limit);
  if (r.keys_only) j["keys_only"] = true;
  if (r.count_only) j["count_only"] = true;
  if (r.serializable) j["serializable"] = true;
  return j;
}

json put_json(const PutRequest& r) {
  json j = {{"key", base64_encode(r.key)}, {"value", base64_encode(r.value)}};
  if (r.lease) j["lease"] = i64(r.lease);
  if (r.prev_kv) j["prev_kv"] = true;
  return j;
}

json delete_json(const DeleteRequest& r) {
  json j = {{"key", base64_encode(r.key)}};
  if (!r.range_end.empty()) j["range_end"] = base64_encode(r.range_end);
  if (r.prev_kv) j["prev_kv"] = true;
  return j;
}

json compare_json(const Compare& c) {
  static constexpr const char* kResults[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
  json j = {{"key", base64_encode(c.key)}, {"result", kResults[static_cast<int>(c.result)]}};
  if (!c.range_end.empty()) j["range_end"] = base64_encode(c.range_end);
  // The oneof member is always written, zero included: "mod_revision 0" means "absent".
  switch (c.target) {
    case Compare::Target::kVersion:
      j["target"] = "VERSION";
      j["version"] = i64(c.number);
      break;
    case Compare::Target::kCreateRevision:
      j["target"] = "CREATE";
      j["create_revision"] = i64(c.number);
      break;
    case Compare::Target::kModRevision:
      j["target"] = "MOD";
      j["mod_revision"] = i64(c.number);
      break;
    case Compare::Target::kValue:
      j["target"] = "VALUE";
      j["value"] = base64_encode(c.value);
      break;
    case Compare::Target::kLease:
      j["target"] = "LEASE";
      j["lease"] = i64(c.number);
      break;
  }
  return j;
}

json op_json(const Op& op) {
  struct Visitor {
    json operator()(const RangeRequest& r) const { return {{"request_range", range_json(r)}}; }
    json operator()(const PutRequest& r) const { return {{"request_put", put_json(r)}}; }
    json operator()(const DeleteRequest& r) const {
      return {{"request_delete_range", delete_json(r)}};
    }
  };
  return std::visit(Visitor{}, op);
}

bool decode_op_response(const json& j, OpResponse& out, std::string* why) {
  if (!require_object(j, why)) return false;
  if (const json* v = member(j, "response_range")) {
    RangeResponse r;
    if (!decode(*v, r, why)) return false;
    out = std::move(r);
    return true;
  }
  if (const json* v = member(j, "response_put")) {
    PutResponse r;
    if (!decode(*v, r, why)) return false;
    out = std::move(r);
    return true;
  }
  if (const json* v = member(j, "response_delete_range")) {
    DeleteResponse r;
    if (!decode(*v, r, why)) return false;
    out = std::move(r);
    return true;
  }
  set_why(why, "a response of an unknown kind (nested txn responses are not supported)");
  return false;
}

bool decode_event(const json& j, Event& out, std::string* why) {
  if (!require_object(j, why)) return false;
  if (const json* t = member(j, "type"); t && !t->is_null()) {
    if (*t == "PUT" || *t == 0)
      out.type = Event::Type::kPut;
    else if (*t == "DELETE" || *t == 1)
      out.type = Event::Type::kDelete;
    else {
      set_why(why, "type is neither PUT nor DELETE");
      return false;
    }
  }
  if (!get_message(j, "kv", out.kv, why)) return false;
  if (member(j, "prev_kv")) {
    out.prev_kv.emplace();
    if (!get_message(j, "prev_kv", *out.prev_kv, why)) return false;
  }
  return true;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 |
                 uint32_t(uint8_t(bytes[i + 2]));
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (size_t rest = bytes.size() - i; rest > 0) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 == 0 && !text.empty() && text.back() == '=') {
    text.remove_suffix(1);
    if (text.back() == '=') text.remove_suffix(1);
  }
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int8_t v = kDecodeTable[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    acc = acc << 6 | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xff);
    }
  }
  // The leftover bits of a final partial group must be zero (RFC 4648 §3.5: canonical).
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string prefix_range_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = char(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

std::optional<Endpoint> parse_endpoint(std::string_view text, std::string* error) {
  auto fail = [&](const std::string& why) -> std::optional<Endpoint> {
    if (error) *error = "etcd endpoint \"" + std::string(text) + "\": " + why;
    return std::nullopt;
  };
  Endpoint ep;
  ep.text = std::string(text);
  std::string_view rest = text;
  if (rest.substr(0, 8) == "https://") {
    ep.tls = true;
    rest.remove_prefix(8);
  } else if (rest.substr(0, 7) == "http://") {
    rest.remove_prefix(7);
  }
  if (rest.find("://") != std::string_view::npos) return fail("only http:// and https://");
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) return fail("a path is not allowed");
  std::string_view host, port;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':')
      return fail("expected [IPv6]:port");
    host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return fail("expected host:port");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
      value > 65535)
    return fail("the port is not a number from 1 to 65535");
  ep.port = static_cast<uint16_t>(value);
  ep.host = host == "localhost" ? "127.0.0.1" : std::string(host);
  unsigned char buf[16];
  if (inet_pton(AF_INET, ep.host.c_str(), buf) != 1 &&
      inet_pton(AF_INET6, ep.host.c_str(), buf) != 1)
    return fail("the host must be an IP address or localhost (names are not resolved yet)");
  return ep;
}

Compare Compare::mod_revision(std::string key, int64_t revision, Result r) {
  Compare c;
  c.key = std::move(key);
  c.target = Target::kModRevision;
  c.result = r;
  c.number = revision;
  return c;
}

Compare Compare::version(std::string key, int64_t version, Result r) {
  Compare c;
  c.key = std::move(key);
  c.target = Target::kVersion;
  c.result = r;
  c.number = version;
  return c;
}

Compare Compare::create_revision(std::string key, int64_t revision, Result r) {
  Compare c;
  c.key = std::move(key);
  c.target = Target::kCreateRevision;
  c.result = r;
  c.number = revision;
  return c;
}

Compare Compare::value_is(std::string key, std::string value, Result r) {
  Compare c;
  c.key = std::move(key);
  c.target = Target::kValue;
  c.result = r;
  c.value = std::move(value);
  return c;
}

std::string encode(const RangeRequest& r) {
  return range_json(r).dump();
}
std::string encode(const PutRequest& r) {
  return put_json(r).dump();
}
std::string encode(const DeleteRequest& r) {
  return delete_json(r).dump();
}

std::string encode(const TxnRequest& r) {
  json j = json::object();
  json& compare = j["compare"] = json::array();
  for (const Compare& c : r.compare) compare.push_back(compare_json(c));
  json& success = j["success"] = json::array();
  for (const Op& op : r.success) success.push_back(op_json(op));
  json& failure = j["failure"] = json::array();
  for (const Op& op : r.failure) failure.push_back(op_json(op));
  return j.dump();
}

std::string encode(const CompactionRequest& r) {
  json j = {{"revision", i64(r.revision)}};
  if (r.physical) j["physical"] = true;
  return j.dump();
}

std::string encode(const LeaseGrantRequest& r) {
  json j = {{"TTL", i64(r.ttl_s)}};
  if (r.id) j["ID"] = i64(r.id);
  return j.dump();
}

std::string encode_lease_id(int64_t id) {
  return json{{"ID", i64(id)}}.dump();
}

std::string encode(const WatchCreateRequest& r) {
  json c = {{"key", base64_encode(r.key)}};
  if (!r.range_end.empty()) c["range_end"] = base64_encode(r.range_end);
  if (r.start_revision) c["start_revision"] = i64(r.start_revision);
  if (r.prev_kv) c["prev_kv"] = true;
  if (r.progress_notify) c["progress_notify"] = true;
  return json{{"create_request", std::move(c)}}.dump();
}

bool json_int(const json& j, int64_t& out) {
  if (j.is_number_integer()) {
    out = j.get<int64_t>();
    return true;
  }
  if (j.is_number_unsigned()) {
    uint64_t u = j.get<uint64_t>();
    if (u > uint64_t(INT64_MAX)) return false;
    out = int64_t(u);
    return true;
  }
  if (!j.is_string()) return false;
  const std::string& s = j.get_ref<const std::string&>();
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size();
}

bool json_uint(const json& j, uint64_t& out) {
  if (j.is_number_unsigned()) {
    out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer()) {
    int64_t v = j.get<int64_t>();
    if (v < 0) return false;
    out = uint64_t(v);
    return true;
  }
  if (!j.is_string()) return false;
  const std::string& s = j.get_ref<const std::string&>();
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size();
}

bool decode(const json& j, ResponseHeader& out, std::string* why) {
  return require_object(j, why) && get_uint(j, "cluster_id", out.cluster_id, why) &&
         get_uint(j, "member_id", out.member_id, why) &&
         get_int(j, "revision", out.revision, why) && get_uint(j, "raft_term", out.raft_term, why);
}

bool decode(const json& j, KeyValue& out, std::string* why) {
  return require_object(j, why) && get_bytes(j, "key", out.key, why) &&
         get_bytes(j, "value", out.value, why) &&
         get_int(j, "create_revision", out.create_revision, why) &&
         get_int(j, "mod_revision", out.mod_revision, why) &&
         get_int(j, "version", out.version, why) && get_int(j, "lease", out.lease, why);
}

bool decode(const json& j, RangeResponse& out, std::string* why) {
  return require_object(j, why) && get_message(j, "header", out.header, why) &&
         get_messages(j, "kvs", out.kvs, why) && get_bool(j, "more", out.more, why) &&
         get_int(j, "count", out.count, why);
}

bool decode(const json& j, PutResponse& out, std::string* why) {
  if (!require_object(j, why) || !get_message(j, "header", out.header, why)) return false;
  if (member(j, "prev_kv")) {
    out.prev_kv.emplace();
    return get_message(j, "prev_kv", *out.prev_kv, why);
  }
  return true;
}

bool decode(const json& j, DeleteResponse& out, std::string* why) {
  return require_object(j, why) && get_message(j, "header", out.header, why) &&
         get_int(j, "deleted", out.deleted, why) && get_messages(j, "prev_kvs", out.prev_kvs, why);
}

bool decode(const json& j, TxnResponse& out, std::string* why) {
  if (!require_object(j, why) || !get_message(j, "header", out.header, why) ||
      !get_bool(j, "succeeded", out.succeeded, why))
    return false;
  const json* responses = member(j, "responses");
  if (!responses || responses->is_null()) return true;
  if (!responses->is_array()) {
    set_why(why, "responses is not an array");
    return false;
  }
  for (size_t i = 0; i < responses->size(); ++i) {
    OpResponse r;
    if (!decode_op_response((*responses)[i], r, why)) {
      if (why) *why = "responses[" + std::to_string(i) + "]." + *why;
      return false;
    }
    out.responses.push_back(std::move(r));
  }
  return true;
}

bool decode(const json& j, LeaseGrantResponse& out, std::string* why) {
  return require_object(j, why) && get_message(j, "header", out.header, why) &&
         get_int(j, "ID", out.id, why) && get_int(j, "TTL", out.ttl_s, why) &&
         get_string(j, "error", out.error, why);
}

bool decode(const json& j, LeaseKeepAliveResponse& out, std::string* why) {
  return require_object(j, why) && get_message(j, "header", out.header, why) &&
         get_int(j, "ID", out.id, why) && get_int(j, "TTL", out.ttl_s, why);
}

bool decode(const json& j, WatchResponse& out, std::string* why) {
  if (!require_object(j, why) || !get_message(j, "header", out.header, why) ||
      !get_int(j, "watch_id", out.watch_id, why) || !get_bool(j, "created", out.created, why) ||
      !get_bool(j, "canceled", out.canceled, why) ||
      !get_int(j, "compact_revision", out.compact_revision, why) ||
      !get_string(j, "cancel_reason", out.cancel_reason, why) ||
      !get_bool(j, "fragment", out.fragment, why))
    return false;
  const json* events = member(j, "events");
  if (!events || events->is_null()) return true;
  if (!events->is_array()) {
    set_why(why, "events is not an array");
    return false;
  }
  out.events.reserve(events->size());
  for (size_t i = 0; i < events->size(); ++i) {
    Event e;
    if (!decode_event((*events)[i], e, why)) {
      if (why) *why = "events[" + std::to_string(i) + "]." + *why;
      return false;
    }
    out.events.push_back(std::move(e));
  }
  return true;
}

bool decode_error(const json& j, GatewayError& out) {
  const json* e = member(j, "error");
  if (!e || e->is_null()) return false;
  out = {};
  int64_t code = 2;
  if (e->is_object()) {  // a stream error
    if (const json* c = member(*e, "grpc_code")) json_int(*c, code);
    get_string(*e, "message", out.message, nullptr);
  } else {
    if (const json* c = member(j, "code")) json_int(*c, code);
    get_string(j, "message", out.message, nullptr);
    if (out.message.empty() && e->is_string()) out.message = e->get<std::string>();
  }
  out.grpc_code = code >= 0 && code <= 16 ? static_cast<int>(code) : 2;
  return true;
}

bool StreamSplitter::feed(std::string_view bytes, std::vector<std::string>& out) {
  if (failed_) return false;
  size_t start = 0;  // of the part of `bytes` that belongs to current_
  for (size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (depth_ == 0) {
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
        start = i + 1;
        continue;
      }
      if (c != '{') {
        failed_ = true;
        error_ = "unexpected byte outside a JSON object in the stream";
        return false;
      }
      start = i;
      depth_ = 1;
      continue;
    }
    if (in_string_) {
      if (escaped_)
        escaped_ = false;
      else if (c == '\\')
        escaped_ = true;
      else if (c == '"')
        in_string_ = false;
      continue;
    }
    if (c == '"') {
      in_string_ = true;
    } else if (c == '{') {
      ++depth_;
    } else if (c == '}' && --depth_ == 0) {
      current_.append(bytes.data() + start, i + 1 - start);
      if (current_.size() > max_object_bytes_) {
        failed_ = true;
        error_ = "a streamed object exceeds " + std::to_string(max_object_bytes_) + " bytes";
        return false;
      }
      out.push_back(std::move(current_));
      current_.clear();
      start = i + 1;
    }
  }
  if (depth_ > 0) {
    current_.append(bytes.data() + start, bytes.size() - start);
    if (current_.size() > max_object_bytes_) {
      failed_ = true;
      error_ = "a streamed object exceeds " + std::to_string(max_object_bytes_) + " bytes";
      return false;
    }
  }
  return true;
}

void StreamSplitter::reset() {
  current_.clear();
  depth_ = 0;
  in_string_ = escaped_ = failed_ = false;
  error_.clear();
}

}  // namespace sluice::control::etcd
