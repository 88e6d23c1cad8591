// Endpoint host-name resolution for the control plane, off its loop: getaddrinfo runs on libuv's
// threadpool and the answers come back on the loop. An interface, so tests can fake DNS.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "routing/table.h"

namespace sluice::admin {

class Resolver {
 public:
  // Every host asked for, resolved or with its error.
  using Done = std::function<void(routing::HostAddresses)>;
  virtual ~Resolver() = default;

  // Starts resolving `hosts`; `done` runs later on the loop's thread, never from inside this
  // call, unless close() came first (then it never runs).
  virtual void resolve(const std::vector<std::string>& hosts, Done done) = 0;
  // Resolves `hosts` and blocks until every answer is in: only before the loop runs (start-up).
  virtual routing::HostAddresses resolve_now(const std::vector<std::string>& hosts);
  // Drops every callback still to come. Safe to call twice.
  virtual void close() {}
};

// The real resolver: one uv_getaddrinfo request per host on `loop` (the threadpool does the
// blocking call). Requests still running at close() complete on the loop and free themselves.
class UvResolver final : public Resolver {
 public:
  explicit UvResolver(uv_loop_t* loop);
  ~UvResolver() override;
  void resolve(const std::vector<std::string>& hosts, Done done) override;
  void close() override;

 private:
  struct Batch;
  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res);

  uv_loop_t* loop_;
  // Shared with in-flight requests: false once closed, so late answers are dropped.
  std::shared_ptr<bool> open_ = std::make_shared<bool>(true);
};

}  // namespace sluice::admin
