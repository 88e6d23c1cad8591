#!/usr/bin/env python3
"""Prints the functions that cost the most instructions per request, from two callgrind outputs
(N1 and N2 requests): per function, (Ir(N2) - Ir(N1)) / (N2 - N1), self cost (not inclusive).

usage: callgrind_top.py OUT_N1 OUT_N2 N1 N2 [TOP]
"""
import os
import re
import subprocess
import sys

LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")


def functions(path):
    """Maps 'function [object]' to its self Ir in one callgrind output."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", path],
                          check=True, capture_output=True, text=True).stdout
    costs = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith("Ir") and "file:function" in line:
            in_table = True
            continue
        if not in_table:
            continue
        m = LINE.match(line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        ir = int(m.group(1).replace(",", ""))
        name = m.group(2)
        obj = ""
        om = re.search(r"\s\[([^\]]+)\]$", name)
        if om:
            obj = os.path.basename(om.group(1))
            name = name[: om.start()]
        # "file:function" -> "function"; the function itself may contain "::".
        fm = re.match(r"^[^:]*\.(?:c|cc|cpp|h|hpp|S|s|inc):(.*)$|^\?\?\?:(.*)$", name)
        if fm:
            name = fm.group(1) or fm.group(2)
        key = f"{name} [{obj}]" if obj else name
        costs[key] = costs.get(key, 0) + ir
    return costs


def main():
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    out1, out2, n1, n2 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    top = int(sys.argv[5]) if len(sys.argv) > 5 else 15
    c1, c2 = functions(out1), functions(out2)
    per_req = {k: (c2.get(k, 0) - c1.get(k, 0)) / (n2 - n1) for k in set(c1) | set(c2)}
    total = sum(per_req.values())
    print(f"  {'Ir/req':>8} {'share':>6}  function [object]   (self cost; total {total:.0f} Ir/req)")
    for k, v in sorted(per_req.items(), key=lambda kv: -kv[1])[:top]:
        name = k if len(k) <= 110 else k[:107] + "..."
        print(f"  {v:>8.0f} {100 * v / total:>5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
