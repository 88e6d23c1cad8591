#!/usr/bin/env bash
# One run of every figure issue 16 asks for -- throughput, fixed-rate tail latency, per-request
# cost, memory and scaling -- for sluice, nginx and HAProxy side by side, printed as one table
# with ratios and the issue's targets marked met / not met. Progress goes to stderr.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
usage: bench/run_all.sh [--sluice PATH | --no-sluice] [--quick] [--workers 1,2,4,8] [--save]
                        [--rounds N] [--duration S] [--only STEPS]

Steps (all by default, in this order; each proxy runs with one worker/thread except in scaling):
  throughput  wrk -c 64 and -c 256 against upstream, sluice, nginx, HAProxy (targets alternate,
              medians of rounds): req/s, p50, p99, CPU/req, new upstream connections, peak RSS
  open        open-loop fixed rate (bench/tools/loadgen) at 50% and 80% of the slowest proxy's
              best req/s from throughput: p50, p99, p99.9 at the same rate for every target
  sysload     system calls per request under wrk -c 64 (perf, raw_syscalls:sys_enter)
  memory      fresh proxies: RSS delta over 10,000 idle keep-alive connections that each sent
              one request, and RSS after they leave
  cost        callgrind.sh (instructions/request) and syscalls.sh (system calls/request)
  scaling     W workers/threads for W in --workers, each on W pinned CPUs, wrk -c 256

  --sluice PATH   sluice binary (default: \$SLUICE_BIN, build-bench/sluice, build/sluice; if none
                  is found or it fails its sanity check it is left out with a warning)
  --no-sluice     nginx and HAProxy only
  --quick         smoke test, a few minutes: 1 round of 3 s per point, small callgrind counts
  --workers LIST  scaling series (default 1,2,4,8); a W above the CPU count is skipped, and a W
                  that leaves no CPU for the load generator runs with a warning
  --save          also write stdout to bench/results/<UTC date>-run_all[-quick][-plain].txt
  --rounds N      rounds per point (default 3; quick 1)
  --duration S    seconds per wrk run (default 10; quick 3)
  --only STEPS    comma list of the steps above (open needs throughput, or OPEN_BASE=req/s)

environment: PROFILE=equal|plain  PIN=1 (0: no taskset)  NICE=-10 (see run_bench.sh)
             WARMUP=2 CONNS_LIST="64 256" OPEN_PCTS="50 80" OPEN_CONNS=64 OPEN_DURATION=10
             IDLE_CONNS=10000 N1=200 N2=2200 SCALE_CONNS=256 SYSLOAD_DURATION=5 WRK_THREADS
USAGE
}

save=0
quick=0
sluice_mode=auto
sluice_bin=""
workers_arg="1,2,4,8"
only="throughput,open,sysload,memory,cost,scaling"
rounds_arg=""
duration_arg=""
while (($#)); do
  case "$1" in
    --save) save=1 ;;
    --quick) quick=1 ;;
    --no-sluice) sluice_mode=off ;;
    --sluice)
      sluice_mode=required
      sluice_bin="${2:?--sluice needs a path}"
      shift
      ;;
    --workers)
      workers_arg="${2:?}"
      shift
      ;;
    --rounds)
      rounds_arg="${2:?}"
      shift
      ;;
    --duration)
      duration_arg="${2:?}"
      shift
      ;;
    --only)
      only="${2:?}"
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

if ((quick)); then
  ROUNDS="${rounds_arg:-1}" DURATION="${duration_arg:-3}"
  WARMUP="${WARMUP:-1}" OPEN_DURATION="${OPEN_DURATION:-3}" SYSLOAD_DURATION="${SYSLOAD_DURATION:-2}"
  N1="${N1:-50}" N2="${N2:-550}"
else
  ROUNDS="${rounds_arg:-3}" DURATION="${duration_arg:-10}"
  WARMUP="${WARMUP:-2}" OPEN_DURATION="${OPEN_DURATION:-$DURATION}" SYSLOAD_DURATION="${SYSLOAD_DURATION:-5}"
  N1="${N1:-200}" N2="${N2:-2200}"
