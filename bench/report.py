#!/usr/bin/env python3
"""Turns run_all.sh's records into its tables: details per step, one summary table with the
ratios sluice/nginx and sluice/HAProxy, and issue 16's targets marked met / not met.

Records are lines "KIND key=value ..." (see run_all.sh): wrk (one wrk run), open (one open-loop
run), rss (idle / peak / after-load RSS), idle (the idle-connections test), cost (callgrind.sh,
syscalls.sh), sysload (perf syscall count under load), placement, openbase, skip, note.

  report.py [--clk-tck N] [--scale-conns C] [--workers LIST] < records   the tables
  report.py --line < one_record                                        one progress line
  report.py --slowest-max < records        the slowest proxy's best W=1 median req/s
"""
import argparse
import statistics
import sys

PROXIES = ["sluice", "nginx", "haproxy"]
ORDER = ["upstream"] + PROXIES
KIB = 1024


def parse(lines):
    recs = []
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        r = {"kind": parts[0]}
        for p in parts[1:]:
            if "=" not in p:
                continue
            k, v = p.split("=", 1)
            try:
                r[k] = float(v) if any(c in v for c in ".e") else int(v)
            except ValueError:
                r[k] = v
        recs.append(r)
    return recs


def us(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f}s"
    return f"{v / 1000:.2f}ms" if v >= 1000 else f"{v:.0f}us"


def mib(kb):
    return "-" if kb is None else f"{kb / KIB:.1f}MiB"


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def fx(x):
    return "-" if x is None else f"{x:.2f}x"


def wrk_rps(r):
    return r["requests"] / (r["duration_us"] / 1e6)


def wrk_errors(r):
    return sum(r.get(k, 0) for k in ("connect_err", "read_err", "write_err", "status_err",
                                     "timeout_err"))


def open_errors(r):
    return r.get("status_err", 0) + r.get("failed", 0) + r.get("incomplete", 0)


def ncpus(cpuset):
    n = 0
    for part in str(cpuset).split(","):
        if "-" in part:
            a, b = part.split("-")
            n += int(b) - int(a) + 1
        elif part:
            n += 1
    return n


def one_line(r, tick_us=10000.0):
    k = r["kind"]
    if k == "wrk":
        extra = ""
        if r["target"] != "upstream" and r.get("shared", 0) < 2:
            other = max(0.0, 100 * (r["proxy_busy"] - r["cpu_ticks"]) * tick_us / r["duration_us"]
                        / max(1, r["w"]))
            extra = f"  other load on proxy CPUs {other:.0f}%"
        if wrk_errors(r):
            extra += f"  ERRORS {wrk_errors(r):.0f}"
        return (f"W={r['w']} -c {r['c']} {r['target']:<8} round {r['round']}: "
                f"{wrk_rps(r):>7.0f} req/s  p50 {us(r['p50_us'])}  p99 {us(r['p99_us'])}  "
                f"cpu {r['cpu_ticks'] * tick_us / max(1, r['requests']):.1f}us/req  "
                f"new upstream conns {r['new_upstream']}{extra}")
    if k == "open":
        return (f"{r['pct']}% {r['target']:<8} round {r['round']}: offered {r['target_rate']:.0f}, "
                f"answered {r['achieved_rps']:.0f} req/s  p50 {us(r['p50_us'])}  "
                f"p99 {us(r['p99_us'])}  p99.9 {us(r['p999_us'])}  max {us(r['max_us'])}"
                + (f"  ERRORS {open_errors(r)}" if open_errors(r) else ""))
    if k == "idle":
        n = max(1, r["conns"])
        return (f"{r['target']}: {r['conns']} idle connections ({r['failed']} failed): "
                f"RSS {mib(r['rss0_kb'])} -> {mib(r['rss1_kb'])} = "
                f"{(r['rss1_kb'] - r['rss0_kb']) * 1024 / n:.0f} bytes/connection; "
                f"{mib(r['rss2_kb'])} after they left")
    return " ".join(f"{a}={b}" for a, b in r.items())


