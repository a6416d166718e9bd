"""The C906 timing model (bench/c906sim.c, a QEMU plugin) gives hand-computed cycles
for known instruction mixes: tiny RISC-V programs in assembly, cross-assembled with the
toolbox's GCC 14 and run under QEMU with the plugin between the region markers. Every
expected figure below is worked out in its comment from the model's rules (docs/
performance.md, "A timing model of the C906"), so a change to the rules shows here.

The region counts from its start marker (an ALU instruction, 1 cycle) up to the
instruction before its end marker. Memory parameters are set small for the arithmetic:
lat=100 (DRAM latency), line=10 (cycles per 64-byte line), train=3, pf=8."""
import glob
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

RVTOOLS = os.environ.get("RV_PREFIX", os.path.expanduser("~/.cache/storybot/rvtools"))
GCC = os.path.join(RVTOOLS, "gcc14", "usr", "bin", "riscv64-linux-gnu-gcc-14")


def _toolbox():
    """The project's own toolbox (tools/rvtoolbox.sh, idempotent: instant once installed)."""
    r = subprocess.run(["bash", os.path.join(ROOT, "tools", "rvtoolbox.sh")], env=dict(os.environ, RV_PREFIX=RVTOOLS),
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"tools/rvtoolbox.sh failed:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}"
    xqemu = (glob.glob(os.path.join(RVTOOLS, "venv", "lib", "python3*", "site-packages", "qemu", "qemu-riscv64")) or [None])[0]
    return xqemu, shutil.which("qemu-riscv64")


XQEMU, QEMU = _toolbox()

PARAMS = ["lat=100", "line=10", "train=3", "pf=8"]
EXIT = "li a7, 93\n li a0, 0\n ecall\n"
BEGIN, END = "slti x0, x0, 0x7f0\n", "slti x0, x0, 0x7f1\n"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "c906sim.so"
    subprocess.run(["cc", "-O2", "-Wall", "-shared", "-fPIC", "-o", str(out), os.path.join(ROOT, "bench", "c906sim.c")],
                   check=True)
    return str(out)


def run(plugin, tmp_path, body, isa="xthead", before="", data=""):
    """Assembles _start: BEFORE, the marked region BODY, exit; returns the region's counters."""
    src = tmp_path / "t.S"
    src.write_text(f".text\n.globl _start\n_start:\n{before}\n{BEGIN}{body}\n{END}{EXIT}\n"
                   f".bss\n.balign 4096\nbuf: .zero 8192\n{data}\n")
    exe = tmp_path / "t"
    march = "rv64gc_xtheadvector" if isa == "xthead" else "rv64gcv"
    subprocess.run([GCC, f"-march={march}", "-mabi=lp64d", "-nostdlib", "-static", "-o", str(exe), str(src)], check=True)
    if isa == "xthead":
        cmd = [XQEMU, "-cpu", "c906fdv", "-plugin", ",".join([plugin, "arg=isa=xthead"] + [f"arg={p}" for p in PARAMS])]
    else:
        cmd = [QEMU, "-cpu", "rv64,v=true,vlen=128,vext_spec=v1.0", "-plugin", ",".join([plugin, "isa=v"] + PARAMS)]
    r = subprocess.run(cmd + [str(exe)], capture_output=True, text=True, timeout=60, env={})
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("roi[0]"))
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def test_dependent_multiplies_wait_for_each_other(plugin, tmp_path):
    # marker: cycle 0 -> 1. mul #1 issues at 1; each later one waits for the previous
    # result (latency 4): issues at 5, 9, ..., 29 -> the region ends at 30.
    r = run(plugin, tmp_path, "mul a0, a0, a1\n" * 8, isa="v")
    assert (r["total"], r["cycles"], r["depstall"]) == (9, 30, 21)


def test_independent_multiplies_pipeline(plugin, tmp_path):
    # 1 + 8 x 1: a multiply occupies the pipeline one cycle when nothing waits for it
    body = "".join(f"mul a{2 + i % 6}, a0, a1\n" for i in range(8))
    r = run(plugin, tmp_path, body, isa="v")
    assert (r["cycles"], r["n_mul"]) == (9, 8)


def test_divides_wait_for_the_divider(plugin, tmp_path):
    # marker 0->1; divu #1 issues at 1 and holds the divider until 11; #2 issues at 11
    # (until 21), #3 at 21 (until 31, its result then); the addi that needs #3's result
    # issues at 31 -> 32. The independent addi before it issues in #3's shadow.
    body = "divu a2, a0, a1\ndivu a3, a0, a1\ndivu a4, a0, a1\naddi a6, a0, 1\naddi a5, a4, 1\n"
    r = run(plugin, tmp_path, body, isa="v", before="li a0, 1000\n li a1, 7\n")
    assert (r["cycles"], r["n_div"]) == (32, 3)


def test_taken_branches_cost_a_bubble(plugin, tmp_path):
    # marker 0->1, li 1->2; iteration 1: addi 2->3, bnez 3->4 (taken); each later
    # iteration: bubble 1 + addi + bnez = 3 cycles, 9 of them -> 4 + 27 = 31. The last
    # bnez falls through: no bubble before the end marker.
    r = run(plugin, tmp_path, "li t0, 10\n1: addi t0, t0, -1\n bnez t0, 1b\n", isa="v")
    assert (r["total"], r["cycles"], r["n_branch"]) == (22, 31, 10)


