// CIDR ranges: parsing with inet_pton and prefix matching (see cidr.h).
#include "http/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace sluice::http {
namespace {

constexpr uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

std::optional<Cidr> parse_cidr(std::string_view text, std::string* why) {
  const size_t slash = text.find('/');
  const std::string address(text.substr(0, slash));
  Cidr c;
  if (inet_pton(AF_INET, address.c_str(), c.network.data()) == 1) {
    c.v6 = false;
  } else if (inet_pton(AF_INET6, address.c_str(), c.network.data()) == 1) {
    c.v6 = true;
  } else {
    *why = "\"" + address + "\" is not an IPv4 or IPv6 address";
    return std::nullopt;
  }
  const unsigned max_bits = c.v6 ? 128 : 32;
  unsigned bits = max_bits;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), bits);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
      *why = "the prefix \"/" + std::string(digits) + "\" is not a number of bits";
      return std::nullopt;
    }
    if (bits > max_bits) {
      *why = "the prefix /" + std::to_string(bits) + " is longer than " + std::to_string(max_bits) +
             " bits";
      return std::nullopt;
    }
  }
  c.prefix = static_cast<uint8_t>(bits);
  Cidr network = c;
  for (unsigned i = 0; i < max_bits / 8; ++i) {
    const unsigned keep = bits > i * 8 ? bits - i * 8 : 0;
    if (keep < 8) network.network[i] &= static_cast<uint8_t>(0xff00 >> keep);
  }
  if (network != c) {
    *why = "host bits are set below the prefix (the network is " + to_string(network) + ")";
    return std::nullopt;
  }
  return c;
}

std::string to_string(const Cidr& c) {
  char buf[INET6_ADDRSTRLEN] = {0};
  inet_ntop(c.v6 ? AF_INET6 : AF_INET, c.network.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(c.prefix);
}

bool contains(const Cidr& range, const uint8_t* address, bool v6) {
  if (range.v6 != v6) return false;
  const unsigned whole = range.prefix / 8;
  if (std::memcmp(range.network.data(), address, whole) != 0) return false;
  const unsigned rest = range.prefix % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff00 >> rest);
  return (address[whole] & mask) == range.network[whole];
}

bool contains(const std::vector<Cidr>& ranges, const sockaddr* peer) {
  if (ranges.empty() || !peer) return false;
  const uint8_t* address = nullptr;
  bool v6 = false;
  if (peer->sa_family == AF_INET) {
    address = reinterpret_cast<const uint8_t*>(
        &reinterpret_cast<const sockaddr_in*>(peer)->sin_addr.s_addr);
  } else if (peer->sa_family == AF_INET6) {
    address = reinterpret_cast<const sockaddr_in6*>(peer)->sin6_addr.s6_addr;
    v6 = true;
    if (std::memcmp(address, kV4MappedPrefix, sizeof kV4MappedPrefix) == 0) {
      address += sizeof kV4MappedPrefix;  // a dual-stack listener's IPv4 client
      v6 = false;
    }
  } else {
    return false;
  }
  for (const Cidr& r : ranges)
    if (contains(r, address, v6)) return true;
  return false;
}

}  // namespace sluice::http
