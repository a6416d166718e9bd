"""`storybot bench`: tokens per second of each kernel and weight format, side by side
in one run, as ratios against the naive fp32 loops.

Each variant runs in its own child process so that its peak RSS is its own (the
mapped weights it touched, its KV cache, Python). With --shape, seeded random weights
of that shape are made once and cached: speed depends on the shape, not the values."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

from robot import procinfo
from robot.errors import StorybotError

VARIANTS = {
    # name: (weight format, kernel)
    "naive-f32": ("f32", "naive"),
    "fast-f32": ("f32", "fast"),
    "fast-q8": ("q8", "fast"),
    "fast-q8q4": ("q8q4", "fast"),
}


REPETITIONS = 3  # one 64-token sample swung the ratios 3.9-10.5x between runs on a loaded machine


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="PATH", help="an fp32 llama2.c checkpoint to measure")
    src.add_argument("--shape", default=None, help="seeded random weights of this shape (default stories15M)")
    p.add_argument("-n", "--tokens", type=int, default=64, help="forward steps per variant (default 64)")
    p.add_argument("-r", "--repetitions", type=int, default=REPETITIONS, metavar="N",
                   help=f"runs of each variant, taken in turn; mean and standard deviation reported (default {REPETITIONS})")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    p.add_argument("--json", action="store_true", help="one JSON object with every figure")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one variant in this process
    p.add_argument("--dir", help="where generated and quantised models are kept (default: the cache)")


def _measure_one(path: str, kernel: str, tokens: int) -> Dict[str, Any]:
    """Runs in the child: forward steps over a fixed token sequence."""
    from robot.kernel.engine import Model

    m = Model(path, _dummy_tokenizer(path), kernel=kernel)
    vocab = m.config.vocab_size
    steps = min(tokens, m.config.seq_len)
    warm = min(4, steps)
    for pos in range(warm):
        m.forward((pos * 7919 + 3) % vocab, pos)
    t0 = time.perf_counter()
    for pos in range(steps):
        m.forward((pos * 7919 + 3) % vocab, pos)
    dt = time.perf_counter() - t0
    return {
        "tokens": steps,
        "seconds": dt,
        "tok_per_s": steps / dt,
        "ms_per_token": 1000.0 * dt / steps,
        "peak_rss_kb": procinfo.peak_rss_kb(),
        "weight_bytes_per_token": m.config.weight_bytes_per_token,
        "file_bytes": m.config.file_bytes,
        "format": m.config.format,
        "isa": m.isa,
    }


def _dummy_tokenizer(model_path: str) -> str:
    """Forward steps need no text, but a Model needs a tokenizer of the right size:
    make a synthetic one beside the benchmark models."""
    from robot.models import modelgen
    from robot.kernel.lib import ffi, lib

    err = ffi.new("sb_error *")
    out = ffi.new("sb_model **")
    if lib.sb_model_open(os.fsencode(model_path), out, err):
        raise StorybotError(ffi.string(err.message).decode())
    vocab = lib.sb_model_config(out[0]).vocab_size
    lib.sb_model_close(out[0])
    tok = os.path.join(os.path.dirname(os.path.abspath(model_path)), f"bench-tok{vocab}.bin")
    if not os.path.isfile(tok):
        modelgen.write_tokenizer(tok, max(vocab, 355))
    return tok


def _loads(path: str) -> bool:
    """A cached model this build can read (an older format version is made again)."""
    from robot.kernel.lib import ffi, lib

    if not os.path.isfile(path):
        return False
    err = ffi.new("sb_error *")
    out = ffi.new("sb_model **")
    if lib.sb_model_open(os.fsencode(path), out, err):
        return False
    lib.sb_model_close(out[0])
    return True


def _prepare(args: argparse.Namespace) -> Dict[str, str]:
    from robot.models import fetch
    from robot.models import modelgen
    from robot.kernel.engine import Model

    work = args.dir or os.path.join(fetch.cache_dir(), "bench")
    os.makedirs(work, exist_ok=True)
    if args.model:
        f32 = os.path.abspath(args.model)
        stem = os.path.join(work, os.path.splitext(os.path.basename(f32))[0])
    else:
        shape = args.shape or "stories15M"
        if shape not in modelgen.SHAPES:
            raise StorybotError(f"unknown shape {shape!r}; choose one of {', '.join(modelgen.SHAPES)}")
        stem = os.path.join(work, f"{shape}-seed0")
        f32 = stem + ".bin"
        if not os.path.isfile(f32):
            print(f"making seeded random weights of the {shape} shape in {f32} ...", file=sys.stderr)
            modelgen.write_shape(f32, shape, seed=0)
    paths = {"f32": f32}
    wanted = {VARIANTS[v][0] for v in args.variants.split(",") if v in VARIANTS}
    for fmt in ("q8", "q8q4"):
        if fmt in wanted:
            q = f"{stem}.{fmt}"
            if not _loads(q) or os.path.getmtime(q) < os.path.getmtime(f32):
                Model(f32, _dummy_tokenizer(f32)).quantize(q, fmt)
            paths[fmt] = q
    return paths


def _child(v: str, path: str, kernel: str, tokens: int) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "robot", "bench", "--one", f"{path}@{kernel}", "-n", str(tokens)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise StorybotError(f"the {v} benchmark failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    out: Dict[str, Any] = json.loads(r.stdout)
    return out


def _spread(xs: List[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def summarise(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One variant's figures over its repetitions: mean and standard deviation of the
    speed and of the ratio to the same repetition's naive run, every run kept."""
    tps = [r["tok_per_s"] for r in runs]
    ratios = [r["speedup_vs_naive_f32"] for r in runs if r.get("speedup_vs_naive_f32") is not None]
    first = runs[0]
    return {
        "tok_per_s": statistics.mean(tps), "tok_per_s_stdev": _spread(tps),
        "ms_per_token": statistics.mean(r["ms_per_token"] for r in runs),
        "speedup_vs_naive_f32": statistics.mean(ratios) if ratios else None,
        "speedup_vs_naive_f32_stdev": _spread(ratios) if ratios else None,
        "speedups_vs_naive_f32": ratios,
        "peak_rss_kb": max(r["peak_rss_kb"] for r in runs),
        "weight_bytes_per_token": first["weight_bytes_per_token"], "file_bytes": first["file_bytes"],
        "format": first["format"], "isa": first["isa"], "tokens": first["tokens"],
        "runs": runs,
    }


