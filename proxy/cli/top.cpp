// `sluice top`: polls GET /admin/status and draws each alias's split and per-version figures.
#include "cli/top.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "config/loader.h"

namespace sluice::cli {
namespace {

using nlohmann::json;

constexpr int kFetchTimeoutMs = 2000;

// ANSI pieces; empty strings when colours are off.
struct Style {
  bool on = false;
  const char* bold() const { return on ? "\x1b[1m" : ""; }
  const char* dim() const { return on ? "\x1b[2m" : ""; }
  const char* reset() const { return on ? "\x1b[0m" : ""; }
  const char* red() const { return on ? "\x1b[31m" : ""; }
  const char* yellow() const { return on ? "\x1b[33m" : ""; }
  const char* version(size_t i) const {
    static const char* kColors[] = {"\x1b[32m", "\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[34m"};
    return on ? kColors[i % 5] : "";
  }
};

std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* format, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, format);
  int n = std::vsnprintf(buf, sizeof buf, format, ap);
  va_end(ap);
  if (n < 0) return {};
  return std::string(buf, std::min(static_cast<size_t>(n), sizeof buf - 1));
}

std::string weight_text(const json& w) {
  if (w.is_number_integer()) return std::to_string(w.get<int64_t>());
  if (w.is_number()) return fmt("%g", w.get<double>());
  return "?";
}

std::string traffic_text(const json& traffic) {
  if (!traffic.is_object()) return "-";
  std::string out;
  for (auto it = traffic.begin(); it != traffic.end(); ++it)
    out += (out.empty() ? "" : " ") + it.key() + "=" + weight_text(it.value());
  return out;
}

// Cut to `width` columns; pad when shorter.
std::string fit(std::string s, size_t width) {
  if (s.size() > width) s.resize(width);
  s.append(width - s.size(), ' ');
  return s;
}

// Number of '#' for a share in a bar `width` wide: rounded, but a non-zero share shows at least
// one and a share below 1 never fills the bar, so 0 and 100 stay recognisable.
size_t bar_fill(double share, size_t width) {
  if (!(share > 0)) return 0;
  auto n = static_cast<size_t>(std::lround(std::min(share, 1.0) * static_cast<double>(width)));
  if (n == 0) n = 1;
  if (share < 1.0 && n >= width && width > 1) n = width - 1;
  return std::min(n, width);
}

// Drops whatever is past `columns` visible characters (ANSI escape sequences take no column).
std::string clip_line(const std::string& line, int columns) {
  std::string out;
  int visible = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\x1b') {
      size_t end = i + 1;
      while (end < line.size() && !std::isalpha(static_cast<unsigned char>(line[end]))) ++end;
      out.append(line, i, end - i + 1);
      i = end;
      continue;
    }
    if (visible >= columns) continue;
    out += line[i];
    ++visible;
  }
  return out;
}

void render_status(const json& s, int columns, const Style& st, std::vector<std::string>& lines);

}  // namespace

std::string render_top_frame(const std::string& status_json, int columns, bool ansi,
                             const std::string& header) {
  const Style st{ansi};
  std::vector<std::string> lines;
  lines.push_back(std::string(st.bold()) + header + st.reset());
  json s = json::parse(status_json, nullptr, false);
  if (s.is_discarded() || !s.is_object()) {
    lines.push_back(std::string(st.red()) + "the admin API answered with invalid JSON" +
                    st.reset());
  } else {
    try {
      render_status(s, columns, st, lines);
    } catch (const json::exception& e) {  // a field of an unexpected type: say so, don't die
      lines.push_back(std::string(st.red()) + "unexpected status JSON: " + e.what() + st.reset());
    }
  }
  std::string out;
  for (const std::string& l : lines) out += clip_line(l, columns) + "\n";
  return out;
}

