// What every connection on one loop shares: the loop, one read buffer, write-request recycling.
// Owned by the loop's owner (a Worker, or the process for the control loop); lives as long as
// the loop.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>

#include "net/outbox.h"

namespace sluice::net {

inline constexpr size_t kReadBufferBytes = 64 * 1024;
// Back-pressure: stop reading one side while the other side's queued writes exceed this.
inline constexpr size_t kHighWaterBytes = 256 * 1024;

struct LoopContext {
  uv_loop_t* loop = nullptr;
  WriteOpPool writes;
  // All reads of this worker land here; a read callback consumes or copies its bytes before it
  // returns, so one buffer serves every connection.
  std::array<char, kReadBufferBytes> read_buffer{};

  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf);
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
