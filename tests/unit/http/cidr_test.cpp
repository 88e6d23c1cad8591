// CIDR ranges for [listen] trusted_proxies: parsing, its errors, and matching peers of both
// families (an IPv4-mapped IPv6 peer matches IPv4 ranges).
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>
#include <vector>

#include "http/cidr.h"

namespace sluice::http {
namespace {

Cidr cidr(const std::string& text) {
  std::string why;
  auto c = parse_cidr(text, &why);
  CAPTURE(text);
  CAPTURE(why);
  REQUIRE(c.has_value());
  return *c;
}

std::string error_of(const std::string& text) {
  std::string why;
  CAPTURE(text);
  CHECK_FALSE(parse_cidr(text, &why).has_value());
  return why;
}

sockaddr_storage peer(const std::string& ip) {
  sockaddr_storage ss{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
  } else {
    REQUIRE(inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1);
    v6->sin6_family = AF_INET6;
  }
  return ss;
}

bool trusted(const std::vector<Cidr>& ranges, const std::string& ip) {
  sockaddr_storage ss = peer(ip);
  return contains(ranges, reinterpret_cast<const sockaddr*>(&ss));
}

}  // namespace

TEST_CASE("CIDR text parses to a network and prefix") {
  CHECK(to_string(cidr("10.0.0.0/8")) == "10.0.0.0/8");
  CHECK(to_string(cidr("192.168.1.7")) == "192.168.1.7/32");
  CHECK(to_string(cidr("::1/128")) == "::1/128");
  CHECK(to_string(cidr("fd00::/8")) == "fd00::/8");
  CHECK(to_string(cidr("::1")) == "::1/128");
  CHECK(to_string(cidr("0.0.0.0/0")) == "0.0.0.0/0");
  CHECK(cidr("10.0.0.0/8").v6 == false);
  CHECK(cidr("::/0").v6 == true);
}

TEST_CASE("bad CIDR text says what is wrong") {
  CHECK(error_of("10.0.0.0/33") == "the prefix /33 is longer than 32 bits");
  CHECK(error_of("::/129") == "the prefix /129 is longer than 128 bits");
  CHECK(error_of("10.0.0/8") == "\"10.0.0\" is not an IPv4 or IPv6 address");
  CHECK(error_of("example.com/8") == "\"example.com\" is not an IPv4 or IPv6 address");
  CHECK(error_of("") == "\"\" is not an IPv4 or IPv6 address");
  CHECK(error_of("10.0.0.0/") == "the prefix \"/\" is not a number of bits");
  CHECK(error_of("10.0.0.0/+8") == "the prefix \"/+8\" is not a number of bits");
  CHECK(error_of("10.0.0.0/8x") == "the prefix \"/8x\" is not a number of bits");
  CHECK(error_of("10.1.2.3/8") == "host bits are set below the prefix (the network is 10.0.0.0/8)");
  CHECK(error_of("fd00::1/64") == "host bits are set below the prefix (the network is fd00::/64)");
}

TEST_CASE("peers match ranges of their own family, bit by bit") {
  const std::vector<Cidr> ranges = {cidr("10.0.0.0/8"), cidr("192.168.128.0/17"),
                                    cidr("2001:db8::/33"), cidr("::1/128")};
  CHECK(trusted(ranges, "10.0.0.1"));
  CHECK(trusted(ranges, "10.255.255.255"));
  CHECK_FALSE(trusted(ranges, "11.0.0.0"));
  CHECK_FALSE(trusted(ranges, "9.255.255.255"));
  CHECK(trusted(ranges, "192.168.128.0"));
  CHECK(trusted(ranges, "192.168.255.255"));
  CHECK_FALSE(trusted(ranges, "192.168.127.255"));
  CHECK(trusted(ranges, "2001:db8::1"));
  CHECK(trusted(ranges, "2001:db8:7fff::1"));
  CHECK_FALSE(trusted(ranges, "2001:db8:8000::1"));
  CHECK(trusted(ranges, "::1"));
  CHECK_FALSE(trusted(ranges, "::2"));
  CHECK_FALSE(trusted(ranges, "127.0.0.1"));

  SUBCASE("an IPv4-mapped IPv6 peer (dual-stack listener) matches IPv4 ranges") {
    CHECK(trusted(ranges, "::ffff:10.1.2.3"));
    CHECK_FALSE(trusted(ranges, "::ffff:11.1.2.3"));
  }
  SUBCASE("no ranges trust nobody; /0 trusts every peer of its family") {
    CHECK_FALSE(trusted({}, "10.0.0.1"));
    CHECK(trusted({cidr("0.0.0.0/0")}, "203.0.113.9"));
    CHECK_FALSE(trusted({cidr("0.0.0.0/0")}, "2001:db8::1"));
  }
  SUBCASE("a single address matches only itself") {
    CHECK(trusted({cidr("127.0.0.1")}, "127.0.0.1"));
    CHECK_FALSE(trusted({cidr("127.0.0.1")}, "127.0.0.2"));
  }
}

}  // namespace sluice::http
