#!/usr/bin/env bash
# Builds the sluice image with podman (as ../shared/CONTAINERS.md says: vfs storage, cgroupfs,
# runc, base images from debootstrap) and tests it for real: a proxied request and its
# x-sluice-version against an upstream on loopback, /healthz, /readyz, the HEALTHCHECK, the
# non-root user and state volume, a hot reload through a mounted directory swapped as Kubernetes
# swaps a ConfigMap (the `..data` symlink), and `podman stop` draining a request in flight and
# exiting 0 within the drain timeout. Prints the image size and how long it all took.
#
# Works from a clean Debian 12 machine (root, or sudo): installs podman, runc and debootstrap
# if missing, makes the base images if absent. Bounded: the whole run is killed after
# $SLUICE_CONTAINER_TEST_TIMEOUT seconds (default 2400). Exit codes: 0 passed, 1 failed,
# 77 skipped because this machine cannot run containers at all (the reason is printed).
# Usage: docker/test.sh    env: IMAGE (default sluice), SLUICE_CONTAINER_TEST_TIMEOUT
set -euo pipefail
cd "$(dirname "$0")/.."

readonly SKIP=77
skip() {
  echo "docker/test.sh: SKIPPED: $*" >&2
  exit $SKIP
}
fail() {
  echo "docker/test.sh: FAILED: $*" >&2
  exit 1
}

if [[ $(id -u) -ne 0 ]]; then
  sudo -n true 2>/dev/null || skip "needs root (or password-less sudo) for rootful podman"
  exec sudo -n --preserve-env=IMAGE,SLUICE_CONTAINER_TEST_TIMEOUT "$0" "$@"
fi
if [[ -z "${SLUICE_CONTAINER_TEST_BOUNDED:-}" ]]; then
  export SLUICE_CONTAINER_TEST_BOUNDED=1
  limit=${SLUICE_CONTAINER_TEST_TIMEOUT:-2400}
  set +e
  timeout -k 30 "$limit" "$0" "$@"
  rc=$?
  [[ $rc -eq 124 || $rc -eq 137 ]] && echo "docker/test.sh: FAILED: timed out after ${limit}s" >&2
  exit $rc
fi

started=$(date +%s)
image=${IMAGE:-sluice}
name="sluice-test-$$"
work=$(mktemp -d /tmp/sluice-container-test.XXXXXX)
upstream_pid=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  podman --storage-driver vfs rm -f -t 0 "$name" >/dev/null 2>&1 || true
  if [[ -n "$upstream_pid" ]]; then kill "$upstream_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 124' TERM INT

scripts/setup --container || skip "cannot install podman, runc and debootstrap"
# shellcheck source=docker/podman-env
. docker/podman-env
pod() { podman --storage-driver vfs "$@"; }
pod info >"$work/info.log" 2>&1 || skip "podman cannot run here: $(tail -1 "$work/info.log")"
docker/base-images.sh
if ! pod run --rm --network host docker.io/library/debian:12-slim true >"$work/probe.log" 2>&1; then
  skip "podman cannot start a container here: $(tail -1 "$work/probe.log")"
fi

echo "docker/test.sh: building $image" >&2
# vfs storage copies every layer whole (a build leaves about 4 GiB): keep one generation of
# build cache by dropping, after this build, the untagged images earlier builds left, except
# those this build used as its cache (and those with children, which `rmi` refuses).
old_untagged=$(pod images -a -q --filter dangling=true | sort -u)
build_started=$(date +%s)
if ! pod build --format docker --network host --pull=never -t "$image" -f docker/Dockerfile . \
  >"$work/build.log" 2>&1; then
  tail -40 "$work/build.log" >&2
  fail "podman build"
fi
build_seconds=$(($(date +%s) - build_started))
used=$(grep -o 'Using cache [0-9a-f]*' "$work/build.log" | cut -c13-24 | sort -u || true)
for id in $old_untagged; do
  grep -qx "$id" <<<"$used" || pod rmi "$id" >/dev/null 2>&1 || true
done
grep '^runtime packages:' "$work/build.log" >&2 || true
size_bytes=$(pod image inspect --format '{{.Size}}' "$image")
size_mib=$(awk -v b="$size_bytes" 'BEGIN { printf "%.1f", b / 1048576 }')

# The image on its own: the binary runs, the baked-in default config is valid, the user is not
# root.
[[ $(pod run --rm --no-healthcheck "$image" --version) == sluice\ * ]] || fail "sluice --version in the image"
pod run --rm --no-healthcheck "$image" check --strict -c /etc/sluice/sluice.toml >&2 ||
  fail "the image's default config does not pass sluice check --strict"
[[ $(pod run --rm --no-healthcheck --entrypoint id "$image" -u) == 10001 ]] || fail "the image runs as root"

# An upstream on loopback: GET / answers "hello from upstream"; /slow answers after 3 s and
# touches $work/slow-seen when it starts.
python3 - "$work" >"$work/upstream.log" 2>&1 <<'PY' &
import http.server, os, sys, time
work = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow"):
            open(os.path.join(work, "slow-seen"), "w").close()
            time.sleep(3)
        body = b"hello from upstream\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(os.path.join(work, "upstream-port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(work, "upstream-port.tmp"), os.path.join(work, "upstream-port"))
server.serve_forever()
PY
upstream_pid=$!
for _ in $(seq 100); do [[ -f "$work/upstream-port" ]] && break; sleep 0.1; done
[[ -f "$work/upstream-port" ]] || fail "the test upstream did not start: $(cat "$work/upstream.log")"
upstream="127.0.0.1:$(cat "$work/upstream-port")"
# Two free loopback ports for sluice's listener and admin API (--network host).
read -r data_port admin_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

