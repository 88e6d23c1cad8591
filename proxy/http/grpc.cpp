// gRPC header rules (see grpc.h).
#include "http/grpc.h"

namespace sluice::http {

bool is_grpc(std::string_view content_type) {
  constexpr std::string_view kGrpc = "application/grpc";
  if (content_type.size() < kGrpc.size()) return false;
  for (size_t i = 0; i < kGrpc.size(); ++i) {
    char c = content_type[i];
    if (c >= 'A' && c <= 'Z') c = char(c + 32);
    if (c != kGrpc[i]) return false;
  }
  return content_type.size() == kGrpc.size() || content_type[kGrpc.size()] == '+' ||
         content_type[kGrpc.size()] == ';';
}

std::optional<uint64_t> grpc_timeout_ms(std::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  uint64_t n = 0;
  for (char c : value.substr(0, value.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + uint64_t(c - '0');
  }
  switch (value.back()) {
    case 'H':
      return n * 3600000;
    case 'M':
      return n * 60000;
    case 'S':
      return n * 1000;
    case 'm':
      return n;
    case 'u':
      return n ? (n + 999) / 1000 : 0;
    case 'n':
      return n ? (n + 999999) / 1000000 : 0;
    default:
      return std::nullopt;
  }
}

int grpc_status(std::string_view value) {
  if (value.empty() || value.size() > 2) return -1;
  int n = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n <= 16 ? n : -1;
}

int grpc_status_for_http(int http_status) {
  switch (http_status) {
    case 404:
      return 5;
    case 405:
    case 501:
      return 12;
    case 408:
    case 504:
      return 4;
    case 413:
    case 429:
    case 431:
      return 8;
    case 502:
    case 503:
      return 14;
    default:
      return 13;
  }
}

}  // namespace sluice::http
