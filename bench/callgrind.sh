#!/usr/bin/env bash
# Counts user-space instructions (callgrind Ir) per proxied request for sluice, nginx and HAProxy:
# runs N1 and then N2 sequential requests on one keep-alive connection, each in a fresh process
# under callgrind; (Ir(N2) - Ir(N1)) / (N2 - N1) cancels start-up and shutdown.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
usage: bench/callgrind.sh [--save] [--no-sluice | --sluice PATH] [--no-haproxy] [--n1 N] [--n2 N]
                         [--top N] [--keep DIR] [--records FILE]

Prints callgrind instructions (Ir) per proxied request for each proxy (one worker/thread, same
configs as run_bench.sh) and the ratios sluice/nginx and sluice/HAProxy. The figure does not move
with machine load, so use it to steer optimisation.

  --save          also write the output to bench/results/<UTC date>-callgrind.txt
  --no-sluice     leave sluice out; --sluice PATH: binary to use (default: \$SLUICE_BIN,
                  build-bench/sluice, build/sluice; left out with a warning if none is found)
  --no-haproxy    leave HAProxy out
  --n1 N --n2 N   request counts of the two runs (default 200 and 2200)
  --top N         also list each proxy's N most expensive functions per request (self Ir)
  --keep DIR      copy the callgrind output files to DIR (for callgrind_annotate / kcachegrind)
  --records FILE  also append one "cost target=NAME ir_per_req=N" line per proxy to FILE
                  (run_all.sh reads them)

environment: PROFILE=equal|plain (see bench/README.md), SLUICE_BIN, N1, N2
USAGE
}

N1="${N1:-200}"
N2="${N2:-2200}"
save=0
sluice_mode=auto
sluice_bin=""
with_haproxy=1
records=""
top=0
keep_dir=""
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
    --top)
      top="${2:?}"
      shift
      ;;
    --keep)
      keep_dir="${2:?}"
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
seq_prepare callgrind valgrind

echo "== sluice instructions per request (bench/callgrind.sh)"
machine_info
profile_note
echo "method:  valgrind --tool=callgrind, user-space instructions (Ir) of the whole proxy process;"
echo "         N1=$N1 and N2=$N2 sequential GET / on one keep-alive connection, each run in a fresh"
echo "         process; Ir/request = (Ir(N2) - Ir(N1)) / (N2 - N1). Upstream: nginx, not traced."

seq_start_upstream

# measure NAME N: runs the proxy under callgrind for N requests; sets IR to the total Ir.
# Runs in this shell (not in $(...)) so cleanup always knows the PIDs it started.
measure() {
  local name="$1" n="$2" out="$BENCH_TMP/callgrind.$1.$2" pid ir
  IR=""
  seq_proxy_cmd "$name"
  start_bg "cg-$name-$n" valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no \
    --trace-children=no "${CMD[@]}"
  pid=$LAST_PID
  if ! wait_port "$port" 90 "$pid" "cg-$name-$n"; then
    stop_pid "$pid" KILL
    return 1
  fi
  if ! run_fg python3 "$BENCH_DIR/keepalive_client.py" --port "$port" --count "$n" --timeout-s 300 \
    >"$BENCH_TMP/client.$name.$n" 2>&1; then
    sed 's/^/  | /' "$BENCH_TMP/client.$name.$n" >&2
    stop_pid "$pid" KILL
    return 1
  fi
  sleep 0.5 # let the proxy see the client's close before it is stopped
  stop_pid "$pid" TERM
  ir="$(awk '/^(summary|totals):/ { print $2; exit }' "$out" 2>/dev/null)"
  [[ -n "$ir" ]] || {
    echo "no callgrind totals for $name ($n requests); valgrind output:" >&2
    sed 's/^/  | /' "$BENCH_TMP/cg-$name-$n.log" | tail -20 >&2
    return 1
  }
  IR="$ir"
}

proxies=()
[[ "$sluice_mode" != off ]] && proxies+=(sluice)
proxies+=(nginx)
((with_haproxy)) && proxies+=(haproxy)

declare -A per_req
echo
printf '%-9s %16s %16s %14s\n' proxy "Ir @ N1=$N1" "Ir @ N2=$N2" "Ir/request"
for p in "${proxies[@]}"; do
  if measure "$p" "$N1" && ir1="$IR" && measure "$p" "$N2" && ir2="$IR"; then
    per_req[$p]=$(((ir2 - ir1) / (N2 - N1)))
    printf '%-9s %16s %16s %14s\n' "$p" "$ir1" "$ir2" "${per_req[$p]}"
    [[ -z "$records" ]] || echo "cost target=$p ir_per_req=${per_req[$p]}" >>"$records"
  else
    [[ "$p" == sluice && "$sluice_mode" == auto ]] || die "measuring $p failed"
    echo "warning: measuring sluice ($sluice_bin) failed; leaving it out" >&2
  fi
done

if ((top > 0)); then
  for p in "${proxies[@]}"; do
    [[ -n "${per_req[$p]:-}" ]] || continue
    echo
    echo "$p: top $top functions per request"
    python3 "$BENCH_DIR/callgrind_top.py" "$BENCH_TMP/callgrind.$p.$N1" "$BENCH_TMP/callgrind.$p.$N2" \
      "$N1" "$N2" "$top"
  done
fi
if [[ -n "$keep_dir" ]]; then
  mkdir -p "$keep_dir"
  cp "$BENCH_TMP"/callgrind.*.* "$keep_dir"/
  echo
  echo "callgrind outputs copied to $keep_dir (callgrind.<proxy>.<requests>)"
fi

echo
if [[ -n "${per_req[sluice]:-}" ]]; then
  for other in nginx haproxy; do
    [[ -n "${per_req[$other]:-}" ]] || continue
    awk -v s="${per_req[sluice]}" -v o="${per_req[$other]}" -v n="$other" \
      'BEGIN { printf "sluice/%-8s Ir/request %.2fx (lower is better)\n", n, s / o }'
  done
else
  echo "sluice not measured; no ratios."
fi

if ((save)); then
  mv "$out_file.partial" "$out_file"
  echo "saved: ${out_file#"$REPO_DIR"/}"
fi
