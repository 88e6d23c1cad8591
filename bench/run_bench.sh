#!/usr/bin/env bash
# Side-by-side throughput/latency benchmark on loopback: wrk against the upstream directly, sluice,
# nginx and HAProxy (each proxy: one worker/thread, 90/10 split, upstream keep-alive).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
usage: bench/run_bench.sh [--save] [--no-sluice | --sluice PATH] [--rounds N] [--duration D]

Runs wrk (-c \$CONNS -t \$THREADS, keep-alive, --latency) against each target for D per round,
alternating targets (A B C D, A B C D, ...) over N rounds, and prints requests/s, p50, p99 (median
of rounds), each proxy's CPU time per request and peak RSS, and the sluice/nginx and
sluice/HAProxy ratios.

  --save          also write the output to bench/results/<UTC date>-run_bench.txt
  --no-sluice     leave sluice out (nginx/HAProxy only)
  --sluice PATH   sluice binary to use (default: \$SLUICE_BIN, build-bench/sluice, build/sluice;
                  if none is found or it fails its sanity check it is left out with a warning)
  --rounds N      rounds (default \$ROUNDS or 3)
  --duration D    wrk duration per run, e.g. 10s (default \$DURATION or 10s)

environment: DURATION=10s ROUNDS=3 WARMUP=2s CONNS=64 THREADS=2 PROFILE=equal|plain
             PIN=1 PROXY_CPUS=0 LOAD_CPUS=1   (PIN=0: no taskset, everything floats)
             NICE=-10   run every benchmark process at that nice level (root), so other work on
                        a shared machine disturbs less; with autogroup scheduling the script's
                        autogroup gets that nice level too (restored at exit); default: unchanged
USAGE
}

DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-2s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
PIN="${PIN:-1}"
PROXY_CPUS="${PROXY_CPUS:-0}"
LOAD_CPUS="${LOAD_CPUS:-1}"
save=0
sluice_mode=auto
sluice_bin=""
while (($#)); do
  case "$1" in
    --save) save=1 ;;
    --no-sluice) sluice_mode=off ;;
    --sluice)
      sluice_mode=required
      sluice_bin="${2:?--sluice needs a path}"
      shift
      ;;
    --rounds)
      ROUNDS="${2:?}"
      shift
      ;;
    --duration)
      DURATION="${2:?}"
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

# seconds D: "10s" / "10" / "1m" -> whole seconds.
seconds() {
  case "$1" in
    *ms) echo 1 ;;
    *s) echo "${1%s}" ;;
    *m) echo $((${1%m} * 60)) ;;
    *) echo "$1" ;;
  esac
}
duration_s="$(seconds "$DURATION")"
warmup_s="$(seconds "$WARMUP")"
[[ "$duration_s" =~ ^[0-9]+$ && "$warmup_s" =~ ^[0-9]+$ && "$ROUNDS" =~ ^[0-9]+$ ]] ||
  die "bad DURATION/WARMUP/ROUNDS"

if ((save)); then
  mkdir -p "$BENCH_DIR/results"
  out_file="$BENCH_DIR/results/$(date -u +%Y-%m-%dT%H%MZ)-run_bench${PROFILE_SUFFIX}.txt"
  exec > >(tee "$out_file.partial") 2>&1
fi

"$REPO_DIR/scripts/setup" --bench
for tool in wrk nginx haproxy taskset python3; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup --bench installs it)"
done

if [[ "$sluice_mode" == auto ]]; then
  sluice_bin="$(find_sluice)"
  if [[ -z "$sluice_bin" ]]; then
    echo "note: no sluice binary found (set SLUICE_BIN or build it:" \
      "cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench --target sluice);" \
      "running without sluice" >&2
    sluice_mode=off
  fi
fi
if [[ "$sluice_mode" == required && ! -x "$sluice_bin" ]]; then
  die "sluice binary $sluice_bin is not executable"
fi

