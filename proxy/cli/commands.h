// The command line of the sluice binary: every command, its options and its help page, read by
// the one argument parser (cli/parser.h). main.cpp hands in what `run` and `demo` do, as app/ is
// no folder cli/ may include.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cli/check.h"
#include "cli/client.h"
#include "cli/shift.h"
#include "cli/top.h"

namespace sluice::cli {

class Parser;
struct Outcome;  // cli/parser.h

// What the process-level commands do.
struct AppCommands {
  std::function<int(const std::string& config_path)> serve;  // `run -c FILE`, `sluice -c FILE`
  std::function<int()> demo;                                 // `demo`
};

class CommandLine {
 public:
  explicit CommandLine(AppCommands app = {});
  ~CommandLine();
  CommandLine(const CommandLine&) = delete;
  CommandLine& operator=(const CommandLine&) = delete;

  // Reads argv (argv[0] is the program) without printing or running anything.
  Outcome parse(int argc, const char* const* argv);
  // main(): parses, prints help, the version or a usage error (exit 0 or 2), else runs the
  // command. Exit codes: 0 ok, 1 the command failed, 2 usage error.
  int run(int argc, const char* const* argv);
  // The help page of `command` ("" for `sluice --help`).
  std::string help(const std::string& command = "") const;

  // What the last parse read, per command.
  std::string config_path;               // run -c FILE, sluice -c FILE
  CheckArgs check;                       // check
  ClientOptions client;                  // every client command, shift and top
  std::vector<std::string> client_args;  // status ... health: positional arguments
  ClientCall call;                       // status ... health: what they read as
  ShiftArgs shift;
  ShiftCall shift_call;
  TopArgs top;

 private:
  AppCommands app_;
  std::unique_ptr<Parser> parser_;
};

}  // namespace sluice::cli
