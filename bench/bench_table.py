#!/usr/bin/env python3
"""Turns run_bench.sh's per-run records into the results table (or one progress line).

Input lines (tab-separated): target, round, CPU ticks of the target process during the run, CPU
ticks of the upstream nginx during the run, busy ticks of the proxy CPU(s) during the run (0 when
not pinned), then wrk's "key=value ..." result (see
conf/wrk_report.lua). Figures per target: median requests/s, p50 and p99 over rounds; CPU time per
request = all CPU ticks of the target process over all rounds / all requests.
"""
import argparse
import statistics
import sys

ORDER = ["upstream", "sluice", "nginx", "haproxy"]


def parse(lines):
    runs = []
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        target, rnd, ticks, up_ticks, core_ticks, rest = line.split("\t", 5)
        kv = dict(item.split("=", 1) for item in rest.split())
        run = {k: float(v) for k, v in kv.items()}
        run.update(target=target, round=int(rnd), ticks=int(ticks), up_ticks=int(up_ticks),
                   core_ticks=int(core_ticks))
        run["rps"] = run["requests"] / (run["duration_us"] / 1e6)
        run["errors"] = sum(run[k] for k in
                            ("connect_err", "read_err", "write_err", "status_err", "timeout_err"))
        runs.append(run)
    return runs


def fmt_us(us):
    return f"{us / 1000:.2f}ms" if us >= 1000 else f"{us:.0f}us"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clk-tck", type=int, default=100)
    ap.add_argument("--one-line", action="store_true")
    ap.add_argument("--hwm", action="append", default=[], help="TARGET=KiB peak RSS")
    ap.add_argument("--pinned", type=int, default=1)
    args = ap.parse_args()
    runs = parse(sys.stdin)
    tick_us = 1e6 / args.clk_tck

    def other_pct(r):
        """Busy time on the proxy CPU not charged to the proxy under test (other processes,
        interrupts), as % of the run's wall time; None when not pinned."""
        if not args.pinned or r["target"] == "upstream":  # the upstream is not on the proxy CPU
            return None
        return max(0.0, 100 * (r["core_ticks"] - r["ticks"]) * tick_us / r["duration_us"])

    if args.one_line:
        for r in runs:
            print(f"{r['rps']:>10.0f} req/s  p50 {fmt_us(r['p50_us']):>8}  "
                  f"p99 {fmt_us(r['p99_us']):>8}  cpu {r['ticks'] * tick_us / r['requests']:.1f} us/req"
                  + (f"  other load on proxy CPU {other_pct(r):.0f}%" if other_pct(r) is not None
                     else "")
                  + (f"  ERRORS {r['errors']:.0f}" if r["errors"] else ""))
        return 0

    hwm = dict(h.split("=", 1) for h in args.hwm)
    targets = sorted({r["target"] for r in runs},
                     key=lambda t: ORDER.index(t) if t in ORDER else len(ORDER))
    summary = {}
    for t in targets:
        rs = [r for r in runs if r["target"] == t]
        wall_s = sum(r["duration_us"] for r in rs) / 1e6
        cpu_s = sum(r["ticks"] for r in rs) / args.clk_tck
        reqs = sum(r["requests"] for r in rs)
        summary[t] = {
            "rps": statistics.median(r["rps"] for r in rs),
            "rounds": [r["rps"] for r in rs],
            "p50": statistics.median(r["p50_us"] for r in rs),
            "p99": statistics.median(r["p99_us"] for r in rs),
            "cpu_us": cpu_s * 1e6 / reqs,
            "util": 100 * cpu_s / wall_s,
            "up_cpu_us": sum(r["up_ticks"] for r in rs) * tick_us / reqs,
            "hwm": hwm.get(t),
            "errors": sum(r["errors"] for r in rs),
            "other": max((other_pct(r) or 0.0 for r in rs), default=0.0),
        }

    hdr = (f"{'target':<9} {'req/s':>9} {'p50':>8} {'p99':>8} {'CPU/req':>9} {'CPU use':>8} "
           f"{'peak RSS':>9} {'errors':>6}   req/s per round")
    print(hdr)
    print("-" * len(hdr))
    for t in targets:
        s = summary[t]
        rss = f"{int(s['hwm']) / 1024:.1f}MiB" if s["hwm"] else "-"
        rounds = " ".join(f"{x:.0f}" for x in s["rounds"])
        print(f"{t:<9} {s['rps']:>9.0f} {fmt_us(s['p50']):>8} {fmt_us(s['p99']):>8} "
              f"{s['cpu_us']:>7.2f}us {s['util']:>7.0f}% {rss:>9} {s['errors']:>6.0f}   {rounds}")
    print()
    print("req/s, p50, p99: median over rounds. CPU/req: user+system CPU of that process (all threads)")
    print("over all rounds / requests served; for 'upstream' it is the upstream nginx itself. CPU use:")
    print("that CPU time / wall time (100% = one core saturated). peak RSS: VmHWM at the end.")
    print("upstream CPU/req during each proxy's runs (same for all if the proxies pool alike): " +
          ", ".join(f"{t} {summary[t]['up_cpu_us']:.2f}us" for t in targets if t != "upstream"))

    if "sluice" in summary:
        print()
        sl = summary["sluice"]
        for other in ("nginx", "haproxy"):
            if other not in summary:
                continue
            o = summary[other]
            print(f"sluice/{other:<8} req/s {sl['rps'] / o['rps']:.2f}x   "
                  f"p99 {fmt_us(sl['p99'])} vs {fmt_us(o['p99'])} ({sl['p99'] / o['p99']:.2f}x)   "
                  f"CPU/req {sl['cpu_us'] / o['cpu_us']:.2f}x")
    else:
        print("\nsluice not measured (see the notes above); no ratios.")
    if args.pinned and len(targets) > 1:
        worst = max(summary[t]["other"] for t in targets)
        print(f"\nother load on the proxy CPU (busy time not charged to the proxy: other processes,"
              f" interrupts), worst run: {worst:.0f}%"
              + ("  -- WARNING: the machine was busy; rerun when it is idle" if worst > 10 else ""))
    if any(summary[t]["errors"] for t in targets):
        print("\nWARNING: some runs had wrk errors (connect/read/write/status/timeout); "
              "their figures are suspect.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