namespace {

// The aliases and the footer of one frame (render_top_frame). Throws json::exception when a
// field has an unexpected type.
void render_status(const json& s, int columns, const Style& st, std::vector<std::string>& lines) {
  const bool live = s.value("live_figures", false);
  if (!live) lines.push_back("(this sluice reports no live per-version figures)");
  // Fixed columns: indent 2, version 8, weight 7, share 7, "  [" + "]" 4, then req/s 10,
  // served 8, err% 9, p50 9, p99 9, in-flight 10 (each with its leading space).
  constexpr int kFixed = 2 + 8 + 7 + 7 + 4 + 10 + 8 + 9 + 9 + 9 + 10;
  const size_t bar_width = static_cast<size_t>(std::clamp(columns - kFixed, 10, 50));
  size_t alias_count = 0;
  for (const json& f : s.value("functions", json::array())) {
    const std::string fn = f.value("name", "?");
    for (const json& a : f.value("aliases", json::array())) {
      ++alias_count;
      const json versions = a.value("versions", json::array());
      double alias_rps = 0;
      for (const json& v : versions) alias_rps += v.value("requests_per_second", 0.0);
      lines.push_back("");
      std::string title = std::string(st.bold()) + fn + ":" + a.value("name", "?") + st.reset();
      title += "  " + traffic_text(a.value("traffic", json())) + "  " + st.dim() + "(" +
               a.value("source", "?") + ", history " + std::to_string(a.value("history_depth", 0)) +
               ")" + st.reset();
      if (live) title += fmt("  %.1f req/s", alias_rps);
      lines.push_back(title);
      lines.push_back(std::string(st.dim()) + "  " + fit("version", 8) + fmt("%7s", "weight") +
                      fmt("%7s", "share") + "  " + fit("split", bar_width + 2) +
                      fmt(" %9s %7s %8s %8s %8s %9s", "req/s", "served", "err%", "p50 ms", "p99 ms",
                          "in-flight") +
                      st.reset());
      size_t index = 0;
      for (const json& v : versions) {
        const double share = v.value("share", 0.0);
        const size_t fill = bar_fill(share, bar_width);
        std::string row =
            "  " + std::string(st.version(index)) + fit(v.value("version", "?"), 8) + st.reset();
        row += fmt("%7s", weight_text(v.value("weight", json())).c_str());
        row += fmt("%6.1f%%", share * 100.0);
        row += "  [" + std::string(st.version(index)) + std::string(fill, '#') + st.reset() +
               std::string(st.dim()) + std::string(bar_width - fill, '.') + st.reset() + "]";
        if (live) {
          // A version with no series yet has served nothing: zero rate, no error rate or
          // percentiles (nothing in the window to take them from).
          const double rps = v.value("requests_per_second", 0.0);
          const double err = v.value("error_rate", 0.0) * 100.0;
          row += fmt(" %9.1f", rps);
          row += alias_rps > 0 ? fmt(" %6.1f%%", rps / alias_rps * 100.0) : fmt(" %7s", "-");
          if (rps > 0) {
            const char* err_color = err >= 5.0 ? st.red() : err >= 1.0 ? st.yellow() : "";
            row += std::string(err_color) + fmt(" %7.2f%%", err) + st.reset();
            row += fmt(" %8.2f %8.2f", v.value("p50_ms", 0.0), v.value("p99_ms", 0.0));
          } else {
            row += fmt(" %8s %8s %8s", "-", "-", "-");
          }
          row += fmt(" %9lld", static_cast<long long>(v.value("in_flight", int64_t{0})));
        } else {
          row += fmt(" %9s %7s %8s %8s %8s %9s", "-", "-", "-", "-", "-", "-");
        }
        lines.push_back(row);
        ++index;
      }
    }
  }
  if (alias_count == 0) lines.push_back("no aliases configured");
  lines.push_back("");
  const json r = s.value("reloads", json::object());
  std::string foot =
      std::string(st.dim()) + fmt("reloads: %s ok, %s error", r.value("ok", json(0)).dump().c_str(),
                                  r.value("error", json(0)).dump().c_str());
  if (live) foot += "; req/s, err% and p50/p99 cover the sliding window";
  lines.push_back(foot + st.reset());
  const json store = s.value("store", json::object());
  if (store.value("kind", "") == "etcd") {
    const bool up = store.value("up", false);
    std::string line =
        fmt("store: etcd %s, node %s, revision %s: ", store.value("prefix", "").c_str(),
            store.value("node", "").c_str(), store.value("revision", json(0)).dump().c_str());
    if (up)
      line = std::string(st.dim()) + line + "up" + st.reset();
    else
      line = std::string(st.red()) + line + "DOWN (" + store.value("error", "") +
             "): serving the last applied state; changes answer 503" + st.reset();
    lines.push_back(line);
  }
}

volatile sig_atomic_t g_stop_signal = 0;
volatile sig_atomic_t g_resized = 0;

void on_signal(int sig) {
  if (sig == SIGWINCH)
    g_resized = 1;
  else
    g_stop_signal = sig;
}

// Puts stdin (when it is a terminal) in non-canonical, no-echo, no-signal mode and the screen in
// the alternate buffer with the cursor hidden; the destructor undoes both, so every return path
// restores the terminal. Signals only set flags (on_signal), so they also end here.
class TerminalSession {
 public:
  TerminalSession() {
    if (::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &saved_) == 0) {
      termios raw = saved_;
      // ISIG off: Ctrl-C arrives as byte 3 and quits like `q`. OPOST stays on (\n -> \r\n).
      raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO | ISIG | IEXTEN);
      raw.c_iflag &= ~static_cast<tcflag_t>(IXON | ICRNL);
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      raw_ = ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0;
    }
    write_all("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J");
  }
  ~TerminalSession() {
    write_all("\x1b[0m\x1b[?25h\x1b[?1049l");
    if (raw_) ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_);
  }
  TerminalSession(const TerminalSession&) = delete;
  TerminalSession& operator=(const TerminalSession&) = delete;

  static void write_all(const std::string& s) {
    for (size_t off = 0; off < s.size();) {
      ssize_t n = ::write(STDOUT_FILENO, s.data() + off, s.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

 private:
  termios saved_{};
  bool raw_ = false;
};

void terminal_size(int& columns, int& rows) {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    columns = ws.ws_col;
    rows = ws.ws_row;
  } else {
    columns = 120;
    rows = 40;
  }
}

std::string utc_clock() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%H:%M:%S UTC", &tm);
  return buf;
}

