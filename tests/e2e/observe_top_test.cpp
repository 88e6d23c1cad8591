// End-to-end: `sluice top` in a real terminal (a private tmux server): it draws each alias's split
// as bars with per-version figures, quits on `q` and on Ctrl-C and leaves the terminal as it found
// it; with stdout not a terminal it prints one plain snapshot.
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "admin_test_util.h"
#include "skip.h"

using namespace sluice::e2e;
using namespace sluice::e2e::admin;

namespace {

// Runs `cmd` through the shell; its stdout (stderr discarded) and exit code.
CliRun shell(const std::string& cmd) {
  CliRun r;
  FILE* p = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A tmux server of our own (its own socket name), killed on destruction.
class Tmux {
 public:
  Tmux() {
    static int count = 0;
    socket_ = "sluice-e2e-top-" + std::to_string(::getpid()) + "-" + std::to_string(++count);
  }
  ~Tmux() { shell(base() + " kill-server"); }
  Tmux(const Tmux&) = delete;
  Tmux& operator=(const Tmux&) = delete;

  std::string base() const { return "tmux -f /dev/null -L " + socket_; }
  // A detached session `name`, 150x45, running `sh script`.
  bool start(const std::string& name, const std::string& script) {
    return shell(base() + " new-session -d -s " + name + " -x 150 -y 45 'sh " + script + "'")
               .exit_code == 0;
  }
  std::string capture(const std::string& name) const {
    return shell(base() + " capture-pane -p -t " + name).out;
  }
  bool keys(const std::string& name, const std::string& keys) const {
    return shell(base() + " send-keys -t " + name + " " + keys).exit_code == 0;
  }
  // Polls the pane until it contains every one of `needles` (bounded); the last capture.
  std::string wait_for(const std::string& name, const std::vector<std::string>& needles,
                       int timeout_ms, bool* found) const {
    std::string screen;
    *found = poll_until(
        [&] {
          screen = capture(name);
          for (const std::string& n : needles)
            if (screen.find(n) == std::string::npos) return false;
          return true;
        },
        timeout_ms);
    return screen;
  }

 private:
  std::string socket_;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// The version row of `version` under the alias header `alias_title` ("shop:live").
std::string version_row(const std::string& screen, const std::string& alias_title,
                        const std::string& version) {
  bool in_alias = false;
  for (const std::string& l : lines_of(screen)) {
    if (l.rfind(alias_title, 0) == 0) {
      in_alias = true;
      continue;
    }
    if (!in_alias) continue;
    if (!l.empty() && l[0] != ' ') break;  // the next alias
    std::istringstream words(l);
    std::string first;
    words >> first;
    if (first == version && l.find('[') != std::string::npos) return l;
  }
  return "";
}

struct Bar {
  size_t fill = 0, width = 0;
};
Bar bar_of(const std::string& row) {
  size_t open = row.find('['), close = row.find(']');
  Bar b;
  if (open == std::string::npos || close == std::string::npos || close < open) return b;
  for (size_t i = open + 1; i < close; ++i) {
    b.width += 1;
    b.fill += row[i] == '#';
  }
  return b;
}

// The first figure after the bar: requests/s ("-" without live figures).
std::string rate_of(const std::string& row) {
  size_t close = row.find(']');
  if (close == std::string::npos) return "";
  std::istringstream words(row.substr(close + 1));
  std::string rate;
  words >> rate;
  return rate;
}

std::string top_script(const Sluice& s, const TempDir& dir, const std::string& name) {
  return dir.write(name + ".sh", "before=$(stty -g)\n" + sluice_binary() +
                                     " top --admin 127.0.0.1:" + std::to_string(admin_port(s)) +
                                     "\necho \"TOP-EXIT=$?\"\n"
                                     "[ \"$(stty -g)\" = \"$before\" ] && echo TTY-RESTORED\n"
                                     "sleep 60\n");
}

}  // namespace

TEST_CASE("sluice top under tmux shows the split as bars with per-version figures and quits on q") {
  if (!sluice::test::have_tool("tmux")) {
    sluice::test::skip_test("tmux not installed: the sluice top terminal test needs it");
    return;
  }
  Upstream a("a"), b("b");
  Sluice s(shop_config(a, b, R"({ "1" = 90, "2" = 10 })"));
  REQUIRE_STARTED(s);
  REQUIRE(admin_port(s) != 0);
  // Traffic first, so the window has figures for both versions.
  std::map<std::string, int> hits = who_answers(s, 400);
  REQUIRE(hits["a"] > 0);
  REQUIRE(hits["b"] > 0);

  TempDir dir;
  Tmux tmux;
  REQUIRE(tmux.start("top", top_script(s, dir, "top")));
  bool found = false;
  std::string screen = tmux.wait_for("top", {"shop:live", "in-flight"}, 10000, &found);
  CAPTURE(screen);
  REQUIRE(found);
  CHECK(screen.find("sluice top") != std::string::npos);
  CHECK(screen.find("1=90 2=10") != std::string::npos);

  const std::string row1 = version_row(screen, "shop:live", "1");
  const std::string row2 = version_row(screen, "shop:live", "2");
  CAPTURE(row1);
  CAPTURE(row2);
  REQUIRE(!row1.empty());
  REQUIRE(!row2.empty());
  // The bars show the configured split: 90% and 10% of the same width.
  Bar b1 = bar_of(row1), b2 = bar_of(row2);
  REQUIRE(b1.width >= 10);
  CHECK(b1.width == b2.width);
  CHECK(b1.fill == static_cast<size_t>(std::lround(0.9 * static_cast<double>(b1.width))));
  CHECK(b2.fill == static_cast<size_t>(std::lround(0.1 * static_cast<double>(b2.width))));
  CHECK(row1.find("90.0%") != std::string::npos);
  CHECK(row2.find("10.0%") != std::string::npos);
  // Live figures: both versions served requests inside the window.
  CHECK(std::stod(rate_of(row1)) > 0);
  CHECK(std::stod(rate_of(row2)) > 0);

  // A traffic change shows at the next refresh (once a second).
  CliRun set =
      run_cli("alias set shop:live 1=50 2=50 --admin 127.0.0.1:" + std::to_string(admin_port(s)));
  REQUIRE(set.exit_code == 0);
  screen = tmux.wait_for("top", {"1=50 2=50"}, 5000, &found);
  CHECK(found);
  Bar half = bar_of(version_row(screen, "shop:live", "2"));
  CHECK(half.fill == static_cast<size_t>(std::lround(0.5 * static_cast<double>(half.width))));

  REQUIRE(tmux.keys("top", "q"));
  screen = tmux.wait_for("top", {"TOP-EXIT=0", "TTY-RESTORED"}, 5000, &found);
  CHECK(found);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("sluice top quits on Ctrl-C and restores the terminal") {
  if (!sluice::test::have_tool("tmux")) {
    sluice::test::skip_test("tmux not installed: the sluice top terminal test needs it");
    return;
  }
  Upstream a("a"), b("b");
  Sluice s(shop_config(a, b, R"({ "1" = 100 })"));
  REQUIRE_STARTED(s);
  REQUIRE(admin_port(s) != 0);
  TempDir dir;
  Tmux tmux;
  REQUIRE(tmux.start("top", top_script(s, dir, "top")));
  bool found = false;
  std::string screen = tmux.wait_for("top", {"shop:live"}, 10000, &found);
  CAPTURE(screen);
  REQUIRE(found);
  // No requests yet: the rate is zero and the percentiles are not shown.
  CHECK(rate_of(version_row(screen, "shop:live", "1")) == "0.0");
  REQUIRE(tmux.keys("top", "C-c"));
  screen = tmux.wait_for("top", {"TOP-EXIT=0", "TTY-RESTORED"}, 5000, &found);
  CHECK(found);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("sluice top killed by SIGTERM restores the terminal and dies of the signal") {
  if (!sluice::test::have_tool("tmux")) {
    sluice::test::skip_test("tmux not installed: the sluice top terminal test needs it");
    return;
  }
  Upstream a("a"), b("b");
  Sluice s(shop_config(a, b, R"({ "1" = 100 })"));
  REQUIRE_STARTED(s);
  REQUIRE(admin_port(s) != 0);
  TempDir dir;
  const std::string pid_file = dir.path() + "/top.pid";
  // The inner shell writes its PID and execs sluice top in the foreground of the pane.
  const std::string script = dir.write(
      "top.sh", "before=$(stty -g)\nsh -c 'echo $$ > " + pid_file + "; exec " + sluice_binary() +
                    " top --admin 127.0.0.1:" + std::to_string(admin_port(s)) +
                    "'\necho \"TOP-EXIT=$?\"\n"
                    "[ \"$(stty -g)\" = \"$before\" ] && echo TTY-RESTORED\nsleep 60\n");
  Tmux tmux;
  REQUIRE(tmux.start("top", script));
  bool found = false;
  std::string screen = tmux.wait_for("top", {"shop:live"}, 10000, &found);
  CAPTURE(screen);
  REQUIRE(found);
  std::ifstream in(pid_file);
  pid_t pid = 0;
  in >> pid;
  REQUIRE(pid > 0);
  REQUIRE(::kill(pid, SIGTERM) == 0);
  screen = tmux.wait_for("top", {"TOP-EXIT=143", "TTY-RESTORED"}, 5000, &found);
  CHECK(found);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("sluice top with stdout not a terminal prints one plain snapshot and exits 0") {
  Upstream a("a"), b("b");
  Sluice s(shop_config(a, b, R"({ "1" = 90, "2" = 10 })"));
  REQUIRE_STARTED(s);
  const uint16_t port = admin_port(s);
  REQUIRE(port != 0);
  who_answers(s, 100);

  CliRun r = run_cli("top --admin 127.0.0.1:" + std::to_string(port));
  CAPTURE(r.out);
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find('\x1b') == std::string::npos);  // no escape sequences in a pipe
  CHECK(r.out.find("shop:live") != std::string::npos);
  Bar b1 = bar_of(version_row(r.out, "shop:live", "1"));
  REQUIRE(b1.width > 0);
  CHECK(b1.fill == static_cast<size_t>(std::lround(0.9 * static_cast<double>(b1.width))));

  SUBCASE("the same options as the other client commands: -c FILE finds the admin address") {
    // The config's admin address is 127.0.0.1:0, so --admin is still needed for a live port;
    // a config that fails to load is an error (exit 1) with the file position.
    std::string bad = s.dir().write("bad.toml", "workers = \"two\"\n");
    CliRun e = run_cli("top -c " + bad);
    CHECK(e.exit_code == 1);
    CHECK(e.err.find("bad.toml") != std::string::npos);
  }
  SUBCASE("an unreachable admin address is a one-line error and exit 1") {
    CliRun e = run_cli("top --admin " + loopback(unused_port()));
    CHECK(e.exit_code == 1);
    CHECK(e.err.find("sluice top: cannot connect") != std::string::npos);
  }
  SUBCASE("a bad option is a usage error") {
    CliRun e = run_cli("top --bogus");
    CHECK(e.exit_code == 2);
  }
  CHECK_CLEAN_STOP(s);
}
