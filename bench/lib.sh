# bench/lib.sh: helpers shared by the bench scripts (sourced, not run directly).
# Tracks every process it starts by PID and stops them (and removes the temp dir) at exit.
# shellcheck shell=bash

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
BENCH_PIDS=()
BENCH_TMP="$(mktemp -d /tmp/sluice-bench.XXXXXX)"

bench_cleanup() {
  local pid i
  for pid in "${BENCH_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  BENCH_PIDS=()
  rm -rf "$BENCH_TMP"
  if [[ -n "${BENCH_AUTOGROUP_NICE_RESTORE:-}" ]]; then
    echo "$BENCH_AUTOGROUP_NICE_RESTORE" >/proc/self/autogroup 2>/dev/null || true
  fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

# free_ports N: prints N distinct free loopback TCP ports, one per line.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
PY
}

# PROFILE: "equal" (default) keeps the nginx/HAProxy config lines marked "# equal-work" (the
# forwarding/request-id/version headers sluice adds by default); "plain" drops them.
PROFILE="${PROFILE:-equal}"
case "$PROFILE" in
  equal | plain) ;;
  *)
    echo "PROFILE must be equal or plain" >&2
    exit 2
    ;;
esac

PROFILE_SUFFIX=""
# shellcheck disable=SC2034 # used by the scripts that source this file
if [[ "$PROFILE" == plain ]]; then PROFILE_SUFFIX="-plain"; fi

# render TEMPLATE OUT KEY=VALUE...: copies TEMPLATE to OUT replacing each @KEY@ with VALUE (and
# dropping "# equal-work" lines when PROFILE=plain).
render() {
  local src="$1" dst="$2" kv args=()
  shift 2
  for kv in "$@"; do
    args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
  done
  [[ "$PROFILE" == plain ]] && args+=(-e '/# equal-work$/d')
  sed "${args[@]}" "$src" >"$dst"
}

# profile_note: one line saying what per-request header work the comparison proxies do.
profile_note() {
  if [[ "$PROFILE" == equal ]]; then
    echo "profile: equal -- nginx/HAProxy add X-Forwarded-For/-Proto/-Host, Via, x-request-id and a served-by response header, like sluice"
  else
    echo "profile: plain -- nginx/HAProxy forward without extra headers (sluice still adds its default headers)"
  fi
}

# start_bg NAME CMD...: starts CMD in the background, output to $BENCH_TMP/NAME.log; sets
# LAST_PID and records the PID for cleanup. (taskset and valgrind exec, so the PID is the server.)
start_bg() {
  local name="$1"
  shift
  "$@" >"$BENCH_TMP/$name.log" 2>&1 &
  LAST_PID=$!
  BENCH_PIDS+=("$LAST_PID")
}

# run_fg CMD...: runs CMD to completion like a foreground command, but as a tracked background
# job, so a signal to this script interrupts the wait at once and cleanup stops CMD too.
run_fg() {
  local pid rc=0 keep=() p
  "$@" &
  pid=$!
  BENCH_PIDS+=("$pid")
  wait "$pid" || rc=$?
  for p in "${BENCH_PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
  return "$rc"
}

