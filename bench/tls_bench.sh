#!/usr/bin/env bash
# TLS termination side by side: sluice, nginx and HAProxy (one worker/thread each) terminate TLS
# with the same ECDSA P-256 certificate and proxy plain HTTP/1.1 keep-alive to the same upstream
# nginx. Measures keep-alive req/s over TLS 1.3, new TLS connections per second (one request
# each; resumed and full handshakes) and RSS per idle TLS connection, and prints one table with
# the ratios sluice/nginx and sluice/HAProxy.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
usage: bench/tls_bench.sh [--sluice PATH] [--quick] [--save] [--rounds N] [--duration S]

Steps, on the same processes, in this order (targets alternate within each round; medians):
  memory     RSS of each proxy before, with IDLE_CONNS idle TLS keep-alive connections (each did a
             full TLS 1.3 handshake and one request: bench/tls_client.py idle), and 2 s after they
             left; the other two proxies are idle meanwhile
  keep-alive wrk -c CONNS --latency https://... (TLS 1.3, keep-alive): req/s, p50, p99, CPU/req
  resumed    wrk -c HS_CONNS --latency -H 'Connection: close': the proxy answers and closes, and wrk
             reconnects. wrk keeps its SSL object (SSL_clear), so each reconnect RESUMES the session
             from the ticket the proxy sent (PSK with a fresh X25519 exchange, no certificate
             signature): new connections/s with resumed handshakes
  full       FULL_CONNS parallel 'openssl s_time -new' loops, one HTTP/1.1 "Connection: close"
             request per connection: new connections/s with full handshakes (ECDSA signature)
  Before the runs, an nginx probe server logs what wrk and s_time do (one request per connection?
  session resumed?), and each proxy is checked to close after answering 'Connection: close'.

  --sluice PATH   sluice binary with TLS listeners (default: \$SLUICE_BIN, build-bench/sluice,
                  build/sluice); copied into the temp dir first, so a rebuild cannot swap it
  --quick         smoke test, about 1 minute: 1 round of 3 s per point, 1,000 idle connections
  --save          also write stdout to bench/results/<UTC date>-tls_bench[-quick][-plain].txt
  --rounds N      rounds per point (default 3; quick 1)
  --duration S    seconds per run (default 5; quick 3)

environment: CONNS=64 HS_CONNS=64 FULL_CONNS=16 IDLE_CONNS=5000 (quick 1000) WARMUP=2 (quick 1)
             PROFILE=equal|plain  PIN=1 (0: no taskset)  CPUS (see bench/README.md)
USAGE
}

save=0
quick=0
sluice_bin=""
rounds_arg=""
duration_arg=""
while (($#)); do
  case "$1" in
    --save) save=1 ;;
    --quick) quick=1 ;;
    --sluice)
      sluice_bin="${2:?--sluice needs a path}"
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
  ROUNDS="${rounds_arg:-1}" DURATION="${duration_arg:-3}" WARMUP="${WARMUP:-1}"
  IDLE_CONNS="${IDLE_CONNS:-1000}"
else
  ROUNDS="${rounds_arg:-3}" DURATION="${duration_arg:-5}" WARMUP="${WARMUP:-2}"
  IDLE_CONNS="${IDLE_CONNS:-5000}"
fi
CONNS="${CONNS:-64}"
HS_CONNS="${HS_CONNS:-64}"
FULL_CONNS="${FULL_CONNS:-16}"
PIN="${PIN:-1}"
DURATION="${DURATION%s}"
for v in ROUNDS DURATION WARMUP IDLE_CONNS CONNS HS_CONNS FULL_CONNS; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done

if ((save)); then
  mkdir -p "$BENCH_DIR/results"
  suffix=""
  ((quick)) && suffix="-quick"
  out_file="$BENCH_DIR/results/$(date -u +%Y-%m-%dT%H%MZ)-tls_bench${suffix}${PROFILE_SUFFIX}.txt"
  exec > >(tee "$out_file.partial")
  tee_pid=$!
fi

