// The etcd gateway codec: base64, ranges, endpoints, JSON shapes (samples from etcd 3.4.23's
// gateway), error documents, and watch-stream framing at every split.
#include "control/etcd_codec.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

namespace sluice::control::etcd {
namespace {

using nlohmann::json;

TEST_CASE("base64 encodes and decodes the RFC 4648 test vectors") {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (auto [plain, encoded] : vectors) {
    CAPTURE(plain);
    CHECK(base64_encode(plain) == encoded);
    CHECK(base64_decode(encoded) == std::optional<std::string>(plain));
  }

  SUBCASE("every byte value survives a round trip at every length modulo 3") {
    std::string all;
    for (int b = 0; b < 256; ++b) all += char(b);
    for (size_t len = 250; len <= 256; ++len) {
      CAPTURE(len);
      CHECK(base64_decode(base64_encode(all.substr(0, len))) == all.substr(0, len));
    }
  }
  SUBCASE("unpadded and URL-safe input is accepted, as jsonpb accepts it") {
    CHECK(base64_decode("Zm8") == std::optional<std::string>("fo"));
    CHECK(base64_decode("Zg") == std::optional<std::string>("f"));
    CHECK(base64_decode("-_8=") == base64_decode("+/8="));
  }
  SUBCASE("anything else is refused") {
    CHECK(!base64_decode("Zm9v!"));
    CHECK(!base64_decode("Z"));     // no encoding is one character long
    CHECK(!base64_decode("Zm=v"));  // padding inside
    CHECK(!base64_decode("Zh=="));  // non-zero bits after the last byte
    CHECK(!base64_decode("===="));
  }
}

TEST_CASE("prefix_range_end covers exactly the keys that start with the prefix") {
  CHECK(prefix_range_end("/t/") == "/t0");
  CHECK(prefix_range_end("a\xff") == "b");
  CHECK(prefix_range_end(std::string("\xff\xff")) == std::string(1, '\0'));
  CHECK(prefix_range_end("") == std::string(1, '\0'));
}

TEST_CASE("parse_endpoint takes http URLs and host:port, and says what is wrong otherwise") {
  std::string error;
  auto ep = parse_endpoint("http://127.0.0.1:2379", &error);
  REQUIRE(ep);
  CHECK(ep->host == "127.0.0.1");
  CHECK(ep->port == 2379);
  CHECK(ep->text == "http://127.0.0.1:2379");
  CHECK(parse_endpoint("10.0.0.5:2379/", &error)->host == "10.0.0.5");
  CHECK(parse_endpoint("http://[::1]:2379", &error)->host == "::1");
  CHECK(parse_endpoint("localhost:2379", &error)->host == "127.0.0.1");

  auto secure = parse_endpoint("https://127.0.0.1:2379", &error);
  REQUIRE(secure);
  CHECK(secure->tls);
  CHECK(secure->port == 2379);
  CHECK_FALSE(ep->tls);

  SUBCASE("refusals name the endpoint and the reason") {
    CHECK(!parse_endpoint("ftp://127.0.0.1:2379", &error));
    CHECK(error == "etcd endpoint \"ftp://127.0.0.1:2379\": only http:// and https://");
    CHECK(!parse_endpoint("127.0.0.1", &error));
    CHECK(error.find("expected host:port") != std::string::npos);
    CHECK(!parse_endpoint("127.0.0.1:0", &error));
    CHECK(!parse_endpoint("127.0.0.1:65536", &error));
    CHECK(!parse_endpoint("127.0.0.1:23x", &error));
    CHECK(!parse_endpoint("http://127.0.0.1:2379/v3", &error));
    CHECK(!parse_endpoint("unix://socket:1", &error));
    CHECK(!parse_endpoint("etcd.example:2379", &error));
    CHECK(error.find("names are not resolved") != std::string::npos);
    CHECK(!parse_endpoint("[::1:2379", &error));
  }
}

TEST_CASE("requests encode as the gateway's JSON: snake_case, int64 as strings, bytes as base64") {
  SUBCASE("range with every option") {
    json j = json::parse(encode(RangeRequest{.key = "/a",
                                             .range_end = "/b",
                                             .revision = 7,
                                             .limit = 3,
                                             .keys_only = true,
                                             .count_only = true,
                                             .serializable = true}));
    CHECK(j == json{{"key", "L2E="},
                    {"range_end", "L2I="},
                    {"revision", "7"},
                    {"limit", "3"},
                    {"keys_only", true},
                    {"count_only", true},
                    {"serializable", true}});
    CHECK(json::parse(encode(RangeRequest{.key = "k"})) == json{{"key", "aw=="}});
  }
  SUBCASE("put and delete") {
    CHECK(json::parse(encode(PutRequest{.key = "k", .value = "", .lease = 99, .prev_kv = true})) ==
          json{{"key", "aw=="}, {"value", ""}, {"lease", "99"}, {"prev_kv", true}});
    CHECK(json::parse(encode(DeleteRequest{.key = "k", .range_end = "l", .prev_kv = true})) ==
          json{{"key", "aw=="}, {"range_end", "bA=="}, {"prev_kv", true}});
  }
  SUBCASE("txn: compare targets, a zero revision written out, ops wrapped by kind") {
    TxnRequest t{.compare = {Compare::mod_revision("k", 0), Compare::version("k", 2),
                             Compare::create_revision("k", 5, Compare::Result::kLess),
                             Compare::value_is("k", "v", Compare::Result::kNotEqual)},
                 .success = {PutRequest{.key = "k", .value = "v"}},
                 .failure = {RangeRequest{.key = "k"}, DeleteRequest{.key = "k"}}};
    json j = json::parse(encode(t));
    CHECK(j["compare"][0] ==
          json{{"key", "aw=="}, {"result", "EQUAL"}, {"target", "MOD"}, {"mod_revision", "0"}});
    CHECK(j["compare"][1]["target"] == "VERSION");
    CHECK(j["compare"][1]["version"] == "2");
    CHECK(j["compare"][2]["target"] == "CREATE");
    CHECK(j["compare"][2]["result"] == "LESS");
    CHECK(j["compare"][2]["create_revision"] == "5");
    CHECK(j["compare"][3]["target"] == "VALUE");
    CHECK(j["compare"][3]["result"] == "NOT_EQUAL");
    CHECK(j["compare"][3]["value"] == "dg==");
    CHECK(j["success"][0]["request_put"]["value"] == "dg==");
    CHECK(j["failure"][0].contains("request_range"));
    CHECK(j["failure"][1].contains("request_delete_range"));
  }
  SUBCASE("leases, compaction and watch creation") {
    CHECK(json::parse(encode(LeaseGrantRequest{.ttl_s = 5})) == json{{"TTL", "5"}});
    CHECK(json::parse(encode_lease_id(-3)) == json{{"ID", "-3"}});
    CHECK(json::parse(encode(CompactionRequest{.revision = 9, .physical = true})) ==
          json{{"revision", "9"}, {"physical", true}});
    CHECK(json::parse(encode(WatchCreateRequest{
              .key = "/p/", .range_end = "/p0", .start_revision = 12, .prev_kv = true})) ==
          json{{"create_request",
                {{"key", "L3Av"},
                 {"range_end", "L3Aw"},
                 {"start_revision", "12"},
                 {"prev_kv", true}}}});
  }
}

TEST_CASE("responses decode from what etcd 3.4's gateway sends") {
  std::string why;
  SUBCASE("range: kvs with their revisions, count as a string") {
    json j = json::parse(
        R"({"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"},)"
        R"("kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"})");
    RangeResponse r;
    REQUIRE(decode(j, r, &why));
    CHECK(r.header.cluster_id == 324952591200643719u);
    CHECK(r.header.member_id == 3319814642761637952u);
    CHECK(r.header.revision == 2);
    CHECK(r.header.raft_term == 2);
    REQUIRE(r.kvs.size() == 1);
    CHECK(r.kvs[0].key == "foo");
    CHECK(r.kvs[0].value == "bar");
    CHECK(r.kvs[0].create_revision == 2);
    CHECK(r.kvs[0].version == 1);
    CHECK(r.kvs[0].lease == 0);
    CHECK(r.count == 1);
    CHECK(!r.more);
  }
  SUBCASE("an empty range omits kvs and count") {
    RangeResponse r;
    REQUIRE(decode(json::parse(R"({"header":{"revision":"2"}})"), r, &why));
    CHECK(r.kvs.empty());
    CHECK(r.count == 0);
  }
  SUBCASE("a txn that failed omits succeeded; responses are wrapped by kind") {
    json j = json::parse(
        R"({"header":{"revision":"2"},"responses":[{"response_range":{"header":{"revision":"2"},)"
        R"("kvs":[{"key":"Zm9v","mod_revision":"2","value":"YmFy"}],"count":"1"}},)"
        R"({"response_put":{"header":{"revision":"3"},"prev_kv":{"key":"Zm9v"}}},)"
        R"({"response_delete_range":{"header":{},"deleted":"4"}}]})");
    TxnResponse t;
    REQUIRE(decode(j, t, &why));
    CHECK(!t.succeeded);
    REQUIRE(t.responses.size() == 3);
    CHECK(std::get<RangeResponse>(t.responses[0]).kvs[0].value == "bar");
    CHECK(std::get<PutResponse>(t.responses[1]).prev_kv->key == "foo");
    CHECK(std::get<DeleteResponse>(t.responses[2]).deleted == 4);
  }
  SUBCASE("leases: upper-case ID and TTL; a keepalive for a lost lease has no TTL") {
    LeaseGrantResponse g;
    REQUIRE(decode(json::parse(R"({"header":{},"ID":"2324035653724937993","TTL":"5"})"), g, &why));
    CHECK(g.id == 2324035653724937993);
    CHECK(g.ttl_s == 5);
    LeaseKeepAliveResponse k;
    REQUIRE(decode(json::parse(R"({"header":{"revision":"2"},"ID":"12345"})"), k, &why));
    CHECK(k.id == 12345);
    CHECK(k.ttl_s == 0);
  }
  SUBCASE("watch: created, events with a default PUT type and an explicit DELETE, compaction") {
    WatchResponse created;
    REQUIRE(decode(json::parse(R"({"header":{"revision":"2"},"created":true})"), created, &why));
    CHECK(created.created);
    CHECK(created.watch_id == 0);
    WatchResponse events;
    REQUIRE(decode(json::parse(R"({"header":{"revision":"4"},"events":[)"
                               R"({"kv":{"key":"Zm9v","mod_revision":"3","value":"YmFy"}},)"
                               R"({"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"4"},)"
                               R"("prev_kv":{"key":"Zm9v","value":"YmFy"}}]})"),
                   events, &why));
    REQUIRE(events.events.size() == 2);
    CHECK(events.events[0].type == Event::Type::kPut);
    CHECK(events.events[0].kv.value == "bar");
    CHECK(events.events[1].type == Event::Type::kDelete);
    CHECK(events.events[1].kv.mod_revision == 4);
    CHECK(events.events[1].prev_kv->value == "bar");
    WatchResponse compacted;
    REQUIRE(decode(
        json::parse(R"({"header":{"raft_term":"2"},"canceled":true,"compact_revision":"2"})"),
        compacted, &why));
    CHECK(compacted.canceled);
    CHECK(compacted.compact_revision == 2);
  }
  SUBCASE("lowerCamelCase names (jsonpb without OrigName) decode too") {
    RangeResponse r;
    REQUIRE(
        decode(json::parse(R"({"header":{"clusterId":"7"},"kvs":[{"key":"","modRevision":"9"}]})"),
               r, &why));
    CHECK(r.header.cluster_id == 7);
    CHECK(r.kvs[0].mod_revision == 9);
  }
  SUBCASE("a field of the wrong shape fails and is named") {
    RangeResponse r;
    CHECK(!decode(json::parse(R"({"kvs":[{"key":"Zm9v","mod_revision":"x"}]})"), r, &why));
    CHECK(why == "kvs[0].mod_revision is not an int64");
    CHECK(!decode(json::parse(R"({"kvs":[{"key":"!!"}]})"), r, &why));
    CHECK(why == "kvs[0].key is not base64");
    CHECK(!decode(json::parse(R"({"header":{"revision":"99999999999999999999"}})"), r, &why));
    CHECK(why == "header.revision is not an int64");
    CHECK(!decode(json::parse(R"([])"), r, &why));
    WatchResponse w;
    CHECK(!decode(json::parse(R"({"events":[{"type":"EXPIRE"}]})"), w, &why));
    CHECK(why == "events[0].type is neither PUT nor DELETE");
  }
}

