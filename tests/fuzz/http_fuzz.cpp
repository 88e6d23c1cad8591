// libFuzzer target: request and response bytes through the llhttp glue and the header rules,
// split at a fuzzer-chosen offset. Build: cmake -DSLUICE_FUZZ=ON with CXX=clang++ (see README).
#include <cstddef>
#include <cstdint>
#include <string>

#include "http/parser.h"
#include "http/rewrite.h"

namespace {

using namespace sluice::http;

class BuildSink final : public Sink {
 public:
  std::string out;
  bool response = false;
  int on_head(Parser& p) override {
    if (response) {
      ClientResponseInfo info;
      info.version_header = "x-sluice-version";
      info.version_label = "f:1";
      info.chunked = p.chunked();
      build_client_response(p, info, out);
    } else {
      UpstreamRequestInfo info;
      info.client_ip = "127.0.0.1";
      info.request_id = "0123456789abcdef";
      info.chunked_body = p.chunked();
      info.upgrade = p.upgrade();
      build_upstream_request(p, info, out);
    }
    return 0;
  }
  int on_body(Parser&, const char* data, size_t len) override {
    out.append(data, len);
    return 0;
  }
  bool on_message_end(Parser&) override { return false; }
};

void run(llhttp_type_t type, const uint8_t* data, size_t size, size_t split) {
  BuildSink sink;
  sink.response = type == HTTP_RESPONSE;
  Parser parser(type, sink, 4096, 32);
  const char* p = reinterpret_cast<const char*>(data);
  Parser::Result r = parser.feed(p, split);
  if (r.status == Parser::Status::kOk && split < size) parser.feed(p + split, size - split);
  if (type == HTTP_RESPONSE) parser.finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t split = data[0] % size;
  const llhttp_type_t type = (data[1] & 1) ? HTTP_RESPONSE : HTTP_REQUEST;
  run(type, data + 2, size - 2, split > size - 2 ? size - 2 : split);
  return 0;
}
