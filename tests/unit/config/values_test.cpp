// Tests for single-value parsers: durations, addresses, names, version numbers, suggestions.
#include <doctest/doctest.h>

#include "config/values.h"

namespace sluice::config {
namespace {

TEST_CASE("durations parse with ms, s, m and h units") {
  CHECK(parse_duration_ms("250ms") == 250u);
  CHECK(parse_duration_ms("1s") == 1000u);
  CHECK(parse_duration_ms("1.5s") == 1500u);
  CHECK(parse_duration_ms("2m") == 120000u);
  CHECK(parse_duration_ms("1h") == 3600000u);
  CHECK(parse_duration_ms("0s") == 0u);
  CHECK(parse_duration_ms("1000h") == 3600000000u);
  CHECK_FALSE(parse_duration_ms("2000h"));  // over 2^32 ms
  for (const char* bad : {"", "1", "s", "1 s", "-1s", "1S", "1sec", ".5s", "5.s", "1.2.3s", "1d"}) {
    const std::string shown = bad;
    CAPTURE(shown);
    CHECK_FALSE(parse_duration_ms(bad));
  }
}

TEST_CASE("durations format back in the largest whole unit") {
  CHECK(format_duration_ms(250) == "250ms");
  CHECK(format_duration_ms(1500) == "1500ms");
  CHECK(format_duration_ms(2000) == "2s");
  CHECK(format_duration_ms(120000) == "2m");
  CHECK(format_duration_ms(7200000) == "2h");
  CHECK(format_duration_ms(0) == "0s");
}

TEST_CASE("socket addresses parse IPv4, bracketed IPv6 and host names") {
  std::string why;
  auto a = parse_socket_address("10.0.0.5:8080", false, &why);
  REQUIRE(a);
  CHECK(a->host == "10.0.0.5");
  CHECK(a->port == 8080);
  CHECK(a->text == "10.0.0.5:8080");
  a = parse_socket_address("[::1]:9901", false, &why);
  REQUIRE(a);
  CHECK(a->host == "::1");
  CHECK(a->port == 9901);
  a = parse_socket_address("backend-1.internal:80", false, &why);
  REQUIRE(a);
  CHECK(a->host == "backend-1.internal");
  CHECK(parse_socket_address("127.0.0.1:0", true, &why));
  CHECK_FALSE(parse_socket_address("127.0.0.1:0", false, &why));
  CHECK(why == "port 0 is not allowed here");
  CHECK_FALSE(parse_socket_address("[::1]8080", true, &why));
  CHECK(why == "missing \":port\"");
  CHECK_FALSE(parse_socket_address("-bad-:80", true, &why));
  CHECK(why == "\"-bad-\" is not a valid host name");
}

TEST_CASE("loopback hosts are 127/8, ::1 and localhost") {
  CHECK(is_loopback_host("127.0.0.1"));
  CHECK(is_loopback_host("127.1.2.3"));
  CHECK(is_loopback_host("::1"));
  CHECK(is_loopback_host("localhost"));
  CHECK_FALSE(is_loopback_host("0.0.0.0"));
  CHECK_FALSE(is_loopback_host("10.0.0.1"));
  CHECK_FALSE(is_loopback_host("::"));
  CHECK_FALSE(is_loopback_host("example.com"));
}

TEST_CASE("names follow [a-z0-9][a-z0-9_-]{0,62}") {
  CHECK(is_valid_name("checkout"));
  CHECK(is_valid_name("0"));
  CHECK(is_valid_name("a_b-c9"));
  CHECK(is_valid_name(std::string(63, 'x')));
  CHECK_FALSE(is_valid_name(std::string(64, 'x')));
  CHECK_FALSE(is_valid_name(""));
  CHECK_FALSE(is_valid_name("_a"));
  CHECK_FALSE(is_valid_name("-a"));
  CHECK_FALSE(is_valid_name("Prod"));
  CHECK_FALSE(is_valid_name("a.b"));
  CHECK_FALSE(is_valid_name("$LATEST"));
}

TEST_CASE("version numbers are positive 32-bit integers without leading zeros") {
  CHECK(parse_version_number("1") == 1u);
  CHECK(parse_version_number("42") == 42u);
  CHECK(parse_version_number("4294967295") == 4294967295u);
  for (const char* bad : {"", "0", "01", "-1", "+1", "1.0", "4294967296", "x", "$LATEST"}) {
    const std::string shown = bad;
    CAPTURE(shown);
    CHECK_FALSE(parse_version_number(bad));
  }
}

TEST_CASE("edit distance counts a transposition as one edit and ignores case") {
  CHECK(edit_distance("adress", "address") == 1);
  CHECK(edit_distance("wokrers", "workers") == 1);
  CHECK(edit_distance("Address", "address") == 0);
  CHECK(edit_distance("", "abc") == 3);
  CHECK(edit_distance("kitten", "sitting") == 3);
}

TEST_CASE("closest_match suggests near misses only") {
  const std::vector<std::string> keys = {"address", "tls", "max_headers", "max_header_bytes"};
  CHECK(closest_match("adress", keys) == "address");
  CHECK(closest_match("max_header", keys) == "max_headers");
  CHECK(closest_match("tsl", keys) == "tls");
  CHECK(closest_match("colour", keys).empty());
  CHECK(closest_match("x", keys).empty());
}

}  // namespace
}  // namespace sluice::config
