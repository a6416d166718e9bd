"""The BusyBox init script and readiness (issue 14, item 11): `start` reports a robot
that refused to start instead of "started"; and status never shows a peak memory below
the current one (item 16)."""
import os
import re

import pytest

from test_daemon import _wait_ready, busybox_root, rundir, serve, write_config  # noqa: F401 - fixtures
from robot.models import modelgen
from robot.service import notify, readyfile


def test_busybox_start_reports_a_refused_config_and_fails(busybox_root, tiny):
    root, sock, init = busybox_root
    write_config(os.path.join(root, "etc", "storybot", "storybot.toml"), *tiny, daemon={"socket": sock, "stdin_x": True})
    r = init("start")
    out = r.stdout.strip()
    assert r.returncode == 2, (r.returncode, out, r.stderr)
    assert "started" not in out and len(out.splitlines()) == 1, out
    assert out.startswith("storybot: cannot start: ") and "unknown key 'stdin_x' in [daemon]" in out, out
    log = open(os.path.join(root, "var", "log", "storybot.log")).read()
    # the robot's own line carries its time and level, like the supervisor's after it
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d ERROR cannot start: .*unknown key 'stdin_x'", log, re.M), log
    assert init("status").returncode == 3


def test_busybox_start_waits_until_the_robot_is_ready(busybox_root, tiny):
    root, sock, init = busybox_root
    # log_level "warning": no "ready" line in the log, readiness must not depend on it
    write_config(os.path.join(root, "etc", "storybot", "storybot.toml"), *tiny,
                 daemon={"socket": sock, "log_level": "warning"})
    r = init("start")
    assert r.returncode == 0 and r.stdout.startswith("storybot: started (pid "), r.stdout + r.stderr
    pid = int(re.search(r"pid (\d+)", r.stdout).group(1))
    # "started" came after the robot said it was ready: it answers at once, as that pid
    assert _wait_ready(sock, timeout=5)["pid"] == pid
    assert init("stop").returncode == 0
    assert not os.path.exists(os.path.join(root, "var", "run", "storybot.ready"))


def test_ready_file_names_the_ready_process(tmp_path):
    path = str(tmp_path / "ready")
    n = notify.Notifier(env={readyfile.ENV: path})
    assert not os.path.exists(path)
    n.ready("idle")
    assert open(path).read() == f"{os.getpid()}\n"
    assert not readyfile.mark(str(tmp_path / "missing" / "ready"))  # no folder: no crash, no file


@pytest.fixture(scope="session")
def wide(gen_dir):
    """A 57 MB fp32 model: telling a story maps in more than the robot's start-up peak, so
    its resident set is at its peak and has just grown when status is asked."""
    m = modelgen.write_checkpoint(str(gen_dir / "wide.bin"), 384, 1024, 8, 6, 6, 512, 64, seed=1)
    t = modelgen.write_tokenizer(str(gen_dir / "tok512w.bin"), 512)
    return m, t


def test_status_peak_memory_is_never_below_the_current(serve, wide):
    # before the fix: ru_maxrss (the kernel's approximate counters) read below statm's
    # exact RSS in 39 of 40 status replies here
    s = serve(*wide, story={"steps": 20}).ready()
    for i in range(10):
        s.ask("Once", seed=i + 1)
        st = s.status()
        assert st["peak_rss_kb"] >= st["rss_kb"] > 0, st
    assert s.terminate()[0] == 0
