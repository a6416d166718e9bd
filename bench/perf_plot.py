"""Draws docs/performance.png from the two measurements docs/performance.md describes:

    python3 -m robot bench --shape stories15M -n 64 --json > build/host-bench.json
    make riscv-bench          # writes build/riscv/bench/counts.tsv
    python3 bench/perf_plot.py build/host-bench.json build/riscv/bench/counts.tsv docs/performance.png

A development tool: needs matplotlib (pip install matplotlib), which storybot itself
never imports."""
import csv
import json
import sys


def main(host_json, counts_tsv, out_png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(host_json, encoding="utf-8") as f:
        host = json.load(f)["variants"]
    with open(counts_tsv, encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if "llama2.c" not in r["variant"]]

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1.6]})

    names = list(host)
    tps = [host[n]["tok_per_s"] for n in names]
    bars = a.bar(names, tps, color=["#999999", "#5b8fd9", "#2e9e5b", "#e0862f"][: len(names)])
    for bar, n in zip(bars, names):
        v = host[n]
        a.annotate(f"x{v['speedup_vs_naive_f32']:.2f}\n{v['weight_bytes_per_token'] / 1e6:.1f} MB/tok",
                   (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    a.set_ylabel("tokens / s (one thread)")
    a.set_title("host x86-64, stories15M shape: speed vs naive fp32", fontsize=10)
    a.set_ylim(0, max(tps) * 1.25)
    a.tick_params(axis="x", labelsize=8)

    labels = [r["variant"].replace(" (XTheadVector)", "").replace(", fast", "").replace(" (baseline)", "")
              for r in rows]
    totals = [int(r["total"]) / 1e6 for r in rows]
    colors = ["#999999" if r["variant"].startswith("scalar") else "#2e9e5b" if r["variant"].startswith("RVV")
              else "#e0862f" for r in rows]
    y = range(len(rows))
    b.barh(y, totals, color=colors)
    # rows with the sampler compare with the naive row that has it too
    bases = {"+ sampler" in r["variant"]: int(r["total"]) for r in reversed(rows)}
    base = int(rows[0]["total"])
    for i, r in enumerate(rows):
        t = int(r["total"])
        ratio = bases["+ sampler" in r["variant"]] / t
        share = int(r["vector"]) / t
        b.annotate(f" {t / 1e6:.2f}M = 1/{ratio:.{0 if ratio >= 10 else 1}f} of naive; {share:.0%} vector;"
                   f" {int(r['weight_bytes']) / 1e6:.1f} MB weights", (t / 1e6, i), va="center", fontsize=8)
    b.set_yticks(list(y))
    b.set_yticklabels(labels, fontsize=8)
    b.invert_yaxis()
    b.set_xscale("log")
    b.set_xlim(1, base / 1e6 * 30)
    b.set_xlabel("dynamic RISC-V instructions per token, millions (log scale)")
    b.set_title("RISC-V under QEMU, stories15M shape, position 128 (+ sampler: -t 1 -p 0.9)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: perf_plot.py HOST_BENCH.json COUNTS.tsv OUT.png")
    main(*sys.argv[1:])
