// `sluice demo`: built-in demo upstreams (function `hello`, versions 1-3) on loopback, plus the
// proxy on the embedded config/demo.toml, so a canary and a rollback can be tried with curl.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sluice::app {

// One demo upstream: answers "hello from vN" on 127.0.0.1:port. `fail_percent` of requests get
// a 500, and `max_delay_ms` adds a random 0..max latency (version 3 misbehaves on purpose).
struct UpstreamSpec {
  std::string name;
  uint16_t port;
  uint32_t fail_percent = 0;
  uint32_t max_delay_ms = 0;
};

// Runs demo upstreams on a thread of their own until stop() (or destruction).
class Upstreams {
 public:
  Upstreams();
  ~Upstreams();
  Upstreams(const Upstreams&) = delete;
  Upstreams& operator=(const Upstreams&) = delete;

  // Binds every spec (fails, with a message, if a port is taken) and starts the thread.
  bool start(const std::vector<UpstreamSpec>& specs, std::string* error);
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `sluice demo` (its arguments are read by cli/commands.cpp): the whole demo. Returns the exit
// code.
int run_demo();

}  // namespace sluice::app