fi
CONNS_LIST="${CONNS_LIST:-64 256}"
OPEN_PCTS="${OPEN_PCTS:-50 80}"
OPEN_CONNS="${OPEN_CONNS:-64}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
SCALE_CONNS="${SCALE_CONNS:-256}"
PIN="${PIN:-1}"
DURATION="${DURATION%s}"
for v in ROUNDS DURATION WARMUP OPEN_DURATION SYSLOAD_DURATION N1 N2 OPEN_CONNS IDLE_CONNS SCALE_CONNS; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
((N2 > N1)) || die "need N2 > N1"
IFS=, read -ra workers <<<"$workers_arg"
wmax=1
for w in "${workers[@]}"; do
  [[ "$w" =~ ^[0-9]+$ && "$w" -ge 1 ]] || die "--workers takes a comma list of positive integers"
  ((w > wmax)) && wmax=$w
done
want() { [[ ",$only," == *",$1,"* ]]; }
for s in ${only//,/ }; do
  case "$s" in throughput | open | sysload | memory | cost | scaling) ;; *) die "unknown step '$s'" ;; esac
done

t_start=$SECONDS
progress() { printf '[%3dm%02ds] %s\n' $(((SECONDS - t_start) / 60)) $(((SECONDS - t_start) % 60)) "$*" >&2; }

if ((save)); then
  mkdir -p "$BENCH_DIR/results"
  suffix=""
  ((quick)) && suffix="-quick"
  out_file="$BENCH_DIR/results/$(date -u +%Y-%m-%dT%H%MZ)-run_all${suffix}${PROFILE_SUFFIX}.txt"
  exec > >(tee "$out_file.partial")
  tee_pid=$!
fi

"$REPO_DIR/scripts/setup" --bench
for tool in wrk nginx haproxy taskset python3 curl; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup --bench installs it)"
done

if [[ "$sluice_mode" == auto ]]; then
  sluice_bin="$(find_sluice)"
  if [[ -z "$sluice_bin" ]]; then
    echo "note: no sluice binary found (set SLUICE_BIN or build build/sluice); running without sluice" >&2
    sluice_mode=off
  fi
fi
[[ "$sluice_mode" != required || -x "$sluice_bin" ]] || die "sluice binary $sluice_bin is not executable"

# The load tool: from the build next to sluice or in the usual build dirs when it is at least as
# new as its source, otherwise compiled here (it needs nothing but a C++20 compiler).
find_loadgen() {
  local c src="$BENCH_DIR/tools/loadgen.cpp"
  for c in ${sluice_bin:+"$(dirname "$sluice_bin")/bench/loadgen"} "$REPO_DIR/build-bench/bench/loadgen" \
    "$REPO_DIR/build/bench/loadgen"; do
    if [[ -x "$c" && ! "$src" -nt "$c" && ! "$BENCH_DIR/tools/loadgen.h" -nt "$c" ]]; then
      echo "$c"
      return
    fi
  done
  progress "compiling bench/tools/loadgen.cpp"
  c++ -std=c++20 -O2 -o "$BENCH_TMP/loadgen" "$src" >&2 || die "cannot compile $src"
  echo "$BENCH_TMP/loadgen"
}
if want open || want memory; then loadgen="$(find_loadgen)"; fi

# File descriptors: 10,000 idle clients need as many in the proxy (each inherits this limit; nginx
# and HAProxy raise their own from their configs). Root may raise the hard limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if want memory && (($(ulimit -n) < IDLE_CONNS + 1000)); then
  echo "warning: open-file limit $(ulimit -n) is below IDLE_CONNS + 1000; the memory step may fail" >&2
fi

