// libFuzzer target: request and response bytes through the llhttp glue and the header rules, fed
// whole and split at a fuzzer-chosen offset; the two parses must agree (messages, rebuilt heads,
// bodies, outcome). Build: cmake -DSLUICE_FUZZ=ON with CXX=clang++ (see README).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "http/parser.h"
#include "http/rewrite.h"

namespace {

using namespace sluice::http;

class BuildSink final : public Sink {
 public:
  std::string out;  // every rebuilt head, body and message end, in order
  std::string head;
  bool response = false;
  bool trusted = false;
  int on_head(Parser& p) override {
    if (response) {
      ClientResponseInfo info;
      info.version_header = "x-sluice-version";
      info.version_label = "f:1";
      info.chunked = p.chunked();
      build_client_response(p, info, head);
    } else {
      UpstreamRequestInfo info;
      info.client_ip = "127.0.0.1";
      info.request_id = "0123456789abcdef";
      info.fallback_host = "127.0.0.1:9";
      info.trusted_peer = trusted;
      info.chunked_body = p.chunked();
      info.upgrade = p.upgrade();
      build_upstream_request(p, info, head);
    }
    out += head;
    return 0;
  }
  int on_body(Parser&, const char* data, size_t len) override {
    out.append(data, len);
    return 0;
  }
  bool on_message_end(Parser&) override {
    out += "\n<end>\n";
    return false;
  }
};

struct Outcome {
  std::string transcript;
  Parser::Status status = Parser::Status::kOk;
  ParseError error = ParseError::kNone;
};

Outcome run(llhttp_type_t type, const char* p, size_t size, size_t split, bool trusted) {
  BuildSink sink;
  sink.response = type == HTTP_RESPONSE;
  sink.trusted = trusted;
  Parser parser(type, sink, 4096, 32);
  Parser::Result r = parser.feed(p, split);
  if (r.status == Parser::Status::kOk && split < size) r = parser.feed(p + split, size - split);
  if (type == HTTP_RESPONSE && r.status == Parser::Status::kOk && parser.in_message())
    parser.finish();
  return {sink.out, r.status, parser.error()};
}

bool limit_error(ParseError e) {
  return e == ParseError::kHeadTooLarge || e == ParseError::kTooManyHeaders;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const char* p = reinterpret_cast<const char*>(data + 2);
  const size_t n = size - 2;
  const size_t split = data[0] % size > n ? n : data[0] % size;
  const llhttp_type_t type = (data[1] & 1) ? HTTP_RESPONSE : HTTP_REQUEST;
  const bool trusted = (data[1] & 2) != 0;
  const Outcome whole = run(type, p, n, n, trusted);
  const Outcome cut = run(type, p, n, split, trusted);
  // A size limit can trip on a partial span before llhttp sees a bad byte later in it, so the
  // kind of error may differ then; everything else must not depend on the split.
  if (whole.status != cut.status || whole.transcript != cut.transcript) std::abort();
  if (whole.error != cut.error && !limit_error(whole.error) && !limit_error(cut.error))
    std::abort();
  return 0;
}
