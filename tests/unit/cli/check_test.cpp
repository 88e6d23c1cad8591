// `sluice check` tests: exit codes for valid, invalid, strict and usage cases.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace sluice::cli {
namespace {

// A temporary config file removed when the test ends.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    char name[] = "/tmp/sluice-check-XXXXXX";
    const int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    path_ = name;
    REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    close(fd);
  }
  ~TempFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Sends stdout and stderr to /dev/null while alive, so test output stays readable.
class Silence {
 public:
  Silence() {
    std::fflush(stdout);
    std::fflush(stderr);
    saved_out_ = dup(1);
    saved_err_ = dup(2);
    const int null_fd = open("/dev/null", O_WRONLY);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    close(null_fd);
  }
  ~Silence() {
    std::fflush(stdout);
    std::fflush(stderr);
    dup2(saved_out_, 1);
    dup2(saved_err_, 2);
    close(saved_out_);
    close(saved_err_);
  }

 private:
  int saved_out_ = -1;
  int saved_err_ = -1;
};

// `sluice check ARGS...` through the binary's command line: its exit code.
int run(std::vector<std::string> args) {
  Silence quiet;
  args.insert(args.begin(), {"sluice", "check"});
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  return CommandLine().run(static_cast<int>(args.size()), argv.data());
}

constexpr const char* kValidWithWarning = R"([functions.f.versions.1]
endpoints = ["127.0.0.1:9001"]
[functions.f.versions.2]
endpoints = ["localhost:9002"]
[functions.f.aliases.prod]
traffic = { "1" = 100 }
)";

TEST_CASE("check exits 0 for a valid file, even with warnings") {
  TempFile file(kValidWithWarning);
  CHECK(run({"-c", file.path()}) == 0);
  CHECK(run({"--config", file.path()}) == 0);
  CHECK(run({"--config=" + file.path()}) == 0);
}

TEST_CASE("check --strict exits 1 when there are warnings") {
  TempFile file(kValidWithWarning);
  CHECK(run({"-c", file.path(), "--strict"}) == 1);
  CHECK(run({"--strict", "-c", file.path()}) == 1);
}

TEST_CASE("check exits 1 for an invalid or missing file") {
  TempFile file("workers = \"two\"\n");
  CHECK(run({"-c", file.path()}) == 1);
  CHECK(run({"-c", "/nonexistent/sluice.toml"}) == 1);
}

TEST_CASE("check refuses a listener whose certificate files cannot be read") {
  TempFile file(std::string("[listen]\naddress = \"127.0.0.1:8443\"\n"
                            "tls = { cert = \"c.pem\", key = \"k.pem\" }\n") +
                kValidWithWarning);
  CHECK(run({"-c", file.path()}) == 1);
}

TEST_CASE("check exits 2 for usage errors and 0 for --help") {
  CHECK(run({}) == 2);
  CHECK(run({"-c"}) == 2);
  CHECK(run({"--bogus"}) == 2);
  CHECK(run({"--help"}) == 0);
  const std::string help = CommandLine().help("check");
  for (const char* option : {"-c, --config FILE", "--strict", "-h, --help"}) {
    const std::string shown = option;
    CAPTURE(shown);
    CHECK(help.find(option) != std::string::npos);
  }
}

TEST_CASE("check passes both example configs") {
  CHECK(run({"-c", SLUICE_SOURCE_DIR "/config/sluice.toml", "--strict"}) == 0);
  CHECK(run({"-c", SLUICE_SOURCE_DIR "/config/demo.toml"}) == 0);
}

}  // namespace
}  // namespace sluice::cli
