#!/usr/bin/env bash
# Counts system calls per proxied request for sluice, nginx and HAProxy under `strace -f -c`:
# N1 and then N2 sequential requests on one keep-alive connection; the difference divided by
# N2 - N1 cancels start-up. Kernel time is most of a loopback proxy's cost, so this complements
# callgrind.sh (user-space instructions).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
usage: bench/syscalls.sh [--save] [--no-sluice | --sluice PATH] [--no-haproxy] [--n1 N] [--n2 N]
                        [--records FILE]

Prints, per proxy (one worker/thread, same configs as run_bench.sh), system calls per proxied
request in total and by call, from (calls(N2) - calls(N1)) / (N2 - N1). --records FILE also
appends one "cost target=NAME syscalls_per_req=N" line per proxy to FILE (run_all.sh reads them).

environment: PROFILE=equal|plain, SLUICE_BIN, N1 (default 200), N2 (default 2200)
USAGE
}

N1="${N1:-200}"
N2="${N2:-2200}"
save=0
sluice_mode=auto
sluice_bin=""
with_haproxy=1
records=""
while (($#)); do
  case "$1" in
    --save) save=1 ;;
    --no-sluice) sluice_mode=off ;;
    --sluice)
      sluice_mode=required
      sluice_bin="${2:?--sluice needs a path}"
      shift
      ;;
    --no-haproxy) with_haproxy=0 ;;
    --records)
      records="${2:?}"
      shift
      ;;
    --n1)
      N1="${2:?}"
      shift
      ;;
    --n2)
      N2="${2:?}"
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
  shift
done
seq_prepare syscalls strace

echo "== sluice system calls per request (bench/syscalls.sh)"
machine_info
profile_note
echo "method:  strace -f -c on the whole proxy process; N1=$N1 and N2=$N2 sequential GET / on one"
echo "         keep-alive connection, each run in a fresh process; calls/request ="
echo "         (calls(N2) - calls(N1)) / (N2 - N1). Upstream: nginx, not traced."

seq_start_upstream

# measure NAME N: runs the proxy under strace for N requests; leaves the summary in
# $BENCH_TMP/strace.NAME.N. Runs in this shell so cleanup always knows the PIDs it started.
measure() {
  local name="$1" n="$2" out="$BENCH_TMP/strace.$1.$2" pid
  seq_proxy_cmd "$name"
  # strace stays the parent of the proxy (which is stopped through its own PID below).
  start_bg "st-$name-$n" strace -f -c -o "$out" "${CMD[@]}"
  pid=$LAST_PID
  if ! wait_port "$port" 30 "$pid" "st-$name-$n"; then
    stop_pid "$pid" KILL
    return 1
  fi
  if ! run_fg python3 "$BENCH_DIR/keepalive_client.py" --port "$port" --count "$n" --timeout-s 120 \
    >"$BENCH_TMP/client.$name.$n" 2>&1; then
    sed 's/^/  | /' "$BENCH_TMP/client.$name.$n" >&2
    stop_pid "$pid" KILL
    return 1
  fi
  sleep 0.5 # let the proxy see the client's close before it is stopped
  # Stop the traced proxy itself (strace's child), then wait for strace to write its summary.
  local child
  child="$(cat "/proc/$pid/task/$pid/children" 2>/dev/null || true)"
  child="${child%% *}"
  [[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null
  stop_pid "$pid" CONT
  [[ -s "$out" ]] || {
    echo "no strace summary for $name ($n requests)" >&2
    return 1
  }
}

proxies=()
[[ "$sluice_mode" != off ]] && proxies+=(sluice)
proxies+=(nginx)
((with_haproxy)) && proxies+=(haproxy)

measured=()
for p in "${proxies[@]}"; do
  if measure "$p" "$N1" && measure "$p" "$N2"; then
    measured+=("$p")
  else
    [[ "$p" == sluice && "$sluice_mode" == auto ]] || die "measuring $p failed"
    echo "warning: measuring sluice ($sluice_bin) failed; leaving it out" >&2
  fi
done

echo
python3 - "$BENCH_TMP" "$N1" "$N2" "$records" "${measured[@]}" <<'PY'
import sys

tmp, n1, n2, records, names = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
                               sys.argv[5:])


def calls(path):
    """syscall -> (calls, errors) from an `strace -c` summary table."""
    out = {}
    for line in open(path):
        parts = line.split()
        if len(parts) < 5 or not parts[-2].isdigit() and not parts[-1].isidentifier():
            continue
        if parts[0].startswith(("%", "-")) or parts[-1] == "total":
            continue
        try:
            # % time, seconds, usecs/call, calls, [errors], syscall
            nums = [p for p in parts[:-1]]
            c = int(nums[3])
            e = int(nums[4]) if len(nums) > 4 else 0
        except (ValueError, IndexError):
            continue
        out[parts[-1]] = (c, e)
    return out


per = {}
for name in names:
    a, b = calls(f"{tmp}/strace.{name}.{n1}"), calls(f"{tmp}/strace.{name}.{n2}")
    per[name] = {k: ((b.get(k, (0, 0))[0] - a.get(k, (0, 0))[0]) / (n2 - n1),
                     (b.get(k, (0, 0))[1] - a.get(k, (0, 0))[1]) / (n2 - n1))
                 for k in set(a) | set(b)}
keys = sorted({k for n in names for k, v in per[n].items() if abs(v[0]) >= 0.005},
              key=lambda k: -max(per[n].get(k, (0, 0))[0] for n in names))
W = 20
print(f"{'syscall':<18}" + "".join(f"{n:>{W}}" for n in names))
for k in keys:
    row = ""
    for n in names:
        c, e = per[n].get(k, (0, 0))
        cell = f"{c:.2f}" + (f" ({e:.2f} err)" if e >= 0.005 else "")
        row += f"{cell:>{W}}"
    print(f"{k:<18}{row}")
print(f"{'total':<18}" + "".join(f"{sum(v[0] for v in per[n].values()):>{W}.2f}" for n in names))
print("\n(system calls per proxied request; 'err' = of which failed, e.g. EAGAIN)")
if records:
    with open(records, "a") as f:
        for n in names:
            f.write(f"cost target={n} syscalls_per_req={sum(v[0] for v in per[n].values()):.2f}\n")
PY

if ((save)); then
  mv "$out_file.partial" "$out_file"
  echo "saved: ${out_file#"$REPO_DIR"/}"
fi