"$REPO_DIR/scripts/setup" --bench
for tool in wrk nginx haproxy taskset python3 openssl curl; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup --bench installs it)"
done
[[ -n "$sluice_bin" ]] || sluice_bin="$(find_sluice)"
[[ -n "$sluice_bin" && -x "$sluice_bin" ]] ||
  die "no sluice binary (--sluice PATH, SLUICE_BIN, or build build/sluice)"

# Idle clients need as many descriptors in the client and in each proxy (nginx and HAProxy raise
# their own limits from their configs; sluice inherits this one).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= IDLE_CONNS + 1000)) || echo "warning: open-file limit $(ulimit -n) is below IDLE_CONNS + 1000" >&2

plan_cpus 1 1 || die "no CPU to run on"
pin_proxy=() pin_load=() pin_up=()
if ((PIN)); then
  pin_proxy=(taskset -c "$PROXY_SET") pin_load=(taskset -c "$LOAD_SET") pin_up=(taskset -c "$UPSTREAM_SET")
else
  SHARED=2
fi

echo "== TLS termination: sluice vs nginx vs HAProxy (bench/tls_bench.sh)"
machine_info
profile_note
if ((PIN)); then
  echo "placement: proxies on CPU $PROXY_SET; load generators and the upstream nginx on CPU $LOAD_SET$(
    ((SHARED == 2)) && echo ' -- WARNING: all share the same CPUs')"
else
  echo "placement: not pinned (PIN=0)"
fi
echo "run:     TLS 1.3 (X25519, ECDSA P-256 leaf); keep-alive wrk -c $CONNS; resumed: wrk -c $HS_CONNS" \
  "-H 'Connection: close'; full: $FULL_CONNS x openssl s_time -new; $ROUNDS rounds x ${DURATION}s" \
  "(warm-up ${WARMUP}s); $IDLE_CONNS idle TLS connections$( ((quick)) && echo '  [--quick]')"

# --- certificates: a throwaway CA and an ECDSA P-256 leaf for IP 127.0.0.1 (the "ip" pair of
# tests/tls_test_certs.sh, which makes them with the openssl CLI); HAProxy wants the certificate
# and key in one file.
certs="$BENCH_TMP/certs"
run_fg "$REPO_DIR/tests/tls_test_certs.sh" "$certs" >"$BENCH_TMP/certs.log" 2>&1 ||
  { cat "$BENCH_TMP/certs.log" >&2; die "cannot make the test certificates"; }
cat "$certs/ip.pem" "$certs/ip.key" >"$certs/ip-combined.pem"

# --- configs: bench/conf's plain-HTTP templates (the same proxying work as run_all.sh), plus TLS
# from conf/*-tls.*
mapfile -t ports < <(free_ports 7)
up1="${ports[0]}" up2="${ports[1]}" up_status="${ports[2]}"
port_sluice="${ports[3]}" port_nginx="${ports[4]}" port_haproxy="${ports[5]}" port_probe="${ports[6]}"
render_confs 1 1 $((IDLE_CONNS + 1024))
tls_subst=(DIR="$BENCH_TMP" CERT="$certs/ip.pem" KEY="$certs/ip.key" PROBE="$port_probe")
render "$BENCH_DIR/conf/nginx-proxy-tls.conf" "$BENCH_TMP/nginx-proxy-tls.conf" "${tls_subst[@]}"
render "$BENCH_DIR/conf/sluice-tls.toml" "$BENCH_TMP/sluice-tls.toml" "${tls_subst[@]}"
sed -i -e "s|^\( *listen 127\.0\.0\.1:$port_nginx\) |\1 ssl |" \
  -e "s|^http {\$|&\n  include $BENCH_TMP/nginx-proxy-tls.conf;|" "$BENCH_TMP/nginx-proxy.conf"
# HAProxy applies ssl-default-bind-* to the bind lines that follow, so its TLS globals go first.
sed -e "s|^\( *bind 127\.0\.0\.1:$port_haproxy\)\$|\1 ssl crt $certs/ip-combined.pem|" \
  -e 's|X-Forwarded-Proto http |X-Forwarded-Proto https |' "$BENCH_TMP/haproxy.cfg" |
  cat "$BENCH_DIR/conf/haproxy-tls.cfg" - >"$BENCH_TMP/haproxy-tls.cfg"
