#!/usr/bin/env bash
# Prints the Debian packages that ship the shared libraries BINARY links with (ldd), one a line,
# for the image's runtime stage to install. Fails if a library belongs to no package, so a new
# dependency can never be left out of the image silently.
# Usage: docker/runtime-packages.sh BINARY
set -euo pipefail
ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | while read -r lib; do
  # dpkg may know a library under /lib or /usr/lib (merged /usr): try the path ldd gave, then
  # the resolved one, each with and without /usr.
  real=$(realpath "$lib")
  for p in "$lib" "$real" "${lib#/usr}" "${real#/usr}" "/usr$lib" "/usr$real"; do
    if out=$(dpkg -S "$p" 2>/dev/null); then
      echo "${out%%:*}"
      continue 2
    fi
  done
  echo "runtime-packages: no package ships $lib" >&2
  exit 1
done | sort -u
