#!/usr/bin/env bash
# HTTP/2 side by side: sluice, nginx and HAProxy (one worker/thread each), one run.
#   h2    h2load -c CONNS -m STREAMS over TLS (ALPN h2) to each proxy, which proxies HTTP/1.1
#         keep-alive to the same upstream nginx (90/10 over two ports, as run_all.sh)
#   grpc  gRPC unary calls (h2load POSTing one gRPC message with content-type application/grpc)
#         over h2c to each proxy, which proxies HTTP/2 to the same gRPC service
#         (tests/e2e/grpc_service.py, python3-grpcio): sluice protocol = "h2c", nginx grpc_pass,
#         HAProxy "proto h2". The Python service is slow: this step shows each proxy's overhead
#         on top of it, not a proxy's ceiling.
# Targets alternate within each round; the table has medians of ROUNDS runs and the ratios
# sluice/nginx and sluice/HAProxy.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
usage: bench/h2_bench.sh [--sluice PATH] [--quick] [--save] [--rounds N] [--duration S]

  --sluice PATH   sluice binary (default: \$SLUICE_BIN, build-bench/sluice, build/sluice)
  --quick         smoke test: 1 round of 3 s per point
  --save          also write stdout to bench/results/<UTC date>-h2_bench[-quick].txt
  --rounds N      rounds per point (default 3; quick 1)
  --duration S    seconds per run (default 5; quick 3)

environment: CONNS=64 STREAMS=10 GRPC_CONNS=8 GRPC_STREAMS=10 PIN=1 (0: no taskset)
USAGE
}

save=0 quick=0 sluice_bin="" rounds_arg="" duration_arg=""
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
  ROUNDS="${rounds_arg:-1}" DURATION="${duration_arg:-3}"
else
  ROUNDS="${rounds_arg:-3}" DURATION="${duration_arg:-5}"
fi
CONNS="${CONNS:-64}" STREAMS="${STREAMS:-10}" GRPC_CONNS="${GRPC_CONNS:-8}"
GRPC_STREAMS="${GRPC_STREAMS:-10}" PIN="${PIN:-1}"
for v in ROUNDS DURATION CONNS STREAMS GRPC_CONNS GRPC_STREAMS; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done

if ((save)); then
  mkdir -p "$BENCH_DIR/results"
  suffix=""
  ((quick)) && suffix="-quick"
  out_file="$BENCH_DIR/results/$(date -u +%Y-%m-%dT%H%MZ)-h2_bench${suffix}.txt"
  exec > >(tee "$out_file.partial")
fi

"$REPO_DIR/scripts/setup" --bench
for tool in h2load nginx haproxy taskset python3 openssl curl; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup --bench installs it)"
done
grpc_py=""
for py in /usr/bin/python3 python3; do
  if "$py" -c 'import grpc' 2>/dev/null; then
    grpc_py="$py"
    break
  fi
done
[[ -n "$sluice_bin" ]] || sluice_bin="$(find_sluice)"
[[ -n "$sluice_bin" && -x "$sluice_bin" ]] || die "no sluice binary (--sluice PATH, SLUICE_BIN, or build build/sluice)"
cp -p "$sluice_bin" "$BENCH_TMP/sluice-under-test"
sluice_bin="$BENCH_TMP/sluice-under-test"

plan_cpus 1 1 || die "no CPU to run on"
pin_proxy=() pin_load=() pin_up=()
if ((PIN)); then
  pin_proxy=(taskset -c "$PROXY_SET") pin_load=(taskset -c "$LOAD_SET") pin_up=(taskset -c "$UPSTREAM_SET")
fi

echo "== HTTP/2: sluice vs nginx vs HAProxy (bench/h2_bench.sh)"
machine_info
echo "tools:   $(h2load --version 2>&1 | head -1)"
((PIN)) && echo "placement: proxies on CPU $PROXY_SET; h2load and the upstreams on CPU $LOAD_SET$( ((SHARED == 2)) && echo ' -- WARNING: all share the same CPUs')"
echo "run:     h2: h2load -c $CONNS -m $STREAMS over TLS 1.3 (ALPN h2), HTTP/1.1 keep-alive upstream;" \
  "grpc: h2load -c $GRPC_CONNS -m $GRPC_STREAMS unary calls over h2c, HTTP/2 upstream;" \
  "$ROUNDS rounds x ${DURATION}s$( ((quick)) && echo '  [--quick]')"

# --- certificates (tests/tls_test_certs.sh's ECDSA "ip" pair for 127.0.0.1)
certs="$BENCH_TMP/certs"
run_fg "$REPO_DIR/tests/tls_test_certs.sh" "$certs" >"$BENCH_TMP/certs.log" 2>&1 ||
  { cat "$BENCH_TMP/certs.log" >&2; die "cannot make the test certificates"; }
