// Shared helpers for the etcd client tests: a libuv loop driven until a condition holds, a
// client on it, and a blocking wrapper around one request.
#pragma once

#include <doctest/doctest.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "control/etcd_client.h"
#include "etcd_cluster.h"
#include "net/loop_context.h"

namespace sluice::e2e {

using control::EtcdClient;
using control::EtcdError;
using control::EtcdOptions;
using control::EtcdResult;
namespace etcd = control::etcd;

// Every etcd test starts a cluster and requires that it came up.
#define REQUIRE_CLUSTER(c) REQUIRE_MESSAGE((c).started(), (c).error())

// A loop for one test. The destructor closes its clients' handles (the test destroys the
// clients first) and checks that nothing leaked.
class TestLoop {
 public:
  TestLoop() {
    uv_loop_init(&loop_);
    ctx_.loop = &loop_;
    loop_.data = &ctx_;  // as on the control loop: the client's streams read into its buffer
    uv_timer_init(&loop_, &wake_);
  }
  ~TestLoop() {
    uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop_) == 0);
  }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  uv_loop_t* get() { return &loop_; }

  // Runs the loop until `done` holds (checked after every loop turn, at least every 5 ms) or
  // `timeout_ms` passes. True if it holds.
  bool run_until(const std::function<bool()>& done, int timeout_ms) {
    auto start = std::chrono::steady_clock::now();
    uv_timer_start(
        &wake_, [](uv_timer_t*) {}, 5, 5);
    bool ok = done();
    while (!ok && ms_since(start) < timeout_ms) {
      uv_run(&loop_, UV_RUN_ONCE);
      ok = done();
    }
    uv_timer_stop(&wake_);
    return ok;
  }
  // Runs the loop for `ms` milliseconds.
  void run_for(int ms) {
    run_until([] { return false; }, ms);
  }

  static long ms_since(std::chrono::steady_clock::time_point start) {
    return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - start)
                                 .count());
  }

 private:
  uv_loop_t loop_;
  net::LoopContext ctx_;
  uv_timer_t wake_;
};

inline std::unique_ptr<EtcdClient> make_client(TestLoop& loop, std::vector<std::string> endpoints,
                                               EtcdOptions options = {}) {
  options.endpoints = std::move(endpoints);
  auto client = std::make_unique<EtcdClient>(loop.get(), std::move(options));
  std::string error;
  REQUIRE_MESSAGE(client->start(&error), error);
  return client;
}

// Starts a request with `start(callback)` and runs the loop until it completes.
template <typename T, typename Start>
EtcdResult<T> await(TestLoop& loop, Start start, int timeout_ms = 15000) {
  auto out = std::make_shared<std::optional<EtcdResult<T>>>();
  start([out](EtcdResult<T> r) { *out = std::move(r); });
  REQUIRE_MESSAGE(loop.run_until([&] { return out->has_value(); }, timeout_ms),
                  "no completion within " << timeout_ms << " ms");
  return std::move(**out);
}

inline double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(p / 100.0 * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

inline double now_ms() {
  return static_cast<double>(uv_hrtime()) / 1e6;
}

}  // namespace sluice::e2e
