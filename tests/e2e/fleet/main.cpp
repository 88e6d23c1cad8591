// The doctest main for the fleet tests: exits 77 (ctest: SKIPPED) when etcd is not installed,
// except when doctest is only asked to list tests (ctest's test discovery does that at build);
// initialises libcurl once and ignores SIGPIPE.
#define DOCTEST_CONFIG_IMPLEMENT
#include <curl/curl.h>
#include <doctest/doctest.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <string_view>

#include "etcd_cluster.h"

namespace sluice::e2e::fleet {

std::atomic<int> g_failed_asserts{0};

namespace {

// Counts failed assertions, so that a test can print its nodes' logs once at its end if any
// failed (fleet_util.h: LogsOnFailure) instead of with every failure.
struct FailureCounter : doctest::IReporter {
  explicit FailureCounter(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override { ++g_failed_asserts; }
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData& data) override {
    if (data.m_failed) ++g_failed_asserts;
  }
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("fleet-failures", 1, FailureCounter);

}  // namespace
}  // namespace sluice::e2e::fleet

namespace {

// doctest options that run no test (spelled with "--", "-" or the "-dt-" prefix).
bool runs_no_test(int argc, char** argv) {
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

}  // namespace

int main(int argc, char** argv) {
  if (!runs_no_test(argc, argv) && sluice::e2e::etcd_binary().empty()) {
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
