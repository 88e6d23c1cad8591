// What every connection on one loop shares: the loop, one read buffer, write-request recycling.
// Owned by the loop's owner (a Worker, or the process for the control loop); lives as long as
// the loop.
#pragma once

#include <uv.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "net/outbox.h"

namespace sluice::net {

inline constexpr size_t kReadBufferBytes = 64 * 1024;
// Back-pressure: stop reading one side while the other side's queued writes exceed this.
inline constexpr size_t kHighWaterBytes = 256 * 1024;

// Work to run once after the current loop iteration's I/O callbacks (LoopContext::defer): an
// HTTP/2 session writes the frames of every stream that produced output in this iteration in one
// write instead of one per stream.
class Deferred {
 public:
  virtual void run_deferred() = 0;

 protected:
  ~Deferred() = default;
};

struct LoopContext {
  uv_loop_t* loop = nullptr;
  WriteOpPool writes;
  // All reads of this worker land here; a read callback consumes or copies its bytes before it
  // returns, so one buffer serves every connection.
  std::array<char, kReadBufferBytes> read_buffer{};

  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf);

  // Deferred work (see Deferred). The loop's owner calls init_deferred() before running the loop
  // and close_deferred() when it stops; a Deferred that goes away first calls cancel().
  void init_deferred() {
    uv_check_init(loop, &deferred_check);
    deferred_check.data = this;
  }
  void close_deferred() {
    deferred.clear();
    if (deferred_check.loop && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&deferred_check)))
      uv_close(reinterpret_cast<uv_handle_t*>(&deferred_check), nullptr);
  }
  // Runs d->run_deferred() once, after this iteration's I/O (registering twice runs it once).
  // False on a loop without deferred work (init_deferred() not called): the caller runs it now.
  bool defer(Deferred* d) {
    if (!deferred_check.loop) return false;
    if (std::find(deferred.begin(), deferred.end(), d) != deferred.end()) return true;
    if (deferred.empty()) uv_check_start(&deferred_check, &on_check);
    deferred.push_back(d);
    return true;
  }
  void cancel(Deferred* d) {
    deferred.erase(std::remove(deferred.begin(), deferred.end(), d), deferred.end());
    for (Deferred*& r : running)
      if (r == d) r = nullptr;
  }

  uv_check_t deferred_check{};
  std::vector<Deferred*> deferred;
  std::vector<Deferred*> running;

 private:
  static void on_check(uv_check_t* c) {
    auto* self = static_cast<LoopContext*>(c->data);
    // What runs may defer more: run that too before the loop blocks again (bounded passes).
    for (int pass = 0; pass < 16 && !self->deferred.empty(); ++pass) {
      self->running.swap(self->deferred);
      for (size_t i = 0; i < self->running.size(); ++i) {
        Deferred* d = self->running[i];
        if (d) d->run_deferred();
      }
      self->running.clear();
    }
    if (self->deferred.empty()) uv_check_stop(c);
  }
};

// Recovers the LoopContext of a loop whose `data` is one (a worker's loop, the control loop): a
// loop that runs streams must have one, since their reads land in its buffer (on_alloc).
inline LoopContext& context_of(uv_loop_t* loop) {
  return *static_cast<LoopContext*>(loop->data);
}
// The same, from any handle of such a loop.
inline LoopContext& context_of(uv_handle_t* h) {
  return context_of(h->loop);
}

inline void LoopContext::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  LoopContext& ctx = context_of(h);
  *buf = uv_buf_init(ctx.read_buffer.data(), unsigned(ctx.read_buffer.size()));
}

template <typename T>
inline uv_handle_t* as_handle(T* h) {
  return reinterpret_cast<uv_handle_t*>(h);
}
template <typename T>
inline uv_stream_t* as_stream(T* h) {
  return reinterpret_cast<uv_stream_t*>(h);
}

}  // namespace sluice::net