// GET /admin/status; the body, or nullopt with `error`.
std::optional<std::string> fetch_status(const std::string& admin, const std::string& token,
                                        std::string& error) {
  std::optional<ClientResponse> r =
      http_call(admin, "GET", "/admin/status", token, "", &error, kFetchTimeoutMs);
  if (!r) return std::nullopt;
  if (r->status != 200) {
    error = "GET /admin/status answered HTTP " + std::to_string(r->status);
    return std::nullopt;
  }
  return std::move(r->body);
}

int live_view(const std::string& admin, const std::string& token, int interval_ms) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: poll() returns EINTR at once
  struct sigaction old[5];
  const int sigs[5] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH};
  for (int i = 0; i < 5; ++i) ::sigaction(sigs[i], &sa, &old[i]);

  bool quit = false;
  {
    TerminalSession term;
    bool stdin_open = true;
    while (!quit && !g_stop_signal) {
      int columns = 0, rows = 0;
      terminal_size(columns, rows);
      std::string error;
      std::optional<std::string> body = fetch_status(admin, token, error);
      std::string header = "sluice top  " + admin + "  " + utc_clock() + "  (q quits)";
      std::string frame =
          body ? render_top_frame(*body, columns, true, header)
               : "\x1b[1m" + header + "\x1b[0m\n\x1b[31m" + error + " (retrying)\x1b[0m\n";
      // Redraw in place: home, each line cleared to its end, then clear below.
      std::string out = "\x1b[H";
      int line_no = 0;
      for (size_t pos = 0; pos < frame.size();) {
        size_t nl = frame.find('\n', pos);
        if (nl == std::string::npos) nl = frame.size();
        if (rows > 0 && line_no >= rows - 1) break;
        out.append(frame, pos, nl - pos);
        out += "\x1b[K\n";
        pos = nl + 1;
        ++line_no;
      }
      out += "\x1b[J";
      TerminalSession::write_all(out);

      auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(interval_ms);
      while (!quit && !g_stop_signal && !g_resized) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) break;
        pollfd p{STDIN_FILENO, POLLIN, 0};
        int n = ::poll(&p, stdin_open ? 1 : 0, static_cast<int>(left));
        if (n <= 0) continue;  // timeout or EINTR: the loop conditions decide
        char keys[64];
        ssize_t got = ::read(STDIN_FILENO, keys, sizeof keys);
        if (got <= 0) {
          if (got == 0 || (errno != EINTR && errno != EAGAIN)) stdin_open = false;
          continue;
        }
        bool refresh = false;
        for (ssize_t i = 0; i < got; ++i) {
          char k = keys[i];
          if (k == 'q' || k == 'Q' || k == 3 /* Ctrl-C */ || k == 4 /* Ctrl-D */) quit = true;
          if (k == ' ' || k == 'r') refresh = true;
        }
        if (refresh) break;
      }
      g_resized = 0;
    }
  }  // terminal restored here
  for (int i = 0; i < 5; ++i) ::sigaction(sigs[i], &old[i], nullptr);
  // Ended by a signal: with the terminal restored, die of it as the sender expects.
  if (const int sig = g_stop_signal; sig != 0) {
    ::signal(sig, SIG_DFL);
    ::raise(sig);
  }
  return 0;
}

}  // namespace

std::string top_interval_error(const std::string& value) {
  char* end = nullptr;
  const long v = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < 100 || v > 60000)
    return "expected milliseconds from 100 to 60000 (got " + value + ")";
  return "";
}

int run_top(const TopArgs& args, const ClientOptions& options) {
  const bool once = args.once;
  const int interval_ms = static_cast<int>(std::strtol(args.interval_ms.c_str(), nullptr, 10));
  std::string admin, token, error;
  if (!options.resolve(&admin, &token, &error)) {
    std::fprintf(stderr, "sluice top: %s\n", error.c_str());
    return 1;
  }

  if (once || !::isatty(STDOUT_FILENO)) {
    std::optional<std::string> body = fetch_status(admin, token, error);
    if (!body) {
      std::fprintf(stderr, "sluice top: %s\n", error.c_str());
      return 1;
    }
    int columns = 0, rows = 0;
    terminal_size(columns, rows);
    std::string frame =
        render_top_frame(*body, columns, false, "sluice top  " + admin + "  " + utc_clock());
    std::fputs(frame.c_str(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
  }
  return live_view(admin, token, interval_ms);
}

}  // namespace sluice::cli
