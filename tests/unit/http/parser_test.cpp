// The llhttp glue fed every test message whole, split at every offset and one byte at a time:
// the parse (heads, body bytes, message count, upgrade, error kind) must not depend on the split.
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "http/parser.h"

namespace sluice::http {
namespace {

const char* error_name(ParseError e) {
  switch (e) {
    case ParseError::kNone:
      return "none";
    case ParseError::kMalformed:
      return "malformed";
    case ParseError::kNoVersion:
      return "no-version";
    case ParseError::kBadWhitespace:
      return "bad-whitespace";
    case ParseError::kObsFold:
      return "obs-fold";
    case ParseError::kBareLf:
      return "bare-lf";
    case ParseError::kBadTransferEncoding:
      return "bad-transfer-encoding";
    case ParseError::kUnsupportedCoding:
      return "unsupported-coding";
    case ParseError::kUnsupportedVersion:
      return "unsupported-version";
    case ParseError::kHeadTooLarge:
      return "head-too-large";
    case ParseError::kTooManyHeaders:
      return "too-many-headers";
    case ParseError::kSinkError:
      return "sink-error";
  }
  return "?";
}

// Writes every event into one transcript; body bytes of a message are joined, so the transcript
// does not depend on how the input was split.
class Recorder final : public Sink {
 public:
  explicit Recorder(bool pause) : pause_(pause) {}
  std::string log;
  int messages = 0;

  int on_head(Parser& p) override {
    log += "HEAD ";
    if (p.status_code())
      log += std::to_string(p.status_code()) + " [" + std::string(p.reason()) + "]";
    else
      log += std::string(p.method_name()) + " " + std::string(p.url());
    log += " HTTP/" + std::to_string(p.http_major()) + "." + std::to_string(p.http_minor());
    log += p.keep_alive() ? " keep-alive" : " close";
    if (p.chunked()) log += " chunked";
    if (p.has_content_length()) log += " length=" + std::to_string(p.content_length());
    if (p.upgrade()) log += " upgrade";
    log += "\n";
    for (const Header& h : p.headers())
      log += "  " + std::string(h.name) + ": " + std::string(h.value) + "\n";
    body_.clear();
    return 0;
  }
  int on_body(Parser&, const char* data, size_t len) override {
    body_.append(data, len);
    return 0;
  }
  bool on_message_end(Parser& p) override {
    ++messages;
    // Headers stay readable until the next message begins (trailers must not move them).
    log += "BODY [" + body_ + "] host=" + std::string(p.header("host")) + "\nEND\n";
    body_.clear();
    upgraded = p.upgrade();
    // A connection pauses after an upgrade request: what follows belongs to the new protocol
    // if the answer is a 101 (the parser itself never switches for a request).
    return pause_ || upgraded;
  }
  bool upgraded = false;

