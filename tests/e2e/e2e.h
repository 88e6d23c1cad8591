// Shared helpers for the e2e test cases: doctest glue around the harness and the test upstream.
#pragma once

#include <doctest/doctest.h>
#include <poll.h>

#include <chrono>
#include <functional>
#include <string>

#include "harness.h"
#include "upstream.h"

namespace sluice::e2e {

// A raw HTTP/1.1 request. Adds Host (unless `extra_headers` has one) and Content-Length when
// `body` is not empty. `extra_headers`: complete "Name: value\r\n" lines.
inline std::string raw_request(const std::string& method, const std::string& target,
                               const std::string& extra_headers = "",
                               const std::string& body = "") {
  std::string out = method + " " + target + " HTTP/1.1\r\n";
  if (to_lower(extra_headers).find("host:") == std::string::npos) out += "Host: e2e.test\r\n";
  out += extra_headers;
  if (!body.empty()) out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += "\r\n" + body;
  return out;
}

// Polls `done` every 5 ms for at most `timeout_ms`; true once it holds.
inline bool poll_until(const std::function<bool()>& done, int timeout_ms) {
  auto start = std::chrono::steady_clock::now();
  while (!done()) {
    if (elapsed_ms(start) >= timeout_ms) return false;
    ::poll(nullptr, 0, 5);
  }
  return true;
}

// The last `n` bytes of sluice's stderr, for failure messages.
inline std::string stderr_tail(const Sluice& s, size_t n = 2000) {
  std::string e = s.stderr_text();
  return e.size() > n ? e.substr(e.size() - n) : e;
}

// A generated error response: exactly `status` with x-sluice-error: `reason`.
inline void check_generated_error(const Response& r, int status, const std::string& reason) {
  CHECK(r.status == status);
  CHECK(r.header("x-sluice-error") == reason);
}

}  // namespace sluice::e2e

// Every test starts sluice and requires that it came up.
#define REQUIRE_STARTED(s) REQUIRE_MESSAGE((s).started(), (s).error())

// Every test ends by stopping sluice with SIGTERM and checking it exited 0 (under ASan, a leak
// or a crash shows up here too).
#define CHECK_CLEAN_STOP(s)                                                 \
  do {                                                                      \
    int status_ = (s).stop();                                               \
    CHECK_MESSAGE(status_ == 0, "sluice stderr tail:\n" << stderr_tail(s)); \
  } while (0)
