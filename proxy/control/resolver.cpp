// Endpoint host-name resolution off the control loop (see resolver.h).
#include "control/resolver.h"

#include <netdb.h>

#include <cstring>

namespace sluice::control {

routing::HostAddresses Resolver::resolve_now(const std::vector<std::string>& hosts) {
  routing::HostAddresses out;
  for (const std::string& h : hosts) out[h] = routing::resolve_blocking(h);
  return out;
}

// One resolve() call: its answers so far, and how many are still to come.
struct UvResolver::Batch {
  Done done;
  routing::HostAddresses results;
  size_t pending = 0;
  std::shared_ptr<bool> open;  // the resolver's: false once closed
  void finish_one() {
    if (--pending == 0 && *open) done(std::move(results));
  }
};

namespace {

struct Lookup {
  uv_getaddrinfo_t req{};
  std::shared_ptr<void> batch;  // keeps the Batch alive until every lookup has answered
  std::string host;
};

}  // namespace

UvResolver::UvResolver(uv_loop_t* loop) : loop_(loop) {}

UvResolver::~UvResolver() {
  close();
}

void UvResolver::close() {
  *open_ = false;
}

void UvResolver::resolve(const std::vector<std::string>& hosts, Done done) {
  auto batch = std::make_shared<Batch>();
  batch->done = std::move(done);
  batch->open = open_;
  batch->pending = hosts.size() + 1;  // +1: held until every request is started
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  for (const std::string& host : hosts) {
    auto lookup = std::make_unique<Lookup>();
    lookup->batch = batch;
    lookup->host = host;
    lookup->req.data = lookup.get();
    int rc = uv_getaddrinfo(loop_, &lookup->req, &UvResolver::on_resolved, host.c_str(), nullptr,
                            &hints);
    if (rc == 0) {
      lookup.release();  // on_resolved adopts it
    } else {
      batch->results[host].error = uv_strerror(rc);
      --batch->pending;
    }
  }
  if (batch->pending > 1) {
    --batch->pending;  // the answers will finish the batch
    return;
  }
  // Nothing was started: answer on the next loop turn, never from inside this call.
  auto* timer = new uv_timer_t{};
  uv_timer_init(loop_, timer);
  timer->data = new std::shared_ptr<Batch>(batch);
  uv_timer_start(
      timer,
      [](uv_timer_t* t) {
        auto* held = static_cast<std::shared_ptr<Batch>*>(t->data);
        (*held)->finish_one();
        delete held;
        uv_close(reinterpret_cast<uv_handle_t*>(t),
                 [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
      },
      0, 0);
}

void UvResolver::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  std::unique_ptr<Lookup> lookup(static_cast<Lookup*>(req->data));
  auto batch = std::static_pointer_cast<Batch>(lookup->batch);
  routing::ResolvedHost& out = batch->results[lookup->host];
  if (status != 0 || !res) {
    out.error = status != 0 ? uv_strerror(status) : "no addresses";
  } else {
    routing::take_preferred(res, out);  // IPv4 first, as routing::resolve_blocking
  }
  if (res) uv_freeaddrinfo(res);
  try {  // a libuv callback: the control plane's answer must not throw out of it
    batch->finish_one();
  } catch (...) {
  }
}

}  // namespace sluice::control
