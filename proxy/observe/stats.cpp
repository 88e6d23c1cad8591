// Per-worker series counters, sliding window slots, and the cross-worker merge.
#include "observe/stats.h"

#include <algorithm>

namespace sluice::observe {
namespace {

uint64_t load(const std::atomic<uint64_t>& cell) {
  return cell.load(std::memory_order_relaxed);
}
void store(std::atomic<uint64_t>& cell, uint64_t v) {
  cell.store(v, std::memory_order_relaxed);
}
// Single writer: a load and a store instead of fetch_add keeps the hot path free of lock prefixes.
void bump(std::atomic<uint64_t>& cell, uint64_t n = 1) {
  store(cell, load(cell) + n);
}

std::string make_index_key(std::string_view f, std::string_view a, std::string_view v) {
  std::string key;
  key.reserve(f.size() + a.size() + v.size() + 2);
  key.append(f).push_back('\0');
  key.append(a).push_back('\0');
  key.append(v);
  return key;
}

constexpr uint64_t kMinRateSpanMs = 1000;

}  // namespace

std::string_view failure_kind_name(FailureKind kind) {
  switch (kind) {
    case FailureKind::kConnectFailed:
      return "connect_failed";
    case FailureKind::kTimeout:
      return "timeout";
    case FailureKind::kReset:
      return "reset";
    case FailureKind::kBadResponse:
      return "bad_response";
    case FailureKind::kTls:
      return "tls_failed";
    case FailureKind::kGrpcError:
      return "grpc_error";
    case FailureKind::kNone:
      break;
  }
  return "none";
}

std::string_view status_class_name(size_t class_index) {
  static constexpr std::string_view kNames[kStatusClassCount] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  return class_index < kStatusClassCount ? kNames[class_index] : "5xx";
}

size_t status_class_index(int status) {
  if (status < 100 || status > 599) return 4;
  return static_cast<size_t>(status / 100 - 1);
}

uint64_t Counts::requests() const {
  uint64_t n = 0;
  for (uint64_t c : requests_by_class) n += c;
  return n;
}

void Counts::add(const Counts& other) {
  for (size_t i = 0; i < kStatusClassCount; ++i) requests_by_class[i] += other.requests_by_class[i];
  for (size_t i = 0; i < kFailureKindCount; ++i) failures_by_kind[i] += other.failures_by_kind[i];
  throttles += other.throttles;
  retries += other.retries;
  errors += other.errors;
}

double SeriesSnapshot::window_requests_per_second() const {
  if (window_ms == 0) return 0;
  return static_cast<double>(window.requests()) * 1000.0 / static_cast<double>(window_ms);
}

double SeriesSnapshot::window_error_rate() const {
  uint64_t n = window.requests();
  return n == 0 ? 0 : static_cast<double>(window.errors) / static_cast<double>(n);
}

double SeriesSnapshot::error_rate() const {
  uint64_t n = total.requests();
  return n == 0 ? 0 : static_cast<double>(total.errors) / static_cast<double>(n);
}

const SeriesSnapshot* Snapshot::find(std::string_view function, std::string_view alias,
                                     std::string_view version) const {
  for (const auto& s : series)
    if (s.key.function == function && s.key.alias == alias && s.key.version == version) return &s;
  return nullptr;
}

void Series::LiveCounts::reset() {
  for (auto& c : requests_by_class) store(c, 0);
  for (auto& c : failures_by_kind) store(c, 0);
  store(throttles, 0);
  store(retries, 0);
  store(errors, 0);
}

Counts Series::LiveCounts::load() const {
  Counts out;
  for (size_t i = 0; i < kStatusClassCount; ++i)
    out.requests_by_class[i] = observe::load(requests_by_class[i]);
  for (size_t i = 0; i < kFailureKindCount; ++i)
    out.failures_by_kind[i] = observe::load(failures_by_kind[i]);
  out.throttles = observe::load(throttles);
  out.retries = observe::load(retries);
  out.errors = observe::load(errors);
  return out;
}

Series::Series(SeriesKey key, WindowSpec window)
    : key_(std::move(key)),
      window_spec_{std::max<uint64_t>(window.slot_ms, 1), std::max<size_t>(window.slots, 1)},
      slots_(std::make_unique<Slot[]>(window_spec_.slots)) {}

void Series::begin() {
  in_flight_.store(in_flight_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void Series::hand_over() {
  in_flight_.store(in_flight_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

Series::Slot& Series::slot_at(uint64_t now_ms) {
  if (current_ != nullptr && now_ms >= current_start_ms_ && now_ms < current_end_ms_)
    return *current_;
  uint64_t epoch = now_ms / window_spec_.slot_ms;
  Slot& slot = slots_[epoch % window_spec_.slots];
  if (load(slot.epoch) != epoch) {
    // Seqlock-style: readers that see kResetting, or a different epoch after reading, skip it.
    slot.epoch.store(kResetting, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    slot.counts.reset();
    slot.duration.reset();
    slot.epoch.store(epoch, std::memory_order_release);
  }
  current_ = &slot;
  current_start_ms_ = epoch * window_spec_.slot_ms;
  current_end_ms_ = current_start_ms_ + window_spec_.slot_ms;
  return slot;
}

void Series::note_first(uint64_t now_ms) {
  if (now_ms < load(first_ms_)) store(first_ms_, now_ms);
}

void Series::end(int status, uint64_t duration_us, uint64_t upstream_us, FailureKind failure,
                 uint32_t retries, uint64_t now_ms) {
  in_flight_.store(in_flight_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  note_first(now_ms);
  Slot& slot = slot_at(now_ms);
  size_t cls = status_class_index(status);
  bool error = cls == 4 || failure == FailureKind::kConnectFailed ||
               failure == FailureKind::kTimeout || failure == FailureKind::kGrpcError;
  for (LiveCounts* c : {&total_, &slot.counts}) {
    bump(c->requests_by_class[cls]);
    if (failure != FailureKind::kNone) bump(c->failures_by_kind[static_cast<size_t>(failure) - 1]);
    if (retries != 0) bump(c->retries, retries);
    if (error) bump(c->errors);
  }
  request_duration_.record(duration_us);
  slot.duration.record(duration_us);
  if (upstream_us != kNoUpstream) upstream_duration_.record(upstream_us);
}

void Series::attempt_failed(FailureKind failure, uint64_t now_ms) {
  if (failure == FailureKind::kNone) return;
  note_first(now_ms);
  Slot& slot = slot_at(now_ms);
  size_t kind = static_cast<size_t>(failure) - 1;
  bump(total_.failures_by_kind[kind]);
  bump(slot.counts.failures_by_kind[kind]);
}

void Series::throttled(uint64_t now_ms) {
  note_first(now_ms);
  Slot& slot = slot_at(now_ms);
  bump(total_.throttles);
  bump(slot.counts.throttles);
}

SeriesSnapshot Series::snapshot(uint64_t now_ms) const {
  SeriesSnapshot out;
  out.key = key_;
  out.total = total_.load();
  out.in_flight = in_flight_.load(std::memory_order_relaxed);
  out.request_duration = request_duration_;
  out.upstream_duration = upstream_duration_;

  const uint64_t epoch_now = now_ms / window_spec_.slot_ms;
  const uint64_t oldest =
      epoch_now + 1 >= window_spec_.slots ? epoch_now + 1 - window_spec_.slots : 0;
  for (size_t i = 0; i < window_spec_.slots; ++i) {
    const Slot& slot = slots_[i];
    uint64_t before = slot.epoch.load(std::memory_order_acquire);
    // A worker's clock may run a little ahead of the reader's (each loop caches its own time):
    // its slot one epoch ahead is taken too. It reuses the oldest slot's storage, so the window
    // never counts more than `slots` slots.
    if (before == kEmpty || before == kResetting || before < oldest || before > epoch_now + 1)
      continue;
    Counts counts = slot.counts.load();
    Histogram duration;
    duration.merge(slot.duration);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (slot.epoch.load(std::memory_order_relaxed) != before) continue;  // rotated while reading
    out.window.add(counts);
    out.window_duration.merge(duration);
  }

  uint64_t first = load(first_ms_);
  if (first != UINT64_MAX) {
    uint64_t full_ms =
        (window_spec_.slots - 1) * window_spec_.slot_ms + now_ms % window_spec_.slot_ms;
    uint64_t active_ms = now_ms > first ? now_ms - first : 0;
    out.window_ms = std::max(kMinRateSpanMs, std::min(full_ms, active_ms));
  }
  return out;
}

WorkerStats::WorkerStats(WindowSpec window) : window_(window) {}

Series* WorkerStats::series(std::string_view function, std::string_view alias,
                            std::string_view version) {
  std::string index_key = make_index_key(function, alias, version);
  std::lock_guard lock(mu_);
  auto it = series_.find(index_key);
  if (it != series_.end()) return it->second.get();
  auto created = std::make_unique<Series>(
      SeriesKey{std::string(function), std::string(alias), std::string(version)}, window_);
  Series* raw = created.get();
  series_.emplace(std::move(index_key), std::move(created));
  return raw;
}

std::vector<const Series*> WorkerStats::list() const {
  std::lock_guard lock(mu_);
  std::vector<const Series*> out;
  out.reserve(series_.size());
  for (const auto& [key, s] : series_) out.push_back(s.get());
  return out;
}

Registry::Registry(size_t workers, WindowSpec window) : window_(window) {
  workers_.reserve(workers);
  for (size_t i = 0; i < workers; ++i) workers_.push_back(std::make_unique<WorkerStats>(window));
}

Snapshot Registry::merged(uint64_t now_ms) const {
  Snapshot out;
  out.now_ms = now_ms;
  std::map<SeriesKey, SeriesSnapshot> by_key;
  for (const auto& worker : workers_) {
    for (const Series* s : worker->list()) {
      SeriesSnapshot one = s->snapshot(now_ms);
      auto [it, inserted] = by_key.try_emplace(one.key);
      SeriesSnapshot& sum = it->second;
      if (inserted) {
        sum = std::move(one);
        continue;
      }
      sum.total.add(one.total);
      sum.in_flight += one.in_flight;
      sum.request_duration.merge(one.request_duration);
      sum.upstream_duration.merge(one.upstream_duration);
      sum.window.add(one.window);
      sum.window_duration.merge(one.window_duration);
      sum.window_ms = std::max(sum.window_ms, one.window_ms);
    }
  }
  out.series.reserve(by_key.size());
  for (auto& [key, s] : by_key) out.series.push_back(std::move(s));
  return out;
}

}  // namespace sluice::observe
