#!/usr/bin/env python3
"""Turns tls_bench.sh's records (stdin) into its summary table, ratios sluice/nginx and
sluice/HAProxy.

Records, one per line, tab-separated, kind first:
  ka       <record>   a keep-alive wrk run
  resumed  <record>   a wrk -H 'Connection: close' run: one connection per request, resumed sessions
  full     <record>   parallel 'openssl s_time -new' loops: one connection per request, full
                      handshakes (no latencies; failed loops count as connect errors)
  idle     target=T rss0_kb= rssm_kb= mark_conns= rss1_kb= rss2_kb= conns= failed= unfinished=
           held= closed_by_server= ...   (RSS before, half-way, with all, after they left)
  tls      target=T protocol= cipher= ticket= resumed= closes=       (tls_client.py check)
<record> is bench_table.py's format (target, round, proxy CPU ticks, 0, busy ticks of the proxy
CPU, key=value...), whose key=value part, for full, also has bytes_per_conn=.
"""
import argparse
import statistics
import sys

from bench_table import fmt_us, parse

PROXIES = ["sluice", "nginx", "haproxy"]


def kv(text):
    return dict(item.split("=", 1) for item in text.split())


def summarize(runs, clk_tck):
    """Per target: median req/s, p50, p99 over rounds; CPU/req and CPU use over all rounds."""
    out = {}
    for t in PROXIES:
        rs = [r for r in runs if r["target"] == t]
        if not rs:
            continue
        wall_s = sum(r["duration_us"] for r in rs) / 1e6
        cpu_s = sum(r["ticks"] for r in rs) / clk_tck
        reqs = sum(r["requests"] for r in rs)
        out[t] = {
            "rps": statistics.median(r["rps"] for r in rs),
            "p50": statistics.median(r["p50_us"] for r in rs),
            "p99": statistics.median(r["p99_us"] for r in rs),
            "cpu_us": cpu_s * 1e6 / reqs if reqs else float("nan"),
            "util": 100 * cpu_s / wall_s,
            "bytes": statistics.median(r.get("bytes_per_conn", 0) for r in rs),
            "errors": sum(r["errors"] for r in rs),
            "other": max(max(0.0, 100 * (r["core_ticks"] - r["ticks"]) * 1e6 / clk_tck
                             / r["duration_us"]) for r in rs),
        }
    return out


def memory(idle):
    out = {}
    for t, r in idle.items():
        n, m = int(r["conns"]), int(r["mark_conns"])
        out[t] = {
            "per_conn": (int(r["rss1_kb"]) - int(r["rss0_kb"])) * 1024 / n if n else float("nan"),
            "marginal": ((int(r["rss1_kb"]) - int(r["rssm_kb"])) * 1024 / (n - m) if n > m
                         else float("nan")),
            "before": int(r["rss0_kb"]) / 1024,
            "with": int(r["rss1_kb"]) / 1024,
            "after": int(r["rss2_kb"]) / 1024,
        }
    return out


