// Skipping a test whose external tool (promtool, tmux) is missing so that ctest reports it as
// skipped, never as passed: ctest sets SLUICE_SKIP_RETURN_CODE (and the SKIP_RETURN_CODE property
// to the same value) in tests/CMakeLists.txt, and the test process exits with that code.
#pragma once

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace sluice::test {

// True if `tool` is on PATH.
inline bool have_tool(const std::string& tool) {
  return std::system(("command -v " + tool + " >/dev/null 2>&1").c_str()) == 0;
}

// Ends the test as skipped, saying why. Under ctest (one test case per process) the process exits
// with the skip code at once; run by hand, doctest reports a message and the caller returns.
inline void skip_test(const std::string& why) {
  std::fprintf(stderr, "SKIPPED: %s\n", why.c_str());
  if (const char* code = std::getenv("SLUICE_SKIP_RETURN_CODE"); code && *code) {
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(std::atoi(code));  // no doctest summary, no "passed"
  }
  MESSAGE("skipped: " << why);
}

}  // namespace sluice::test