cat "$certs/ip.pem" "$certs/ip.key" >"$certs/ip-combined.pem"

# --- configs: run_all.sh's proxying setup (bench/conf), with TLS + HTTP/2 on the listeners
mapfile -t ports < <(free_ports 10)
up1="${ports[0]}" up2="${ports[1]}" up_status="${ports[2]}"
port_sluice="${ports[3]}" port_nginx="${ports[4]}" port_haproxy="${ports[5]}"
grpc_up="${ports[6]}" gport_sluice="${ports[7]}" gport_nginx="${ports[8]}" gport_haproxy="${ports[9]}"
render_confs 1 1
sed -i -e "s|^\( *listen 127\.0\.0\.1:$port_nginx\) |\1 ssl http2 |" \
  -e "s|^http {\$|&\n  ssl_certificate $certs/ip.pem;\n  ssl_certificate_key $certs/ip.key;\n  ssl_protocols TLSv1.2 TLSv1.3;\n  http2_max_concurrent_streams 128;|" \
  -e "s|^}\$|  server {\n    listen 127.0.0.1:$gport_nginx http2;\n    location / { grpc_pass grpc://127.0.0.1:$grpc_up; }\n  }\n}|" \
  "$BENCH_TMP/nginx-proxy.conf"
sed -i -e "s|^\( *bind 127\.0\.0\.1:$port_haproxy\)\$|\1 ssl crt $certs/ip-combined.pem alpn h2,http/1.1|" \
  -e 's|X-Forwarded-Proto http |X-Forwarded-Proto https |' "$BENCH_TMP/haproxy.cfg"
cat >>"$BENCH_TMP/haproxy.cfg" <<CFG

frontend grpc_fe
  bind 127.0.0.1:$gport_haproxy proto h2
  default_backend grpc_be

backend grpc_be
  server g1 127.0.0.1:$grpc_up proto h2
CFG
sed -i "/^address = \"127\.0\.0\.1:$port_sluice\"\$/a tls = { cert = \"$certs/ip.pem\", key = \"$certs/ip.key\" }" \
  "$BENCH_TMP/sluice.toml"
sed -i "s|^\[listen\]\$|[[listen]]|" "$BENCH_TMP/sluice.toml"
cat >>"$BENCH_TMP/sluice.toml" <<CFG

[[listen]]
address = "127.0.0.1:$gport_sluice"
h2c = true

[functions.g]
protocol = "h2c"

[functions.g.versions.1]
endpoints = ["127.0.0.1:$grpc_up"]

[functions.g.aliases.prod]
traffic = { "1" = 100 }

[[routes]]
path_prefix = "/test.Echo/"
target = "g:prod"
CFG
# The gRPC route must win over the catch-all route: routes match by longest prefix.
grep -q "ssl http2" "$BENCH_TMP/nginx-proxy.conf" && grep -q "grpc_pass" "$BENCH_TMP/nginx-proxy.conf" &&
  grep -q "alpn h2" "$BENCH_TMP/haproxy.cfg" && grep -q '^tls = ' "$BENCH_TMP/sluice.toml" ||
  die "bench/conf's templates no longer have the lines this script adds HTTP/2 to"

# --- start the upstreams and the three proxies
start_bg upstream "${pin_up[@]}" nginx -p "$BENCH_TMP/" -e "$BENCH_TMP/nginx-upstream.err" \
  -c "$BENCH_TMP/nginx-upstream.conf"
for p in "$up1" "$up2"; do wait_port "$p" 10 "$LAST_PID" upstream || die "upstream nginx failed to start"; done
grpc=0
if [[ -n "$grpc_py" ]]; then
  start_bg grpc-service "${pin_up[@]}" "$grpc_py" "$REPO_DIR/tests/e2e/grpc_service.py" --port "$grpc_up" --name g1
  wait_port "$grpc_up" 20 "$LAST_PID" grpc-service && grpc=1
fi
((grpc)) || echo "note: python3-grpcio missing or the service did not start: no gRPC step"
declare -A pid_of port_of=([sluice]=$port_sluice [nginx]=$port_nginx [haproxy]=$port_haproxy)
declare -A gport_of=([sluice]=$gport_sluice [nginx]=$gport_nginx [haproxy]=$gport_haproxy)
targets=(sluice nginx haproxy)
for t in "${targets[@]}"; do
  seq_proxy_cmd "$t"
  start_bg "$t" "${pin_proxy[@]}" "${CMD[@]}"
  pid_of[$t]=$LAST_PID
  wait_port "${port_of[$t]}" 15 "$LAST_PID" "$t" || die "$t failed to start"
done