def warnings(args, series, idle):
    out = []
    for name, table in series.items():
        for t, st in table.items():
            if st["errors"]:
                what = ("failed s_time loops" if name == "full"
                        else "wrk errors (connect/read/write/status/timeout)")
                out.append(f"{name} {t}: {st['errors']:.0f} {what} over its runs")
            if args.pinned and st["other"] > 10:
                out.append(f"{name} {t}: other processes took up to {st['other']:.0f}% of the proxy "
                           "CPU during a run; the timings are noisy")
    for t, r in idle.items():
        if int(r.get("failed", 0)) or int(r.get("unfinished", 0)):
            out.append(f"idle {t}: {r['failed']} clients failed and {r['unfinished']} did not "
                       "finish setting up")
        if int(r.get("closed_by_server", 0)):
            out.append(f"idle {t}: the proxy closed {r['closed_by_server']} idle connections while "
                       "they were held")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clk-tck", type=int, default=100)
    ap.add_argument("--conns", type=int, default=64, help="wrk -c of the keep-alive runs")
    ap.add_argument("--hs-conns", type=int, default=64, help="wrk -c of the resumed runs")
    ap.add_argument("--full-conns", type=int, default=16, help="s_time loops of the full runs")
    ap.add_argument("--pinned", type=int, default=1)
    args = ap.parse_args()

    lines = {"ka": [], "resumed": [], "full": [], "idle": [], "tls": []}
    for line in sys.stdin:
        kind, _, rest = line.rstrip("\n").partition("\t")
        if kind in lines:
            lines[kind].append(rest)
    ka = summarize(parse(lines["ka"]), args.clk_tck)
    resumed = summarize(parse(lines["resumed"]), args.clk_tck)
    full = summarize(parse(lines["full"]), args.clk_tck)
    idle = {r["target"]: r for r in map(kv, lines["idle"])}
    tls = {r["target"]: r for r in map(kv, lines["tls"])}
    mem = memory(idle)
    n_idle = max((int(r["conns"]) for r in idle.values()), default=0)
    n_mark = max((int(r["mark_conns"]) for r in idle.values()), default=0)

    rows = []  # (figure, {target: value or None}, formatter, ratio?)

    def add(label, table, key, fmt, ratio=True):
        rows.append((label, {t: table[t][key] if t in table else None for t in PROXIES}, fmt, ratio))

    def num(v):
        return f"{v:.0f}"

    def us(v):
        return f"{v:.1f}us"

    def pct(v):
        return f"{v:.0f}%"

    def mib(v):
        return f"{v:.1f}MiB"

    add(f"keep-alive req/s -c {args.conns}", ka, "rps", num)
    add("  p50", ka, "p50", fmt_us)
    add("  p99", ka, "p99", fmt_us)
    add("  proxy CPU per request", ka, "cpu_us", us)
    add("  proxy CPU use", ka, "util", pct, ratio=False)
    add(f"resumed TLS conns/s -c {args.hs_conns} (wrk)", resumed, "rps", num)
    add("  p50 (handshake + request)", resumed, "p50", fmt_us)
    add("  p99", resumed, "p99", fmt_us)
    add("  proxy CPU per connection", resumed, "cpu_us", us)
    add("  proxy CPU use", resumed, "util", pct, ratio=False)
    add(f"full-handshake conns/s x{args.full_conns} (s_time)", full, "rps", num)
    add("  proxy CPU per connection", full, "cpu_us", us)
    add("  proxy CPU use", full, "util", pct, ratio=False)
    add("  bytes read per connection", full, "bytes", num, ratio=False)
    add(f"RSS per idle TLS conn, bytes (0 -> {n_idle})", mem, "per_conn", num)
    add(f"  the second half only ({n_mark} -> {n_idle})", mem, "marginal", num)
    add("  RSS before", mem, "before", mib)
    add("  RSS with the idle connections", mem, "with", mib)
    add("  RSS 2 s after they left", mem, "after", mib)

    print("=== TLS termination (ECDSA P-256 certificate, plain HTTP/1.1 keep-alive upstream), "
          "one worker/thread each; ratios are sluice/peer")
    hdr = (f"{'figure':<40} {'sluice':>9} {'nginx':>9} {'haproxy':>9} {'vs nginx':>9} "
           f"{'vs haproxy':>10}")
    print(hdr)
    print("-" * len(hdr))
    for label, vals, fmt, ratio in rows:
        cells = [fmt(vals[t]) if vals[t] is not None else "-" for t in PROXIES]
        ratios = []
        for peer in ("nginx", "haproxy"):
            s, o = vals["sluice"], vals[peer]
            ratios.append(f"{s / o:.2f}x" if ratio and s is not None and o else "-")
        print(f"{label:<40} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9} {ratios[0]:>9} "
              f"{ratios[1]:>10}")
    print()
    for t in PROXIES:
        if t in tls:
            r = tls[t]
            print(f"{t:<8} {r['protocol']} {r['cipher']}; session ticket sent: {r['ticket']}; resumed"
                  f" with it: {r['resumed']}; closed after a 'Connection: close' answer: {r['closes']}")
    print("req/s, p50, p99: wrk, median of rounds (s_time: connections / wall time, no latencies).\n"
          "CPU per request/connection: user+system CPU of the proxy process over all rounds / requests;"
          " CPU use:\nthat CPU time / wall time (100% = its one core busy). RSS per idle conn: (RSS with"
          " the idle clients\n- RSS before) / clients, and the same from half-way to all (leaves out"
          " one-off growth); each client\ndid a full TLS 1.3 handshake and one request, then stayed"
          " silent.")
    for w in warnings(args, {"keep-alive": ka, "resumed": resumed, "full": full}, idle):
        print("WARNING: " + w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