pin_proxy=()
pin_load=()
if [[ -n "${NICE:-}" ]]; then
  pin_proxy=(nice -n "$NICE")
  pin_load=(nice -n "$NICE")
  # With CONFIG_SCHED_AUTOGROUP, nice only ranks processes within one session's group; the group's
  # own nice level ranks it against other sessions (e.g. someone's build). Restored at exit.
  if [[ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null)" == 1 && -w /proc/self/autogroup ]]; then
    BENCH_AUTOGROUP_NICE_RESTORE="$(awk '{ print $3 }' /proc/self/autogroup)"
    echo "$NICE" >/proc/self/autogroup || BENCH_AUTOGROUP_NICE_RESTORE=""
  fi
fi
if ((PIN)); then
  pin_proxy+=(taskset -c "$PROXY_CPUS")
  pin_load+=(taskset -c "$LOAD_CPUS")
fi

echo "== sluice side-by-side benchmark (bench/run_bench.sh)"
machine_info
profile_note
if ((PIN)); then
  echo "placement: proxy under test on CPU $PROXY_CPUS; wrk and the upstream nginx on CPU $LOAD_CPUS"
else
  echo "placement: not pinned (PIN=0)"
fi
[[ -z "${NICE:-}" ]] || echo "priority:  every benchmark process runs at nice $NICE"
echo "load:    wrk -c $CONNS -t $THREADS -d $DURATION --latency, keep-alive, GET /, $ROUNDS rounds, targets alternating; ${WARMUP} warm-up each"

# --- ports and configs
mapfile -t ports < <(free_ports 6)
up1="${ports[0]}" up2="${ports[1]}" up_status="${ports[2]}"
port_sluice="${ports[3]}" port_nginx="${ports[4]}" port_haproxy="${ports[5]}"
render_confs 1 1

# --- start everything (each proxy stays up for the whole run; idle ones cost nothing)
declare -A port_of pid_of
start_bg upstream "${pin_load[@]}" nginx -p "$BENCH_TMP/" -e "$BENCH_TMP/nginx-upstream.err" \
  -c "$BENCH_TMP/nginx-upstream.conf"
pid_of[upstream]=$LAST_PID port_of[upstream]=$up1
wait_port "$up1" 10 "$LAST_PID" upstream || die "upstream nginx failed to start"
wait_port "$up2" 10 "$LAST_PID" upstream || die "upstream nginx failed to start"

start_bg nginx "${pin_proxy[@]}" nginx -p "$BENCH_TMP/" -e "$BENCH_TMP/nginx-proxy.err" \
  -c "$BENCH_TMP/nginx-proxy.conf"
pid_of[nginx]=$LAST_PID port_of[nginx]=$port_nginx
wait_port "$port_nginx" 10 "$LAST_PID" nginx || die "nginx proxy failed to start"

start_bg haproxy "${pin_proxy[@]}" haproxy -db -f "$BENCH_TMP/haproxy.cfg"
pid_of[haproxy]=$LAST_PID port_of[haproxy]=$port_haproxy
wait_port "$port_haproxy" 10 "$LAST_PID" haproxy || die "haproxy failed to start"

targets=(upstream)
if [[ "$sluice_mode" != off ]]; then
  start_bg sluice "${pin_proxy[@]}" "$sluice_bin" run -c "$BENCH_TMP/sluice.toml"
  pid_of[sluice]=$LAST_PID port_of[sluice]=$port_sluice
  if wait_port "$port_sluice" 15 "$LAST_PID" sluice; then
    targets+=(sluice)
  elif [[ "$sluice_mode" == required ]]; then
    die "sluice ($sluice_bin) failed to start"
  else
    echo "warning: sluice ($sluice_bin) failed to start; leaving it out" >&2
  fi
fi
targets+=(nginx haproxy)

# --- sanity: every target answers 200 on one keep-alive connection; proxies split ~90/10
echo
echo "sanity (400 requests on one keep-alive connection each):"
checked=()
for t in "${targets[@]}"; do
  if run_fg python3 "$BENCH_DIR/keepalive_client.py" --port "${port_of[$t]}" --count 400 --timeout-s 20 \
    >"$BENCH_TMP/sanity.out" 2>&1; then
    res="$(cat "$BENCH_TMP/sanity.out")"
    printf '  %-9s %s\n' "$t" "$res"
    if [[ "$t" != upstream ]]; then
      v2="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bodies"].get("hello from v2",0))' "$res")"
      if ((v2 < 16 || v2 > 64)); then
        echo "  $t: v2 share $v2/400 is not ~10%" >&2
        [[ "$t" == sluice && "$sluice_mode" == auto ]] && continue
        die "$t does not split 90/10"
      fi
    fi
    checked+=("$t")
  else
    printf '  %-9s FAILED: %s\n' "$t" "$(cat "$BENCH_TMP/sanity.out")"
    [[ "$t" == sluice && "$sluice_mode" == auto ]] && continue
    die "$t failed its sanity check"
  fi