def run(args: argparse.Namespace, command: str) -> int:
    if args.one:
        fmt_path, kernel = args.one.rsplit("@", 1)
        print(json.dumps(_measure_one(fmt_path, kernel, args.tokens)))
        return 0
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in names:
        if v not in VARIANTS:
            raise StorybotError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    if args.repetitions < 1:
        raise StorybotError(f"--repetitions must be 1 or more (got {args.repetitions})")
    paths = _prepare(args)
    runs: Dict[str, List[Dict[str, Any]]] = {v: [] for v in names}
    for _ in range(args.repetitions):  # variants in turn, so a slow spell of the machine hits them all
        rep = {v: _child(v, paths[VARIANTS[v][0]], VARIANTS[v][1], args.tokens) for v in names}
        base = rep.get("naive-f32")
        for v, r in rep.items():
            r["speedup_vs_naive_f32"] = (r["tok_per_s"] / base["tok_per_s"]) if base else None
            runs[v].append(r)
    results = {v: summarise(rs) for v, rs in runs.items()}
    report = {"model": paths["f32"], "tokens": args.tokens, "repetitions": args.repetitions, "threads": 1,
              "variants": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _table(report)
    return 0


def _table(report: Dict[str, Any]) -> None:
    reps = report["repetitions"]
    print(f"model {report['model']}  ({report['tokens']} forward steps per variant, "
          f"{reps} repetition{'s' if reps != 1 else ''}, one thread; mean ± standard deviation)")
    print(f"{'variant':<11} {'isa':<13} {'tok/s':>16} {'ms/tok':>8} {'x naive':>13} {'peak RSS':>9} {'weights/tok':>12}")
    for v, r in report["variants"].items():
        sp = f"{r['speedup_vs_naive_f32']:.2f} ± {r['speedup_vs_naive_f32_stdev']:.2f}" if r["speedup_vs_naive_f32"] else "-"
        tps = f"{r['tok_per_s']:.1f} ± {r['tok_per_s_stdev']:.1f}"
        print(f"{v:<11} {r['isa']:<13} {tps:>16} {r['ms_per_token']:8.2f} {sp:>13} "
              f"{r['peak_rss_kb'] / 1024:7.1f}MB {r['weight_bytes_per_token'] / 1e6:10.2f}MB")
