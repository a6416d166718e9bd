"""Shared test fixtures. The core suite makes its own seeded models; tests that use
../shared (real models, golden run.c output, the RISC-V toolbox) skip without it."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("STORYBOT_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
sys.path.insert(0, ROOT)

from robot.models import modelgen  # noqa: E402


def shared_path(*parts):
    p = os.path.join(SHARED, *parts)
    if not os.path.exists(p):
        pytest.skip(f"needs {p} (the shared data folder beside the project), which is absent")
    return p


@pytest.fixture(scope="session")
def gen_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny(gen_dir):
    """A small grouped-query model with a synthetic 512-token tokenizer."""
    m = modelgen.write_checkpoint(str(gen_dir / "tiny.bin"), 48, 128, 2, 6, 3, 512, 64, seed=1)
    t = modelgen.write_tokenizer(str(gen_dir / "tok512.bin"), 512)
    return m, t


@pytest.fixture(scope="session")
def tiny_unshared(gen_dir):
    m = modelgen.write_checkpoint(str(gen_dir / "tiny_unshared.bin"), 32, 96, 2, 4, 4, 512, 48, shared=False, seed=2)
    t = modelgen.write_tokenizer(str(gen_dir / "tok512u.bin"), 512)
    return m, t


def run_cli(*args, input=None, env=None, timeout=120):
    """Runs `python -m robot ARGS` as a user would run `storybot ARGS`."""
    e = dict(os.environ)
    e.setdefault("STORYBOT_CACHE", "/nonexistent-storybot-cache")
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "robot", *map(str, args)], input=input, capture_output=True,
                          text=True, env=e, timeout=timeout, cwd=ROOT)
