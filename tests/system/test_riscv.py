"""The kernel cross-built for RISC-V and run under QEMU user mode: RVV 1.0
(-cpu rv64,v=true,vlen=128) and the Milk-V Duo's C906 (xuantie-qemu -cpu c906fdv,
XTheadVector / RVV 0.7.1). `make riscv-test` (bench/riscv_test.sh) does the work;
each check it prints is a test here. The toolbox is the project's own
(tools/rvtoolbox.sh): `make riscv` installs it on first use, 1-3 minutes."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, data_path

RVTOOLS = os.environ.get("RV_PREFIX", os.path.expanduser("~/.cache/storybot/rvtools"))


@pytest.fixture(scope="module")
def report():
    r = subprocess.run(["make", "-s", "-j2", "riscv-test", f"RVTOOLS={RVTOOLS}", f"RVPY={sys.executable}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("ok ", "FAIL "))]
    assert lines, f"make riscv-test printed no checks (rc {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return lines


CHECKS = [
    "scalar build under rvv emulator: all ops agree",
    "rvv1 build under rvv emulator: all ops agree",
    "c906 build under c906 emulator: all ops agree",
    "scalar build under rvv emulator: fast kernel (portable) agrees with naive",
    "scalar build under c906 emulator: fast kernel (portable) agrees with naive",
    "rvv1 build under rvv emulator: fast kernel (rvv1.0) agrees with naive",
    "c906 build under c906 emulator: fast kernel (xtheadvector) agrees with naive",
    "rvv1 build under c906 emulator: SIGILL",
    "c906 build under rvv emulator: SIGILL",
    "scalar build, same logits under both emulators",
    "RVV 1.0 build vs scalar build",
    "C906 build vs scalar build",
]


@pytest.mark.parametrize("check", CHECKS)
def test_emulated_builds(report, check):
    hits = [ln for ln in report if check in ln]
    assert hits, f"make riscv-test did not report {check!r}:\n" + "\n".join(report)
    assert all(ln.startswith("ok ") for ln in hits), "\n".join(hits)


def test_nothing_failed(report):
    assert not [ln for ln in report if ln.startswith("FAIL")], "\n".join(report)


@pytest.mark.parametrize("build,cpu", [("rvv1", "rvv"), ("c906", "c906")])
def test_library_from_riscv_python(report, build, cpu):
    """The shared library, loaded by a riscv64 Python in cffi ABI mode (STORYBOT_LIB),
    tells the real stories260K's greedy story as run.c does."""
    root = os.path.join(RVTOOLS, "rvroot")
    py = os.path.join(root, "usr", "bin", "python3.13")
    assert os.path.exists(py), f"make riscv-test installs the riscv64 Python root in {root}"
    case = next(c for c in json.load(open(data_path("golden_run_c.json")))
                if c["model"] == "stories260K.bin" and c["temperature"] == 0.0 and c["prompt"] == "Once upon a time")
    code = ("import json\nfrom robot.kernel.engine import Model\n"
            f"m = Model({data_path('stories260K.bin')!r}, {data_path('tok512.bin')!r})\n"
            "g = m.prepare('Once upon a time', steps=48, temperature=0, seed=1)\n"
            "print(json.dumps([m.isa, [t.id for t in g if t.id >= 0]]))\n")
    lib = os.path.join(ROOT, "build", "riscv", build, "libstorybot.so")
    qemu = "$QC906" if cpu == "c906" else "$QRVV"
    script = f'RV_PREFIX="$6" . "$0" && exec env -i STORYBOT_LIB="$1" PYTHONPATH="$2" {qemu} -L "$3" "$4" -c "$5"'
    r = subprocess.run(["sh", "-c", script, os.path.join(ROOT, "tools", "rvenv.sh"), lib, ROOT, root, py, code, RVTOOLS],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    isa, ids = json.loads(r.stdout.strip().splitlines()[-1])
    assert isa == ("rvv1.0" if build == "rvv1" else "xtheadvector")
    assert ids == case["generated_tokens"][:len(ids)] and len(ids) >= 40


ROI = re.compile(r"^roi\[(\d+)\] total=(\d+) scalar=(\d+) vector=(\d+) \(vset=(\d+) valu=(\d+) vmem=(\d+)\)$", re.M)


@pytest.mark.parametrize("build,flags", [("rvv1", []), ("c906", ["--c906"])])
def test_counting_plugin_under_both_emulators(report, build, flags):
    """bench/rvcount.c, through tools/rvrun: one line per kbench region (naive, then
    fast), the classes adding up, vector instructions where the vector kernel ran and
    (almost) none in the naive loops, and the same counts on a second run."""
    cmd = [os.path.join(ROOT, "tools", "rvrun"), *flags, "--count", f"build/riscv/{build}/kbench",
           "-n", "1", "-p", "5", "build/riscv/test/stories260K.q8"]
    env = dict(os.environ, RV_PREFIX=RVTOOLS)
    runs = [subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-1500:]
    rois = [[tuple(map(int, m)) for m in ROI.findall(r.stdout + r.stderr)] for r in runs]
    assert rois[0] == rois[1] and len(rois[0]) == 2, rois
    for _, total, scalar, vector, vset, valu, vmem in rois[0]:
        assert total == scalar + vector and vector == vset + valu + vmem
    naive, fast = rois[0]
    assert naive[3] < naive[1] // 1000 and fast[3] > fast[1] // 10 and fast[4] > 0 and fast[6] > 0
