// Load tools for bench/run_all.sh that wrk cannot do: an open-loop generator (requests sent at a
// fixed rate, latency measured from each request's scheduled send time, so a stalled server is
// charged for every request it delayed) and a holder of many idle keep-alive connections (RSS per
// idle connection). Single-threaded epoll, no dependencies, bounded in requests and time.
//
//   loadgen rate --port P --rate R --duration-s D [--conns 64] [--max-requests M] [--drain-s 2]
//   loadgen idle --port P --conns N [--hold-s 120] [--setup-s 60] [--batch 256]
//
// Each prints one machine-readable line on stdout ("LOADGEN key=value ...", "READY ...",
// "IDLE ..."); `rate` also prints a human summary on stderr.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "loadgen.h"

namespace {

uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t cpu_us() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
         static_cast<uint64_t>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "loadgen: %s: %s\n", what, std::strerror(errno));
  std::exit(2);
}

[[noreturn]] void usage(const char* msg) {
  std::fprintf(
      stderr,
      "loadgen: %s\n"
      "usage: loadgen rate --port P --rate R --duration-s D [--conns 64]\n"
      "                    [--max-requests M] [--drain-s 2] [--host 127.0.0.1] [--path /]\n"
      "       loadgen idle --port P --conns N [--hold-s 120] [--setup-s 60] [--batch 256]\n",
      msg);
  std::exit(2);
}

struct Options {
  std::string mode;
  std::string host = "127.0.0.1";
  std::string path = "/";
  int port = 0;
  double rate = 0;
  double duration_s = 0;
  uint64_t max_requests = 0;  // 0: rate * duration
  double drain_s = 2;
  int conns = 64;
  double hold_s = 120;
  double setup_s = 60;
  int batch = 256;
};

Options parse(int argc, char** argv) {
  if (argc < 2) usage("missing mode");
  Options o;
  o.mode = argv[1];
  if (o.mode != "rate" && o.mode != "idle") usage("mode must be rate or idle");
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + a).c_str());
    const char* v = argv[++i];
    char* end = nullptr;
    const double d = std::strtod(v, &end);
    const bool num = end && *end == '\0' && end != v && d >= 0;
    if (a == "--host")
      o.host = v;
    else if (a == "--path")
      o.path = v;
    else if (!num)
      usage(("bad value for " + a).c_str());
    else if (a == "--port")
      o.port = static_cast<int>(d);
    else if (a == "--rate")
      o.rate = d;
    else if (a == "--duration-s")
      o.duration_s = d;
    else if (a == "--max-requests")
      o.max_requests = static_cast<uint64_t>(d);
    else if (a == "--drain-s")
      o.drain_s = d;
    else if (a == "--conns")
      o.conns = static_cast<int>(d);
    else if (a == "--hold-s")
      o.hold_s = d;
    else if (a == "--setup-s")
      o.setup_s = d;
    else if (a == "--batch")
      o.batch = static_cast<int>(d);
    else
      usage(("unknown option " + a).c_str());
  }
  if (o.port <= 0 || o.port > 65535) usage("--port is required");
  if (o.conns <= 0) usage("--conns must be > 0");
  if (o.mode == "rate" && (o.rate <= 0 || o.duration_s <= 0))
    usage("rate needs --rate and --duration-s > 0");
  if (o.batch <= 0) o.batch = 1;
  return o;
}

// Raises RLIMIT_NOFILE so `needed` descriptors fit (the hard limit too, where allowed).
void raise_nofile(rlim_t needed) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) die("getrlimit");
  if (rl.rlim_cur >= needed) return;
  if (rl.rlim_max < needed) rl.rlim_max = needed;
  rl.rlim_cur = needed;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    getrlimit(RLIMIT_NOFILE, &rl);
    std::fprintf(stderr, "loadgen: need %llu file descriptors, limit is %llu\n",
                 static_cast<unsigned long long>(needed),
                 static_cast<unsigned long long>(rl.rlim_cur));
    std::exit(2);
  }
}

enum class State { kConnecting, kIdle, kSending, kBusy, kClosed };

struct Conn {
  int fd = -1;
  State state = State::kClosed;
  uint64_t sched_ns = 0;  // scheduled send time of the request in flight
  std::string in;         // response bytes received, from the start of the current response
  size_t out_off = 0;     // bytes of the request already written (partial writes are rare)
  bool queued = false;    // listed in RateRun::idle_
};

