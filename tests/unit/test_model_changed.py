"""A model file truncated or rewritten in place while mapped: reading a page that no
longer exists raises SIGBUS, which used to kill the process (status 135). The kernel
now catches it around every read of the mapping (_kernel/guard.h) and the engine
raises its usual StorybotError. Each case runs in a child process, so a regression
shows up as that child's death, not the test run's."""
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPT = r"""
import os, sys
sys.path.insert(0, {root!r})
from robot.kernel.engine import Model
from robot.errors import StorybotError
model, tok, how, kernel = sys.argv[1:5]
m = Model(model, tok, kernel=kernel, low_rss=(how == "low_rss"))
gen = m.generate("the girl", steps=12, temperature=0.8, seed=5)
it = iter(gen)
next(it); next(it)                     # a couple of tokens from the intact file
os.truncate(model, 0 if how != "half" else os.path.getsize(model) // 2)
try:
    if how == "forward":
        m.forward(1, 3)
    else:
        for _ in it:
            pass
except StorybotError as e:
    print("StorybotError:", e)
    sys.exit(0)
print("no error")
sys.exit(1)
"""


@pytest.mark.parametrize("how,kernel", [("generate", "fast"), ("forward", "fast"), ("half", "naive"), ("low_rss", "fast")])
@pytest.mark.parametrize("fmt", ["f32", "q8"])
def test_truncated_model_is_a_clean_error(tmp_path, tiny, how, kernel, fmt):
    model = tmp_path / "model.bin"
    if fmt == "f32":
        shutil.copy(tiny[0], model)
    else:
        from robot.kernel.engine import Model
        Model(tiny[0], tiny[1]).quantize(str(model), "q8")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(root=ROOT))
    r = subprocess.run([sys.executable, str(script), str(model), tiny[1], how, kernel],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "changed or was truncated while in use" in r.stdout


def test_open_while_truncated_still_explains(tmp_path, tiny):
    """Opening a file that is already short is the ordinary truncated-file error."""
    from robot.kernel.engine import Model
    from robot.errors import StorybotError
    model = tmp_path / "model.bin"
    shutil.copy(tiny[0], model)
    with open(model, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(StorybotError, match="truncated"):
        Model(str(model), tiny[1])