nice_prefix=()
if [[ -n "${NICE:-}" ]]; then
  nice_prefix=(nice -n "$NICE")
  if [[ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null)" == 1 && -w /proc/self/autogroup ]]; then
    BENCH_AUTOGROUP_NICE_RESTORE="$(awk '{ print $3 }' /proc/self/autogroup)"
    echo "$NICE" >/proc/self/autogroup || BENCH_AUTOGROUP_NICE_RESTORE=""
  fi
fi

records="$BENCH_TMP/records"
: >"$records"
rec() { echo "$*" >>"$records"; }

proxies=()
[[ "$sluice_mode" != off ]] && proxies+=(sluice)
proxies+=(nginx haproxy)

# --- header
echo "== sluice vs nginx vs HAProxy, every figure of issue 16 (bench/run_all.sh)"
machine_info
profile_note
echo "run:     rounds $ROUNDS x ${DURATION}s per point (warm-up ${WARMUP}s), wrk -c ${CONNS_LIST// /,}," \
  "open loop ${OPEN_DURATION}s on $OPEN_CONNS connections at ${OPEN_PCTS// /% and }% of the slowest proxy's best req/s," \
  "$IDLE_CONNS idle connections, callgrind/strace N1=$N1 N2=$N2, scaling -c $SCALE_CONNS at W=$workers_arg$( ((quick)) && echo '  [--quick]')"
[[ -z "${NICE:-}" ]] || echo "priority: every benchmark process at nice $NICE"
echo "configs: bench/conf/ (sluice: its defaults except workers, listen/admin addresses and access log off)"

# --- phases: one upstream and the proxies, placed for W workers
declare -A pid_of port_of
targets=()
pin_proxy=() pin_load=() pin_up=()

stop_phase() {
  local t
  for t in "${targets[@]}"; do stop_pid "${pid_of[$t]}" TERM; done
  targets=()
}

# start_phase W [MAXCONN]: picks the CPU placement for W workers, fresh ports and configs
# (MAXCONN: see render_confs), starts the upstream and the proxies and checks each (400 requests
# on one connection, ~10% to v2). Sets targets (upstream first), pid_of, port_of and the pin_*
# prefixes. Returns 1 if W > CPUs.
start_phase() {
  local w="$1" maxconn="${2:-4096}" t ports res v2 checked=()
  plan_cpus "$w" "$wmax" || return 1
  pin_proxy=("${nice_prefix[@]}") pin_load=("${nice_prefix[@]}") pin_up=("${nice_prefix[@]}")
  if ((PIN)); then
    pin_proxy+=(taskset -c "$PROXY_SET")
    pin_load+=(taskset -c "$LOAD_SET")
    pin_up+=(taskset -c "$UPSTREAM_SET")
  else
    SHARED=2
  fi
  rec "placement w=$w proxy=$PROXY_SET load=$LOAD_SET upstream=$UPSTREAM_SET shared=$SHARED pinned=$PIN"
  mapfile -t ports < <(free_ports 6)
  up1="${ports[0]}" up2="${ports[1]}" up_status="${ports[2]}"
  port_sluice="${ports[3]}" port_nginx="${ports[4]}" port_haproxy="${ports[5]}"
  render_confs "$w" "$N_UPSTREAM" "$maxconn"

  start_bg upstream "${pin_up[@]}" nginx -p "$BENCH_TMP/" -e "$BENCH_TMP/nginx-upstream.err" \
    -c "$BENCH_TMP/nginx-upstream.conf"
  pid_of[upstream]=$LAST_PID port_of[upstream]=$up1
  targets=(upstream)
  for p in "$up1" "$up2" "$up_status"; do
    wait_port "$p" 10 "$LAST_PID" upstream || die "upstream nginx failed to start"
  done
  for t in "${proxies[@]}"; do
    case "$t" in
      sluice) start_bg sluice "${pin_proxy[@]}" "$sluice_bin" run -c "$BENCH_TMP/sluice.toml" ;;
      nginx) start_bg nginx "${pin_proxy[@]}" nginx -p "$BENCH_TMP/" -e "$BENCH_TMP/nginx-proxy.err" \
        -c "$BENCH_TMP/nginx-proxy.conf" ;;
      haproxy) start_bg haproxy "${pin_proxy[@]}" haproxy -db -f "$BENCH_TMP/haproxy.cfg" ;;
    esac
    pid_of[$t]=$LAST_PID
    case "$t" in sluice) port_of[$t]=$port_sluice ;; nginx) port_of[$t]=$port_nginx ;; haproxy) port_of[$t]=$port_haproxy ;; esac
    targets+=("$t")
    if ! wait_port "${port_of[$t]}" 15 "$LAST_PID" "$t"; then
      [[ "$t" == sluice && "$sluice_mode" == auto ]] || die "$t failed to start"
      echo "warning: sluice ($sluice_bin) failed to start; leaving it out" >&2
      unset 'targets[-1]'
      proxies=("${proxies[@]:1}")
      sluice_mode=off
    fi
  done
  for t in "${targets[@]}"; do
    if run_fg python3 "$BENCH_DIR/keepalive_client.py" --port "${port_of[$t]}" --count 400 --timeout-s 30 \
      >"$BENCH_TMP/sanity.out" 2>&1; then
      res="$(cat "$BENCH_TMP/sanity.out")"
      v2="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bodies"].get("hello from v2",0))' "$res")"
      if [[ "$t" == upstream ]] || ((v2 >= 16 && v2 <= 64)); then
        checked+=("$t")
        continue
      fi
      res="v2 share $v2/400 is not ~10%"
    else
      res="$(cat "$BENCH_TMP/sanity.out")"
    fi
    [[ "$t" == sluice && "$sluice_mode" == auto ]] || die "$t failed its sanity check: $res"
    echo "warning: sluice failed its sanity check ($res); leaving it out" >&2
    stop_pid "${pid_of[sluice]}" KILL
    proxies=("${proxies[@]:1}")
    sluice_mode=off
  done
  targets=("${checked[@]}")
  progress "W=$w: proxies on CPU $PROXY_SET, load on $LOAD_SET, upstream on $UPSTREAM_SET$(
    case "$SHARED" in 1) echo " (load and upstream share)" ;; 2) echo " -- WARNING: all share the same CPUs" ;; esac
  ); up: ${targets[*]}"
}

