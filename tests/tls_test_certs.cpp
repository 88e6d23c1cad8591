// Runs tests/tls_test_certs.sh when the shared asset directory is missing or stale; see
// tls_test_certs.h. ctest runs every test case as its own process, so the assets are made once
// per build directory (not once per process) and reused while fresh.
#include "tls_test_certs.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <stdexcept>

#ifndef SLUICE_SOURCE_DIR
#error "SLUICE_SOURCE_DIR must name the source tree (tests/tls_test_certs.sh)"
#endif
#ifndef SLUICE_TLS_TEST_DIR
#error "SLUICE_TLS_TEST_DIR must name where the TLS test assets live"
#endif

namespace sluice::test {
namespace {

namespace fs = std::filesystem;

// Fresh: complete and made within the hour, so validity windows the tests rely on hold
// (a certificate "expiring in 5 days" must not have become an expired one).
bool fresh(const std::string& dir) {
  struct stat st {};
  if (::stat((dir + "/done").c_str(), &st) != 0) return false;
  return std::time(nullptr) - st.st_mtime < 3600;
}

std::string generate() {
  const std::string dir = SLUICE_TLS_TEST_DIR;
  if (fresh(dir)) return dir;
  fs::create_directories(fs::path(dir).parent_path());
  std::string tmp = dir + ".tmp-XXXXXX";
  if (!::mkdtemp(tmp.data())) throw std::runtime_error("mkdtemp failed for " + tmp);
  const std::string log = tmp + ".log";
  const std::string cmd = std::string("bash '") + SLUICE_SOURCE_DIR +
                          "/tests/tls_test_certs.sh' '" + tmp + "' >'" + log + "' 2>&1";
  if (std::system(cmd.c_str()) != 0 || !fs::exists(tmp + "/done"))
    throw std::runtime_error("tests/tls_test_certs.sh failed; see " + log +
                             " (is the openssl CLI installed?)");
  std::error_code ec;
  fs::remove(log, ec);
  if (::rename(tmp.c_str(), dir.c_str()) == 0) return dir;
  // Another test process got there first, or a stale set is in the way.
  if (fresh(dir)) {
    fs::remove_all(tmp, ec);
    return dir;
  }
  const std::string old = dir + ".old-" + std::to_string(::getpid());
  if (::rename(dir.c_str(), old.c_str()) == 0) fs::remove_all(old, ec);
  if (::rename(tmp.c_str(), dir.c_str()) == 0 || fresh(dir)) {
    fs::remove_all(tmp, ec);
    return dir;
  }
  return tmp;  // keep our own copy for this process
}

}  // namespace

const std::string& tls_test_dir() {
  static const std::string dir = generate();
  return dir;
}

std::string tls_asset(std::string_view name) {
  return tls_test_dir() + "/" + std::string(name);
}

}  // namespace sluice::test
