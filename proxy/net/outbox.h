// Write batching for one stream: bytes gathered during one read callback go out in one writev
// (uv_try_write); only what the kernel does not take is copied into an owned write request.
#pragma once

#include <uv.h>

#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::net {

// A write request that owns its bytes. Recycled through WriteOpPool.
struct WriteOp {
  uv_write_t req{};
  std::string bytes;
};

// Per-worker free list of write requests, so steady-state writes do not allocate.
class WriteOpPool {
 public:
  std::unique_ptr<WriteOp> get() {
    if (free_.empty()) return std::make_unique<WriteOp>();
    std::unique_ptr<WriteOp> op = std::move(free_.back());
    free_.pop_back();
    return op;
  }
  void put(std::unique_ptr<WriteOp> op) {
    if (free_.size() >= kMaxFree || op->bytes.capacity() > kMaxKeptBytes) return;
    op->bytes.clear();
    free_.push_back(std::move(op));
  }

 private:
  static constexpr size_t kMaxFree = 256;
  static constexpr size_t kMaxKeptBytes = 256 * 1024;
  std::vector<std::unique_ptr<WriteOp>> free_;
};

// Gathers pieces for one stream. A borrowed piece must stay valid until flush(); owned pieces
// are copied into scratch storage. Not thread-safe; one per stream direction.
class Outbox {
 public:
  Outbox() = default;

  void borrow(const char* data, size_t len) {
    if (len) pieces_.push_back({data, len, false});
  }
  void borrow(std::string_view s) { borrow(s.data(), s.size()); }
  void copy(std::string_view s) {
    if (s.empty()) return;
    pieces_.push_back({reinterpret_cast<const char*>(scratch_.size()), s.size(), true});
    scratch_.append(s);
  }
  bool empty() const { return pieces_.empty(); }
  size_t size() const {
    size_t n = 0;
    for (const Piece& p : pieces_) n += p.len;
    return n;
  }
  void clear() {
    pieces_.clear();
    scratch_.clear();
  }
  // When empty: frees the storage kept for the next batch (an idle connection's).
  void release_memory() {
    if (!pieces_.empty()) return;
    std::vector<Piece>().swap(pieces_);
    std::string().swap(scratch_);
  }

  // Views of the pieces gathered, in order (valid until the next change; for a TLS layer).
  void views(std::vector<std::string_view>& out) const {
    out.clear();
    for (const Piece& p : pieces_) out.emplace_back(ptr(p), p.len);
  }

  // Appends everything gathered to `out` and clears (used before a stream is connected).
  void drain_into(std::string& out) {
    for (const Piece& p : pieces_) out.append(ptr(p), p.len);
    clear();
  }

  // Sends everything gathered to `stream`: tries a direct writev, queues the rest as an owned
  // write whose completion calls `cb` (req->handle->data is the stream's owner). Returns a libuv
  // error code (< 0) if the stream is broken, else 0.
  int flush(uv_stream_t* stream, WriteOpPool& pool, uv_write_cb cb) {
    if (pieces_.empty()) return 0;
    constexpr size_t kMaxBufs = 64;
    uv_buf_t bufs[kMaxBufs];
    size_t total = 0, n = 0, start = 0, written = 0;
    int rc = 0;
    if (stream->write_queue_size == 0) {
      // Try the first kMaxBufs pieces directly.
      for (; n < pieces_.size() && n < kMaxBufs; ++n) {
        bufs[n] = uv_buf_init(const_cast<char*>(ptr(pieces_[n])), unsigned(pieces_[n].len));
        total += pieces_[n].len;
      }
      rc = uv_try_write(stream, bufs, unsigned(n));
      if (rc >= 0) {
        written = size_t(rc);
        if (written == total && n == pieces_.size()) {
          clear();
          return 0;
        }
      } else if (rc != UV_EAGAIN && rc != UV_ENOSYS) {
        clear();
        return rc;
      }
    }
    // Queue what is left, skipping `written` bytes.
    std::unique_ptr<WriteOp> op = pool.get();
    for (size_t i = start; i < pieces_.size(); ++i) {
      const Piece& p = pieces_[i];
      if (written >= p.len) {
        written -= p.len;
        continue;
      }
      op->bytes.append(ptr(p) + written, p.len - written);
      written = 0;
    }
    clear();
    uv_buf_t buf = uv_buf_init(op->bytes.data(), unsigned(op->bytes.size()));
    op->req.data = op.get();
    rc = uv_write(&op->req, stream, &buf, 1, cb);
    if (rc == 0) op.release();  // the callback adopts it through req.data
    return rc;
  }

 private:
  struct Piece {
    const char* data;  // borrowed pointer, or an offset into scratch_ when owned
    size_t len;
    bool owned;
  };
  const char* ptr(const Piece& p) const {
    return p.owned ? scratch_.data() + reinterpret_cast<size_t>(p.data) : p.data;
  }
  std::vector<Piece> pieces_;
  std::string scratch_;
};

}  // namespace sluice::net
