// Helpers for config tests: load TOML text written inline and find diagnostics by position.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "config/loader.h"

namespace sluice::config::test {

// Loads `text` as "t.toml"; a leading newline is dropped so inline raw strings start at line 1.
inline LoadResult load(std::string_view text, bool strict = false) {
  if (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  return load_string(text, "t.toml", strict);
}

inline std::string all_messages(const std::vector<Diagnostic>& ds) {
  std::string out;
  for (const Diagnostic& d : ds) out += d.to_string() + "\n";
  return out;
}

// True if some diagnostic sits at line:column and its message contains `fragment`.
inline bool has(const std::vector<Diagnostic>& ds, uint32_t line, uint32_t column,
                std::string_view fragment) {
  for (const Diagnostic& d : ds) {
    if (d.pos.line == line && d.pos.column == column &&
        d.message.find(fragment) != std::string::npos)
      return true;
  }
  return false;
}

// Asserts the text fails with exactly one error, at line:column, containing `fragment`.
inline void expect_one_error(std::string_view text, uint32_t line, uint32_t column,
                             std::string_view fragment) {
  const LoadResult r = load(text);
  const std::string messages = all_messages(r.errors);
  CAPTURE(messages);
  CHECK_FALSE(r.config.has_value());
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].file == "t.toml");
  CHECK(r.errors[0].pos.line == line);
  CHECK(r.errors[0].pos.column == column);
  CHECK(r.errors[0].message.find(fragment) != std::string::npos);
}

}  // namespace sluice::config::test