def test_load_use_and_a_cache_miss(plugin, tmp_path):
    # marker 0->1; ld issues 1->2, misses a line nobody touched: DRAM 100 + 10 -> 112;
    # its result was ready at 1 + 3 = 4, so addi issues at 112 -> 113. The second ld hits
    # (113->114, ready at 116): the addi after it waits 2 cycles: 116 -> 117.
    body = "ld a1, 0(a0)\naddi a2, a1, 1\nld a3, 8(a0)\naddi a4, a3, 1\n"
    r = run(plugin, tmp_path, body, isa="v", before="lla a0, buf\n")
    assert (r["cycles"], r["memstall"], r["depstall"], r["misses"], r["prefetched"]) == (117, 110, 2, 1, 0)


def test_a_stream_is_prefetched_after_training_then_bandwidth_bound(plugin, tmp_path):
    # 16 loads, one per 64-byte line L, L+1, ..., in ascending order; DRAM serves a
    # request made at r from max(channel free, r + 100) for 10 cycles. The first 3 misses
    # train the stream and wait: 1->2 +110 = 112; 112->113 +110 = 223; 223->224 +110 = 334.
    # The 3rd miss (at 224) starts the prefetcher, which asks for the next dist = 8 lines
    # at once: L+3..L+10 arrive back to back from 324 on, but the channel is busy until
    # 334, so load k (k = 4..11) waits until 334 + 10 (k - 3), issuing 1 cycle after the
    # previous one's line came (9 cycles of stall each). L+11 was asked for when demand
    # reached L+3 (at 335): 335 + 110 = 445, a 30-cycle wait after load 11's line (414);
    # L+12..L+15 (asked for at 345, 355, ...) come every 10 cycles after it: 455 ... 485.
    # Stalls: 3 x 110 + 8 x 9 + 30 + 4 x 9 = 468.
    body = "".join(f"ld a1, {64 * i}(a0)\n" for i in range(16))
    r = run(plugin, tmp_path, body, isa="v", before="lla a0, buf\n")
    assert (r["misses"], r["prefetched"]) == (16, 13)
    assert (r["cycles"], r["memstall"]) == (485, 468)


def test_the_prefetcher_stops_at_a_page(plugin, tmp_path):
    # lines 60..67 of buf (4 KB-aligned): 60, 61, 62 train (3 x 110: 1->2->112, 113->223,
    # 224->334); 63 comes at 334 + 10 = 344 (asked for at 224); 64 starts the next page,
    # a demand miss again: 345 + 110 = 455; from 65 on the stream runs at once (asked for
    # when 64 missed, at 345: the channel is free at 455) -> 465, 475, 485.
    body = "".join(f"ld a1, {64 * i}(a0)\n" for i in range(8))
    r = run(plugin, tmp_path, body, isa="v", before="lla a0, buf\n addi a0, a0, 2047\n addi a0, a0, 1793\n")
    assert (r["misses"], r["prefetched"]) == (8, 4)
    assert (r["cycles"], r["memstall"]) == (485, 476)


VECTOR_V1 = """vsetvli t0, a0, e32, m4, ta, ma
vfmul.vv v8, v8, v12
vfmul.vv v8, v8, v12
vredsum.vs v16, v8, v16
vsetvli t0, a0, e8, m1, ta, ma
vadd.vv v1, v2, v3
vwmul.vv v4, v2, v3
vmv.x.s a1, v1
addi a2, a1, 1
"""
VECTOR_XTHEAD = """th.vsetvli t0, a0, e32, m4
th.vfmul.vv v8, v8, v12
th.vfmul.vv v8, v8, v12
th.vredsum.vs v16, v8, v16
th.vsetvli t0, a0, e8, m1
th.vadd.vv v1, v2, v3
th.vwmul.vv v4, v2, v3
th.vmv.x.s a1, v1
addi a2, a1, 1
"""


@pytest.mark.parametrize("isa,body", [("v", VECTOR_V1), ("xthead", VECTOR_XTHEAD)])
def test_vector_costs_follow_lmul_of_the_last_vsetvli(plugin, tmp_path, isa, body):
    # marker 1; vsetvli e32 m4: 1; vfmul m4: 8 + 8; vredsum m4: 9; vsetvli e8 m1: 1;
    # vadd m1: 4; vwmul at m1 (widening, by the vtype's LMUL): 4; vmv.x.s: 4 (its result
    # ready when it ends); addi: 1 -> 1 + 1 + 16 + 9 + 1 + 4 + 4 + 4 + 1 = 41
    r = run(plugin, tmp_path, body, isa=isa, before="li a0, 16\n")
    assert (r["cycles"], r["depstall"]) == (41, 0)
    assert (r["n_vset"], r["n_vfmul"], r["n_vred"], r["n_valu"], r["n_vwide"], r["n_vtos"]) == (2, 2, 1, 1, 1, 1)


@pytest.mark.parametrize("isa", ["v", "xthead"])
def test_vector_load_bytes_are_element_accesses(plugin, tmp_path, isa):
    # vl = 16 e32 elements = 64 bytes = one line of buf: one miss (100 + 10), the load
    # itself m4: 8. marker 1 + vsetvli 1 + vle 8 -> 10, then the miss: 120.
    vset = "vsetvli t0, a0, e32, m4, ta, ma" if isa == "v" else "th.vsetvli t0, a0, e32, m4"
    vle = "vle32.v v8, (a1)" if isa == "v" else "th.vle.v v8, (a1)"
    r = run(plugin, tmp_path, f"{vset}\n{vle}\n", isa=isa, before="li a0, 16\n lla a1, buf\n")
    assert (r["bytes_read"], r["misses"], r["cycles"]) == (64, 1, 120)
