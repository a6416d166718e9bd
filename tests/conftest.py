"""Shared test fixtures for tests/unit (functions, classes and the kernel, in this
process) and tests/system (the storybot command, the daemon, the emulators and the VM,
as real processes). Everything the suite reads is in the repository: tests/data/ (see
its README: provenance and sha256), the package's built-in stories260K, and
random-weight models generated here, bit for bit those run.c's golden outputs used."""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
BUILTIN = os.path.join(ROOT, "robot", "data")
sys.path.insert(0, ROOT)

from robot.models import modelgen  # noqa: E402

_generated = {}


def _settled(path):
    """Written back and dropped from the page cache, so the model maps like a file read
    from disk: mapped straight after writing, tiny-unshared-32k's peak RSS was ~3 MB
    higher here (the kernel maps fresh page-cache pages in larger pieces), which hid
    what --low-rss saves (tests/unit/test_engine.py)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return path


def data_path(name):
    """A test data file by name: stories260K.bin and tok512.bin are the package's own
    (robot/data), the modelgen.FIXTURES models are generated once per session, the rest
    is in tests/data."""
    if name.endswith(".bin") and name[:-4] in modelgen.FIXTURES:
        if name not in _generated:
            if not _generated:
                d = tempfile.mkdtemp(prefix="storybot-test-models-")
                atexit.register(shutil.rmtree, d, True)
                _generated[""] = d
            _generated[name] = _settled(modelgen.write_fixture(os.path.join(_generated[""], name), name[:-4]))
        return _generated[name]
    for d in (BUILTIN, DATA):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"test data {name} is in neither {BUILTIN} nor {DATA}")


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


def assert_clean_error(r, *words):
    """A finished `storybot` run that refused its input as the project promises: exit 2,
    one line on stderr starting "storybot: ", no traceback; `words` appear in it."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr and "Segmentation" not in r.stderr
    assert len(err.splitlines()) == 1, err
    assert err.startswith("storybot: ")
    for w in words:
        assert w.lower() in err.lower(), err