mv "$BENCH_TMP/haproxy-tls.cfg" "$BENCH_TMP/haproxy.cfg"
grep '^tls = ' "$BENCH_TMP/sluice-tls.toml" >"$BENCH_TMP/sluice-tls.line"
sed -i "/^address = \"127\.0\.0\.1:$port_sluice\"\$/r $BENCH_TMP/sluice-tls.line" "$BENCH_TMP/sluice.toml"
if ! grep -q "listen 127.0.0.1:$port_nginx ssl " "$BENCH_TMP/nginx-proxy.conf" ||
  ! grep -q "include $BENCH_TMP/nginx-proxy-tls.conf;" "$BENCH_TMP/nginx-proxy.conf" ||
  ! grep -q "bind 127.0.0.1:$port_haproxy ssl crt " "$BENCH_TMP/haproxy.cfg" ||
  ! grep -q '^tls = ' "$BENCH_TMP/sluice.toml" || ! grep -q '^max_connections_per_client = ' "$BENCH_TMP/sluice.toml"; then
  die "bench/conf's nginx-proxy.conf, haproxy.cfg or sluice.toml no longer have the lines this script adds TLS to"
fi
if grep -l '@[A-Z0-9_]*@' "$BENCH_TMP"/*-tls.* >&2; then die "a config above still has an @PLACEHOLDER@"; fi

# --- start the upstream and the three proxies (lib.sh's command lines, TLS configs in place)
cp -p "$sluice_bin" "$BENCH_TMP/sluice-under-test"
sluice_bin="$BENCH_TMP/sluice-under-test"
declare -A pid_of port_of=([sluice]=$port_sluice [nginx]=$port_nginx [haproxy]=$port_haproxy)
start_bg upstream "${pin_up[@]}" nginx -p "$BENCH_TMP/" -e "$BENCH_TMP/nginx-upstream.err" \
  -c "$BENCH_TMP/nginx-upstream.conf"
pid_of[upstream]=$LAST_PID
for p in "$up1" "$up2" "$up_status"; do
  wait_port "$p" 10 "$LAST_PID" upstream || die "upstream nginx failed to start"
done
targets=(sluice nginx haproxy)
for t in "${targets[@]}"; do
  seq_proxy_cmd "$t"
  start_bg "$t" "${pin_proxy[@]}" "${CMD[@]}"
  pid_of[$t]=$LAST_PID
  wait_port "${port_of[$t]}" 15 "$LAST_PID" "$t" || die "$t failed to start"
done

records="$BENCH_TMP/records"
: >"$records"

# --- sanity: 400 requests on one verified TLS keep-alive connection each, ~10% to v2; then a
# reconnect offering the session ticket the proxy sent, with a "Connection: close" request
echo
echo "sanity (400 requests on one TLS keep-alive connection, certificate verified; then a resumption with 'Connection: close'):"
for t in "${targets[@]}"; do
  if ! run_fg python3 "$BENCH_DIR/tls_client.py" check --port "${port_of[$t]}" --ca "$certs/ca.pem" \
    --count 400 --timeout-s 30 >"$BENCH_TMP/sanity.out" 2>&1; then
    die "$t failed its TLS sanity check: $(cat "$BENCH_TMP/sanity.out")"
  fi
  res="$(cat "$BENCH_TMP/sanity.out")"
  printf '  %-8s %s\n' "$t" "$res"
  line="$(python3 -c 'import json, sys
r = json.loads(sys.argv[1])
print(r["bodies"].get("hello from v2", 0), " ".join(f"{k}={r[k]}" for k in
      ("protocol", "cipher", "ticket", "resumed", "closes")))' "$res")"
  v2="${line%% *}"
  ((v2 >= 16 && v2 <= 64)) || die "$t: v2 share $v2/400 is not ~10%"
  printf 'tls\ttarget=%s %s\n' "$t" "${line#* }" >>"$records"
done

# The request 'openssl s_time -www' sends is "GET <path> HTTP/1.0" with no Host; this path turns
# it into an HTTP/1.1 request with Host and "Connection: close" (the HTTP/1.0 lands in a header).
stime_path=$'/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: openssl-s_time\r\nConnection: close\r\nX-Bench:'

# stime_group N PORT SECONDS: N parallel 'openssl s_time -new' loops (output in $BENCH_TMP/stime.I);
# run with run_fg, so a signal to the script stops them too.
stime_group() {
  local n="$1" port="$2" d="$3" i pids=()
  trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT HUP
  for ((i = 0; i < n; i++)); do
    "${pin_load[@]}" timeout $((d + 30)) openssl s_time -connect "127.0.0.1:$port" -new -time "$d" \
      -www "$stime_path" >"$BENCH_TMP/stime.$i" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}" || true
}

# stime_totals N: "CONNECTIONS BYTES_PER_CONN FAILED_LOOPS" over the N loops' outputs.
stime_totals() {
  local i
  for ((i = 0; i < $1; i++)); do cat "$BENCH_TMP/stime.$i"; done |
    awk -v n="$1" '/ connections in .* real seconds/ { c += $1; b += $1 * $(NF - 4); ok++ }
      END { printf "%d %d %d\n", c, c ? b / c : 0, n - ok }'
}

clk_tck="$(getconf CLK_TCK)"

# --- memory: one proxy at a time holds IDLE_CONNS idle TLS clients; RSS before, half-way (the
# client pauses there), with all of them, and after they left

# wait_line FILE PREFIX PID: waits (at most 100 s) until FILE has a line starting with PREFIX, or
# PID exited; prints that line.
wait_line() {
  local i
  for ((i = 0; i < 1000; i++)); do
    grep -q "^$2" "$1" 2>/dev/null && break
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  grep -m1 "^$2" "$1" || true
}

echo
echo "memory: $IDLE_CONNS idle TLS keep-alive connections per proxy (one full handshake and one request each)"
half=$((IDLE_CONNS / 2))
for t in "${targets[@]}"; do
  sleep 1
  rss0="$(tree_sum rss "${pid_of[$t]}")"
  start_bg "idle-$t" "${pin_load[@]}" python3 "$BENCH_DIR/tls_client.py" idle --port "${port_of[$t]}" \
    --conns "$IDLE_CONNS" --parallel 8 --setup-s 90 --hold-s 120 --mark-at "$half" --mark-s 3
  ipid=$LAST_PID
  mark="$(wait_line "$BENCH_TMP/idle-$t.log" 'MARK ' "$ipid")"
  sleep 1.5
  rssm="$(tree_sum rss "${pid_of[$t]}")"
  ready="$(wait_line "$BENCH_TMP/idle-$t.log" 'READY ' "$ipid")"
  if [[ -z "$mark" || -z "$ready" ]]; then
    sed 's/^/  | /' "$BENCH_TMP/idle-$t.log" >&2
    stop_pid "$ipid" KILL
    echo "  $t: the idle clients did not get ready; skipped"
    continue
  fi
  sleep 1
  rss1="$(tree_sum rss "${pid_of[$t]}")"
  stop_pid "$ipid" TERM
  sleep 2
  rss2="$(tree_sum rss "${pid_of[$t]}")"
  held="$(grep '^IDLE ' "$BENCH_TMP/idle-$t.log" || true)"
  mark="${mark#MARK conns=}"
  printf 'idle\ttarget=%s rss0_kb=%s rssm_kb=%s mark_conns=%s rss1_kb=%s rss2_kb=%s %s %s\n' "$t" "$rss0" \
    "$rssm" "${mark%% *}" "$rss1" "$rss2" "${ready#READY }" "${held#IDLE }" >>"$records"
  printf '  %-8s RSS %d KiB, %d with %d, %d with all (%d B/conn; %d B/conn from %d to all), %d KiB 2 s after they left; %s; %s\n' \
    "$t" "$rss0" "$rssm" "${mark%% *}" "$rss1" "$(((rss1 - rss0) * 1024 / IDLE_CONNS))" \
    "$(((rss1 - rssm) * 1024 / (IDLE_CONNS - half)))" "${mark%% *}" "$rss2" "${ready#READY }" "${held#IDLE }"
  grep -v -e '^READY ' -e '^IDLE ' -e '^MARK ' "$BENCH_TMP/idle-$t.log" | sed 's/^/    | /' || true
done

# --- what do the load generators do? nginx's probe server (conf/nginx-proxy-tls.conf) logs the
# connection number, its request count, protocol, suite, group and whether the session was reused.
probe() {
  local label="$1"
  shift
  : >"$BENCH_TMP/tls-probe.log"
  run_fg "$@" >"$BENCH_TMP/probe.out" 2>&1 || die "$label against the probe failed: $(cat "$BENCH_TMP/probe.out")"
  sleep 0.3
  printf '  %-32s %s\n' "$label:" "$(awk '
    { n++; conn[$1]++; if ($2 > 1) multi++; if ($6 == "r") reused++; what[$3 " " $4 " " $5]++ }
    END { d = 0; for (c in conn) d++; w = ""; for (k in what) w = w (w == "" ? "" : ", ") k
          printf "%d requests on %d connections (%d with more than one); %d of them resumed a session; %s", n, d, multi + 0, reused + 0, w }' \
    "$BENCH_TMP/tls-probe.log")"
}
echo
echo "load generators against an nginx probe that logs every TLS connection (1 s each):"
probe "wrk (keep-alive)" "${pin_load[@]}" timeout 30 wrk -c 4 -t 1 -d 1s "https://127.0.0.1:$port_probe/"
probe "wrk -H 'Connection: close'" "${pin_load[@]}" timeout 30 wrk -c 4 -t 1 -d 1s -H 'Connection: close' \
  "https://127.0.0.1:$port_probe/"
probe "openssl s_time -new (x2)" stime_group 2 "$port_probe" 1

# measure KIND C TARGET ROUND SECONDS [WRK ARGS...]: one run against TARGET (KIND full: C
# 'openssl s_time -new' loops; otherwise wrk -c C) with CPU accounting; appends a record
# (bench_table.py's format, KIND first; nothing for warm-up runs).
measure() {
  local kind="$1" c="$2" t="$3" r="$4" d="$5" pid c0 c1 k0 k1 t0 t1 line rec tot
  shift 5
  pid="${pid_of[$t]}"
  kill -0 "$pid" 2>/dev/null || die "$t (pid $pid) died"
  c0="$(cpu_ticks "$pid")" k0="$(core_busy_ticks "$PROXY_SET")" t0="$EPOCHREALTIME"
  if [[ "$kind" == full* ]]; then
    run_fg stime_group "$c" "${port_of[$t]}" "$d"
  elif ! run_fg "${pin_load[@]}" timeout $((d + 30)) wrk -c "$c" -t "$N_LOAD" -d "${d}s" --latency "$@" \
    -s "$BENCH_DIR/conf/wrk_report.lua" "https://127.0.0.1:${port_of[$t]}/" >"$BENCH_TMP/wrk.out" 2>&1; then
    cat "$BENCH_TMP/wrk.out" >&2
    die "wrk against $t failed"
  fi
  c1="$(cpu_ticks "$pid")" k1="$(core_busy_ticks "$PROXY_SET")" t1="$EPOCHREALTIME"
  if [[ "$kind" == full* ]]; then
    read -ra tot <<<"$(stime_totals "$c")"
    # s_time gives no latencies; its failed loops count as connect errors.
    line="requests=${tot[0]} duration_us=$((${t1/./} - ${t0/./})) p50_us=0 p90_us=0 p99_us=0 max_us=0"
    line+=" connect_err=${tot[2]} read_err=0 write_err=0 status_err=0 timeout_err=0 bytes_per_conn=${tot[1]}"
  else
    line="$(grep '^WRKRESULT ' "$BENCH_TMP/wrk.out")" || die "wrk against $t printed no result"
    line="${line#WRKRESULT }"
  fi
  [[ "$kind" == *warmup ]] && return 0
  rec="$(printf '%s\t%d\t%d\t0\t%d\t%s' "$t" "$r" $((c1 - c0)) $((k1 - k0)) "$line")"
  printf '%s\t%s\n' "$kind" "$rec" >>"$records"
  if [[ "$kind" == full ]]; then
    awk -v r="$r" -v t="$t" -v n="${tot[0]}" -v us=$((${t1/./} - ${t0/./})) -v ticks=$((c1 - c0)) \
      -v busy=$((k1 - k0)) -v hz="$clk_tck" -v b="${tot[1]}" -v f="${tot[2]}" 'BEGIN {
        other = 100 * (busy - ticks) * 1e6 / hz / us
        printf "  round %d %-8s %10.0f conn/s  cpu %.1f us/conn  %d B/conn  other load on proxy CPU %.0f%%%s\n",
          r, t, n * 1e6 / us, n ? ticks * 1e6 / hz / n : 0, b, other < 0 ? 0 : other, f ? "  FAILED LOOPS " f : "" }'
  else
    printf '  round %d %-8s %s\n' "$r" "$t" \
      "$(python3 "$BENCH_DIR/bench_table.py" --one-line --clk-tck "$clk_tck" --pinned "$PIN" <<<"$rec")"
  fi
}

# series KIND C [WRK ARGS...]: warm-up, then ROUNDS rounds with the targets alternating.
series() {
  local kind="$1" c="$2" t r
  shift 2
  for t in "${targets[@]}"; do measure "$kind-warmup" "$c" "$t" 0 "$WARMUP" "$@"; done
  for ((r = 1; r <= ROUNDS; r++)); do
    for t in "${targets[@]}"; do measure "$kind" "$c" "$t" "$r" "$DURATION" "$@"; done
  done
}

echo
echo "keep-alive: wrk -c $CONNS -t $N_LOAD --latency https://..., $ROUNDS rounds x ${DURATION}s"
series ka "$CONNS"
echo
echo "resumed handshakes: wrk -c $HS_CONNS -t $N_LOAD --latency -H 'Connection: close' https://..., $ROUNDS rounds x ${DURATION}s"
series resumed "$HS_CONNS" -H 'Connection: close'
echo
echo "full handshakes: $FULL_CONNS x openssl s_time -new, one 'Connection: close' request each, $ROUNDS rounds x ${DURATION}s"
series full "$FULL_CONNS"

for t in "${targets[@]}"; do
  kill -0 "${pid_of[$t]}" 2>/dev/null || echo "WARNING: $t (pid ${pid_of[$t]}) exited during the run"
done
# sluice's own count of what it answered (s_time does not look at the status) and upstream failures.
admin="$(sed -n 's/^sluice: admin on \([0-9.:]*\).*/\1/p' "$BENCH_TMP/sluice.log" | head -1)"
if [[ -n "$admin" ]] && curl -s --max-time 5 "http://$admin/metrics" >"$BENCH_TMP/metrics" 2>/dev/null; then
  echo "sluice /metrics: $(awk '
    /^sluice_requests_total\{/ { match($0, /class="[^"]*"/); c = substr($0, RSTART + 7, RLENGTH - 8); req[c] += $NF }
    /^sluice_upstream_failures_total\{/ { match($0, /kind="[^"]*"/); k = substr($0, RSTART + 6, RLENGTH - 7); fail[k] += $NF }
    END { s = "answered"; for (c in req) s = s " " c "=" req[c]; f = ""; for (k in fail) if (fail[k]) f = f " " k "=" fail[k]
          print s "; upstream failures:" (f == "" ? " none" : f) }' "$BENCH_TMP/metrics")"
fi
for f in sluice.log haproxy.log nginx-proxy.err; do
  startup=(-e '^sluice: no \[state\] dir' -e '^sluice: admin on ' -e '^sluice: listening on ')
  if grep -v "${startup[@]}" "$BENCH_TMP/$f" 2>/dev/null | grep -q .; then
    echo "$f (what it printed besides sluice's start-up lines; last 5):"
    grep -v "${startup[@]}" "$BENCH_TMP/$f" | tail -n 5 | sed 's/^/  | /'
  fi
done

echo
python3 "$BENCH_DIR/tls_report.py" --clk-tck "$clk_tck" --conns "$CONNS" --hs-conns "$HS_CONNS" \
  --full-conns "$FULL_CONNS" --pinned "$PIN" <"$records"

if ((save)); then
  echo
  echo "--- raw records (bench/tls_report.py reads them on stdin to print the table again)"
  cat "$records"
  exec >&2 # closes the pipe to tee; wait until it has written everything
  wait "$tee_pid" 2>/dev/null || true
  mv "$out_file.partial" "$out_file"
  echo "saved: ${out_file#"$REPO_DIR"/}"
fi