// Connections to one address, registered in one epoll set; the base of both modes.
class Client {
 public:
  explicit Client(const Options& o) : o_(o) {
    request_ = "GET " + o.path + " HTTP/1.1\r\nHost: " + o.host + ":" + std::to_string(o.port) +
               "\r\nUser-Agent: sluice-loadgen\r\nAccept: */*\r\n\r\n";
    addr_.sin_family = AF_INET;
    addr_.sin_port = htons(static_cast<uint16_t>(o.port));
    if (inet_pton(AF_INET, o.host.c_str(), &addr_.sin_addr) != 1) usage("--host must be IPv4");
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) die("epoll_create1");
    conns_.resize(static_cast<size_t>(o.conns));
  }
  ~Client() {
    for (Conn& c : conns_)
      if (c.fd >= 0) close(c.fd);
    close(ep_);
  }

  // Starts a non-blocking connect for conns_[i]; false if it failed at once.
  bool connect_one(size_t i) {
    Conn& c = conns_[i];
    c = Conn{};
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) die("socket");
    const int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), sizeof addr_) != 0 &&
        errno != EINPROGRESS) {
      close(c.fd);
      c.fd = -1;
      return false;
    }
    c.state = State::kConnecting;
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = i;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev) != 0) die("epoll_ctl add");
    return true;
  }

  void watch(size_t i, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = i;
    if (epoll_ctl(ep_, EPOLL_CTL_MOD, conns_[i].fd, &ev) != 0) die("epoll_ctl mod");
  }

  void drop(size_t i) {
    Conn& c = conns_[i];
    if (c.fd >= 0) close(c.fd);  // also removes it from the epoll set
    c.fd = -1;
    c.state = State::kClosed;
    c.in.clear();
  }

  // Writes the rest of the request; false if the connection failed.
  bool write_request(size_t i) {
    Conn& c = conns_[i];
    while (c.out_off < request_.size()) {
      const ssize_t n =
          send(c.fd, request_.data() + c.out_off, request_.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (c.state != State::kSending) watch(i, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
        c.state = State::kSending;
        return true;
      } else {
        return false;
      }
    }
    if (c.state == State::kSending) watch(i, EPOLLIN | EPOLLRDHUP);
    c.state = State::kBusy;
    return true;
  }

  // Reads what is there into the connection's buffer; false on EOF or error.
  bool read_some(size_t i) {
    Conn& c = conns_[i];
    char buf[16384];
    for (;;) {
      const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      if (n > 0) {
        c.in.append(buf, static_cast<size_t>(n));
        if (static_cast<size_t>(n) < sizeof buf) return true;
      } else if (n == 0) {
        return false;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return true;
      } else if (errno != EINTR) {
        return false;
      }
    }
  }

  // True once a non-blocking connect has finished successfully.
  bool connected(size_t i) {
    int err = 0;
    socklen_t len = sizeof err;
    return getsockopt(conns_[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  }

  static timespec to_timespec(uint64_t ns) {
    timespec ts;
    ts.tv_sec = static_cast<time_t>(ns / 1000000000u);
    ts.tv_nsec = static_cast<long>(ns % 1000000000u);
    return ts;
  }

  // epoll_wait with a nanosecond timeout (epoll_pwait2, Linux 5.11); falls back to whole
  // milliseconds rounded up where the kernel lacks it (the schedule then wakes a little late, and
  // that lateness is charged to the latency like any other).
  int wait(epoll_event* evs, int max, uint64_t timeout_ns) {
    if (!no_pwait2_) {
      const timespec ts = to_timespec(timeout_ns);
      const int n = epoll_pwait2(ep_, evs, max, &ts, nullptr);
      if (n >= 0 || errno != ENOSYS) return n < 0 && errno == EINTR ? 0 : n;
      no_pwait2_ = true;
    }
    const uint64_t ms = (timeout_ns + 999999) / 1000000;
    const int n = epoll_wait(ep_, evs, max, static_cast<int>(ms > 60000 ? 60000 : ms));
    return n < 0 && errno == EINTR ? 0 : n;
  }

 protected:
  const Options& o_;
  std::string request_;
  sockaddr_in addr_{};
  int ep_ = -1;
  bool no_pwait2_ = false;
  std::vector<Conn> conns_;
};

// Open loop: request k is due at start + k / rate. It goes out at once on an idle connection, or
// as soon as one is free. Its latency runs from the due time, not from the send, so the time it
// waited because the server was slow counts, as it would for a real client (no coordinated
// omission). Stops when every request is answered or `drain_s` after the last one was due.
class RateRun : public Client {
 public:
  using Client::Client;

  int run() {
    raise_nofile(static_cast<rlim_t>(o_.conns) + 64);
    connect_all();
    const double planned = o_.rate * o_.duration_s;
    total_ = std::max<uint64_t>(1, static_cast<uint64_t>(planned));
    if (o_.max_requests > 0 && o_.max_requests < total_) total_ = o_.max_requests;
    start_ = mono_ns() + 1000000;
    const uint64_t cpu0 = cpu_us();
    const uint64_t hard_end_ns = due(total_ - 1) + static_cast<uint64_t>(o_.drain_s * 1e9);
    epoll_event evs[256];
    uint64_t due_count = 0;
    for (;;) {
      const uint64_t now = mono_ns();
      // Requests that were already due at the last pass and are still unsent had no free
      // connection then: the server held them up. The others are late only by our own wake-up.
      const uint64_t waited_below = due_count;
      while (due_count < total_ && due(due_count) <= now) ++due_count;
      while (sent_ < due_count && !idle_.empty()) {
        const size_t i = idle_.back();
        idle_.pop_back();
        conns_[i].queued = false;
        if (conns_[i].state != State::kIdle) continue;  // closed while it waited here
        const uint64_t sched = due(sent_);
        if (sent_ < waited_below) {
          ++waited_;
        } else {
          gen_lag_.record(now - sched);
        }
        ++sent_;
        start_request(i, sched);
      }
      if (completed_ + failed_ >= total_ || now >= hard_end_ns || live_ == 0) break;
      uint64_t wake = hard_end_ns;
      if (sent_ == due_count && due_count < total_) wake = std::min(wake, due(due_count));
      const int n = wait(evs, 256, wake > now ? wake - now : 0);
      if (n < 0) die("epoll_wait");
      for (int e = 0; e < n; ++e) handle(static_cast<size_t>(evs[e].data.u64), evs[e].events);
    }
    const uint64_t end = mono_ns();
    // Whatever is still unanswered is charged at least the time it has waited so far.
    uint64_t incomplete = 0;
    for (Conn& c : conns_) {
      if (c.state == State::kBusy || c.state == State::kSending) {
        latency_.record(end - c.sched_ns);
        ++incomplete;
      }
    }
    for (uint64_t k = sent_; k < total_; ++k) {
      if (due(k) <= end) latency_.record(end - due(k));
      ++incomplete;
    }
    const uint64_t span_ns = (last_done_ns_ > start_ ? last_done_ns_ : end) - start_;
    const double achieved = static_cast<double>(completed_) * 1e9 / static_cast<double>(span_ns);
    auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    std::printf(
        "LOADGEN target_rate=%.0f conns=%d scheduled=%llu completed=%llu ok=%llu status_err=%llu "
        "failed=%llu incomplete=%llu reconnects=%llu achieved_rps=%.0f duration_us=%.0f "
        "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f p9999_us=%.1f max_us=%.1f "
        "gen_lag_p99_us=%.1f gen_lag_max_us=%.1f waited_for_conn=%llu cpu_us=%llu\n",
        o_.rate, o_.conns, static_cast<unsigned long long>(total_),
        static_cast<unsigned long long>(completed_), static_cast<unsigned long long>(ok_),
        static_cast<unsigned long long>(status_err_), static_cast<unsigned long long>(failed_),
        static_cast<unsigned long long>(incomplete), static_cast<unsigned long long>(reconnects_),
        achieved, us(span_ns), us(latency_.quantile(0.5)), us(latency_.quantile(0.9)),
        us(latency_.quantile(0.99)), us(latency_.quantile(0.999)), us(latency_.quantile(0.9999)),
        us(latency_.max()), us(gen_lag_.quantile(0.99)), us(gen_lag_.max()),
        static_cast<unsigned long long>(waited_), static_cast<unsigned long long>(cpu_us() - cpu0));
    std::fprintf(stderr,
                 "loadgen: %.0f req/s offered on %d connections, %llu of %llu answered (%llu "
                 "non-2xx, %llu failed, %llu unanswered); latency from the scheduled send: p50 "
                 "%.0fus p99 %.0fus p99.9 %.0fus max %.0fus\n",
                 o_.rate, o_.conns, static_cast<unsigned long long>(completed_),
                 static_cast<unsigned long long>(total_),
                 static_cast<unsigned long long>(status_err_),
                 static_cast<unsigned long long>(failed_),
                 static_cast<unsigned long long>(incomplete), us(latency_.quantile(0.5)),
                 us(latency_.quantile(0.99)), us(latency_.quantile(0.999)), us(latency_.max()));
    return 0;
  }

 private:
  uint64_t due(uint64_t k) const {
    return start_ + static_cast<uint64_t>(static_cast<long double>(k) * 1e9L / o_.rate);
  }

  void connect_all() {
    const uint64_t deadline = mono_ns() + 10000000000u;
    size_t pending = conns_.size();
    for (size_t i = 0; i < conns_.size(); ++i)
      if (!connect_one(i)) die("connect");
    epoll_event evs[256];
    while (pending > 0) {
      const uint64_t now = mono_ns();
      if (now >= deadline) {
        std::fprintf(stderr, "loadgen: %zu connections not established in 10 s\n", pending);
        std::exit(2);
      }
      const int n = wait(evs, 256, deadline - now);
      if (n < 0) die("epoll_wait");
      for (int e = 0; e < n; ++e) {
        const size_t i = static_cast<size_t>(evs[e].data.u64);
        if (conns_[i].state != State::kConnecting) continue;
        if (!connected(i)) {
          errno = ECONNREFUSED;
          die("connect");
        }
        became_idle(i);
        --pending;
      }
    }
    live_ = conns_.size();
  }

  void became_idle(size_t i) {
    Conn& c = conns_[i];
    if (c.state == State::kConnecting) watch(i, EPOLLIN | EPOLLRDHUP);
    c.state = State::kIdle;
    if (!c.queued) {
      c.queued = true;
      idle_.push_back(i);
    }
  }

  void start_request(size_t i, uint64_t sched_ns) {
    Conn& c = conns_[i];
    c.sched_ns = sched_ns;
    c.out_off = 0;
    c.state = State::kBusy;  // write_request moves it to kSending if the socket is full
    if (!write_request(i)) {
      ++failed_;
      reconnect(i);
    }
  }

  void reconnect(size_t i) {
    drop(i);
    ++reconnects_;
    if (!connect_one(i)) --live_;
  }

  void handle(size_t i, uint32_t events) {
    Conn& c = conns_[i];
    if (c.state == State::kClosed) return;
    if (c.state == State::kConnecting) {
      if (connected(i)) {
        became_idle(i);
      } else {
        drop(i);
        --live_;
      }
      return;
    }
    if (c.state == State::kSending && (events & EPOLLOUT) && !write_request(i)) {
      ++failed_;
      reconnect(i);
      return;
    }
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
    const bool open = read_some(i);
    while (!c.in.empty()) {
      const loadgen::Framed f = loadgen::frame_response(c.in);
      if (f.status == loadgen::Framed::kNeedMore) break;
      if (f.status != loadgen::Framed::kDone || c.state != State::kBusy) {
        if (c.state == State::kBusy || c.state == State::kSending) ++failed_;
        reconnect(i);
        return;
      }
      const uint64_t now = mono_ns();
      latency_.record(now - c.sched_ns);
      last_done_ns_ = now;
      ++completed_;
      if (f.code >= 200 && f.code < 300)
        ++ok_;
      else
        ++status_err_;
      c.in.erase(0, f.length);
      if (f.close) {
        reconnect(i);
        return;
      }
      became_idle(i);
    }
    if (!open) {
      if (c.state == State::kBusy || c.state == State::kSending) ++failed_;
      reconnect(i);
    }
  }

  std::vector<size_t> idle_;  // connections free for the next request (stale entries skipped)
  loadgen::Histogram latency_;
  // Send time - due time of the requests that found a free connection: how late this process
  // itself was (a busy CPU, wake-up latency). Large values mean the load generator, not the
  // server, limited the run.
  loadgen::Histogram gen_lag_;
  uint64_t waited_ = 0;  // requests that found every connection busy at their due time
  uint64_t start_ = 0, total_ = 0, sent_ = 0, completed_ = 0, ok_ = 0, status_err_ = 0;
  uint64_t failed_ = 0, reconnects_ = 0, last_done_ns_ = 0;
  size_t live_ = 0;  // connections open or reconnecting
};

// Idle holder: opens N connections (at most `batch` being set up at once, so the proxy's accept
// queue never overflows), sends one request on each and reads its answer, prints READY, then
// holds them open and silent until SIGTERM/SIGINT or `hold_s`.
class IdleRun : public Client {
 public:
  using Client::Client;

  int run() {
    raise_nofile(static_cast<rlim_t>(o_.conns) + 64);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, nullptr) != 0) die("sigprocmask");
    const int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) die("signalfd");
    epoll_event sev{};
    sev.events = EPOLLIN;
    sev.data.u64 = kSignal;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, sfd, &sev) != 0) die("epoll_ctl add");

    const uint64_t t0 = mono_ns();
    const uint64_t setup_end = t0 + static_cast<uint64_t>(o_.setup_s * 1e9);
    size_t next = 0, in_progress = 0;
    std::vector<epoll_event> evs(512);
    bool stop = false;
    while (!stop && ready_ + failed_ < conns_.size() && mono_ns() < setup_end) {
      while (in_progress < static_cast<size_t>(o_.batch) && next < conns_.size()) {
        if (connect_one(next))
          ++in_progress;
        else
          ++failed_;
        ++next;
      }
      const int n = wait(evs.data(), 512, 100000000);
      if (n < 0) die("epoll_wait");
      for (int e = 0; e < n; ++e) {
        if (evs[e].data.u64 == kSignal) {
          stop = true;
          continue;
        }
        const size_t i = static_cast<size_t>(evs[e].data.u64);
        const State before = conns_[i].state;
        setup_event(i, evs[e].events);
        const State after = conns_[i].state;
        if (before != State::kIdle && before != State::kClosed &&
            (after == State::kIdle || after == State::kClosed))
          --in_progress;
      }
    }
    const uint64_t setup_ms = (mono_ns() - t0) / 1000000;
    const size_t unfinished = conns_.size() - ready_ - failed_;
    std::printf("READY conns=%zu failed=%zu unfinished=%zu setup_ms=%llu\n", ready_, failed_,
                unfinished, static_cast<unsigned long long>(setup_ms));
    std::fflush(stdout);

    const uint64_t hold_end = mono_ns() + static_cast<uint64_t>(o_.hold_s * 1e9);
    size_t closed_by_server = 0;
    while (!stop) {
      const uint64_t now = mono_ns();
      if (now >= hold_end) break;
      const int n = wait(evs.data(), 512, hold_end - now);
      if (n < 0) die("epoll_wait");
      for (int e = 0; e < n; ++e) {
        if (evs[e].data.u64 == kSignal) {
          stop = true;
          continue;
        }
        const size_t i = static_cast<size_t>(evs[e].data.u64);
        if (conns_[i].state == State::kClosed) continue;
        if (!read_some(i)) {
          if (conns_[i].state == State::kIdle) ++closed_by_server;
          drop(i);
        }
        conns_[i].in.clear();
      }
    }
    size_t held = 0;
    for (const Conn& c : conns_) held += c.state == State::kIdle ? 1 : 0;
    std::printf("IDLE held=%zu closed_by_server=%zu hold_ended_by=%s\n", held, closed_by_server,
                stop ? "signal" : "timeout");
    std::fflush(stdout);
    close(sfd);
    return 0;
  }

 private:
  static constexpr uint64_t kSignal = ~uint64_t{0};

  void setup_event(size_t i, uint32_t events) {
    Conn& c = conns_[i];
    switch (c.state) {
      case State::kConnecting:
        if (!connected(i)) return fail(i);
        watch(i, EPOLLIN | EPOLLRDHUP);
        c.state = State::kBusy;
        if (!write_request(i)) return fail(i);
        return;
      case State::kSending:
        if ((events & EPOLLOUT) && !write_request(i)) return fail(i);
        return;
      case State::kBusy: {
        if (!read_some(i)) return fail(i);
        const loadgen::Framed f = loadgen::frame_response(c.in);
        if (f.status == loadgen::Framed::kNeedMore) return;
        if (f.status != loadgen::Framed::kDone || f.code < 200 || f.code >= 300 || f.close ||
            f.length != c.in.size())
          return fail(i);
        c.in.clear();
        c.in.shrink_to_fit();
        c.state = State::kIdle;
        ++ready_;
        return;
      }
      case State::kIdle:
        if (!read_some(i)) {
          drop(i);
          --ready_;
          ++failed_;
        }
        c.in.clear();
        return;
      case State::kClosed:
        return;
    }
  }

  void fail(size_t i) {
    drop(i);
    ++failed_;
  }

  size_t ready_ = 0, failed_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  if (o.mode == "rate") return RateRun(o).run();
  return IdleRun(o).run();
}