# The config directory laid out as Kubernetes mounts a ConfigMap: sluice.toml -> ..data/
# sluice.toml, ..data -> a timestamped directory that an update replaces with one rename.
config() {  # $1: the alias's traffic map
  cat <<EOF
[[listen]]
address = "127.0.0.1:$data_port"
[admin]
address = "127.0.0.1:$admin_port"
[state]
dir = "/var/lib/sluice"
[limits]
drain_timeout = "15s"
[log]
access = "stdout"
[functions.app.versions.1]
endpoints = ["$upstream"]
[functions.app.versions.2]
endpoints = ["$upstream"]
[functions.app.aliases.live]
traffic = $1
[[routes]]
target = "app:live"
EOF
}
cfg="$work/config"
mkdir -p "$cfg/..v1"
config '{ "1" = 100 }' >"$cfg/..v1/sluice.toml"
ln -s ..v1 "$cfg/..data"
ln -s ..data/sluice.toml "$cfg/sluice.toml"
chmod -R a+rX "$work"

# --no-healthcheck: podman would run the check from a systemd timer, and there may be no
# systemd; the image's HEALTHCHECK command is run below by hand instead.
pod run -d --name "$name" --network host --no-healthcheck -v "$cfg:/etc/sluice:ro" "$image" >/dev/null
logs() { pod logs "$name" 2>&1 | tail -20 >&2; }
admin="http://127.0.0.1:$admin_port"
data="http://127.0.0.1:$data_port"
ready=0
for _ in $(seq 300); do
  if [[ $(curl -s -m 2 "$admin/readyz" 2>/dev/null) == ok ]]; then ready=1; break; fi
  sleep 0.1
done
[[ $ready -eq 1 ]] || { logs; fail "/readyz did not answer ok within 30 s"; }
[[ $(curl -s -m 5 "$admin/healthz") == ok ]] || fail "/healthz"
healthcheck=$(pod image inspect --format '{{join .Config.Healthcheck.Test " "}}' "$image")
[[ $healthcheck == "CMD "* ]] || fail "no HEALTHCHECK CMD in the image (built without --format docker?)"
# shellcheck disable=SC2086  # the command's words, as the runtime would split them
pod exec "$name" ${healthcheck#CMD } >/dev/null || { logs; fail "the HEALTHCHECK: $healthcheck"; }

version() { curl -s -m 5 -o /dev/null -w '%{http_code} %header{x-sluice-version}' "$data/"; }
body=$(curl -s -m 5 "$data/")
[[ $body == "hello from upstream" ]] || { logs; fail "proxied request: got '$body'"; }
[[ $(version) == "200 app:1" ]] || { logs; fail "x-sluice-version: got '$(version)'"; }

# The state volume is writable by the non-root user: an API change is persisted there.
pod exec "$name" sluice alias set app:live 1=100 -c /etc/sluice/sluice.toml >/dev/null || { logs; fail "sluice alias set"; }
pod exec "$name" test -s /var/lib/sluice/state.json || fail "no state.json in /var/lib/sluice"

# Hot reload: a new ..data directory, then one atomic rename of the symlink, as kubelet does.
mkdir "$cfg/..v2"
config '{ "2" = 100 }' >"$cfg/..v2/sluice.toml"
chmod -R a+rX "$cfg/..v2"
ln -s ..v2 "$cfg/..data_tmp"
mv -T "$cfg/..data_tmp" "$cfg/..data"
rm -rf "$cfg/..v1"
reloaded=0
for _ in $(seq 150); do
  if [[ $(version) == "200 app:2" ]]; then reloaded=1; break; fi
  sleep 0.1
done
[[ $reloaded -eq 1 ]] || { logs; fail "the ..data swap was not reloaded within 15 s: $(version)"; }

# podman stop: SIGTERM drains the request in flight, then sluice exits 0 well before podman's
# own timeout (30 s, then SIGKILL: exit 137) and within the drain timeout (15 s).
curl -s -m 20 -o "$work/slow-body" -w '%{http_code}' "$data/slow" >"$work/slow-status" &
slow_pid=$!
for _ in $(seq 100); do [[ -f "$work/slow-seen" ]] && break; sleep 0.1; done
[[ -f "$work/slow-seen" ]] || fail "the slow request did not reach the upstream"
stop_started=$(date +%s.%N)
pod stop -t 30 "$name" >/dev/null
stop_seconds=$(awk -v a="$stop_started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
wait "$slow_pid" || true
exit_code=$(pod inspect --format '{{.State.ExitCode}}' "$name")
[[ $exit_code -eq 0 ]] || { logs; fail "podman stop: exit code $exit_code (want 0)"; }
[[ $(cat "$work/slow-status") == 200 ]] || fail "the request in flight at stop got $(cat "$work/slow-status")"
awk -v s="$stop_seconds" 'BEGIN { exit !(s < 15) }' || fail "podman stop took ${stop_seconds}s"
pod logs "$name" 2>&1 | grep -q 'sluice: stopped' || { logs; fail "no 'sluice: stopped' line"; }

total=$(($(date +%s) - started))
echo "docker/test.sh: passed in ${total}s (image build ${build_seconds}s; podman stop with a request in flight ${stop_seconds}s, exit 0)"
echo "docker/test.sh: image $image: ${size_mib} MiB ($size_bytes bytes)"
awk -v m="$size_mib" 'BEGIN { exit !(m >= 100) }' &&
  echo "docker/test.sh: WARNING: the image is over the 100 MiB aim" >&2
exit 0
