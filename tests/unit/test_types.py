"""The type hints are checked, not decorative: mypy over robot/ (settings in
pyproject.toml's [tool.mypy]) must come back clean."""
import importlib.util
import subprocess
import sys

import pytest

from conftest import ROOT


def test_mypy_is_clean():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -r requirements-test.txt)")
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], capture_output=True, text=True,
                       cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