# --- sanity: HTTP/2 spoken by each, the 90/10 split, gRPC through each
printf '\x00\x00\x00\x00\x04ping' >"$BENCH_TMP/grpc.msg"
echo
echo "sanity:"
for t in "${targets[@]}"; do
  v="$(curl -sk --http2 -o /dev/null -w '%{http_version} %{http_code}' "https://127.0.0.1:${port_of[$t]}/")"
  [[ "$v" == "2 200" ]] || die "$t does not answer HTTP/2 over TLS (got '$v')"
  line="  $t: HTTP/2 over TLS ok"
  if ((grpc)); then
    g="$(curl -s --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' \
      --data-binary @"$BENCH_TMP/grpc.msg" -o "$BENCH_TMP/grpc.out" -w '%{http_code}' \
      "http://127.0.0.1:${gport_of[$t]}/test.Echo/Unary")"
    grep -q 'g1:ping' "$BENCH_TMP/grpc.out" || die "$t: gRPC unary call failed (HTTP $g)"
    line+=", gRPC unary ok"
  fi
  echo "$line"
done

# h2load_run KIND TARGET: one run; prints "REQS_PER_S SUCCEEDED FAILED ERRORED MEAN_MS CPU_US_PER_REQ".
h2load_run() {
  local kind="$1" t="$2" pid c0 c1 out rps ok failed errored mean
  pid="${pid_of[$t]}"
  kill -0 "$pid" 2>/dev/null || die "$t (pid $pid) died"
  c0="$(cpu_ticks "$pid")"
  if [[ "$kind" == h2 ]]; then
    out="$(run_fg "${pin_load[@]}" timeout $((DURATION + 30)) h2load -c "$CONNS" -m "$STREAMS" \
      -t 1 -D "$DURATION" --warm-up-time=1 "https://127.0.0.1:${port_of[$t]}/" 2>&1)" || true
  else
    out="$(run_fg "${pin_load[@]}" timeout $((DURATION + 30)) h2load -c "$GRPC_CONNS" \
      -m "$GRPC_STREAMS" -t 1 -D "$DURATION" --warm-up-time=1 -d "$BENCH_TMP/grpc.msg" \
      -H 'content-type: application/grpc' -H 'te: trailers' \
      "http://127.0.0.1:${gport_of[$t]}/test.Echo/Unary" 2>&1)" || true
  fi
  c1="$(cpu_ticks "$pid")"
  rps="$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")"
  read -r ok failed errored < <(sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2 \3/p' <<<"$out")
  mean="$(awk '/^time for request:/ { v = $6; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
    print (u == "us" ? v / 1000 : (u == "s" ? v * 1000 : v)) }' <<<"$out")"
  [[ -n "$rps" && -n "$ok" ]] || { echo "$out" >&2; die "h2load against $t printed no result"; }
  echo "$rps $ok $failed $errored ${mean:-0} $(awk -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" \
    -v n="$ok" 'BEGIN { printf "%.1f", n ? c * 1e6 / hz / n : 0 }')"
}

declare -A results
kinds=(h2)
((grpc)) && kinds+=(grpc)
echo
for kind in "${kinds[@]}"; do
  for ((r = 1; r <= ROUNDS; r++)); do
    # Alternate the order each round so no target always runs first.
    order=("${targets[@]:$((r % 3))}" "${targets[@]:0:$((r % 3))}")
    for t in "${order[@]}"; do
      res="$(h2load_run "$kind" "$t")"
      results[$kind.$t]+="$res;"
      echo "  $kind round $r $t: $res  (req/s succeeded failed errored mean_ms cpu_us/req)"
    done
  done
done

# --- table: medians
median() { tr ';' '\n' | awk -v f="$1" 'NF { print $f }' | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
printf '%-6s %-8s %12s %10s %10s %12s %14s\n' kind target "req/s" failed errored "mean ms" "CPU us/req"
for kind in "${kinds[@]}"; do
  for t in "${targets[@]}"; do
    rec="${results[$kind.$t]}"
    printf '%-6s %-8s %12.0f %10s %10s %12.2f %14s\n' "$kind" "$t" "$(median 1 <<<"$rec")" \
      "$(median 3 <<<"$rec")" "$(median 4 <<<"$rec")" "$(median 5 <<<"$rec")" "$(median 6 <<<"$rec")"
  done
done
echo
for kind in "${kinds[@]}"; do
  s="$(median 1 <<<"${results[$kind.sluice]}")" n="$(median 1 <<<"${results[$kind.nginx]}")"
  h="$(median 1 <<<"${results[$kind.haproxy]}")"
  awk -v k="$kind" -v s="$s" -v n="$n" -v h="$h" 'BEGIN {
    printf "%-6s req/s  sluice/nginx %.2fx  sluice/HAProxy %.2fx\n", k, s / n, s / h }'
done
if ((save)); then mv "$out_file.partial" "$out_file" && echo "saved: ${out_file#"$REPO_DIR"/}"; fi
