// Micro-benchmark: ns per version pick for random, exact and sticky (including the key hash)
// selection on a 90/10 and a 70/20/10 alias. Plain timing (thread CPU time, so a busy machine
// does not inflate the figures; wall time is printed too); runs well under 5 s.
#include <time.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "routing/selection.h"

namespace {

using sluice::routing::Cumulative;
using sluice::routing::Rng;
using sluice::routing::scale_weights;
using sluice::routing::SmoothWrr;
using sluice::routing::sticky_point;
using sluice::routing::StickyLayout;

constexpr int kPicks = 20'000'000;

// Keeps the compiler from discarding the picks.
volatile size_t g_sink;

double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

struct Timing {
  double cpu_ns;
  double wall_ns;
};

template <typename Pick>
Timing ns_per_pick(int picks, Pick pick) {
  size_t sum = 0;
  for (int i = 0; i < picks / 10; ++i) sum += pick(i);  // warm-up
  const auto wall_start = std::chrono::steady_clock::now();
  const double cpu_start = thread_cpu_ns();
  for (int i = 0; i < picks; ++i) sum += pick(i);
  const double cpu_end = thread_cpu_ns();
  const auto wall_end = std::chrono::steady_clock::now();
  g_sink = sum;
  return {(cpu_end - cpu_start) / picks,
          std::chrono::duration<double, std::nano>(wall_end - wall_start).count() / picks};
}

void run(const char* name, const std::vector<double>& weights) {
  std::vector<size_t> newest_first;
  for (size_t i = weights.size(); i-- > 0;) newest_first.push_back(i);

  Rng rng(12345);
  const Cumulative cumulative(weights);
  const Timing random_ns = ns_per_pick(kPicks, [&](int) { return cumulative.pick(rng.next()); });

  SmoothWrr wrr(scale_weights(weights));
  const Timing exact_ns = ns_per_pick(kPicks, [&](int) { return wrr.next(); });

  const StickyLayout layout(weights, newest_first);
  // 4096 realistic user-id keys, hashed on every pick as the data plane would.
  std::vector<std::string> keys;
  for (int i = 0; i < 4096; ++i) {
    std::string key = "user-";
    key.append(std::to_string(1000000 + i * 7919));
    keys.push_back(std::move(key));
  }
  const Timing sticky_ns = ns_per_pick(kPicks / 4, [&](int i) {
    return layout.pick(sticky_point(keys[static_cast<size_t>(i) & 4095]));
  });

  std::printf(
      "%-9s random %6.2f ns/pick   exact %6.2f ns/pick   sticky(+hash) %6.2f ns/pick"
      "   (wall: %.2f / %.2f / %.2f)\n",
      name, random_ns.cpu_ns, exact_ns.cpu_ns, sticky_ns.cpu_ns, random_ns.wall_ns,
      exact_ns.wall_ns, sticky_ns.wall_ns);
}

}  // namespace

int main() {
  std::printf("bench_selection: %d picks per mode (sticky: %d), ns of thread CPU time per pick\n",
              kPicks, kPicks / 4);
  run("90/10", {90, 10});
  run("70/20/10", {70, 20, 10});
  return 0;
}
