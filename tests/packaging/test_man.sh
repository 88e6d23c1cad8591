#!/usr/bin/env bash
# The man page renders without a groff warning (`man --warnings`; warnings do not change its
# exit code, so any output on stderr fails), carries the binary's version, and names every
# command `sluice --help` lists.
# Usage: test_man.sh SLUICE_BINARY MAN_PAGE
set -euo pipefail
sluice=$1 page=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v man >/dev/null || fail "man is missing (scripts/setup installs man-db)"

text=$(LC_ALL=C.UTF-8 MANWIDTH=100 man --warnings -E UTF-8 -l "$page" 2>"${TMPDIR:-/tmp}/sluice-man-warnings.$$")
warnings=$(cat "${TMPDIR:-/tmp}/sluice-man-warnings.$$")
rm -f "${TMPDIR:-/tmp}/sluice-man-warnings.$$"
[[ -z "$warnings" ]] || fail "man --warnings: $warnings"

version=$("$sluice" --version | awk '{print $2}')
grep -q "^\.TH SLUICE 1 .*\"sluice $version\"" "$page" || fail "the .TH line does not say sluice $version"

# Commands: the words starting each line of the "commands:" and "client commands" blocks of
# --help (e.g. "run", "alias set"), plus those named in the "status, alias set, ..." line.
commands=$("$sluice" --help | awk '
  /^commands:|^client commands/ { inblock = 1; next }
  /^$/ { inblock = 0 }
  inblock && /^  [a-z]/ {
    if ($0 ~ /admin client/) { sub(/ +admin client.*/, ""); n = split($0, a, ", ");
      for (i = 1; i <= n; i++) { gsub(/^ +/, "", a[i]); print a[i] } }
    else if ($2 ~ /^[a-z]+$/ && $1 == "alias") print $1 " " $2
    else print $1 }' | sort -u)
[[ $(wc -l <<<"$commands") -ge 10 ]] || fail "found too few commands in --help: $commands"
missing=()
while read -r c; do
  grep -qE "^ {7}$c( |$)" <<<"$text" || missing+=("$c")
done <<<"$commands"
[[ ${#missing[@]} -eq 0 ]] || fail "the man page does not describe: ${missing[*]}"
echo "man page ok: $(wc -l <<<"$commands") commands, no warnings"
