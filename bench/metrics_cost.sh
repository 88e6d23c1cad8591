#!/usr/bin/env bash
# The cost of observability on the request path: wrk -c 64 against sluice with the access log
# written to a file vs `access = "off"` (per-version metrics are always on), alternating rounds.
set -euo pipefail

usage() {
  cat <<EOF
usage: bench/metrics_cost.sh [--sluice PATH] [--rounds N] [--duration D]

Starts one upstream nginx and two sluice processes (workers = 1, alias 90/10 over two versions,
admin on a free port): "log" writes the JSON access log to a file, "off" has access = "off".
Then runs wrk -c \$CONNS -t \$THREADS -d D against each in turn, N rounds (default 3 x 8s, after
a 2 s warm-up each), and prints requests/s per run, the means and the log/off ratio.
Bounded: every wrk run is under timeout and the whole script takes under 2 minutes.

options:
  --sluice PATH   sluice binary (default: \$SLUICE_BIN, build-bench/sluice, build/sluice)
  --rounds N      rounds (default 3, at most 4)
  --duration D    seconds per wrk run, e.g. 8s (default 8s, at most 10s)
variables: CONNS=64 THREADS=2 PIN=1 PROXY_CPUS=0 LOAD_CPUS=1 (PIN=0: no taskset)
           NICE=-10 runs every process at that nice level (and the script's autogroup), as in
           run_bench.sh, so a shared machine's other work disturbs less
EOF
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
DURATION=8s
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
PIN="${PIN:-1}"
PROXY_CPUS="${PROXY_CPUS:-0}"
LOAD_CPUS="${LOAD_CPUS:-1}"
sluice_bin=""
while (($#)); do
  case "$1" in
    --sluice)
      sluice_bin="${2:?--sluice needs a path}"
      shift
      ;;
    --rounds)
      ROUNDS="${2:?--rounds needs a number}"
      shift
      ;;
    --duration)
      DURATION="${2:?--duration needs a value like 8s}"
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
duration_s="${DURATION%s}"
[[ "$ROUNDS" =~ ^[1-4]$ ]] || die "--rounds must be 1..4 (keeps the run under 2 minutes)"
if ! [[ "$duration_s" =~ ^[0-9]+$ ]] || ((duration_s < 1 || duration_s > 10)); then
  die "--duration must be 1s..10s (keeps the run under 2 minutes)"
fi

[[ -n "$sluice_bin" ]] || sluice_bin="$(find_sluice)"
[[ -n "$sluice_bin" && -x "$sluice_bin" ]] ||
  die "no sluice binary (build one: cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench --target sluice)"
for tool in wrk nginx python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/setup --bench)"
done
pin_proxy=() pin_load=()
if [[ -n "${NICE:-}" ]]; then
  # As in run_bench.sh: nice for every process, and the autogroup's nice level (restored at exit
  # by lib.sh) so other sessions' work on a shared machine disturbs less.
  pin_proxy=(nice -n "$NICE")
  pin_load=(nice -n "$NICE")
  if [[ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null)" == 1 && -w /proc/self/autogroup ]]; then
    BENCH_AUTOGROUP_NICE_RESTORE="$(awk '{ print $3 }' /proc/self/autogroup)"
    echo "$NICE" >/proc/self/autogroup || BENCH_AUTOGROUP_NICE_RESTORE=""
  fi
fi
if ((PIN)); then
  command -v taskset >/dev/null || die "taskset is not installed (or run with PIN=0)"
  pin_proxy+=(taskset -c "$PROXY_CPUS")
  pin_load+=(taskset -c "$LOAD_CPUS")
fi

mapfile -t ports < <(free_ports 7)
up1="${ports[0]}" up2="${ports[1]}" up_status="${ports[6]}"
declare -A port_of=([log]="${ports[2]}" [off]="${ports[3]}")
declare -A admin_of=([log]="${ports[4]}" [off]="${ports[5]}")
access_log="$BENCH_TMP/access.log"

render "$BENCH_DIR/conf/nginx-upstream.conf" "$BENCH_TMP/nginx-upstream.conf" \
  DIR="$BENCH_TMP" UP1="$up1" UP2="$up2" STATUS="$up_status" WORKERS=1 MASTER=off
# write_sluice_config NAME ACCESS: the run_bench.sh sluice setup plus a private admin port.
write_sluice_config() {
  cat >"$BENCH_TMP/sluice-$1.toml" <<EOF
# metrics_cost.sh: sluice "$1" (access log: $2)
workers = 1

[listen]
address = "127.0.0.1:${port_of[$1]}"

[admin]
address = "127.0.0.1:${admin_of[$1]}"

[log]
access = "$2"

[functions.f.versions.1]
endpoints = ["127.0.0.1:$up1"]

[functions.f.versions.2]
endpoints = ["127.0.0.1:$up2"]

[functions.f.aliases.prod]
traffic = { "1" = 90, "2" = 10 }

[[routes]]
path_prefix = "/"
target = "f:prod"
EOF
}
write_sluice_config log "$access_log"
write_sluice_config off off

echo "== sluice metrics/access-log cost (bench/metrics_cost.sh)"
sluice_bin="$sluice_bin" machine_info
if ((PIN)); then
  echo "placement: sluice on CPU $PROXY_CPUS; wrk and the upstream nginx on CPU $LOAD_CPUS"
else
  echo "placement: not pinned (PIN=0)"
fi
echo "load:    wrk -c $CONNS -t $THREADS -d ${duration_s}s, keep-alive, GET /, $ROUNDS rounds alternating log/off; 2s warm-up each"
[[ -z "${NICE:-}" ]] || echo "priority: every benchmark process runs at nice $NICE"
echo "both:    workers = 1, per-version metrics on (always); log = JSON access log to a file, off = access \"off\""

start_bg nginx-upstream "${pin_load[@]}" nginx -c "$BENCH_TMP/nginx-upstream.conf" -p "$BENCH_TMP"
wait_port "$up1" 10 "$LAST_PID" nginx-upstream || die "upstream nginx failed to start"
declare -A pid_of
for t in log off; do
  start_bg "sluice-$t" "${pin_proxy[@]}" "$sluice_bin" run -c "$BENCH_TMP/sluice-$t.toml"
  pid_of[$t]=$LAST_PID
  wait_port "${port_of[$t]}" 15 "$LAST_PID" "sluice-$t" || die "sluice ($t) failed to start"
done

# Sanity: both answer 200 through the alias.
for t in log off; do
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:${port_of[$t]}/")"
  [[ "$code" == 200 ]] || die "sluice ($t) answered $code instead of 200"
done

# cpu_ns PID: CPU time of every thread of PID so far, in ns (/proc/PID/task/*/schedstat). Unlike
# requests/s this barely depends on how much of the CPU other work on the machine leaves us.
cpu_ns() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'
}