done
targets=("${checked[@]}")

# --- runs
clk_tck="$(getconf CLK_TCK)"
results="$BENCH_TMP/results.tsv"
: >"$results"
# run_wrk TARGET DURATION_S: one wrk run; sets WRK_LINE to its result line (conf/wrk_report.lua).
# Runs in this shell (not in $(...)) so a signal stops it at once and cleanup sees its PID.
run_wrk() {
  local t="$1" d="$2"
  if ! run_fg "${pin_load[@]}" timeout $((d + 30)) wrk -c "$CONNS" -t "$THREADS" -d "${d}s" \
    --latency -s "$BENCH_DIR/conf/wrk_report.lua" "http://127.0.0.1:${port_of[$t]}/" \
    >"$BENCH_TMP/wrk.out" 2>&1; then
    cat "$BENCH_TMP/wrk.out" >&2
    die "wrk against $t failed"
  fi
  WRK_LINE="$(grep '^WRKRESULT ' "$BENCH_TMP/wrk.out")" || die "wrk against $t printed no result"
}

echo
echo "warm-up: ${warmup_s}s per target"
for t in "${targets[@]}"; do run_wrk "$t" "$warmup_s"; done

echo "measuring: $ROUNDS rounds x ${#targets[@]} targets x ${duration_s}s"
for ((r = 1; r <= ROUNDS; r++)); do
  for t in "${targets[@]}"; do
    pid="${pid_of[$t]}"
    kill -0 "$pid" 2>/dev/null || die "$t (pid $pid) died"
    c0="$(cpu_ticks "$pid")"
    u0="$(cpu_ticks "${pid_of[upstream]}")"
    k0=0
    ((PIN)) && k0="$(core_busy_ticks "$PROXY_CPUS")"
    run_wrk "$t" "$duration_s"
    c1="$(cpu_ticks "$pid")"
    u1="$(cpu_ticks "${pid_of[upstream]}")"
    k1=0
    ((PIN)) && k1="$(core_busy_ticks "$PROXY_CPUS")"
    printf '%s\t%d\t%d\t%d\t%d\t%s\n' "$t" "$r" $((c1 - c0)) $((u1 - u0)) $((k1 - k0)) \
      "${WRK_LINE#WRKRESULT }" >>"$results"
    printf '  round %d %-9s %s\n' "$r" "$t" "$(awk -F'\t' -v t="$t" -v r="$r" '$1==t && $2==r' "$results" |
      python3 "$BENCH_DIR/bench_table.py" --one-line --clk-tck "$clk_tck" --pinned "$PIN")"
  done
done

hwm_args=()
for t in "${targets[@]}"; do
  hwm_args+=(--hwm "$t=$(vm_hwm_kb "${pid_of[$t]}")")
done

echo
python3 "$BENCH_DIR/bench_table.py" --clk-tck "$clk_tck" "${hwm_args[@]}" --pinned "$PIN" <"$results"

if ((save)); then
  mv "$out_file.partial" "$out_file"
  echo "saved: ${out_file#"$REPO_DIR"/}"
fi
