// The body of a doctest main for suites that need a real etcd (tests/e2e/etcd, tests/e2e/fleet):
// exits 77 (ctest: SKIPPED) when etcd is not installed, except when doctest is only asked to
// list tests (ctest's test discovery does that at build); initialises libcurl once and ignores
// SIGPIPE. Include it once, in the file that defines DOCTEST_CONFIG_IMPLEMENT.
#pragma once

#include <curl/curl.h>
#include <doctest/doctest.h>
#include <signal.h>

#include <cstdio>
#include <string_view>

#include "etcd_cluster.h"

namespace sluice::e2e {

// doctest options that run no test (spelled with "--", "-" or the "-dt-" prefix).
inline bool runs_no_test(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    while (!a.empty() && a.front() == '-') a.remove_prefix(1);
    if (a.substr(0, 3) == "dt-") a.remove_prefix(3);
    a = a.substr(0, a.find('='));
    for (std::string_view o :
         {"list-test-cases", "ltc", "list-test-suites", "lts", "list-reporters", "lr", "help", "h",
          "?", "version", "v", "count", "c"})
      if (a == o) return true;
  }
  return false;
}

inline int run_etcd_suite(int argc, char** argv) {
  if (!runs_no_test(argc, argv) && etcd_binary().empty()) {
    std::printf("SKIPPED: etcd is not installed (scripts/setup installs etcd-server)\n");
    return 77;
  }
  ::signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  doctest::Context context(argc, argv);
  int rc = context.run();
  curl_global_cleanup();
  return rc;
}

}  // namespace sluice::e2e