wrk_threads() {
  local c="$1" t="${WRK_THREADS:-$N_LOAD}"
  ((t > c)) && t=$c
  echo "$t"
}

# measure_wrk KIND W C TARGET ROUND SECONDS: one wrk run with CPU-time, upstream-accept and
# per-CPU-set busy accounting around it; appends a record (KIND "warmup": nothing recorded).
measure_wrk() {
  local kind="$1" w="$2" c="$3" t="$4" r="$5" d="$6" pid th c0 c1 a0 a1 p0 p1 l0 l1 u0 u1 line
  pid="${pid_of[$t]}"
  kill -0 "$pid" 2>/dev/null || die "$t (pid $pid) died"
  th="$(wrk_threads "$c")"
  c0="$(tree_sum cpu "$pid")" a0="$(upstream_accepts "$up_status")"
  p0="$(core_busy_ticks "$PROXY_SET")" l0="$(core_busy_ticks "$LOAD_SET")" u0="$(core_busy_ticks "$UPSTREAM_SET")"
  if ! run_fg "${pin_load[@]}" timeout $((d + 30)) wrk -c "$c" -t "$th" -d "${d}s" --latency \
    -s "$BENCH_DIR/conf/wrk_report.lua" "http://127.0.0.1:${port_of[$t]}/" >"$BENCH_TMP/wrk.out" 2>&1; then
    cat "$BENCH_TMP/wrk.out" >&2
    die "wrk against $t failed"
  fi
  c1="$(tree_sum cpu "$pid")" a1="$(upstream_accepts "$up_status")"
  p1="$(core_busy_ticks "$PROXY_SET")" l1="$(core_busy_ticks "$LOAD_SET")" u1="$(core_busy_ticks "$UPSTREAM_SET")"
  line="$(grep '^WRKRESULT ' "$BENCH_TMP/wrk.out")" || die "wrk against $t printed no result"
  [[ "$kind" == warmup ]] && return 0
  rec "$kind w=$w c=$c target=$t round=$r threads=$th cpu_ticks=$((c1 - c0)) new_upstream=$((a1 - a0 - 1))" \
    "proxy_busy=$((p1 - p0)) load_busy=$((l1 - l0)) up_busy=$((u1 - u0)) shared=$SHARED ${line#WRKRESULT }"
  progress "  $(tail -1 "$records" | python3 "$BENCH_DIR/report.py" --line)"
}

