// Parsers and checks for single config values: durations, socket addresses, names, typos.
#include "config/values.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

namespace sluice::config {

std::optional<uint64_t> parse_duration_ms(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  const std::string_view number = text.substr(0, i);
  const std::string_view unit = text.substr(i);
  if (number.empty() || number.front() == '.' || number.back() == '.' ||
      std::count(number.begin(), number.end(), '.') > 1)
    return std::nullopt;
  double multiplier = 0;
  if (unit == "ms") {
    multiplier = 1;
  } else if (unit == "s") {
    multiplier = 1000;
  } else if (unit == "m") {
    multiplier = 60'000;
  } else if (unit == "h") {
    multiplier = 3'600'000;
  } else {
    return std::nullopt;
  }
  double value = 0;
  auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (ec != std::errc{} || end != number.data() + number.size()) return std::nullopt;
  const double ms = std::round(value * multiplier);
  if (!std::isfinite(ms) || ms > 4294967295.0) return std::nullopt;
  return static_cast<uint64_t>(ms);
}

std::string format_duration_ms(uint64_t ms) {
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

namespace {

bool is_hostname(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i < host.size(); ++i) {
    const char c = host[i];
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    if (c == '-' && (label == 0 || i + 1 == host.size() || host[i + 1] == '.')) return false;
    if (++label > 63) return false;
  }
  return true;
}

bool looks_numeric(std::string_view host) {
  return !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) || c == '.';
  });
}

}  // namespace

std::optional<SocketAddress> parse_socket_address(std::string_view text, bool allow_port_zero,
                                                  std::string* why) {
  auto fail = [&](std::string reason) -> std::optional<SocketAddress> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  SocketAddress out;
  out.text = std::string(text);
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return fail("missing ']' after the IPv6 address");
    out.host = std::string(text.substr(1, close - 1));
    in6_addr a6{};
    if (inet_pton(AF_INET6, out.host.c_str(), &a6) != 1)
      return fail("\"" + out.host + "\" is not an IPv6 address");
    if (close + 1 >= text.size() || text[close + 1] != ':') return fail("missing \":port\"");
    port_text = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail("missing \":port\"");
    out.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (out.host.find(':') != std::string::npos)
      return fail("an IPv6 address must be in brackets, e.g. \"[::1]:8080\"");
    if (out.host.empty()) return fail("missing host");
    if (looks_numeric(out.host)) {
      in_addr a4{};
      if (inet_pton(AF_INET, out.host.c_str(), &a4) != 1)
        return fail("\"" + out.host + "\" is not an IPv4 address");
    } else if (!is_hostname(out.host)) {
      return fail("\"" + out.host + "\" is not a valid host name");
    }
  }
  if (port_text.empty()) return fail("missing port");
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535)
    return fail("port \"" + std::string(port_text) + "\" is not a number from " +
                (allow_port_zero ? "0" : "1") + " to 65535");
  if (port == 0 && !allow_port_zero) return fail("port 0 is not allowed here");
  out.port = static_cast<uint16_t>(port);
  return out;
}

bool is_loopback_host(std::string_view host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr a4{};
  const std::string h(host);
  if (inet_pton(AF_INET, h.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  return false;
}

bool is_valid_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto lower_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_digit(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return lower_digit(c) || c == '_' || c == '-'; });
}

std::optional<uint32_t> parse_version_number(std::string_view text) {
  if (text.empty() || text.front() == '0' || text.size() > 10) return std::nullopt;
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value == 0 || value > 0xffffffffULL)
    return std::nullopt;
  return static_cast<uint32_t>(value);
}

size_t edit_distance(std::string_view a, std::string_view b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  auto lc = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = lc(a[i - 1]) == lc(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lc(a[i - 1]) == lc(b[j - 2]) && lc(a[i - 2]) == lc(b[j - 1]))
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

std::string closest_match(std::string_view word, const std::vector<std::string>& candidates) {
  // Allow about one typo per three characters: "adress" -> "address", but "foo" is no "log".
  const size_t limit = std::max<size_t>(1, std::min<size_t>(3, word.size() / 3));
  std::string best;
  size_t best_distance = limit + 1;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

}  // namespace sluice::config
