// Per-worker request statistics per (function, alias, version), merged across workers on read.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "observe/histogram.h"

namespace sluice::observe {

// Why an upstream attempt failed. kNone: it did not (or no upstream was involved).
// kGrpcError: the upstream answered with a gRPC status its function counts as an error
// (function grpc_error_codes); the HTTP status was 200.
enum class FailureKind : uint8_t {
  kNone,
  kConnectFailed,
  kTimeout,
  kReset,
  kBadResponse,
  kTls,
  kGrpcError
};
inline constexpr size_t kFailureKindCount = 6;  // not counting kNone
inline constexpr size_t kStatusClassCount = 5;  // 1xx .. 5xx

// Prometheus label values: "connect_failed", "timeout", "reset", "bad_response", "tls_failed",
// "grpc_error";
// "1xx".."5xx".
std::string_view failure_kind_name(FailureKind kind);
std::string_view status_class_name(size_t class_index);
// 0 for 1xx .. 4 for 5xx. Statuses outside 100..599 count as 5xx.
size_t status_class_index(int status);

// Pass as upstream_us when the request never reached an upstream (throttled, no route, ...).
inline constexpr uint64_t kNoUpstream = UINT64_MAX;

struct SeriesKey {
  std::string function;
  std::string alias;
  std::string version;
  auto operator<=>(const SeriesKey&) const = default;
};

// The sliding window: `slots` slots of `slot_ms` each; the window covers the current (partial)
// slot and the slots-1 before it.
struct WindowSpec {
  uint64_t slot_ms = 6000;
  size_t slots = 10;
};

// Plain counter values (a read of the live counters, or a sum of several).
struct Counts {
  std::array<uint64_t, kStatusClassCount> requests_by_class{};
  std::array<uint64_t, kFailureKindCount> failures_by_kind{};  // index = FailureKind - 1
  uint64_t throttles = 0;
  uint64_t retries = 0;
  // Requests answered 5xx or whose final upstream attempt failed to connect or timed out.
  uint64_t errors = 0;

  uint64_t requests() const;
  void add(const Counts& other);
};

// One series read at one instant (or the sum over workers): whole-run totals and the window.
struct SeriesSnapshot {
  SeriesKey key;
  Counts total;
  int64_t in_flight = 0;
  Histogram request_duration;   // whole run, µs
  Histogram upstream_duration;  // whole run, µs (requests that reached an upstream)
  Counts window;
  Histogram window_duration;  // request durations inside the window
  // Span the window figures cover, for rates: the window, or less if the series started
  // recording more recently (at least 1000 ms once it has recorded anything).
  uint64_t window_ms = 0;

  double window_requests_per_second() const;
  double window_error_rate() const;  // window.errors / window.requests(); 0 without requests
  double error_rate() const;         // same over the whole run
};

struct Snapshot {
  uint64_t now_ms = 0;
  std::vector<SeriesSnapshot> series;  // sorted by key, one per key

  const SeriesSnapshot* find(std::string_view function, std::string_view alias,
                             std::string_view version) const;
};

// Counters of one series in one worker. Every method except snapshot() must be called from the
// owning worker's thread only; snapshot() may be called from any thread at any time.
// Each update is a relaxed atomic load + store (a plain mov on x86): no locks, no locked
// instructions, no allocation.
class Series {
 public:
  Series(SeriesKey key, WindowSpec window);
  Series(const Series&) = delete;
  Series& operator=(const Series&) = delete;

  const SeriesKey& key() const { return key_; }

  // A request routed to this series started (in-flight + 1). Pair every begin() with one end(),
  // or with hand_over() when the request moves to another series (a failover to another version
  // after this one failed to connect): in-flight - 1, nothing counted.
  void begin();
  void hand_over();
  // The request finished (in-flight - 1), counted once whatever its retries.
  //   status:      the status sent to the client (use 499 if the client left before one was sent)
  //   duration_us: request start to last byte sent
  //   upstream_us: time spent on the upstream exchange, or kNoUpstream
  //   failure:     how the final upstream attempt failed, kNone if it did not
  //   retries:     extra upstream attempts this request made (0 if none)
  //   now_ms:      monotonic clock (e.g. uv_now); drives the window slot rotation
  void end(int status, uint64_t duration_us, uint64_t upstream_us, FailureKind failure,
           uint32_t retries, uint64_t now_ms);
  // An upstream attempt failed and was retried (the final attempt is reported by end()).
  // Counts in the failure counters, not in errors.
  void attempt_failed(FailureKind failure, uint64_t now_ms);
  // A request was refused by a concurrency limit. Counts only the throttle; the answer sent
  // still goes through begin()/end() if the data plane counts it as a request.
  void throttled(uint64_t now_ms);

  // Reads the counters as of now_ms (any thread).
  SeriesSnapshot snapshot(uint64_t now_ms) const;

 private:
  struct LiveCounts {
    std::array<std::atomic<uint64_t>, kStatusClassCount> requests_by_class{};
    std::array<std::atomic<uint64_t>, kFailureKindCount> failures_by_kind{};
    std::atomic<uint64_t> throttles{0};
    std::atomic<uint64_t> retries{0};
    std::atomic<uint64_t> errors{0};
    void reset();
    Counts load() const;
  };
  struct Slot {
    // Slot number (now_ms / slot_ms) the contents belong to; kResetting while being zeroed.
    std::atomic<uint64_t> epoch{kEmpty};
    LiveCounts counts;
    SlotHistogram duration;
  };
  static constexpr uint64_t kEmpty = UINT64_MAX;
  static constexpr uint64_t kResetting = UINT64_MAX - 1;

  Slot& slot_at(uint64_t now_ms);
  void note_first(uint64_t now_ms);

  const SeriesKey key_;
  const WindowSpec window_spec_;
  LiveCounts total_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<uint64_t> first_ms_{UINT64_MAX};  // first activity, bounds the window span
  Histogram request_duration_;
  Histogram upstream_duration_;
  std::unique_ptr<Slot[]> slots_;
  // Writer-only cache of the current slot, so most calls skip the division.
  Slot* current_ = nullptr;
  uint64_t current_start_ms_ = 0;
  uint64_t current_end_ms_ = 0;
};

// All series of one worker. series() is called by the worker (rarely: once per routing snapshot
// per route, then the pointer is cached); list() by any thread. The mutex guards only the set of
// series, never the counters.
class WorkerStats {
 public:
  explicit WorkerStats(WindowSpec window = {});
  WorkerStats(const WorkerStats&) = delete;
  WorkerStats& operator=(const WorkerStats&) = delete;

  // The series for this key, created on first use. The pointer stays valid for the life of this
  // WorkerStats (series are never removed). Allocates on first use only.
  Series* series(std::string_view function, std::string_view alias, std::string_view version);
  // Every series so far (any thread). The Series outlive the call.
  std::vector<const Series*> list() const;

 private:
  const WindowSpec window_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Series>, std::less<>> series_;  // key: f\0a\0v
};

// Every worker's stats; the control thread merges them.
class Registry {
 public:
  explicit Registry(size_t workers, WindowSpec window = {});
  size_t worker_count() const { return workers_.size(); }
  WorkerStats& worker(size_t index) { return *workers_.at(index); }
  const WindowSpec& window() const { return window_; }

  // Sum over workers per key (any thread). now_ms is the same monotonic clock the workers pass.
  Snapshot merged(uint64_t now_ms) const;

 private:
  const WindowSpec window_;
  std::vector<std::unique_ptr<WorkerStats>> workers_;
};

}  // namespace sluice::observe
