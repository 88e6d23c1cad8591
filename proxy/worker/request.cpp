// Per-request state helpers (see request.h).
#include "worker/request.h"

namespace sluice::worker {
namespace {

bool idempotent(uint8_t method) {
  switch (method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_PUT:
    case HTTP_DELETE:
    case HTTP_TRACE:
      return true;
    default:
      return false;
  }
}

}  // namespace

bool may_replay(const RequestContext& ctx, uint8_t method, upstream::Failure kind,
                bool nothing_sent) {
  if (nothing_sent) return true;
  return !ctx.has_body && !ctx.body_sent && idempotent(method) && kind == upstream::Failure::kReset;
}

bool retry_budget_left(const RequestContext& ctx, const routing::Version& version,
                       uint64_t now_ns) {
  return ctx.attempts <= version.retries &&
         now_ns - ctx.start_ns < uint64_t(version.retry_timeout_ms) * 1'000'000;
}

observe::AccessRecord access_record(const RequestContext& ctx, const http::Parser& req,
                                    std::string_view client_ip, int status, uint64_t now_ns,
                                    uint64_t upstream_us) {
  observe::AccessRecord r;
  r.unix_ms = observe::AccessLog::wall_clock_ms();
  r.client = client_ip;
  r.method = req.method_name();
  r.path = req.url();
  r.status = status;
  r.bytes = ctx.bytes_out;
  r.duration_us = (now_ns - ctx.start_ns) / 1000;
  r.upstream_us = upstream_us;
  if (ctx.function) r.function = ctx.function->name;
  if (ctx.alias) r.alias = ctx.alias->name;
  if (ctx.version) r.version = ctx.version->number;
  if (ctx.endpoint) r.endpoint = ctx.endpoint->address;
  r.request_id = ctx.request_id_len ? ctx.generated_id() : req.header("x-request-id");
  r.retried = ctx.retried;
  return r;
}

}  // namespace sluice::worker
