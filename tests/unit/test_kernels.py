"""The fast kernel (portable vectorised C on this host) against the naive one, through
the same cffi library the robot uses, on every weight format; and the C ops test
(bench/ktest.c), which checks each op of the fast table below the public API on edge
shapes: partial 32-row blocks, group tails, 4-bit groups wider than 32."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import ROOT
from robot.models import modelgen
from robot.kernel.engine import FORMATS, Model, ffi, lib

SHAPES = {
    # dim, hidden, layers, heads, kv heads, vocab, seq
    "gqa": (48, 128, 2, 6, 3, 512, 64),
    "unshared": (32, 96, 2, 4, 4, 512, 48),
    "oddrows": (64, 176, 2, 4, 2, 400, 32),     # 176 and 400 rows end in partial blocks
}
FMT_CODE = {name: code for code, name in FORMATS.items()}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("kernels")
    out = {}
    for i, (name, shape) in enumerate(SHAPES.items()):
        src = modelgen.write_checkpoint(str(d / f"{name}.bin"), *shape, shared=name != "unshared", seed=40 + i)
        tok = modelgen.write_tokenizer(str(d / f"tok{name}.bin"), shape[5])
        out[(name, "f32")] = (src, tok)
        m = Model(src, tok)
        for fmt in ("q8", "q8q4"):
            path = str(d / f"{name}.{fmt}")
            err = ffi.new("sb_error *")
            assert lib.sb_quantize(m._m, path.encode(), FMT_CODE[fmt], 0, err) == 0, ffi.string(err.message)
            out[(name, fmt)] = (path, tok)
    return out


def logits_run(path, tok, kernel, kv_f16=False, steps=10):
    m = Model(path, tok, kernel=kernel, kv_f16=kv_f16)
    v = m.config.vocab_size
    return np.stack([np.array(m.forward((1 + 7919 * i) % v, i)) for i in range(steps)])


@pytest.mark.parametrize("kv_f16", [False, True], ids=["kv32", "kv16"])
@pytest.mark.parametrize("fmt", ["f32", "q8", "q8q4"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_fast_matches_naive(models, name, fmt, kv_f16):
    path, tok = models[(name, fmt)]
    naive = logits_run(path, tok, "naive", kv_f16)
    fast = logits_run(path, tok, "fast", kv_f16)
    scale = np.abs(naive).max()
    # fp32 differs only in summation order. The quantised kernels are exact integer
    # sums with the same float steps (bench/ktest.c checks them bit for bit), but a
    # reordered fp32 sum (rmsnorm, attention) can tip one activation across a rounding
    # boundary of its int8 quantisation, as a half-precision cache can tip a key across
    # one of fp16's; that moves logits by up to a few per cent (2.7e-2 seen on the
    # stories15M shape), a broken kernel by far more.
    tol = 1e-5 if fmt == "f32" and not kv_f16 else 5e-2
    assert np.abs(naive - fast).max() <= tol * scale
    assert (naive.argmax(axis=1) == fast.argmax(axis=1)).mean() >= 0.9


def test_fast_kernel_is_this_hosts_build():
    assert ffi.string(lib.sb_isa()).decode() in ("portable", "rvv1.0", "xtheadvector")


# A negative head margin makes the sampler's guess of where the nucleus ends too short
# most of the time, so its fall-back (sort every candidate) runs and must still pick
# run.c's token.
@pytest.mark.parametrize("defines", [[], ["-DSB_HEAD_MARGIN=-0.3f"]], ids=["as built", "nucleus guessed short"])
def test_ops_table_below_the_api(tmp_path, defines):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("needs a C compiler to build bench/ktest.c")
    exe = str(tmp_path / "ktest")
    srcs = [os.path.join(ROOT, "bench", "ktest.c")] + sorted(
        os.path.join(ROOT, "_kernel", f) for f in os.listdir(os.path.join(ROOT, "_kernel")) if f.endswith(".c"))
    subprocess.run([cc, "-O2", "-std=c11", *defines, "-I", os.path.join(ROOT, "_kernel"), "-o", exe, *srcs, "-lm"],
                   check=True, capture_output=True, timeout=120)
    r = subprocess.run([exe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all ops agree" in r.stdout
    if defines:
        m = re.search(r"nucleus re-sorted in full (\d+) times", r.stdout)
        assert m and int(m.group(1)) > 100, r.stdout
