// IP address ranges (CIDR notation) for [listen] trusted_proxies: parsed once at config load and
// matched against a client's address once per connection. Pure: no uv.h, no allocation to match.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::http {

struct Cidr {
  std::array<uint8_t, 16> network{};  // IPv4 in the first 4 bytes; host bits are zero
  uint8_t prefix = 0;                 // leading bits that must match
  bool v6 = false;
  bool operator==(const Cidr&) const = default;
};

// Parses "10.0.0.0/8", "::1/128" or a single address ("10.1.2.3" is 10.1.2.3/32). On failure
// returns nullopt with *why saying what is wrong (e.g. "the prefix /33 is longer than 32 bits").
// Host bits set below the prefix ("10.1.2.3/8") are refused as a likely typo.
std::optional<Cidr> parse_cidr(std::string_view text, std::string* why);

// The range as text, "10.0.0.0/8".
std::string to_string(const Cidr& c);

// True if the address (4 bytes if !v6, else 16) lies in `range`.
bool contains(const Cidr& range, const uint8_t* address, bool v6);

// True if `peer` (AF_INET or AF_INET6; an IPv4-mapped IPv6 address counts as its IPv4 address)
// lies in one of `ranges`. False for any other family or an empty list.
bool contains(const std::vector<Cidr>& ranges, const sockaddr* peer);

}  // namespace sluice::http
