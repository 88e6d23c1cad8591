// Parsers and checks for single config values (durations, socket addresses, names) and the
// "did you mean" suggestion. No toml++ here, so the admin API can reuse them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"

namespace sluice::config {

// "250ms", "1s", "1.5s", "2m", "1h" -> milliseconds. nullopt if malformed or over 2^32-1 ms.
std::optional<uint64_t> parse_duration_ms(std::string_view text);

// Formats milliseconds the way the config writes them: 1500 -> "1500ms", 2000 -> "2s", 120000 ->
// "2m".
std::string format_duration_ms(uint64_t ms);

// "host:port" or "[v6]:port". On failure returns nullopt and sets `why` to what is wrong.
// `allow_port_zero`: listeners may bind port 0 (tests); upstream endpoints may not.
std::optional<SocketAddress> parse_socket_address(std::string_view text, bool allow_port_zero,
                                                  std::string* why);

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(std::string_view host);

// Function and alias names: [a-z0-9][a-z0-9_-]{0,62}.
bool is_valid_name(std::string_view name);

// Published version numbers: a positive integer without leading zeros that fits in 32 bits.
std::optional<uint32_t> parse_version_number(std::string_view text);

// Optimal-string-alignment edit distance (a transposition counts as one edit), case-insensitive.
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word` if it is a near miss (a typo), else empty.
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace sluice::config