 private:
  bool pause_;
  std::string body_;
};

// Feeds `input` in the pieces that `cuts` (ascending offsets) make, as a connection would:
// after kPaused it resumes and feeds the rest of the piece again.
std::string run(llhttp_type_t type, std::string_view input, const std::vector<size_t>& cuts,
                bool pause, uint32_t max_head = 4096) {
  Recorder sink(pause);
  Parser parser(type, sink, max_head, 32);
  size_t from = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(input.size());
  for (size_t to : ends) {
    const char* data = input.data() + from;
    size_t n = to - from;
    from = to;
    while (n > 0) {
      Parser::Result r = parser.feed(data, n);
      if (r.status == Parser::Status::kPaused) {
        if (sink.upgraded) {
          std::string rest(data + r.consumed, n - r.consumed);
          rest.append(input.substr(to));
          return sink.log + "UPGRADE [" + rest + "]\n";
        }
        parser.resume();
        data += r.consumed;
        n -= r.consumed;
        continue;
      }
      if (r.status == Parser::Status::kError)
        return sink.log + "ERROR " + error_name(parser.error()) + "\n";
      if (r.status == Parser::Status::kUpgrade) {
        std::string rest(data + r.consumed, n - r.consumed);
        rest.append(input.substr(to));
        return sink.log + "UPGRADE [" + rest + "]\n";
      }
      break;
    }
  }
  // EOF: only a message still open needs finish() (a body delimited by the close).
  if (type == HTTP_RESPONSE && parser.in_message() && !parser.finish()) return sink.log + "CUT\n";
  if (parser.in_message()) return sink.log + "INCOMPLETE\n";
  return sink.log;
}

// The transcript of `input` fed whole, after checking that every split gives the same one.
std::string parse_every_way(llhttp_type_t type, std::string_view input) {
  const std::string whole = run(type, input, {}, false);
  for (bool pause : {false, true}) {
    CAPTURE(pause);
    CHECK(run(type, input, {}, pause) == whole);
    for (size_t cut = 1; cut < input.size(); ++cut) {
      CAPTURE(cut);
      CHECK(run(type, input, {cut}, pause) == whole);
    }
    std::vector<size_t> bytes;
    for (size_t i = 1; i < input.size(); ++i) bytes.push_back(i);
    CHECK(run(type, input, bytes, pause) == whole);
  }
  return whole;
}

bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

struct BadCase {
  std::string name;
  std::string bytes;
  ParseError error;
  bool head_passes = false;  // the fault is in the body: the sink saw the head first
};

}  // namespace

TEST_CASE("valid requests parse the same however they are split") {
  SUBCASE("a GET with headers") {
    const std::string t = parse_every_way(
        HTTP_REQUEST, "GET /a?b=1 HTTP/1.1\r\nHost: a.example\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n");
    CHECK(t ==
          "HEAD GET /a?b=1 HTTP/1.1 keep-alive\n  Host: a.example\n  X-Empty: \n  X-Tab: v\n"
          "BODY [] host=a.example\nEND\n");
  }
  SUBCASE("a Content-Length body") {
    const std::string t = parse_every_way(
        HTTP_REQUEST, "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world");
    CHECK(t ==
          "HEAD POST /p HTTP/1.1 keep-alive length=11\n  Host: a\n  Content-Length: 11\n"
          "BODY [hello world] host=a\nEND\n");
  }
  SUBCASE("a chunked body with an extension and trailer fields") {
    const std::string t =
        parse_every_way(HTTP_REQUEST,
                        "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
    CHECK(t ==
          "HEAD POST /c HTTP/1.1 keep-alive chunked\n  Host: a\n  Transfer-Encoding: chunked\n"
          "BODY [hello world] host=a\nEND\n");
  }
  SUBCASE("pipelined requests, with empty lines before a request line") {
    const std::string t = parse_every_way(
        HTTP_REQUEST,
        "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        "POST /2 HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nabc\r\n"
        "PUT /3 HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
        "\r\n\r\nGET /4 HTTP/1.1\r\nHost: d\r\n\r\n");
    CHECK(t ==
          "HEAD GET /1 HTTP/1.1 keep-alive\n  Host: a\nBODY [] host=a\nEND\n"
          "HEAD POST /2 HTTP/1.1 keep-alive length=3\n  Host: b\n  Content-Length: 3\n"
          "BODY [abc] host=b\nEND\n"
          "HEAD PUT /3 HTTP/1.1 keep-alive chunked\n  Host: c\n  Transfer-Encoding: chunked\n"
          "BODY [x] host=c\nEND\n"
          "HEAD GET /4 HTTP/1.1 keep-alive\n  Host: d\nBODY [] host=d\nEND\n");
  }
  SUBCASE("HTTP/1.0 without Host, and an absolute-form target") {
    CHECK(parse_every_way(HTTP_REQUEST, "GET /old HTTP/1.0\r\n\r\n") ==
          "HEAD GET /old HTTP/1.0 close\nBODY [] host=\nEND\n");
    CHECK(parse_every_way(HTTP_REQUEST,
                          "GET http://b.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n") ==
          "HEAD GET http://b.example/x HTTP/1.1 keep-alive\n  Host: b.example\n"
          "BODY [] host=b.example\nEND\n");
  }
  SUBCASE("obs-text bytes in a value are opaque data (RFC 9110 §5.5)") {
    const std::string t =
        parse_every_way(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\n\r\n");
    CHECK(t.find("X-Name: caf\xc3\xa9\n") != std::string::npos);
  }
}

TEST_CASE("an h2c upgrade offer is a plain request: no upgrade, the next request follows") {
  const std::string t = parse_every_way(
      HTTP_REQUEST,
      "GET /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
      "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK(t.find(" upgrade") == std::string::npos);
  CHECK(t.find("UPGRADE") == std::string::npos);
  CHECK(t.find("HEAD GET /next HTTP/1.1") != std::string::npos);

  SUBCASE("a POST offering h2c keeps its body and the connection") {
    const std::string post =
        parse_every_way(HTTP_REQUEST,
                        "POST /h2c HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: H2C\r\n"
                        "Content-Length: 2\r\n\r\nhiGET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK(post.find("BODY [hi]") != std::string::npos);
    CHECK(post.find("HEAD GET /next") != std::string::npos);
    CHECK(post.find("UPGRADE") == std::string::npos);
  }
}

TEST_CASE("a real upgrade ends its message and leaves the bytes after it to the new protocol") {
  const std::string t = parse_every_way(
      HTTP_REQUEST,
      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\n\r\n"
      "\x81\x05hello");
  CHECK(t.find("HEAD GET /ws HTTP/1.1 keep-alive upgrade\n") == 0);
  CHECK(ends_with(t, "END\nUPGRADE [\x81\x05hello]\n"));
}

TEST_CASE("malformed requests fail with their own error kind however they are split") {
  const std::vector<BadCase> cases = {
      {"request line without a version", "GET /path\r\n\r\n", ParseError::kNoVersion},
      {"HTTP/0.9 request line, nothing after it", "GET /\r\n", ParseError::kNoVersion},
      {"request line without a version, bare LF", "GET /\n", ParseError::kNoVersion},
      {"method only", "GET\r\n\r\n", ParseError::kNoVersion},
      {"two spaces after the method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
       ParseError::kBadWhitespace},
      {"two spaces before the version", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
       ParseError::kBadWhitespace},
      {"a leading space", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", ParseError::kBadWhitespace},
      {"a tab between method and target", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
       ParseError::kBadWhitespace},
      {"a vertical tab in the request line", "GET /\x0b HTTP/1.1\r\nHost: a\r\n\r\n",
       ParseError::kBadWhitespace},
      {"whitespace before the first header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
       ParseError::kBadWhitespace},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", ParseError::kObsFold},
      {"obs-fold with a tab", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n",
       ParseError::kObsFold},
      {"obs-fold after an empty value", "GET / HTTP/1.1\r\nHost: a\r\nX-A:\r\n c\r\n\r\n",
       ParseError::kObsFold},
      {"obs-fold of Content-Length",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 5\r\n\r\nhello", ParseError::kObsFold},
      {"bare LF ending the request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", ParseError::kBareLf},
      {"bare LF ending the head", "GET / HTTP/1.1\r\nHost: a\r\n\n", ParseError::kBareLf},
      {"bare LF before the request line", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
       ParseError::kBareLf},
      {"bare LF ending a header line", "GET / HTTP/1.1\r\nHost: a\n\r\n", ParseError::kMalformed},
      {"CR without LF after the request line", "GET / HTTP/1.1\rHost: a\r\n\r\n",
       ParseError::kMalformed},
      {"obs-fold in the trailer section",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nT: a\r\n "
       "b\r\n"
       "\r\n",
       ParseError::kObsFold, true},
      {"bare LF ending the trailer section",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\n",
       ParseError::kBareLf, true},
      {"bare LF after chunk data",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\n0\r\n\r\n",
       ParseError::kMalformed, true},
      {"gzip before chunked",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
       ParseError::kUnsupportedCoding},
      {"gzip and chunked in two headers",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
       "\r\n0\r\n\r\n",
       ParseError::kUnsupportedCoding},
      {"identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
       ParseError::kBadTransferEncoding},
      {"chunked not last",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
       ParseError::kMalformed},  // llhttp's own check
      {"an empty Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n",
       ParseError::kBadTransferEncoding},
      {"Transfer-Encoding in HTTP/1.0",
       "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       ParseError::kBadTransferEncoding},
      {"chunked with a parameter",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n",
       ParseError::kBadTransferEncoding},
      {"HTTP/2.0 in a request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
       ParseError::kUnsupportedVersion},
      {"an explicit HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n",
       ParseError::kUnsupportedVersion},
      {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", ParseError::kMalformed},
      {"an empty header name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", ParseError::kMalformed},
      {"space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", ParseError::kMalformed},
      {"a control byte in a name", std::string("GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n"),
       ParseError::kMalformed},
      {"a control byte in a value", std::string("GET / HTTP/1.1\r\nHost: a\x01z\r\n\r\n"),
       ParseError::kMalformed},
      {"DEL in a value", "GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", ParseError::kMalformed},
      {"NUL in a value", std::string("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", 29),
       ParseError::kMalformed},
      {"a signed Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
       ParseError::kMalformed},
      {"a Content-Length with an inner space",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\nhello", ParseError::kMalformed},
      {"a Content-Length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5\r\n\r\nhello",
       ParseError::kMalformed},
      {"two Content-Lengths",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
       ParseError::kMalformed},
      {"Content-Length and chunked",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
       "0\r\n\r\n",
       ParseError::kMalformed},
      {"a bad chunk size",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
       ParseError::kMalformed, true},
      {"a lower-case method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", ParseError::kMalformed},
      {"a space in the target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", ParseError::kMalformed},
      {"an HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ParseError::kMalformed},
  };
  for (const BadCase& c : cases) {
    CAPTURE(c.name);
    const std::string t = parse_every_way(HTTP_REQUEST, c.bytes);
    CAPTURE(t);
    CHECK(ends_with(t, std::string("ERROR ") + error_name(c.error) + "\n"));
    CHECK((t.find("HEAD") == std::string::npos) != c.head_passes);
  }
}

TEST_CASE("a bad request after a good pipelined one fails only after the good one") {
  const std::string t = parse_every_way(HTTP_REQUEST,
                                        "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"
                                        "GET /bad\r\n"
                                        "GET /never HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK(t ==
        "HEAD GET /ok HTTP/1.1 keep-alive\n  Host: a\nBODY [] host=a\nEND\nERROR no-version\n");
}

TEST_CASE("an HTTP/0.9 request line fails at once, with no byte after it") {
  struct Sink0 final : Sink {
    int on_head(Parser&) override { return 0; }
    int on_body(Parser&, const char*, size_t) override { return 0; }
    bool on_message_end(Parser&) override { return false; }
  } sink;
  Parser p(HTTP_REQUEST, sink, 4096, 32);
  CHECK(p.feed("GET /", 5).status == Parser::Status::kOk);
  Parser::Result r = p.feed("\r\n", 2);
  CHECK(r.status == Parser::Status::kError);
  CHECK(r.consumed == 0);
  CHECK(p.error() == ParseError::kNoVersion);
  CHECK(p.feed("\r\n", 2).status == Parser::Status::kError);  // an error stays
  p.reset();
  CHECK(p.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27).status == Parser::Status::kOk);
  CHECK(p.error() == ParseError::kNone);
}

TEST_CASE("each parse error maps to its status and x-sluice-error reason") {
  CHECK(error_answer(ParseError::kMalformed).status == 400);
  CHECK(std::string_view(error_answer(ParseError::kMalformed).reason) == "malformed-request");
  CHECK(error_answer(ParseError::kNoVersion).status == 400);
  CHECK(std::string_view(error_answer(ParseError::kNoVersion).reason) == "missing-http-version");
  CHECK(std::string_view(error_answer(ParseError::kObsFold).reason) == "obs-fold");
  CHECK(std::string_view(error_answer(ParseError::kBadWhitespace).reason) == "bad-whitespace");
  CHECK(std::string_view(error_answer(ParseError::kBareLf).reason) == "bare-lf");
  CHECK(error_answer(ParseError::kBadTransferEncoding).status == 400);
  CHECK(error_answer(ParseError::kUnsupportedCoding).status == 501);
  CHECK(error_answer(ParseError::kUnsupportedVersion).status == 505);
  CHECK(error_answer(ParseError::kHeadTooLarge).status == 431);
  CHECK(error_answer(ParseError::kTooManyHeaders).status == 431);
}

TEST_CASE("trailer fields are counted against the head limit and never change the headers") {
  const std::string big(1500, 'v');
  const std::string input =
      "POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n"
      "X-T1: " +
      big + "\r\nX-T2: " + big + "\r\n\r\n";
  SUBCASE("within the limit the message ends with its own headers") {
    const std::string t = run(HTTP_REQUEST, input, {}, false, 4096);
    CHECK(t ==
          "HEAD POST /t HTTP/1.1 keep-alive chunked\n  Host: a\n  Transfer-Encoding: chunked\n"
          "BODY [hi] host=a\nEND\n");
  }
  SUBCASE("beyond it the message fails") {
    CHECK(ends_with(run(HTTP_REQUEST, input, {}, false, 2048), "ERROR head-too-large\n"));
  }
}

TEST_CASE("responses parse the same however they are split") {
  SUBCASE("interim, Content-Length and chunked responses in a row") {
    const std::string t = parse_every_way(
        HTTP_RESPONSE,
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n");
    CHECK(t ==
          "HEAD 100 [Continue] HTTP/1.1 keep-alive\nBODY [] host=\nEND\n"
          "HEAD 200 [OK] HTTP/1.1 keep-alive length=5\n  Content-Length: 5\n"
          "BODY [hello] host=\nEND\n"
          "HEAD 201 [Created] HTTP/1.1 keep-alive chunked\n  Transfer-Encoding: chunked\n"
          "BODY [abc] host=\nEND\n");
  }
  SUBCASE("a body that ends at EOF") {
    const std::string t = parse_every_way(HTTP_RESPONSE, "HTTP/1.1 200 OK\r\n\r\nuntil close");
    CHECK(t == "HEAD 200 [OK] HTTP/1.1 close\nBODY [until close] host=\nEND\n");
  }
  SUBCASE("a transfer coding other than chunked would reach the client mislabelled") {
    CHECK(ends_with(parse_every_way(HTTP_RESPONSE,
                                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                                    "0\r\n\r\n"),
                    "ERROR unsupported-coding\n"));
    CHECK(ends_with(
        parse_every_way(HTTP_RESPONSE, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"),
        "ERROR bad-transfer-encoding\n"));
  }
  SUBCASE("a response is not held to the request-line rules") {
    const std::string t =
        parse_every_way(HTTP_RESPONSE, "HTTP/1.1 404 Not  Found\r\nContent-Length: 0\r\n\r\n");
    CHECK(t.find("HEAD 404 [Not  Found]") == 0);
  }
}

}  // namespace sluice::http

namespace sluice::http {
namespace {

// Keeps the trailers it sees at each message end.
class TrailerSink final : public Sink {
 public:
  std::vector<std::string> seen;
  int on_head(Parser&) override { return 0; }
  int on_body(Parser&, const char*, size_t) override { return 0; }
  bool on_message_end(Parser& p) override {
    std::string t;
    for (const Header& h : p.trailers())
      t += std::string(h.name) + "=" + std::string(h.value) + ";";
    seen.push_back(t);
    return false;
  }
};

TEST_CASE("kept trailers: every field of a chunked response, however the bytes are split") {
  const std::string input =
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nping\r\n0\r\n"
      "grpc-status: 14\r\ngrpc-message:  no backend \r\nx-bin: AAE=\r\n\r\n"
      "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
  for (size_t step : {input.size(), size_t(1), size_t(7)}) {
    CAPTURE(step);
    TrailerSink sink;
    Parser p(HTTP_RESPONSE, sink, 4096, 32);
    p.keep_trailers(true);
    for (size_t at = 0; at < input.size(); at += step) {
      const Parser::Result r = p.feed(input.data() + at, std::min(step, input.size() - at));
      REQUIRE(r.status != Parser::Status::kError);
    }
    REQUIRE(sink.seen.size() == 2);
    CHECK(sink.seen[0] == "grpc-status=14;grpc-message=no backend;x-bin=AAE=;");
    CHECK(sink.seen[1].empty());  // the next message starts with none
  }
}

TEST_CASE("trailers are only counted, not kept, unless asked") {
  TrailerSink sink;
  Parser p(HTTP_RESPONSE, sink, 4096, 32);
  const std::string input =
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\ngrpc-status: 0\r\n\r\n";
  CHECK(p.feed(input.data(), input.size()).status != Parser::Status::kError);
  REQUIRE(sink.seen.size() == 1);
  CHECK(sink.seen[0].empty());
}

}  // namespace
}  // namespace sluice::http