# measure_open PCT RATE TARGET ROUND: one open-loop run at RATE req/s; appends a record.
measure_open() {
  local pct="$1" rate="$2" t="$3" r="$4" pid c0 c1 a0 a1 line
  pid="${pid_of[$t]}"
  kill -0 "$pid" 2>/dev/null || die "$t (pid $pid) died"
  c0="$(tree_sum cpu "$pid")" a0="$(upstream_accepts "$up_status")"
  if ! run_fg "${pin_load[@]}" timeout $((OPEN_DURATION + 30)) "$loadgen" rate --port "${port_of[$t]}" \
    --rate "$rate" --duration-s "$OPEN_DURATION" --conns "$OPEN_CONNS" --drain-s 2 \
    >"$BENCH_TMP/loadgen.out" 2>"$BENCH_TMP/loadgen.err"; then
    cat "$BENCH_TMP/loadgen.err" >&2
    die "loadgen against $t failed"
  fi
  c1="$(tree_sum cpu "$pid")" a1="$(upstream_accepts "$up_status")"
  line="$(grep '^LOADGEN ' "$BENCH_TMP/loadgen.out")" || die "loadgen against $t printed no result"
  rec "open w=1 pct=$pct target=$t round=$r cpu_ticks=$((c1 - c0)) new_upstream=$((a1 - a0 - 1)) shared=$SHARED ${line#LOADGEN }"
  progress "  $(tail -1 "$records" | python3 "$BENCH_DIR/report.py" --line)"
}

# measure_sysload TARGET: system calls of TARGET (all its processes and threads) over a wrk -c 64
# run, counted by perf on the raw_syscalls:sys_enter tracepoint.
measure_sysload() {
  local t="$1" pid pids perf_pid count line reqs c=64
  pid="${pid_of[$t]}"
  pids="$(tree_pids "$pid" | paste -sd, -)"
  start_bg "perf-$t" "${pin_load[@]}" perf stat -x, -e raw_syscalls:sys_enter -p "$pids" -o "$BENCH_TMP/perf.$t"
  perf_pid=$LAST_PID
  sleep 0.5
  run_fg "${pin_load[@]}" timeout $((SYSLOAD_DURATION + 30)) wrk -c "$c" -t "$(wrk_threads "$c")" \
    -d "${SYSLOAD_DURATION}s" -s "$BENCH_DIR/conf/wrk_report.lua" "http://127.0.0.1:${port_of[$t]}/" \
    >"$BENCH_TMP/wrk.out" 2>&1 || die "wrk against $t failed"
  stop_pid "$perf_pid" INT
  count="$(awk -F, '/raw_syscalls:sys_enter/ { print $1; exit }' "$BENCH_TMP/perf.$t" 2>/dev/null)"
  line="$(grep '^WRKRESULT ' "$BENCH_TMP/wrk.out")" || die "wrk against $t printed no result"
  reqs="$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")"
  if [[ "$count" =~ ^[0-9]+$ ]]; then
    rec "sysload target=$t c=$c requests=$reqs syscalls=$count"
    progress "  $t: $count system calls for $reqs requests"
  else
    progress "  $t: perf counted nothing (see $BENCH_TMP/perf.$t); skipped"
  fi
}

perf_usable() {
  command -v perf >/dev/null && perf stat -x, -e raw_syscalls:sys_enter -o /dev/null -- true >/dev/null 2>&1
}

