// The sluice binary: the proxy (`run`), the config checker (`check`), the demo, and the CLI. Its
// command line is read by cli/commands.cpp; this file hands it what `run` and `demo` do.
#include <optional>
#include <string>

#include "app/demo.h"
#include "app/serve.h"
#include "cli/commands.h"

int main(int argc, char** argv) {
  sluice::cli::CommandLine command_line({
      .serve =
          [](const std::string& path) {
            return sluice::app::serve({path, std::nullopt, {}});
          },
      .demo = [] { return sluice::app::run_demo(); },
  });
  return command_line.run(argc, argv);
}
