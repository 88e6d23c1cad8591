// The argument parser (see parser.h): CLI11's parse, sluice's help pages and usage errors.
#include "cli/parser.h"

#include <algorithm>
#include <set>

namespace sluice::cli {
namespace {

using Rows = std::vector<std::pair<std::string, std::string>>;
using Sections = std::vector<std::pair<std::string, Rows>>;

// Descriptions start at least this far right of a row's two-space indent, so that short lists
// line up with the usual "-c, --config FILE" row.
constexpr size_t kMinNameWidth = 17;

std::string with_newline(std::string text) {
  if (!text.empty() && text.back() != '\n') text += '\n';
  return text;
}

// One section: "heading:" then a row per entry, descriptions in one column (continuation lines of
// a multi-line description start in that column too).
// The width of the names column: the widest name, at least kMinNameWidth.
size_t name_width(const Rows& rows, size_t width = kMinNameWidth) {
  for (const auto& row : rows) width = std::max(width, row.first.size());
  return width;
}

void append_section(std::string& out, const std::string& heading, const Rows& rows, size_t width) {
  if (rows.empty()) return;
  out += "\n" + heading + ":\n";
  for (const auto& [name, text] : rows) {
    std::string line = "  " + name;
    size_t start = 0;
    for (bool first = true; !text.empty() && start <= text.size(); first = false) {
      const size_t end = std::min(text.find('\n', start), text.size());
      if (first)
        line.append(width - name.size() + 2, ' ');
      else
        line += "\n" + std::string(width + 4, ' ');
      line.append(text, start, end - start);
      start = end + 1;
    }
    out += line + "\n";
  }
}

// "-c, --config FILE": short names, long names, and the value's name unless it is a flag.
std::string option_row_name(const CLI::Option& o) {
  std::string name;
  for (const std::string& s : o.get_snames()) name += (name.empty() ? "-" : ", -") + s;
  for (const std::string& l : o.get_lnames()) name += (name.empty() ? "--" : ", --") + l;
  if (o.get_type_size_max() > 0 && !o.get_type_name().empty()) name += " " + o.get_type_name();
  return name;
}

void add_row(Sections& sections, const std::string& group, std::string name, std::string text) {
  auto it = std::find_if(sections.begin(), sections.end(),
                         [&](const auto& s) { return s.first == group; });
  if (it == sections.end()) it = sections.insert(sections.end(), {group, {}});
  it->second.emplace_back(std::move(name), std::move(text));
}

}  // namespace

// Renders every page from its Page and the App's options; installed as CLI11's formatter, so
// App::help() gives the same text.
class Parser::Formatter : public CLI::FormatterBase {
 public:
  std::string make_help(const CLI::App* app, std::string, CLI::AppFormatMode) const override {
    const Page& page = pages.at(app);
    std::string out = page.usage.rfind('\n', 0) == 0 ? "usage:" : "usage: ";
    out += with_newline(page.usage);
    if (!page.description.empty()) out += "\n" + with_newline(page.description);

    Sections commands;
    for (const CLI::App* sub : app->get_subcommands([](const CLI::App*) { return true; })) {
      if (sub->get_group().empty() || !pages.count(sub)) continue;  // hidden: help, version
      const Page& p = pages.at(sub);
      add_row(commands, sub->get_group(), p.synopsis.empty() ? sub->get_name() : p.synopsis,
              p.summary);
    }
    for (const auto& [heading, rows] : commands)
      append_section(out, heading, rows, name_width(rows));
    // Every list of options on the page shares one column.
    Sections options = option_sections(*app, true);
    if (app->get_parent() == nullptr) {
      for (const auto& [from, heading] : borrowed) {
        Rows rows;
        for (const auto& section : option_sections(*from, false))
          rows.insert(rows.end(), section.second.begin(), section.second.end());
        options.emplace_back(heading, std::move(rows));
      }
    }
    size_t width = kMinNameWidth;
    for (const auto& section : options) width = name_width(section.second, width);
    for (const auto& [heading, rows] : options) append_section(out, heading, rows, width);
    if (!page.footer.empty()) out += "\n" + with_newline(page.footer);
    return out;
  }

