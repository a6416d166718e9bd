"""Instructions per token of the whole Python-driven story against the C-only driver,
both running the same cross-built libstorybot.so under qemu with the rvcount plugin.

    python3 tools/duo/overhead.py --bundle build/duo/storybot-duo-c906 --model M.bin -z TOK.bin [--short 16 --long 48]

Each program runs twice, for --short and --long steps; the difference divided by the
extra tokens is the cost per token with start-up (interpreter, imports, model open)
cancelled out. Python side: `python3.13 -m robot` from the bundle's own package tree,
text output as a user sees it. C side: cstory.c linked against the same glibc as the
emulated Python (same libm, same malloc), making the same sb_next call per position.
Counts are executed instructions (a deterministic proxy), not C906 cycles.
"""
import argparse
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import emulate  # noqa: E402

PROMPT = "Once upon a time"
_TOTAL = re.compile(r"^total total=(\d+) scalar=(\d+) vector=(\d+)", re.M)


def _total(r, what):
    m = _TOTAL.search(r.stderr)
    if r.returncode != 0 or not m:
        raise SystemExit(f"overhead: {what} failed (rc {r.returncode}):\n{r.stderr[-2000:]}")
    return int(m.group(1)), int(m.group(3))


def measure(tb, bundle, isa, model, tok, short=16, long=48, seed=123):
    plugin = tb["RVCOUNT"]
    with tempfile.TemporaryDirectory() as tmp:
        prog = emulate.build_cstory(tb, os.path.join(tmp, "cstory"), libc="glibc")
        runs = {}
        for n in (short, long):
            py = emulate.story(tb, isa, bundle, ["--model", model, "-z", tok, "--prompt", PROMPT, "-n", n, "-s", seed],
                               plugin=plugin, timeout=3600)
            c = emulate.cstory(tb, isa, prog, emulate.lib(bundle), model, tok, PROMPT, n, seed, plugin=plugin, timeout=3600)
            runs[n] = (_total(py, f"python -n {n}"), _total(c, f"cstory {n}"), emulate.parse_cstory(c.stdout))
    extra = len(runs[long][2][1]) - len(runs[short][2][1])
    py_tok = (runs[long][0][0] - runs[short][0][0]) / extra
    c_tok = (runs[long][1][0] - runs[short][1][0]) / extra
    c_vec = (runs[long][1][1] - runs[short][1][1]) / extra
    return {"isa": isa, "isa_reported": runs[short][2][0], "model": os.path.basename(model), "extra_tokens": extra,
            "c_per_token": c_tok, "c_vector_per_token": c_vec, "python_per_token": py_tok,
            "python_overhead_per_token": py_tok - c_tok,
            "python_startup_extra": runs[short][0][0] - runs[short][1][0]}


def row(r):
    return (f"| {r['model']} | {r['isa']} ({r['isa_reported']}) | {r['c_per_token']:,.0f} | {r['c_vector_per_token']:,.0f} | "
            f"{r['python_per_token']:,.0f} | {r['python_overhead_per_token']:,.0f} "
            f"({100 * r['python_overhead_per_token'] / r['python_per_token']:.2f} %) | {r['python_startup_extra'] / 1e6:,.0f} M |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="an unpacked bundle directory (build/duo/storybot-duo-ISA)")
    p.add_argument("--isa", choices=["c906", "rvv1"], help="which emulator (default: from the bundle name)")
    p.add_argument("--model", required=True)
    p.add_argument("-z", "--tokenizer", required=True)
    p.add_argument("--short", type=int, default=16)
    p.add_argument("--long", type=int, default=48)
    a = p.parse_args(argv)
    isa = a.isa or ("rvv1" if a.bundle.rstrip("/").endswith("rvv1") else "c906")
    try:
        tb = emulate.toolbox()
    except emulate.ToolboxMissing as e:
        raise SystemExit(f"overhead: {e}")
    r = measure(tb, os.path.abspath(a.bundle), isa, os.path.abspath(a.model), os.path.abspath(a.tokenizer), a.short, a.long)
    print("| model | build (sb_isa) | C instr/token | of which vector | Python-driven instr/token | Python overhead/token | extra start-up |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print(row(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
