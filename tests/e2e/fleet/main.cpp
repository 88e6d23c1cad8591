// The doctest main for the fleet tests (etcd_main.h: skipped without etcd), with a listener
// that counts failed assertions.
#define DOCTEST_CONFIG_IMPLEMENT
#include <atomic>

#include "etcd_main.h"

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

int main(int argc, char** argv) {
  return sluice::e2e::run_etcd_suite(argc, argv);
}
