"""C906 speed estimates from `make riscv-bench`'s counts.tsv (bench/riscv_bench.sh).

    python3 bench/estimate.py build/riscv/bench/counts.tsv build/riscv/estimate.json

The cycles come from the c906sim plugin (bench/c906sim.c), a timing model of the
C906 calibrated against real-board figures (docs/performance.md, "A timing model of
the C906"). Only the builds a C906 can run are estimated: the scalar one and the
XTheadVector one run on the Duo. The RVV 1.0 build's rows are kept for comparing kernels
(`"runs_on_duo": false`): they are a core with the C906's timings running an ISA the
C906 lacks, close to what an RVV 1.0 board of that class (C908-like) would show.
Prints the markdown table docs/performance.md shows; writes a JSON list of
{build, kernel, format, sampler, variant, instructions_per_token, cycles_per_token,
tok_per_s_850mhz, tok_per_s_1ghz, memory_stall_share, error_band}.
"""
import csv
import json
import sys

# The calibration's error (docs/performance.md): the model's tok/s against the eleven
# real-board figures. Restated here so the JSON carries its own uncertainty.
ERROR_BAND = {"median_abs_pct": 7.7, "max_abs_pct": 18.0, "loo_median_abs_pct": 8.1, "loo_max_abs_pct": 19.1, "points": 11}
CLOCKS = {"850mhz": 850e6, "1ghz": 1e9}
# the kernel's name for llama2.c's Q8_0 files, as the bench files name them (stories15M.l2q8)
SHORT_FORMAT = {"q8-llama2c": "l2q8"}


def estimate(row):
    cycles = int(row["cycles"])
    return {
        "variant": row["variant"],
        "build": row["build"],
        "kernel": row["kernel"],
        "format": SHORT_FORMAT.get(row["format"], row["format"]),
        "sampler": row["sampler"] == "yes",
        "instructions_per_token": int(row["total"]),
        "cycles_per_token": cycles,
        "tok_per_s_850mhz": round(CLOCKS["850mhz"] / cycles, 2),
        "tok_per_s_1ghz": round(CLOCKS["1ghz"] / cycles, 2),
        "memory_stall_share": round(int(row["memstall"]) / cycles, 3),
        "weight_bytes_per_token": int(row["weight_bytes"]),
        "error_band": ERROR_BAND,
        "runs_on_duo": row["build"] in ("scalar", "c906"),
    }


def main(tsv, out_json):
    with open(tsv, encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["build"] in ("scalar", "c906", "rvv1")]
    est = [estimate(r) for r in rows]
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump(est, f, indent=1)
        f.write("\n")
    print("C906 estimate (c906sim timing model; calibration error in docs/performance.md):")
    print()
    print("| build / kernel / weights | M instructions | M cycles | tok/s @ 850 MHz | @ 1 GHz | memory stall share |")
    print("|---|---|---|---|---|---|")
    for e in est:
        if not e["runs_on_duo"]:
            continue  # the table is about the Duo; the JSON keeps the RVV 1.0 rows
        print(f"| {e['variant']} | {e['instructions_per_token'] / 1e6:.2f} | {e['cycles_per_token'] / 1e6:.2f} | "
              f"{e['tok_per_s_850mhz']:.1f} | {e['tok_per_s_1ghz']:.1f} | {e['memory_stall_share'] * 100:.0f} % |")
    print()
    print(f"wrote {out_json}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: estimate.py COUNTS.tsv ESTIMATE.json")
    main(*sys.argv[1:])
