// The argument parser's own rules (cli/parser.h), on a small tree of its own: the help layout,
// the usage-error style and how values are read.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "cli/parser.h"

namespace sluice::cli {
namespace {

// A program `tool` with one command `get` (a value option, a flag, a client-like group and a
// positional list) and the root's -c FILE.
struct Tool {
  Parser parser{
      "tool",
      {.usage = "tool <command> [options]", .description = "A tool.", .footer = "That is all."},
      "tool 1.0"};
  std::string config, where, token;
  bool quick = false;
  std::vector<std::string> words;
  int ran = 0;

  Tool() {
    Parser::value(parser.root(), "-c,--config", config, "FILE", "the configuration");
    CLI::App& get = parser.add(
        "get", "commands",
        {.usage = "tool get WORD [options]",
         .synopsis = "get WORD",
         .summary = "get a word",
         .description = "Gets WORD.",
         .footer = "example:\n  tool get x"},
        [this] { return ++ran; },
        [this]() -> std::string { return words.size() == 1 ? "" : "expected: get WORD"; });
    get.add_option("words", words)->group("");
    Parser::value(get, "--where", where, "PLACE", "where to look\nfirst, and then elsewhere",
                  [](const std::string& v) { return v == "nowhere" ? "not a place" : ""; });
    Parser::flag(get, "--quick", quick, "do not look hard");
    Parser::value(get, "--a-much-longer-name", token, "TOKEN", "a token")->group("shared");
  }

  Outcome parse(std::vector<std::string> args) {
    args.insert(args.begin(), "tool");
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    return parser.parse(static_cast<int>(argv.size()), argv.data());
  }
};

TEST_CASE("a help page: usage, description, commands, options in one column, then the footer") {
  Tool tool;
  CHECK(tool.parser.help() ==
        "usage: tool <command> [options]\n"
        "\n"
        "A tool.\n"
        "\n"
        "commands:\n"
        "  get WORD           get a word\n"
        "\n"
        "options:\n"
        "  -c, --config FILE  the configuration\n"
        "  -h, --help         show help (also: tool <command> --help)\n"
        "  --version          print the version\n"
        "\n"
        "That is all.\n");
  // The widest name sets the column for every list of options on the page; a description's
  // further lines start in that column; the help flag closes the last list.
  CHECK(tool.parser.help("get") ==
        "usage: tool get WORD [options]\n"
        "\n"
        "Gets WORD.\n"
        "\n"
        "options:\n"
        "  --where PLACE               where to look\n"
        "                              first, and then elsewhere\n"
        "  --quick                     do not look hard\n"
        "\n"
        "shared:\n"
        "  --a-much-longer-name TOKEN  a token\n"
        "  -h, --help                  show this help\n"
        "\n"
        "example:\n"
        "  tool get x\n");
}

TEST_CASE("--help and -h print the chosen command's page on stdout, whatever else is given") {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"get", "--help"}, {"get", "-h"}, {"get", "--bogus", "-h"}, {"get", "--where"}}) {
    CAPTURE(args.back());
    Tool tool;
    Outcome o = tool.parse(args);
    if (args.back() == "--where") {  // a missing value is not help
      CHECK(o.exit_code == 2);
      continue;
    }
    CHECK(o.exit_code == 0);
    CHECK_FALSE(o.run);
    CHECK(o.err.empty());
    CHECK(o.out == tool.parser.help("get"));
  }
  Tool tool;
  CHECK(tool.parse({"--help"}).out == tool.parser.help());
  CHECK(tool.parse({"help"}).out == tool.parser.help());
  CHECK(tool.parse({"--version"}).out == "tool 1.0\n");
  CHECK(tool.parse({"version"}).out == "tool 1.0\n");
}

TEST_CASE("usage errors name the command, say what is wrong, and point at the help, exit 2") {
  struct Case {
    std::vector<std::string> args;
    std::string err;
  };
  const std::string get_usage = "usage: tool get WORD [options]  (see tool get --help)\n";
  const std::string root_usage = "usage: tool <command> [options]  (see tool --help)\n";
  for (const Case& c : std::vector<Case>{
           {{"get", "x", "--bogus"}, "tool get: unknown option --bogus\n" + get_usage},
           {{"get", "x", "--bogus=1"}, "tool get: unknown option --bogus=1\n" + get_usage},
           {{"get", "x", "-c", "f"}, "tool get: unknown option -c\n" + get_usage},
           {{"get"}, "tool get: expected: get WORD\n" + get_usage},
           {{"get", "x", "--where"}, "tool get: --where needs a value (PLACE)\n" + get_usage},
           {{"get", "x", "--where", "nowhere"}, "tool get: --where: not a place\n" + get_usage},
           {{"get", "x", "--where", "--quick"},
            "tool get: --where: expected a value (PLACE), got the option --quick\n" + get_usage},
           {{"nothing"}, "tool: unknown command 'nothing'\n" + root_usage},
           {{"--bogus"}, "tool: unknown option --bogus\n" + root_usage},
           {{"-c"}, "tool: -c needs a value (FILE)\n" + root_usage},
           {{"--config"}, "tool: --config needs a value (FILE)\n" + root_usage},
           {{"-c", "f", "get", "x"},
            "tool: --config goes after the command: tool get --config ...\n" + root_usage},
       }) {
    CAPTURE(c.err);
    Tool tool;
    Outcome o = tool.parse(c.args);
    CHECK(o.exit_code == 2);
    CHECK_FALSE(o.run);
    CHECK(o.out.empty());
    CHECK(o.err == c.err);
    CHECK(tool.ran == 0);
  }
}

TEST_CASE("no arguments at all is a usage error that shows the root's help on stderr") {
  Tool tool;
  Outcome o = tool.parse({});
  CHECK(o.exit_code == 2);
  CHECK(o.err == tool.parser.help());
  CHECK_FALSE(o.run);
}

TEST_CASE("values read in every form, given twice, the last wins, options mix with positionals") {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"get", "--where", "here", "x"},
           {"get", "--where=here", "x"},
           {"get", "x", "--where", "there", "--quick", "--where", "here"},
           {"get", "--quick", "x", "--where=here"}}) {
    CAPTURE(args.size());
    Tool tool;
    Outcome o = tool.parse(args);
    REQUIRE_MESSAGE(o.run, o.err);
    CHECK(tool.where == "here");
    CHECK(tool.words == std::vector<std::string>{"x"});
    CHECK(o.run() == 1);
    CHECK(tool.ran == 1);
  }
}

TEST_CASE("a command line naming no command runs the default, after its own check") {
  Tool tool;
  std::string seen;
  tool.parser.set_default([&] { return seen = tool.config, 7; },
                          [&]() -> std::string { return tool.config.empty() ? "missing -c" : ""; });
  Outcome o = tool.parse({"--config=a.toml"});
  REQUIRE(o.run);
  CHECK(o.run() == 7);
  CHECK(seen == "a.toml");

  Tool other;
  other.parser.set_default([] { return 0; }, [] { return std::string("missing -c"); });
  o = other.parse({"--version"});
  CHECK(o.out == "tool 1.0\n");
}

}  // namespace
}  // namespace sluice::cli