TEST_CASE("gateway errors decode in both the unary and the stream shape") {
  GatewayError g;
  REQUIRE(decode_error(
      json::parse(
          R"({"error":"etcdserver: mvcc: required revision has been compacted",)"
          R"("message":"etcdserver: mvcc: required revision has been compacted","code":11})"),
      g));
  CHECK(g.grpc_code == 11);
  CHECK(g.message == "etcdserver: mvcc: required revision has been compacted");
  REQUIRE(decode_error(
      json::parse(R"({"error":{"grpc_code":14,"http_code":503,)"
                  R"("message":"etcdserver: no leader","http_status":"Service Unavailable"}})"),
      g));
  CHECK(g.grpc_code == 14);
  CHECK(g.message == "etcdserver: no leader");
  REQUIRE(decode_error(json::parse(R"({"error":"only this"})"), g));
  CHECK(g.grpc_code == 2);
  CHECK(g.message == "only this");
  CHECK(!decode_error(json::parse(R"({"result":{}})"), g));
}

TEST_CASE("the stream splitter yields the same objects however the stream is cut") {
  // Braces and quotes inside strings, an escaped quote and backslash, nesting, no delimiter
  // between the last two objects.
  const std::vector<std::string> objects = {
      R"({"result":{"header":{"revision":"2"},"created":true}})",
      R"({"result":{"events":[{"kv":{"key":"e30i","value":"}{\"\\"}}]}})",
      R"({"error":{"message":"a } and a { in text"}})",
      R"({})",
  };
  const std::string stream = objects[0] + "\n" + objects[1] + "\n \r\n\t" + objects[2] + objects[3];
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    CAPTURE(cut);
    StreamSplitter s(1 << 20);
    std::vector<std::string> out;
    REQUIRE(s.feed(std::string_view(stream).substr(0, cut), out));
    REQUIRE(s.feed(std::string_view(stream).substr(cut), out));
    CHECK(out == objects);
    CHECK(s.pending_bytes() == 0);
  }
  SUBCASE("byte by byte") {
    StreamSplitter s(1 << 20);
    std::vector<std::string> out;
    for (char c : stream) REQUIRE(s.feed({&c, 1}, out));
    CHECK(out == objects);
  }
  SUBCASE("a cut stream leaves its partial object pending") {
    StreamSplitter s(1 << 20);
    std::vector<std::string> out;
    REQUIRE(s.feed(objects[0] + objects[1].substr(0, 10), out));
    CHECK(out.size() == 1);
    CHECK(s.pending_bytes() == 10);
  }
  SUBCASE("a byte outside an object or an oversized object fails the stream for good") {
    StreamSplitter s(1 << 20);
    std::vector<std::string> out;
    CHECK(!s.feed("{} x", out));
    CHECK(s.failed());
    CHECK(!s.feed("{}", out));
    CHECK(out.size() == 1);
    StreamSplitter small(8);
    CHECK(small.feed("{\"a\":", out));
    CHECK(!small.feed("\"long\"}", out));
    CHECK(small.error() == "a streamed object exceeds 8 bytes");
  }
}

}  // namespace
}  // namespace sluice::control::etcd