# stop_pid PID [SIGNAL]: signals PID, waits up to 60 s for it to exit (valgrind writes its
# output at exit), then kills it; removes it from the cleanup list.
stop_pid() {
  local pid="$1" sig="${2:-TERM}" i keep=() p
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 600; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${BENCH_PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
}

# wait_port PORT TIMEOUT_S PID NAME: waits until 127.0.0.1:PORT accepts; fails if PID exits.
wait_port() {
  local port="$1" timeout_s="$2" pid="$3" name="$4" deadline
  deadline=$((SECONDS + timeout_s))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited during start-up; its output:" >&2
      sed 's/^/  | /' "$BENCH_TMP/$name.log" >&2 || true
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "$name did not accept on port $port within ${timeout_s}s; its output:" >&2
  sed 's/^/  | /' "$BENCH_TMP/$name.log" >&2 || true
  return 1
}

# cpu_ticks PID: user+system CPU time of PID (all its threads) in clock ticks.
cpu_ticks() {
  local stat
  stat="$(cat "/proc/$1/stat")"
  stat="${stat##*) }" # fields after "(comm) "; utime and stime are fields 14 and 15 overall
  awk '{ print $12 + $13 }' <<<"$stat"
}

# vm_hwm_kb PID: peak resident set size of PID in KiB.
vm_hwm_kb() {
  awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# tree_pids PID: PID and all its descendants (nginx's master and workers), one per line.
tree_pids() {
  local pid="$1" t c kids
  echo "$pid"
  for t in /proc/"$pid"/task/*/children; do
    [[ -r "$t" ]] || continue
    read -ra kids <"$t" 2>/dev/null || true
    for c in "${kids[@]}"; do tree_pids "$c"; done
  done
}

# tree_sum WHAT PID: sum over PID and its descendants of WHAT: cpu (utime+stime clock ticks),
# rss or hwm (VmRSS / VmHWM in KiB). Processes that exit meanwhile count as 0.
tree_sum() {
  local what="$1" pid sum=0 v
  for pid in $(tree_pids "$2"); do
    case "$what" in
      cpu) v="$(cpu_ticks "$pid" 2>/dev/null)" || v=0 ;;
      rss) v="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)" || v=0 ;;
      hwm) v="$(vm_hwm_kb "$pid" 2>/dev/null)" || v=0 ;;
    esac
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# reset_hwm PID: resets the peak RSS (VmHWM) of PID and its descendants (Linux >= 4.0);
# fails if the kernel refuses.
reset_hwm() {
  local pid
  for pid in $(tree_pids "$1"); do
    echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || return 1
  done
}

# cpus_allowed: the CPUs the benchmark may use (e.g. "0 1 2 3"): $CPUS if set (a taskset-style
# list such as "2-17"), else every CPU this script may run on (Cpus_allowed_list).
cpus_allowed() {
  local list part a b ids=()
  list="${CPUS:-$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status)}"
  IFS=, read -ra parts <<<"$list"
  for part in "${parts[@]}"; do
    if [[ "$part" == *-* ]]; then
      a="${part%-*}" b="${part#*-}"
      for ((; a <= b; a++)); do ids+=("$a"); done
    else
      ids+=("$part")
    fi
  done
  echo "${ids[@]}"
}

# join_by_comma ITEM...: the items joined with commas.
join_by_comma() {
  local IFS=,
  echo "$*"
}

# plan_cpus W WMAX: CPU placement for a run with W proxy workers in a series going up to WMAX.
# Sets PROXY_SET, LOAD_SET, UPSTREAM_SET (taskset lists), N_LOAD, N_UPSTREAM and SHARED:
#   0  proxy, load generator and upstream each on CPUs of their own; with enough CPUs the load
#      and upstream CPUs are the same at every W (those left after WMAX proxy CPUs), so the
#      series measures only the proxy;
#   1  the proxy alone on its W CPUs; load generator and upstream share the one CPU left;
#   2  fewer than W+1 CPUs: everything shares all CPUs (the figures mean little).
# Returns 1 if the machine has fewer than W CPUs.
# shellcheck disable=SC2034  # the sets are read by the caller
plan_cpus() {
  local w="$1" wmax="$2" cpus rest n_rest
  read -ra cpus <<<"$(cpus_allowed)"
  local n=${#cpus[@]}
  ((w <= n)) || return 1
  PROXY_SET="$(join_by_comma "${cpus[@]:0:w}")"
  if ((n >= wmax + 2)); then
    rest=("${cpus[@]:wmax}")
  elif ((n >= w + 2)); then
    rest=("${cpus[@]:w}")
  elif ((n == w + 1)); then
    LOAD_SET="${cpus[w]}" UPSTREAM_SET="${cpus[w]}" N_LOAD=1 N_UPSTREAM=1 SHARED=1
    return 0
  else
    LOAD_SET="$(join_by_comma "${cpus[@]}")" UPSTREAM_SET="$LOAD_SET" PROXY_SET="$LOAD_SET"
    N_LOAD=$n N_UPSTREAM=$n SHARED=2
    return 0
  fi
  n_rest=${#rest[@]}
  N_LOAD=$(((n_rest + 1) / 2))
  N_UPSTREAM=$((n_rest - N_LOAD))
  LOAD_SET="$(join_by_comma "${rest[@]:0:N_LOAD}")"
  UPSTREAM_SET="$(join_by_comma "${rest[@]:N_LOAD}")"
  SHARED=0
}

# upstream_accepts PORT: connections the upstream nginx has accepted so far (stub_status on
# PORT; the query's own connection is included, so subtract 1 from a difference of two reads).
upstream_accepts() {
  local line
  line="$(curl -s --max-time 5 "http://127.0.0.1:$1/status" | sed -n 3p)"
  if ! [[ "$line" =~ ^\ *[0-9]+ ]]; then
    echo "cannot read the upstream nginx's stub_status on port $1" >&2
    return 1
  fi
  awk '{ print $1 }' <<<"$line"
}

# render_confs WORKERS UP_WORKERS [MAXCONN]: renders the four configs into $BENCH_TMP, from the
# ports in up1 up2 up_status port_sluice port_nginx port_haproxy. WORKERS is every proxy's
# worker/thread count; UP_WORKERS the upstream nginx's. One process per proxy when WORKERS is 1
# (nginx without a master), so its CPU time and RSS are that one process's. MAXCONN (default
# 4096) sizes nginx's worker_connections and HAProxy's maxconn, which both preallocate.
render_confs() {
  local w="$1" uw="$2" maxconn="${3:-4096}" master=off up_master=off subst
  ((w > 1)) && master=on
  ((uw > 1)) && up_master=on
  subst=(DIR="$BENCH_TMP" UP1="$up1" UP2="$up2" STATUS="$up_status")
  render "$BENCH_DIR/conf/nginx-upstream.conf" "$BENCH_TMP/nginx-upstream.conf" "${subst[@]}" \
    WORKERS="$uw" MASTER="$up_master"
  render "$BENCH_DIR/conf/nginx-proxy.conf" "$BENCH_TMP/nginx-proxy.conf" "${subst[@]}" \
    PORT="$port_nginx" WORKERS="$w" MASTER="$master" MAXCONN="$maxconn"
  render "$BENCH_DIR/conf/haproxy.cfg" "$BENCH_TMP/haproxy.cfg" "${subst[@]}" PORT="$port_haproxy" \
    WORKERS="$w" MAXCONN="$maxconn"
  render "$BENCH_DIR/conf/sluice.toml" "$BENCH_TMP/sluice.toml" "${subst[@]}" PORT="$port_sluice" \
    WORKERS="$w" MAXCONN="$maxconn" MAXCONN_ALL="$((maxconn > 10000 ? maxconn : 10000))"
  if grep -l '@[A-Z0-9_]*@' "$BENCH_TMP"/nginx-*.conf "$BENCH_TMP"/haproxy.cfg "$BENCH_TMP"/sluice.toml >&2; then
    die "a config above still has an @PLACEHOLDER@"
  fi
}

# machine_info: one block describing the machine and tool versions.
machine_info() {
  local model
  model="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  [[ -n "$model" ]] || model="$(lscpu 2>/dev/null | awk -F': *' '/Model name/ { print $2; exit }')"
  echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "machine: $(nproc) CPUs, ${model:-unknown CPU}, kernel $(uname -r), load avg $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "tools:   $(nginx -v 2>&1 | sed 's/.*version: //'), $(haproxy -v 2>/dev/null | head -1 | awk '{ print "haproxy/" $3 }'), $(wrk -v 2>&1 | head -1 | awk '{ print "wrk/" $2 }')"
  local tree bin="${sluice_bin:-}"
  tree="tree $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?')"
  git -C "$REPO_DIR" diff --quiet HEAD -- proxy 2>/dev/null || tree+=" + uncommitted changes in proxy/"
  if [[ -n "$bin" && -x "$bin" ]]; then
    echo "sluice:  $bin (built $(date -u -r "$bin" '+%Y-%m-%d %H:%M UTC'); $tree)"
  else
    echo "sluice:  not measured ($tree)"
  fi
}

# find_sluice: prints the sluice binary to use ($SLUICE_BIN, else the usual build dirs) or nothing.
find_sluice() {
  local c
  if [[ -n "${SLUICE_BIN:-}" ]]; then
    echo "$SLUICE_BIN"
    return
  fi
  for c in "$REPO_DIR/build-bench/sluice" "$REPO_DIR/build/sluice"; do
    if [[ -x "$c" ]]; then
      echo "$c"
      return
    fi
  done
}

# core_busy_ticks CPULIST: busy (non-idle) clock ticks of the given CPUs ("0" or "0,1") from
# /proc/stat: user+nice+system+irq+softirq+steal.
core_busy_ticks() {
  awk -v list="$1" 'BEGIN { n = split(list, c, ","); for (i = 1; i <= n; i++) want["cpu" c[i]] = 1 }
    ($1 in want) { s += $2 + $3 + $4 + $7 + $8 + $9 } END { print s + 0 }' /proc/stat
}

# --- shared by callgrind.sh and syscalls.sh: N1 then N2 sequential requests under a tracer ---

# seq_prepare NAME TOOL: checks N1 < N2, starts the --save capture (bench/results/<date>-NAME.txt),
# installs and checks the tools, and resolves sluice_bin / sluice_mode. Sets out_file.
# The caller sets N1, N2, save, sluice_mode and sluice_bin.
# shellcheck disable=SC2154
seq_prepare() {
  local name="$1" tool="$2" t
  if ! [[ "$N1" =~ ^[0-9]+$ && "$N2" =~ ^[0-9]+$ ]] || ((N2 <= N1)); then die "need integers N2 > N1"; fi
  if ((save)); then
    mkdir -p "$BENCH_DIR/results"
    out_file="$BENCH_DIR/results/$(date -u +%Y-%m-%dT%H%MZ)-${name}${PROFILE_SUFFIX}.txt"
    exec > >(tee "$out_file.partial") 2>&1
  fi
  "$REPO_DIR/scripts/setup" --bench
  for t in "$tool" nginx haproxy python3; do
    command -v "$t" >/dev/null || die "$t not found (scripts/setup --bench installs it)"
  done
  if [[ "$sluice_mode" == auto ]]; then
    sluice_bin="$(find_sluice)"
    if [[ -z "$sluice_bin" ]]; then
      echo "note: no sluice binary found (set SLUICE_BIN or build build-bench/sluice); running without sluice" >&2
      sluice_mode=off
    fi
  fi
  [[ "$sluice_mode" != required || -x "$sluice_bin" ]] || die "sluice binary $sluice_bin is not executable"
}

# seq_start_upstream: picks free ports (up1 up2 port), renders every config into $BENCH_TMP and
# starts the upstream nginx.
seq_start_upstream() {
  local ports
  mapfile -t ports < <(free_ports 4)
  up1="${ports[0]}" up2="${ports[1]}" up_status="${ports[2]}" port="${ports[3]}"
  port_sluice="$port" port_nginx="$port" port_haproxy="$port"
  render_confs 1 1
  start_bg upstream nginx -p "$BENCH_TMP/" -e "$BENCH_TMP/nginx-upstream.err" -c "$BENCH_TMP/nginx-upstream.conf"
  wait_port "$up1" 10 "$LAST_PID" upstream || die "upstream nginx failed to start"
  wait_port "$up2" 10 "$LAST_PID" upstream || die "upstream nginx failed to start"
}

# seq_proxy_cmd NAME: sets CMD to that proxy's command line (configs from seq_start_upstream).
# shellcheck disable=SC2034  # CMD is read by the caller
seq_proxy_cmd() {
  case "$1" in
    sluice) CMD=("$sluice_bin" run -c "$BENCH_TMP/sluice.toml") ;;
    nginx) CMD=(nginx -p "$BENCH_TMP/" -e "$BENCH_TMP/nginx-proxy.err" -c "$BENCH_TMP/nginx-proxy.conf") ;;
    haproxy) CMD=(haproxy -db -f "$BENCH_TMP/haproxy.cfg") ;;
  esac
}
