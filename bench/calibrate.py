"""Fit and check the C906 timing model (bench/c906sim.c) against real-board figures.

    python3 bench/calibrate.py LOGDIR [--markdown]

LOGDIR holds the c906sim logs bench/calibrate.sh writes (competitor programs built
outside the repository, run under xuantie-qemu with the plugin's whole parameter grid).
For every grid point (DRAM latency `lat`, cycles per 64-byte line `line`) the model
predicts each measured figure; the fit minimises the sum of squared log errors. Every
point's error at the fitted parameters and its leave-one-out error (the parameters
fitted to the other ten points) are printed, with the median and worst of each.
The measured figures are ../shared/reference/duo_measurements.md's (copied below with
their conditions, since tests and fresh clones must not need the shared folder).
"""
import math
import os
import re
import statistics
import sys

HZ = 850e6  # the Duo's C906 clock in its default boot mode

# name, measured value, unit ('ms' per call or 'tok/s'), how the logs give cycles
POINTS = [
    ("PR4 runq.c, stories15M Q8_0, t 1 p 0.9 (judged)", 24.303, "tok/s", ("tokens", "pr4", 128)),
    ("run.c stories260K fp32, scalar", 162.3, "tok/s", ("tokens", "run260", 256)),
    ("run.c stories260K fp32, PR2 RVV matmul", 211.9, "tok/s", ("tokens", "runt260", 256)),
    ("matvec 288x288 scalar", 0.676, "ms", ("roi", "matvec", 1)),
    ("matvec 288x288 RVV", 0.501, "ms", ("roi", "matvec", 0)),
    ("matvec 768x288 scalar", 1.784, "ms", ("roi", "matvec", 3)),
    ("matvec 768x288 RVV", 0.951, "ms", ("roi", "matvec", 2)),
    ("matvec 288x768 scalar", 1.734, "ms", ("roi", "matvec", 5)),
    ("matvec 288x768 RVV", 1.339, "ms", ("roi", "matvec", 4)),
    ("matvec 32000x288 scalar", 73.20, "ms", ("roi", "matvec", 7)),
    ("matvec 32000x288 RVV", 58.87, "ms", ("roi", "matvec", 6)),
]


def parse(path):
    """Each line of a c906sim log -> (tag, {key: int}, {(lat, line): (cycles, memstall)})."""
    out = []
    with open(path, encoding="utf-8") as f:
        for ln in f:
            m = re.match(r"(roi\[\d+\]|total) (.*)", ln)
            if not m:
                continue
            kv = dict(re.findall(r"(\w+)=(\d+)", m.group(2)))
            grid = {}
            g = re.search(r"grid=(\S+)", ln)
            for item in (g.group(1).split(",") if g else []):
                p, c = item.split(":")
                grid[tuple(map(int, p.split("/")))] = tuple(map(int, c.split("/")))
            if not grid:   # logs of a plugin that printed no grid: its one parameter set
                grid[(0, 0)] = (int(kv["cycles"]), int(kv["memstall"]))
            out.append((m.group(1), {k: int(v) for k, v in kv.items()}, grid))
    return out


def linear_at(xs, ys, x):
    """Least-squares line through (xs, ys), evaluated at x."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((a - mx) * (c - my) for a, c in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)
    return my + b * (x - mx)


def cycles_of(logdir, how):
    """{(lat, line): (cycles, memstall, instructions)} for one point.

    ("roi", log, i): the i-th marked region of a log.
    ("tokens", log, pos): a whole program run with one region per call of forward()
    (c906sim mark=), region i being the token at position i with its sampling and
    output; every cost is a line in the position (attention grows linearly), fitted
    from position 8 on (past the prompt) and read at `pos`, the mean position of the
    measured run (256 steps: 128; 512 steps: 256)."""
    rois = [r for r in parse(os.path.join(logdir, how[1] + ".log")) if r[0].startswith("roi")]
    if how[0] == "roi":
        _, kv, grid = rois[how[2]]
        return {p: (c, s, kv["total"]) for p, (c, s) in grid.items()}
    pos = list(range(8, len(rois)))
    at = how[2]
    out = {}
    for p in rois[0][2]:
        cyc = linear_at(pos, [rois[i][2][p][0] for i in pos], at)
        stall = linear_at(pos, [rois[i][2][p][1] for i in pos], at)
        ins = linear_at(pos, [rois[i][1]["total"] for i in pos], at)
        out[p] = (cyc, stall, ins)
    return out


def predict(unit, cycles):
    return cycles / HZ * 1e3 if unit == "ms" else HZ / cycles


def log_err(point, cyc):
    _, meas, unit, _ = point
    return math.log(predict(unit, cyc) / meas)


def fit(points, table, skip=None):
    """The grid point minimising the squared log errors of every point but `skip`."""
    params = set.intersection(*(set(t) for t in table))
    def cost(p):
        return sum(log_err(pt, t[p][0]) ** 2 for i, (pt, t) in enumerate(zip(points, table)) if i != skip)
    return min(sorted(params), key=cost)


def main(logdir, markdown=False):
    table = [cycles_of(logdir, pt[3]) for pt in POINTS]
    best = fit(POINTS, table)
    errs, loo = [], []
    rows = []
    for i, (pt, t) in enumerate(zip(POINTS, table)):
        cyc, stall, ins = t[best]
        e = math.exp(log_err(pt, cyc)) - 1
        pl = fit(POINTS, table, skip=i)
        el = math.exp(log_err(pt, t[pl][0])) - 1
        errs.append(e)
        loo.append(el)
        rows.append((pt[0], pt[1], predict(pt[2], cyc), pt[2], ins, cyc, stall / cyc, e, el, pl))
    if markdown:
        print(f"Fitted: lat = {best[0]} cycles, line = {best[1]} cycles per 64-byte line "
              f"({64 * HZ / best[1] / 1e9:.2f} GB/s at 850 MHz).")
        print()
        print("| figure | measured | model | M instructions | M cycles | memory stall | error | leave-one-out error (lat/line) |")
        print("|---|---|---|---|---|---|---|---|")
        for name, meas, pred, unit, ins, cyc, share, e, el, pl in rows:
            print(f"| {name} | {meas:g} {unit} | {pred:.3g} {unit} | {ins / 1e6:.3f} | {cyc / 1e6:.3f} | {share * 100:.0f} % | "
                  f"{e * 100:+.1f} % | {el * 100:+.1f} % ({pl[0]}/{pl[1]}) |")
    else:
        print(f"fitted lat={best[0]} line={best[1]}")
        for name, meas, pred, unit, ins, cyc, share, e, el, pl in rows:
            print(f"{name:50s} measured {meas:9.4g} {unit:5s} model {pred:9.4g}  err {e * 100:+6.1f}%  loo {el * 100:+6.1f}% {pl}"
                  f"  ({ins / 1e6:.2f} M insns, {cyc / 1e6:.2f} M cycles, stall {share * 100:.0f}%)")
    print()
    print(f"median |error| {statistics.median(abs(e) for e in errs) * 100:.1f} %, worst {max(abs(e) for e in errs) * 100:.1f} %; "
          f"leave-one-out: median {statistics.median(abs(e) for e in loo) * 100:.1f} %, worst {max(abs(e) for e in loo) * 100:.1f} %")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: calibrate.py LOGDIR [--markdown]")
    main(sys.argv[1], "--markdown" in sys.argv[2:])
