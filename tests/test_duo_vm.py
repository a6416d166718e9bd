"""The Duo bundle in a whole riscv64 system: `make duo-vm` (tools/duo/vm/run.py) boots
Debian's riscv64 kernel under qemu-system-riscv64 (TCG) with a BusyBox root disk, the
RVV 1.0 bundle installed by its own install.sh and started by S99storybot, with the
`judged` profile's 55 MB of free memory; a short stories260K story is asked for with
`storybot ask`, spoken by espeak-ng into a WAV file, and the VM powered off.

One boot (plus, the first time, the download of the riscv64 packages into
~/.cache/storybot/duo-vm and a few calibration boots, all cached). The packages come
from the Debian archive through apt, the only network this needs."""
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "tools", "duo", "vm", "run.py")
sys.path.insert(0, os.path.join(ROOT, "tools", "duo"))
import emulate  # noqa: E402  (the RISC-V toolbox: the cross compiler that builds the bundle)

pytestmark = pytest.mark.skipif(not shutil.which("qemu-system-riscv64") or not shutil.which("qemu-riscv64"),
                                reason="qemu-system-misc and qemu-user are installed by make test (tools/apt-test.txt)")


def test_duo_vm_judged_stories260k_spoken():
    try:
        tb = emulate.toolbox(setup=True)
    except emulate.ToolboxMissing as e:
        pytest.skip(str(e))
    r = subprocess.run([sys.executable, RUN, "--profile", "judged", "--model", "stories260K", "--format", "fp32",
                        "--speak", "1", "--steps", "48", "--seed", "42"],
                       capture_output=True, text=True, timeout=3000, cwd=ROOT, env=dict(os.environ, G14=tb["G14"]))
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and lines, r.stderr[-3000:]
    res = json.loads(lines[-1])
    for key in ("profile", "model", "format", "spoken", "story_tokens", "mem_available_kb_before",
                "robot_peak_rss_kb", "majfaults_per_token_after_warmup", "oom_kills", "clean_shutdown"):
        assert key in res, key
    assert (res["profile"], res["model"], res["format"]) == ("judged", "stories260K", "fp32")
    # the profile: 55 MB available (± 1 MB) when the robot starts
    assert abs(res["mem_available_kb_before"] - 55 * 1024) <= 1024, res
    # 48 positions minus the prompt's: the robot told the whole story and spoke it
    assert 40 <= res["story_tokens"] <= 48, res
    assert res["spoken"] is True and res["wav_s"] > 1.0, res
    assert res["oom_kills"] == 0, res
    assert 0 < res["robot_peak_rss_kb"] < 55 * 1024, res
    # the real model's 1 MB stays resident: no re-reading after warm-up
    assert res["majfaults_per_token_after_warmup"] is not None and res["majfaults_per_token_after_warmup"] < 1, res
    assert res["clean_shutdown"] is True, r.stderr[-3000:]