  // The app's options by group, in the order the groups first appear; the help flag (and
  // --version) close the last group.
  Sections option_sections(const CLI::App& app, bool with_help) const {
    Sections sections;
    std::vector<const CLI::Option*> last;
    for (const CLI::Option* o : app.get_options()) {
      if (!o->nonpositional() || o->get_group().empty()) continue;
      if (o == app.get_help_ptr() || trailing.count(o)) {
        if (with_help) last.push_back(o);
        continue;
      }
      add_row(sections, o->get_group(), option_row_name(*o), o->get_description());
    }
    for (const CLI::Option* o : last) {
      add_row(sections, sections.empty() ? o->get_group() : sections.back().first,
              option_row_name(*o), o->get_description());
    }
    return sections;
  }

  std::map<const CLI::App*, Page> pages;
  std::vector<std::pair<const CLI::App*, std::string>> borrowed;  // on the root's page
  std::set<const CLI::Option*> trailing;                          // listed after the others
};

Parser::Parser(std::string program, Page root, std::string version)
    : program_(std::move(program)),
      version_(std::move(version)),
      formatter_(std::make_shared<Formatter>()),
      root_(std::make_unique<CLI::App>(root.description, program_)) {
  formatter_->pages[root_.get()] = std::move(root);
  root_->formatter(formatter_);
  root_->allow_extras();  // unknown arguments get sluice's message, not CLI11's
  root_->require_subcommand(0, 1);
  root_->set_help_flag("-h,--help", "show help (also: " + program_ + " <command> --help)");
  root_->get_help_ptr()->group("options");
  formatter_->trailing.insert(flag(*root_, "--version", version_flag_, "print the version"));
  // `sluice help` and `sluice version` as words, unlisted.
  for (const char* word : {"help", "version"}) {
    CLI::App* sub = root_->add_subcommand(word);
    sub->group("");
    sub->allow_extras();
  }
}

Parser::~Parser() = default;

CLI::App& Parser::add(const std::string& name, const std::string& group, Page page,
                      std::function<int()> run, std::function<std::string()> prepare) {
  CLI::App* sub = root_->add_subcommand(name, page.description);
  sub->group(group);
  sub->allow_extras();
  sub->set_help_flag("-h,--help", "show this help");
  sub->get_help_ptr()->group("options");
  formatter_->pages[sub] = std::move(page);
  commands_[sub] = {std::move(run), std::move(prepare)};
  return *sub;
}

void Parser::set_default(std::function<int()> run, std::function<std::string()> prepare) {
  default_ = {std::move(run), std::move(prepare)};
}

void Parser::show_on_root(const CLI::App& from, const std::string& heading) {
  formatter_->borrowed.emplace_back(&from, heading);
}

CLI::Option* Parser::value(CLI::App& app, const std::string& names, std::string& into,
                           const std::string& value_name, const std::string& description,
                           std::function<std::string(const std::string&)> check) {
  CLI::Option* o = app.add_option(names, into, description);
  o->type_name(value_name);
  o->group("options");
  o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  // CLI11 takes the next argument as the value whatever it is; `--to --admin X` is a value
  // forgotten, not a version named "--admin". A non-empty answer shows as "--name: answer".
  const CLI::App* owner = &app;
  o->check(CLI::Validator(
      [owner, check, value_name](std::string& v) -> std::string {
        if (v.size() > 1 && v[0] == '-' &&
            owner->get_option_no_throw(v.substr(0, v.find('='))) != nullptr)
          return "expected a value (" + value_name + "), got the option " + v;
        return check ? check(v) : "";
      },
      "", ""));
  return o;
}

CLI::Option* Parser::flag(CLI::App& app, const std::string& names, bool& into,
                          const std::string& description) {
  CLI::Option* o = app.add_flag(names, into, description);
  o->group("options");
  o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  return o;
}

Outcome Parser::parse(int argc, const char* const* argv) {
  auto chosen = [this]() -> const CLI::App* {
    const std::vector<CLI::App*> subs = root_->get_subcommands();
    return subs.empty() ? nullptr : subs.front();
  };
  try {
    root_->parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    const CLI::App* app = chosen();
    return {
        0, formatter_->make_help(app ? app : root_.get(), "", CLI::AppFormatMode::Normal), "", {}};
  } catch (const CLI::ParseError& e) {
    return usage_error(chosen(), message_of(e, chosen(), argc, argv));
  }
  const CLI::App* app = chosen();
  if (app && app->get_name() == "help") return {0, help(), "", {}};
  if (version_flag_ || (app && app->get_name() == "version")) return {0, version_ + "\n", "", {}};

  // Whatever CLI11 could not place: unknown options, surplus arguments, unknown commands.
  for (const CLI::App* in : {app, static_cast<const CLI::App*>(root_.get())}) {
    if (in == nullptr) continue;
    for (const std::string& arg : in->remaining()) {
      if (arg == "--") continue;
      if (arg.size() > 1 && arg[0] == '-') return usage_error(in, "unknown option " + arg);
      if (app == nullptr) return usage_error(nullptr, "unknown command '" + arg + "'");
      return usage_error(in, "unexpected argument '" + arg + "'");
    }
  }
  if (app != nullptr) {
    // The root's own options (-c FILE for `sluice -c FILE`) do not reach a command.
    for (const CLI::Option* o : root_->get_options()) {
      if (o->count() > 0 && o->nonpositional())
        return usage_error(nullptr, o->get_name() + " goes after the command: " + program_ + " " +
                                        app->get_name() + " " + o->get_name() + " ...");
    }
  } else if (argc <= 1) {
    return {2, "", help(), {}};
  }

  const Command& command = app ? commands_.at(app) : default_;
  if (command.prepare) {
    const std::string error = command.prepare();
    if (!error.empty()) return usage_error(app, error);
  }
  if (!command.run) return usage_error(app, "expected a command");
  return {0, "", "", command.run};
}

std::string Parser::help(const std::string& command) const {
  const CLI::App* app = command.empty() ? root_.get() : root_->get_subcommand(command);
  return formatter_->make_help(app, "", CLI::AppFormatMode::Normal);
}

Outcome Parser::usage_error(const CLI::App* app, const std::string& message) const {
  if (app == nullptr || !commands_.count(app)) app = root_.get();
  const std::string who = program_ + (app == root_.get() ? "" : " " + app->get_name());
  // One usage form: the page's, else (several forms) the line it is listed with.
  const Page& page = formatter_->pages.at(app);
  const std::string usage =
      page.usage.find('\n') == std::string::npos
          ? page.usage
          : program_ + " " + (page.synopsis.empty() ? app->get_name() : page.synopsis);
  return {2, "", who + ": " + message + "\nusage: " + usage + "  (see " + who + " --help)\n", {}};
}

std::string Parser::message_of(const CLI::ParseError& e, const CLI::App* app, int argc,
                               const char* const* argv) const {
  const std::string what = e.what();
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) != nullptr) {
    // "--config: 1 required FILE missing": the command line ended where a value was due, so the
    // option as typed ("-c") is its last argument.
    const size_t colon = what.find(": ");
    const CLI::Option* o =
        colon == std::string::npos
            ? nullptr
            : (app ? app : root_.get())->get_option_no_throw(what.substr(0, colon));
    if (o != nullptr && what.find(" required ") != std::string::npos) {
      std::string typed = argc > 1 ? argv[argc - 1] : "";
      if (!o->check_name(typed)) typed = o->get_name();
      return typed + " needs a value (" + o->get_type_name() + ")";
    }
  }
  return what;
}

}  // namespace sluice::cli