# --- estimate
n_t=$((${#proxies[@]} + 1)) n_c=$(wc -w <<<"$CONNS_LIST") n_o=$(wc -w <<<"$OPEN_PCTS")
n_scale=0
for w in "${workers[@]}"; do
  if ((w > 1)) && ((w <= $(wc -w <<<"$(cpus_allowed)"))); then n_scale=$((n_scale + 1)); fi
done
est=0
want throughput && est=$((est + n_c * n_t * (WARMUP + ROUNDS * DURATION + 2)))
want open && est=$((est + n_o * n_t * ROUNDS * (OPEN_DURATION + 2)))
want sysload && est=$((est + (n_t - 1) * (SYSLOAD_DURATION + 2)))
want memory && est=$((est + 40))
want cost && est=$((est + 30 + (N1 + N2) * 3 / 50))
want scaling && est=$((est + n_scale * ((n_t - 1) * (WARMUP + ROUNDS * DURATION + 2) + 10)))
progress "estimated run time: about $((est / 60 + 1)) min; steps: $only"

# --- W=1: throughput, open loop, system calls under load
if want throughput || want open || want sysload; then
  start_phase 1 || die "no CPU to run on"
  declare -A idle_kb
  for t in "${targets[@]}"; do idle_kb[$t]="$(tree_sum rss "${pid_of[$t]}")"; done
fi

if want throughput; then
  progress "throughput: wrk -c ${CONNS_LIST// /, -c }, ${ROUNDS} rounds x ${DURATION}s, targets alternating"
  hwm_reset=1
  top_c="$(tr ' ' '\n' <<<"$CONNS_LIST" | sort -n | tail -1)"
  for c in $CONNS_LIST; do
    if ((c == top_c)); then
      for t in "${targets[@]}"; do reset_hwm "${pid_of[$t]}" || hwm_reset=0; done
    fi
    for t in "${targets[@]}"; do measure_wrk warmup 1 "$c" "$t" 0 "$WARMUP"; done
    for ((r = 1; r <= ROUNDS; r++)); do
      for t in "${targets[@]}"; do measure_wrk wrk 1 "$c" "$t" "$r" "$DURATION"; done
    done
  done
  sleep 2 # the clients have left; give the proxies a moment to free what they will
  for t in "${targets[@]}"; do
    rec "rss target=$t c=$top_c idle_kb=${idle_kb[$t]} peak_kb=$(tree_sum hwm "${pid_of[$t]}")" \
      "after_kb=$(tree_sum rss "${pid_of[$t]}") hwm_reset=$hwm_reset"
  done
fi

if want open; then
  base="${OPEN_BASE:-$(python3 "$BENCH_DIR/report.py" --slowest-max <"$records")}"
  if [[ "$base" =~ ^[0-9]+$ ]] && ((base > 0)); then
    rec "openbase rps=$base source=$([[ -n "${OPEN_BASE:-}" ]] && echo env || echo throughput)"
    for pct in $OPEN_PCTS; do
      rate=$((base * pct / 100))
      progress "open loop: $rate req/s ($pct% of $base), $OPEN_CONNS connections, ${OPEN_DURATION}s, ${ROUNDS} rounds"
      for ((r = 1; r <= ROUNDS; r++)); do
        for t in "${targets[@]}"; do measure_open "$pct" "$rate" "$t" "$r"; done
      done
    done
  else
    progress "open loop skipped: no throughput figures to take the rate from (set OPEN_BASE=req/s)"
  fi
fi

if want sysload; then
  if perf_usable; then
    progress "system calls under load: perf stat -e raw_syscalls:sys_enter, wrk -c 64 ${SYSLOAD_DURATION}s"
    for t in "${targets[@]}"; do
      [[ "$t" == upstream ]] || measure_sysload "$t"
    done
  else
    progress "system calls under load skipped: perf cannot count raw_syscalls:sys_enter here"
    rec "note sysload=unavailable"
  fi
fi
stop_phase

# --- memory: fresh proxies, one at a time gets IDLE_CONNS idle keep-alive clients
if want memory; then
  start_phase 1 $((IDLE_CONNS + 1024)) || die "no CPU to run on"
  progress "memory: $IDLE_CONNS idle keep-alive connections per proxy (fresh processes)"
  for t in "${targets[@]}"; do
    [[ "$t" == upstream ]] && continue
    sleep 1
    rss0="$(tree_sum rss "${pid_of[$t]}")"
    start_bg "idle-$t" "${pin_load[@]}" "$loadgen" idle --port "${port_of[$t]}" --conns "$IDLE_CONNS" \
      --hold-s 120 --setup-s 60
    ipid=$LAST_PID
    for ((i = 0; i < 900; i++)); do
      grep -q '^READY ' "$BENCH_TMP/idle-$t.log" 2>/dev/null && break
      kill -0 "$ipid" 2>/dev/null || break
      sleep 0.1
    done
    ready="$(grep '^READY ' "$BENCH_TMP/idle-$t.log" || true)"
    if [[ -z "$ready" ]]; then
      sed 's/^/  | /' "$BENCH_TMP/idle-$t.log" >&2
      stop_pid "$ipid" KILL
      progress "  $t: the idle clients did not get ready; skipped"
      continue
    fi
    sleep 1
    rss1="$(tree_sum rss "${pid_of[$t]}")"
    stop_pid "$ipid" TERM
    sleep 2
    rss2="$(tree_sum rss "${pid_of[$t]}")"
    held="$(grep '^IDLE ' "$BENCH_TMP/idle-$t.log" || true)"
    rec "idle target=$t rss0_kb=$rss0 rss1_kb=$rss1 rss2_kb=$rss2 ${ready#READY } ${held#IDLE }"
    progress "  $(tail -1 "$records" | python3 "$BENCH_DIR/report.py" --line)"
  done
  stop_phase
fi

# --- per-request cost: callgrind.sh and syscalls.sh (their own upstream; counts, not timings)
if want cost; then
  cost_args=(--n1 "$N1" --n2 "$N2" --records "$records")
  if [[ "$sluice_mode" == off ]]; then cost_args+=(--no-sluice); else cost_args+=(--sluice "$sluice_bin"); fi
  if command -v valgrind >/dev/null; then
    progress "instructions per request: bench/callgrind.sh (N1=$N1, N2=$N2)"
    run_fg "$BENCH_DIR/callgrind.sh" "${cost_args[@]}" >"$BENCH_TMP/callgrind.out" 2>&1 ||
      { sed 's/^/  | /' "$BENCH_TMP/callgrind.out" >&2; progress "  callgrind.sh failed; skipped"; }
  fi
  if command -v strace >/dev/null; then
    progress "system calls per request: bench/syscalls.sh (N1=$N1, N2=$N2)"
    run_fg "$BENCH_DIR/syscalls.sh" "${cost_args[@]}" >"$BENCH_TMP/syscalls.out" 2>&1 ||
      { sed 's/^/  | /' "$BENCH_TMP/syscalls.out" >&2; progress "  syscalls.sh failed; skipped"; }
  fi
fi

# --- scaling: W workers on W CPUs, wrk -c SCALE_CONNS; W=1 comes from the throughput step when
# it ran at that concurrency (same placement), otherwise it is measured here too.
if want scaling; then
  have_w1=0
  if want throughput && [[ " $CONNS_LIST " == *" $SCALE_CONNS "* ]]; then have_w1=1; fi
  for w in "${workers[@]}"; do
    ((w == 1 && have_w1)) && continue
    if ! start_phase "$w"; then
      rec "skip w=$w reason=only_$(wc -w <<<"$(cpus_allowed)")_cpus"
      progress "scaling: W=$w skipped: this machine has $(wc -w <<<"$(cpus_allowed)") CPUs"
      continue
    fi
    progress "scaling: W=$w, wrk -c $SCALE_CONNS, ${ROUNDS} rounds x ${DURATION}s"
    for t in "${targets[@]}"; do
      [[ "$t" == upstream ]] || measure_wrk warmup "$w" "$SCALE_CONNS" "$t" 0 "$WARMUP"
    done
    for ((r = 1; r <= ROUNDS; r++)); do
      for t in "${targets[@]}"; do
        [[ "$t" == upstream ]] || measure_wrk wrk "$w" "$SCALE_CONNS" "$t" "$r" "$DURATION"
      done
    done
    stop_phase
  done
fi

progress "done in $(((SECONDS - t_start) / 60))m$(((SECONDS - t_start) % 60))s"
echo
if [[ -s "$BENCH_TMP/callgrind.out" ]]; then
  echo "--- bench/callgrind.sh (instructions per request, N1=$N1 N2=$N2)"
  awk '/^proxy /, /^$/' "$BENCH_TMP/callgrind.out"
fi
if [[ -s "$BENCH_TMP/syscalls.out" ]]; then
  echo "--- bench/syscalls.sh (system calls per request, one sequential keep-alive client)"
  awk '/^syscall /, /^total /' "$BENCH_TMP/syscalls.out"
  echo
fi
python3 "$BENCH_DIR/report.py" --clk-tck "$(getconf CLK_TCK)" --scale-conns "$SCALE_CONNS" \
  --workers "$workers_arg" <"$records"

if ((save)); then
  echo
  echo "--- raw records (input of bench/report.py; keep them to re-print or compare the table)"
  cat "$records"
  exec >&2 # closes the pipe to tee; wait until it has written everything
  wait "$tee_pid" 2>/dev/null || true
  mv "$out_file.partial" "$out_file"
  echo "saved: ${out_file#"$REPO_DIR"/}"
fi