class Report:
    def __init__(self, recs, clk_tck, scale_conns, workers):
        self.recs = recs
        self.tick_us = 1e6 / clk_tck
        self.scale_conns = scale_conns
        self.workers = workers
        self.warnings = []
        self.worst_of = {}

    def of(self, kind, **match):
        return [r for r in self.recs if r["kind"] == kind
                and all(r.get(k) == v for k, v in match.items())]

    def placement(self, w):
        p = self.of("placement", w=w)
        return p[-1] if p else None

    # --- wrk figures for one (W, c, target)
    def wrk(self, w, c, t):
        rs = self.of("wrk", w=w, c=c, target=t)
        if not rs:
            return None
        reqs = sum(r["requests"] for r in rs)
        wall_s = sum(r["duration_us"] for r in rs) / 1e6
        cpu_s = sum(r["cpu_ticks"] for r in rs) * self.tick_us / 1e6
        pl = self.placement(w) or {}
        n_load = ncpus(pl.get("load", "1"))
        other = 0.0
        if t != "upstream" and pl.get("shared", 0) < 2:
            other = max(min(100.0, max(0.0, 100 * (r["proxy_busy"] - r["cpu_ticks"])
                                       * self.tick_us / r["duration_us"] / w)) for r in rs)
        return {
            "rps": statistics.median(wrk_rps(r) for r in rs),
            "rounds": [wrk_rps(r) for r in rs],
            "p50": statistics.median(r["p50_us"] for r in rs),
            "p99": statistics.median(r["p99_us"] for r in rs),
            "cpu_us": cpu_s * 1e6 / max(1, reqs),
            "util": 100 * cpu_s / wall_s / (1 if t == "upstream" else w),
            "new_up": statistics.median(r["new_upstream"] for r in rs),
            "errors": sum(wrk_errors(r) for r in rs),
            "other": other,
            "load_busy": min(100.0, max(100 * r["load_busy"] * self.tick_us / r["duration_us"]
                                        / n_load for r in rs)),
            "up_busy": min(100.0, max(100 * r["up_busy"] * self.tick_us / r["duration_us"]
                                      / ncpus(pl.get("upstream", "1")) for r in rs)),
            "shared": pl.get("shared", 0),
        }

    def open(self, pct, t):
        rs = self.of("open", pct=pct, target=t)
        if not rs:
            return None
        med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
        return {"rate": rs[0]["target_rate"], "achieved": med("achieved_rps"), "p50": med("p50_us"),
                "p99": med("p99_us"), "p999": med("p999_us"), "max": max(r["max_us"] for r in rs),
                "gen_lag99": max(r["gen_lag_p99_us"] for r in rs),
                "waited": sum(r["waited_for_conn"] for r in rs),
                "errors": sum(open_errors(r) for r in rs),
                "new_up": med("new_upstream"),
                "cpu_us": sum(r["cpu_ticks"] for r in rs) * self.tick_us
                / max(1, sum(r["completed"] for r in rs)),
                "rounds": [r["p99_us"] for r in rs]}

    def cost(self, t, key):
        rs = [r for r in self.of("cost", target=t) if key in r]
        return rs[-1][key] if rs else None

    def sysload(self, t):
        rs = self.of("sysload", target=t)
        return rs[-1]["syscalls"] / max(1, rs[-1]["requests"]) if rs else None

    def conns_list(self):
        return sorted({r["c"] for r in self.of("wrk", w=1)})

    def pcts(self):
        return sorted({r["pct"] for r in self.of("open")})

    def targets(self, kind, **m):
        have = {r["target"] for r in self.of(kind, **m)}
        return [t for t in ORDER if t in have]

    # --- printing
    def print_details(self):
        seen = set()
        for p in self.of("placement"):
            key = (p["w"], p["proxy"], p["load"], p["upstream"])
            if key in seen:
                continue
            seen.add(key)
            how = {0: "each on CPUs of its own",
                   1: "proxy alone; load generator and upstream share",
                   2: "ALL SHARE THE SAME CPUs (load generator competes with the proxy)"}[p["shared"]]
            print(f"placement W={p['w']}: proxy CPUs {p['proxy']}, load generator {p['load']}, "
                  f"upstream {p['upstream']} -- {how}" + ("" if p.get("pinned", 1) else " (not pinned)"))
        for c in self.conns_list():
            print(f"\n--- throughput, W=1, wrk -c {c} (median of rounds)")
            hdr = (f"{'target':<9} {'req/s':>8} {'p50':>8} {'p99':>8} {'CPU/req':>9} {'CPU use':>7} "
                   f"{'new up conns':>12} {'errors':>6} {'other load':>10}   req/s per round")
            print(hdr)
            print("-" * len(hdr))
            for t in self.targets("wrk", w=1, c=c):
                s = self.wrk(1, c, t)
                other = "-" if t == "upstream" else f"{s['other']:.0f}%"
                print(f"{t:<9} {s['rps']:>8.0f} {us(s['p50']):>8} {us(s['p99']):>8} "
                      f"{s['cpu_us']:>7.2f}us {s['util']:>6.0f}% {s['new_up']:>12.0f} "
                      f"{s['errors']:>6.0f} {other:>10}   "
                      + " ".join(f"{x:.0f}" for x in s["rounds"]))
                if s["errors"]:
                    self.warnings.append(f"wrk errors against {t} at -c {c}: its figures are suspect")
                if s["other"] > 10:
                    self.worst("other", s["other"], f"-c {c} {t}")
        base = self.of("openbase")
        for pct in self.pcts():
            o = self.open(pct, self.targets("open", pct=pct)[0])
            src = f" of {base[-1]['rps']} req/s" if base else ""
            print(f"\n--- fixed rate (open loop), W=1: {o['rate']:.0f} req/s = {pct}%{src}, "
                  "latency from each request's scheduled send time (median of rounds)")
            hdr = (f"{'target':<9} {'answered':>9} {'p50':>8} {'p99':>8} {'p99.9':>8} {'max':>8} "
                   f"{'CPU/req':>9} {'queued':>7} {'gen lag':>8} {'errors':>6}   p99 per round")
            print(hdr)
            print("-" * len(hdr))
            for t in self.targets("open", pct=pct):
                o = self.open(pct, t)
                print(f"{t:<9} {o['achieved']:>9.0f} {us(o['p50']):>8} {us(o['p99']):>8} "
                      f"{us(o['p999']):>8} {us(o['max']):>8} {o['cpu_us']:>7.2f}us "
                      f"{o['waited']:>7} {us(o['gen_lag99']):>8} {o['errors']:>6}   "
                      + " ".join(us(x) for x in o["rounds"]))
                if o["errors"]:
                    self.warnings.append(f"open loop {pct}% {t}: {o['errors']} requests failed or "
                                         "went unanswered")
                if o["gen_lag99"] > 1000:
                    self.worst("gen_lag", o["gen_lag99"], f"{pct}% {t}")
                if o["achieved"] < 0.97 * o["rate"]:
                    self.warnings.append(f"open loop {pct}% {t}: answered {o['achieved']:.0f} of "
                                         f"{o['rate']:.0f} req/s offered: it could not keep up")
        rss = {r["target"]: r for r in self.of("rss") if r["target"] != "upstream"}
        idle = {r["target"]: r for r in self.of("idle")}
        if rss or idle:
            top_c = next(iter(rss.values()))["c"] if rss else ""
            print("\n--- memory, W=1 (RSS of all the proxy's processes)"
                  + (f": idle after start-up and 400 requests, peak during the -c {top_c} runs "
                     "(VmHWM), 2 s after that load" if rss else "")
                  + ("; fresh processes: RSS, RSS with the idle connections open, bytes per "
                     "connection, RSS 2 s after they closed" if idle else ""))
            hdr = (f"{'target':<9} {'idle':>8} {'peak':>8} {'after':>8} | {'fresh':>8} "
                   f"{'idle conns':>10} {'with them':>9} {'per conn':>9} {'after':>8}")
            print(hdr)
            print("-" * len(hdr))
            for t in PROXIES:
                if t not in rss and t not in idle:
                    continue
                a, b = rss.get(t), idle.get(t)
                left = (f"{mib(a['idle_kb']):>8} {mib(a['peak_kb']):>8} {mib(a['after_kb']):>8}"
                        if a else f"{'-':>8} {'-':>8} {'-':>8}")
                if b:
                    per = (b["rss1_kb"] - b["rss0_kb"]) * KIB / max(1, b["conns"])
                    right = (f"{mib(b['rss0_kb']):>8} {b['conns']:>10} {mib(b['rss1_kb']):>9} "
                             f"{per:>7.0f} B {mib(b['rss2_kb']):>8}")
                    if b.get("failed") or b.get("closed_by_server") or b.get("unfinished"):
                        self.warnings.append(
                            f"idle connections to {t}: {b.get('failed', 0)} failed, "
                            f"{b.get('unfinished', 0)} unfinished, {b.get('closed_by_server', 0)} "
                            "closed by the proxy while held")
                else:
                    right = "-"
                print(f"{t:<9} {left} | {right}")
            if rss and any(r.get("hwm_reset") == 0 for r in rss.values()):
                self.warnings.append("peak RSS could not be reset before the top -c run: it is the "
                                     "peak since start-up")
        ws = sorted({r["w"] for r in self.of("wrk", c=self.scale_conns)})
        if len(ws) > 1 or self.of("skip"):
            print(f"\n--- scaling, wrk -c {self.scale_conns}, W workers/threads on W CPUs "
                  "(median of rounds)")
            hdr = (f"{'W':>2} {'target':<9} {'req/s':>8} {'/ (W x W=1)':>11} {'p99':>8} "
                   f"{'CPU/req':>9} {'CPU use':>7} {'load busy':>9} {'upstream busy':>13}  note")
            print(hdr)
            print("-" * len(hdr))
            for w in ws:
                pl = self.placement(w) or {}
                for t in PROXIES:
                    s, s1 = self.wrk(w, self.scale_conns, t), self.wrk(1, self.scale_conns, t)
                    if not s:
                        continue
                    lin = fx(s["rps"] / (w * s1["rps"])) if s1 else "-"
                    note = {0: "", 1: "load+upstream share a CPU",
                            2: "WARNING: all share CPUs"}.get(pl.get("shared", 0), "")
                    if pl.get("shared") == 0 and s["util"] < 90 and max(s["load_busy"],
                                                                         s["up_busy"]) > 90:
                        note = (note + "; " if note else "") + "harness saturated?"
                        self.warnings.append(
                            f"W={w} {t}: the proxy used {s['util']:.0f}% of its CPUs while the load "
                            f"generator's were {s['load_busy']:.0f}% and the upstream's "
                            f"{s['up_busy']:.0f}% busy: the harness, not the proxy, may be the limit")
                    print(f"{w:>2} {t:<9} {s['rps']:>8.0f} {lin:>11} {us(s['p99']):>8} "
                          f"{s['cpu_us']:>7.2f}us {s['util']:>6.0f}% {s['load_busy']:>8.0f}% "
                          f"{s['up_busy']:>12.0f}%  {note}")
                if pl.get("shared") == 2:
                    self.warnings.append(f"W={w}: the proxy, load generator and upstream share "
                                         "the same CPUs; its scaling figures mean little")
            for r in self.of("skip"):
                print(f"{r['w']:>2} skipped: {str(r.get('reason', '')).replace('_', ' ')}")

    def summary(self):
        """Rows: (figure, {target: value}, fmt, target text, status)."""
        rows = []
        S, N, H = "sluice", "nginx", "haproxy"

        def status(ok):
            return "n/a" if ok is None else ("met" if ok else "NOT MET")

        for c in self.conns_list():
            f = {t: self.wrk(1, c, t) for t in ORDER}
            g = lambda k: {t: (f[t][k] if f[t] else None) for t in ORDER}  # noqa: E731
            rps = g("rps")
            r_n, r_h = ratio(rps[S], rps[N]), ratio(rps[S], rps[H])
            ok = None if r_n is None or r_h is None else (r_n >= 1.3 and r_h >= 1.3)
            rows.append((f"req/s -c {c}", rps, "n", ">=1.3x both", status(ok), "hi"))
            rows.append((f"p50 -c {c}", g("p50"), "us", "", "", "lo"))
            rows.append((f"p99 -c {c}", g("p99"), "us", "", "", "lo"))
            cpu = g("cpu_us")
            r = ratio(cpu[S], cpu[N])
            rows.append((f"CPU/req -c {c}", cpu, "cpu", "<=0.75x nginx",
                         status(None if r is None else r <= 0.75), "lo"))
            rows.append((f"new upstream conns/run -c {c}", g("new_up"), "n", "", "", "none"))
        for pct in self.pcts():
            o = {t: self.open(pct, t) for t in ORDER}
            rate = next(v["rate"] for v in o.values() if v)
            for key, name in (("p99", "p99"), ("p999", "p99.9")):
                vals = {t: (o[t][key] if o[t] else None) for t in ORDER}
                ok = None
                if vals[S] is not None and vals[N] is not None and vals[H] is not None:
                    ok = vals[S] <= vals[N] and vals[S] <= vals[H]
                rows.append((f"{name} @{pct}% ({rate:.0f}/s)", vals, "us", "<= both", status(ok),
                             "lo"))
        ir = {t: self.cost(t, "ir_per_req") for t in ORDER}
        if any(v is not None for v in ir.values()):
            r = ratio(ir[S], ir[N])
            rows.append(("instructions/req (callgrind)", ir, "n", "<=0.5x nginx",
                         status(None if r is None else r <= 0.5), "lo"))
        sc = {t: self.cost(t, "syscalls_per_req") for t in ORDER}
        if any(v is not None for v in sc.values()):
            rows.append(("syscalls/req (syscalls.sh)", sc, "f", "<=4",
                         status(None if sc[S] is None else sc[S] <= 4), "lo"))
        sl = {t: self.sysload(t) for t in ORDER}
        if any(v is not None for v in sl.values()):
            rows.append(("syscalls/req under -c 64 (perf)", sl, "f", "", "", "lo"))
        idle = {r["target"]: r for r in self.of("idle")}
        if idle:
            per = {t: ((idle[t]["rss1_kb"] - idle[t]["rss0_kb"]) * KIB / max(1, idle[t]["conns"])
                       if t in idle else None) for t in ORDER}
            rows.append((f"RSS/idle conn, bytes ({max(r['conns'] for r in idle.values())})", per,
                         "n", "<=1024", status(None if per[S] is None else per[S] <= 1024), "lo"))
            grow = {t: near_idle(idle[t]["rss0_kb"], idle[t]["rss1_kb"], idle[t]["rss2_kb"])
                    if t in idle else None for t in ORDER}
            rows.append(("RSS after idle conns leave", {t: idle[t]["rss2_kb"] if t in idle else None
                                                        for t in ORDER}, "kb", "near idle",
                         status(grow[S]), "lo"))
        rss = {r["target"]: r for r in self.of("rss") if r["target"] != "upstream"}
        if rss:
            c = next(iter(rss.values()))["c"]
            peak = {t: rss[t]["peak_kb"] if t in rss else None for t in ORDER}
            ok = None if peak[S] is None or peak[N] is None else peak[S] <= peak[N]
            rows.append((f"peak RSS -c {c}", peak, "kb", "<= nginx", status(ok), "lo"))
            near = {t: near_idle(rss[t]["idle_kb"], rss[t]["peak_kb"], rss[t]["after_kb"])
                    if t in rss else None for t in ORDER}
            rows.append((f"RSS after -c {c} load", {t: rss[t]["after_kb"] if t in rss else None
                                                    for t in ORDER}, "kb", "near idle",
                         status(near[S]), "lo"))
        ws = sorted({r["w"] for r in self.of("wrk", c=self.scale_conns)})
        s1 = self.wrk(1, self.scale_conns, S)
        for w in ws:
            if w == 1:
                continue
            f = {t: self.wrk(w, self.scale_conns, t) for t in ORDER}
            vals = {t: f[t]["rps"] if f[t] else None for t in ORDER}
            ok = None
            if vals[S] is not None and s1 and vals[N] is not None:
                ok = vals[S] >= 0.9 * w * s1["rps"] and vals[S] >= vals[N]
            pl = self.placement(w) or {}
            tgt = f">={0.9 * w:.1f}x W1, >=nginx"
            st = status(ok) + (" (shared CPUs)" if pl.get("shared") == 2 else "")
            rows.append((f"req/s W={w} -c {self.scale_conns}", vals, "n", tgt, st, "hi"))
        return rows

    def print_summary(self):
        rows = self.summary()
        print("\n=== summary: sluice (default config) vs nginx and HAProxy; ratios are sluice/peer")
        hdr = (f"{'figure':<33} {'sluice':>9} {'nginx':>9} {'haproxy':>9} {'upstream':>9} "
               f"{'vs nginx':>8} {'vs haproxy':>10}  {'target':<18} status")
        print(hdr)
        print("-" * len(hdr))
        for name, vals, fmt, tgt, st, kind in rows:
            def cell(v):
                if v is None:
                    return "-"
                if fmt == "us":
                    return us(v)
                if fmt == "cpu":
                    return f"{v:.2f}us"
                if fmt == "kb":
                    return mib(v)
                if fmt == "f":
                    return f"{v:.2f}"
                return f"{v:.0f}"
            print((f"{name:<33} {cell(vals.get('sluice')):>9} {cell(vals.get('nginx')):>9} "
                  f"{cell(vals.get('haproxy')):>9} {cell(vals.get('upstream')):>9} "
                  f"{fx(None if kind == 'none' else ratio(vals.get('sluice'), vals.get('nginx'))):>8} "
                  f"{fx(None if kind == 'none' else ratio(vals.get('sluice'), vals.get('haproxy'))):>10}"
                  f"  {tgt:<18} {st}").rstrip())
        met = sum(1 for r in rows if r[4].startswith("met"))
        missed = [r[0] for r in rows if r[4].startswith("NOT MET")]
        na = [r[0] for r in rows if r[4] == "n/a"]
        print(f"\ntargets met: {met} of {met + len(missed) + len(na)}"
              + (f"; not met: {', '.join(missed)}" if missed else "")
              + (f"; not measured: {', '.join(na)}" if na else ""))
        print("near idle = RSS after <= RSS before + max(1 MiB, 10% of what it grew); "
              "CPU/req = user+system CPU of all the proxy's threads / requests; upstream = wrk or "
              "loadgen straight to the upstream nginx (reference)")

    def worst(self, what, value, where):
        """Keeps the worst case of a repeated warning, printed once by print_warnings."""
        if value > self.worst_of.get(what, (0, ""))[0]:
            self.worst_of[what] = (value, where)

    def print_warnings(self):
        if "other" in self.worst_of:
            v, where = self.worst_of["other"]
            self.warnings.insert(0, f"other processes took up to {v:.0f}% of the proxy CPUs during "
                                 f"a run (worst: {where}): the machine was busy, the timings are "
                                 "noisy; rerun when it is idle (callgrind/strace counts are not "
                                 "affected)")
        if "gen_lag" in self.worst_of:
            v, where = self.worst_of["gen_lag"]
            self.warnings.append(f"open loop: the load generator itself sent up to {us(v)} late "
                                 f"(p99; worst: {where}): its CPU was busy, so every target's "
                                 "latencies include that much of its own delay")
        for n in self.of("note"):
            if n.get("sysload") == "unavailable":
                self.warnings.append("perf could not count system calls under load (sysload step)")
        for w in dict.fromkeys(self.warnings):
            print(f"WARNING: {w}")


def near_idle(before_kb, peak_kb, after_kb):
    """True if RSS came back to within max(1 MiB, 10% of its growth) of where it started."""
    grew = max(0, peak_kb - before_kb)
    return after_kb - before_kb <= max(1024, 0.1 * grew)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clk-tck", type=int, default=100)
    ap.add_argument("--scale-conns", type=int, default=256)
    ap.add_argument("--workers", default="1")
    ap.add_argument("--line", action="store_true")
    ap.add_argument("--slowest-max", action="store_true")
    args = ap.parse_args()
    recs = parse(sys.stdin)
    if args.line:
        for r in recs:
            print(one_line(r, 1e6 / args.clk_tck))
        return 0
    rep = Report(recs, args.clk_tck, args.scale_conns, args.workers)
    if args.slowest_max:
        best = []
        for t in PROXIES:
            per_c = [rep.wrk(1, c, t) for c in rep.conns_list()]
            per_c = [s["rps"] for s in per_c if s]
            if per_c:
                best.append(max(per_c))
        print(int(min(best)) if best else 0)
        return 0
    rep.print_details()
    rep.print_summary()
    rep.print_warnings()
    return 0


if __name__ == "__main__":
    sys.exit(main())
