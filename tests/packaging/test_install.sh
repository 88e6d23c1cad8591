#!/usr/bin/env bash
# `cmake --install` to a staging prefix installs exactly the binary, the example configs, the
# man page and the systemd unit; the staged binary runs and accepts the staged examples; the
# staged unit points at the staged binary and passes `systemd-analyze verify` with no message.
# Usage: test_install.sh BUILD_DIR
set -euo pipefail
build=$1
stage=$(mktemp -d /tmp/sluice-install-test.XXXXXX)
trap 'rm -rf "$stage"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$stage" >/dev/null
got=$(cd "$stage" && find . -type f | sort)
want="./bin/sluice
./lib/systemd/system/sluice.service
./share/man/man1/sluice.1
./share/sluice/examples/demo.toml
./share/sluice/examples/sluice.toml"
[[ "$got" == "$want" ]] || fail "installed files:"$'\n'"$got"$'\n'"expected:"$'\n'"$want"
[[ -x "$stage/bin/sluice" ]] || fail "bin/sluice is not executable"
"$stage/bin/sluice" --version | grep -q '^sluice [0-9]' || fail "bin/sluice --version"
for f in "$stage"/share/sluice/examples/*.toml; do
  out=$("$stage/bin/sluice" check -c "$f" 2>&1) || fail "sluice check -c $f: $out"
done

unit="$stage/lib/systemd/system/sluice.service"
[[ $(grep -c "^Exec[A-Za-z]*=$stage/bin/sluice " "$unit") -eq 3 ]] ||
  fail "ExecStartPre/ExecStart/ExecReload do not run $stage/bin/sluice: $(grep ^Exec "$unit")"
grep -q '/usr/local/bin' "$unit" && fail "the staged unit still names /usr/local/bin"
# shellcheck disable=SC2016  # $MAINPID is the unit's, not ours
for key in DynamicUser=yes ProtectSystem=strict StateDirectory=sluice KillSignal=SIGTERM \
  'ExecReload=/bin/kill -HUP $MAINPID'; do
  grep -qxF "$key" "$unit" || fail "the unit has no $key"
done
# TimeoutStopSec above the default drain_timeout (30s), which SIGTERM waits for.
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$unit")
[[ -n "$stop" && "$stop" -gt 30 ]] || fail "TimeoutStopSec=${stop:-?}s is not above 30s"

command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (scripts/setup installs systemd)"
# verify reports problems (unknown keys, bad values, missing binaries or man page) as messages
# with exit code 0: any output is a failure. The man page is found in the stage.
out=$(MANPATH="$stage/share/man" systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $out"
[[ -z "$out" ]] || fail "systemd-analyze verify: $out"
echo "staged install ok; systemd-analyze verify clean"