# run_wrk TARGET SECONDS: one wrk run; sets RPS (requests/s), REQS and CPU_US (sluice CPU µs per
# request).
run_wrk() {
  local t="$1" d="$2" line reqs dur c0 c1
  c0="$(cpu_ns "${pid_of[$t]}")"
  if ! run_fg "${pin_load[@]}" timeout $((d + 20)) wrk -c "$CONNS" -t "$THREADS" -d "${d}s" \
    -s "$BENCH_DIR/conf/wrk_report.lua" "http://127.0.0.1:${port_of[$t]}/" \
    >"$BENCH_TMP/wrk.out" 2>&1; then
    cat "$BENCH_TMP/wrk.out" >&2
    die "wrk against sluice ($t) failed"
  fi
  c1="$(cpu_ns "${pid_of[$t]}")"
  line="$(grep '^WRKRESULT ' "$BENCH_TMP/wrk.out")" || die "wrk against $t printed no result"
  reqs="$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$line")"
  dur="$(sed -n 's/.* duration_us=\([0-9]*\).*/\1/p' <<<"$line")"
  if grep -q 'status_err=[1-9]' <<<"$line"; then die "wrk saw non-2xx answers from $t: $line"; fi
  REQS="$reqs"
  RPS="$(awk -v r="$reqs" -v d="$dur" 'BEGIN { printf "%.0f", r / (d / 1e6) }')"
  CPU_US="$(awk -v r="$reqs" -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", r ? (b - a) / 1e3 / r : 0 }')"
}

log_requests=1 # the sanity request
for t in log off; do
  run_wrk "$t" 2
  [[ "$t" == log ]] && log_requests=$((log_requests + REQS))
done
declare -A sum=([log]=0 [off]=0) cpu_sum=([log]=0 [off]=0)
for ((r = 1; r <= ROUNDS; r++)); do
  for t in log off; do
    run_wrk "$t" "$duration_s"
    [[ "$t" == log ]] && log_requests=$((log_requests + REQS))
    sum[$t]=$((sum[$t] + RPS))
    cpu_sum[$t]="$(awk -v a="${cpu_sum[$t]}" -v b="$CPU_US" 'BEGIN { print a + b }')"
    printf 'round %d  %-3s  %8d req/s  %6.2f CPU us/request\n' "$r" "$t" "$RPS" "$CPU_US"
  done
done

# Stop sluice "log" by PID (SIGTERM flushes the log), then check every request got its line.
stop_pid "${pid_of[log]}"
lines="$(wc -l <"$access_log")"
bytes="$(wc -c <"$access_log")"
mean_log=$((sum[log] / ROUNDS))
mean_off=$((sum[off] / ROUNDS))
echo
printf 'mean     log  %8d req/s   (access log to a file + metrics)\n' "$mean_log"
printf 'mean     off  %8d req/s   (metrics only)\n' "$mean_off"
awk -v a="$mean_log" -v b="$mean_off" 'BEGIN { printf "ratio    log/off = %.3f req/s  (%+.1f%%)\n", a / b, (a / b - 1) * 100 }'
awk -v a="${cpu_sum[log]}" -v b="${cpu_sum[off]}" -v n="$ROUNDS" 'BEGIN {
  printf "CPU      log %.2f vs off %.2f us/request: log/off = %.3f  (%+.1f%%; all sluice threads)\n",
    a / n, b / n, a / b, (a / b - 1) * 100 }'
printf 'access log: %d lines, %d bytes (%.0f bytes/line) for %d requests sent to "log"\n' \
  "$lines" "$bytes" "$(awk -v b="$bytes" -v l="$lines" 'BEGIN { print l ? b / l : 0 }')" "$log_requests"
