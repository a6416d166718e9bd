"""Cycles per function from a c906sim profile (prof=FILE) and the program's symbols.

    python3 bench/sim_profile.py PROFILE PROGRAM [NM]     (NM defaults to `nm`)

Prints the functions that took the most estimated C906 cycles, with their share,
instructions and cycles per instruction. Static programs only (addresses are the
program's own).
"""
import bisect
import subprocess
import sys
from collections import defaultdict


def main(prof, prog, nm="nm"):
    syms = []
    for ln in subprocess.run([nm, "-n", prog], capture_output=True, text=True, check=True).stdout.splitlines():
        f = ln.split()
        if len(f) == 3 and f[1] in "tTwW":
            syms.append((int(f[0], 16), f[2]))
    addrs = [a for a, _ in syms]
    cyc, ins = defaultdict(int), defaultdict(int)
    with open(prof, encoding="utf-8") as f:
        for ln in f:
            pc, n, c = ln.split()
            i = bisect.bisect_right(addrs, int(pc, 16)) - 1
            name = syms[i][1] if i >= 0 else "?"
            cyc[name] += int(c)
            ins[name] += int(n)
    total = sum(cyc.values())
    print(f"{'function':32s} {'M cycles':>9s} {'share':>6s} {'M insns':>8s} {'CPI':>5s}")
    for name in sorted(cyc, key=cyc.get, reverse=True)[:25]:
        print(f"{name:32s} {cyc[name] / 1e6:9.2f} {cyc[name] / total * 100:5.1f}% {ins[name] / 1e6:8.2f} {cyc[name] / max(ins[name], 1):5.2f}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: sim_profile.py PROFILE PROGRAM [NM]")
    main(*sys.argv[1:])
