// The one argument parser of the sluice binary: CLI11 underneath, with sluice's help layout
// (hand-written usage lines and descriptions, option lists generated from the options themselves)
// and its error style (`sluice CMD: what is wrong`, then the usage line; exit 2).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

namespace sluice::cli {

// How a command presents itself. Its parent's help lists it as `synopsis  summary` under the
// command's group; its own --help shows "usage: " + `usage`, `description`, its options by group
// (one row each: names and value name, then the option's description), then `footer`. Texts are
// wrapped by hand; an option's description may span lines (continuations are indented).
struct Page {
  std::string usage;        // e.g. "sluice run -c FILE"; several forms: start with '\n', one a line
  std::string synopsis;     // e.g. "alias set FN:ALIAS V=W [V=W..]" (the name if empty)
  std::string summary;      // one line, for the parent's list
  std::string description;  // paragraphs under the usage
  std::string footer;       // paragraphs after the options
};

// What a command line came to: the text to print and the command to run, if any.
struct Outcome {
  int exit_code = 0;         // when `run` is empty: 0 after --help or --version, 2 usage error
  std::string out;           // for stdout (help, version)
  std::string err;           // for stderr (usage errors: `sluice CMD: ...` and the usage line)
  std::function<int()> run;  // the chosen command; its exit code
};

// A tree of one root and its commands (one level). Options are CLI11's, added to root() or to the
// App that add() returns; bind them with value() and flag() so every option behaves alike.
class Parser {
 public:
  // `program` names the binary in messages ("sluice"); `version` is what --version prints.
  Parser(std::string program, Page root, std::string version);
  ~Parser();
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  CLI::App& root() { return *root_; }

  // Adds a command, listed in the root's help under `group`. After a parse that chose it (and got
  // past --help, unknown options and missing values), `prepare` checks what the options cannot
  // check alone: a non-empty answer is a usage error. Then `run` does the command.
  CLI::App& add(const std::string& name, const std::string& group, Page page,
                std::function<int()> run, std::function<std::string()> prepare = {});

  // What a command line that names no command does (e.g. `sluice -c FILE`): `prepare` as above,
  // then `run`. Without arguments at all it is a usage error that prints the root's help.
  void set_default(std::function<int()> run, std::function<std::string()> prepare);

  // Also lists `from`'s options (its help flag aside) on the root's help, under `heading`.
  void show_on_root(const CLI::App& from, const std::string& heading);

  // Parses argv (argv[0] is the program). Never prints, never throws a CLI11 error.
  Outcome parse(int argc, const char* const* argv);

  // The help page of `command` ("" for the root).
  std::string help(const std::string& command = "") const;

  // Options that behave alike everywhere, in the group "options" (change it with ->group()): a
  // value option ("-c,--config") shows as "-c, --config FILE"; given twice, the last wins; a
  // value that is one of the command's options (`--to --admin X`) is refused. `check` (optional)
  // returns "" or what is wrong with a value, which the error shows as "--name: what is wrong".
  static CLI::Option* value(CLI::App& app, const std::string& names, std::string& into,
                            const std::string& value_name, const std::string& description,
                            std::function<std::string(const std::string&)> check = {});
  static CLI::Option* flag(CLI::App& app, const std::string& names, bool& into,
                           const std::string& description);

 private:
  struct Command {
    std::function<int()> run;
    std::function<std::string()> prepare;
  };
  class Formatter;

  Outcome usage_error(const CLI::App* app, const std::string& message) const;
  std::string message_of(const CLI::ParseError& e, const CLI::App* app, int argc,
                         const char* const* argv) const;

  std::string program_;
  std::string version_;
  std::shared_ptr<Formatter> formatter_;
  std::unique_ptr<CLI::App> root_;
  std::map<const CLI::App*, Command> commands_;
  Command default_;
  bool version_flag_ = false;
};

}  // namespace sluice::cli
