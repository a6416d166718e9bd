"""The command line's conventions (issue 14, items 6, 12, 16): a closed standard output,
a reader that went away, bytes that are not UTF-8, seeds outside 64 bits, --version,
global options on either side of the subcommand, progress lines, an honest quantize
--help, `listen --devices` with no device, and eval's inputs that could block.

Every command goes through robot.cli.main, so one fix there covers all of them; the
tests run the real CLI as a process (python -m robot). Timeouts only turn a hang into
a failure; no test measures time."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli
from conftest import assert_clean_error
from test_daemon import cli, rundir, serve  # noqa: F401 - fixtures: a real `storybot serve` process
import robot
from robot import story
from robot.cli import SUBCOMMANDS
from robot.errors import StorybotError
from robot.kernel.lib import ffi, lib
from robot.models import modelgen, quantize

HANG = 60
BAD_BYTES = os.fsdecode(b"\xff\xfe")  # what Python makes of a non-UTF-8 argument (surrogateescape)


def run_raw(args, **kw):
    """`storybot ARGS` with the stdout wiring given in kw (subprocess arguments)."""
    env = dict(os.environ, STORYBOT_CACHE="/nonexistent-storybot-cache")
    return subprocess.run([sys.executable, "-m", "robot", *map(str, args)], stderr=subprocess.PIPE, env=env, cwd=ROOT,
                          timeout=HANG, **kw)


def run_into_closed_pipe(*args):
    """`storybot ARGS | true` where true has already exited: every write to stdout fails."""
    r, w = os.pipe()
    os.close(r)
    try:
        return run_raw(args, stdout=w)
    finally:
        os.close(w)


def assert_quiet_exit(res):
    err = res.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err and "Exception ignored" not in err and "Error" not in err, err
    assert res.returncode == 141, (res.returncode, err)


def tell_args(tiny, *extra):
    return ["--model", tiny[0], "-z", tiny[1], "-i", "Once upon", "-n", 40, "-s", 1, *extra]


# item 6: stdout closed (`storybot ... >&-`)

@pytest.mark.parametrize("args", [["-i", "x"], ["status"], ["stop"], ["ask", "hi"], ["--version"], ["bench", "--help"]])
def test_closed_stdout_is_one_sentence(args):
    res = run_raw(args, stdout=subprocess.PIPE, preexec_fn=lambda: os.close(1))
    r = subprocess.CompletedProcess(res.args, res.returncode, "", res.stderr.decode())
    assert_clean_error(r, "standard output is closed")


@pytest.mark.parametrize("command", sorted(set(SUBCOMMANDS) - {"serve"}))
def test_closed_stdout_is_one_sentence_for_every_command(command):
    res = run_raw([command, "--help"], stdout=subprocess.PIPE, preexec_fn=lambda: os.close(1))
    r = subprocess.CompletedProcess(res.args, res.returncode, "", res.stderr.decode())
    assert_clean_error(r, "standard output is closed")


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_help_into_a_closed_pipe_has_no_traceback(command):
    res = run_into_closed_pipe(command, "--help")
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode in (0, 141) and "Traceback" not in err and "Exception ignored" not in err, err


# item 6: the reader went away (`storybot ... | head -1`)

def test_story_into_a_closed_pipe_exits_quietly(tiny):
    assert_quiet_exit(run_into_closed_pipe(*tell_args(tiny)))


def test_jsonl_story_into_a_closed_pipe_exits_quietly(tiny):
    assert_quiet_exit(run_into_closed_pipe(*tell_args(tiny, "--format", "jsonl")))


def test_quantize_into_a_closed_pipe_exits_quietly(tiny, tmp_path):
    assert_quiet_exit(run_into_closed_pipe("quantize", tiny[0], tmp_path / "m.q8"))
    assert (tmp_path / "m.q8").exists()  # the work was done; only the report was lost


def test_version_into_a_closed_pipe_exits_quietly():
    assert_quiet_exit(run_into_closed_pipe("--version"))


def test_status_into_a_closed_pipe_exits_quietly(serve, tiny):
    s = serve(*tiny).ready()
    assert_quiet_exit(run_into_closed_pipe("status", "--socket", s.sock))
    assert_quiet_exit(run_into_closed_pipe("status", "--json", "--socket", s.sock))


# item 6: arguments that are not UTF-8

def test_ask_with_a_non_utf8_prompt_is_one_sentence(serve, tiny):
    s = serve(*tiny).ready()
    assert_clean_error(run_cli("ask", "--socket", s.sock, BAD_BYTES, timeout=HANG), "UTF-8")
    assert s.status()["stories_told"] == 0  # and the robot is still there to answer


def test_non_utf8_voice_is_one_sentence(tiny, tmp_path):
    r = run_cli(*tell_args(tiny, "--wav", tmp_path / "s.wav", "--voice", BAD_BYTES), timeout=HANG)
    assert_clean_error(r, "UTF-8")


# item 12: seeds

@pytest.mark.parametrize("seed", [1 << 64, (1 << 64) + 5, -1])
def test_seed_outside_64_bits_is_refused(tiny, seed):
    assert_clean_error(run_cli(*tell_args(tiny)[:-2], "-s", seed), "seed", "18446744073709551615")


def test_the_largest_seed_is_used_as_given(tiny):
    r = run_cli(*tell_args(tiny, "--format", "jsonl")[:-4], "-s", (1 << 64) - 1, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["seed"] == (1 << 64) - 1


def test_text_mode_names_the_seed_on_stderr_only(tiny):
    r = run_cli("--model", tiny[0], "-z", tiny[1], "-i", "Once", "-n", 8)
    assert r.returncode == 0, r.stderr
    seed = int(re.search(r"achieved tok/s: .*seed (\d+)\)", r.stderr).group(1))
    assert seed > 1 << 32 and str(seed) not in r.stdout
    again = run_cli("--model", tiny[0], "-z", tiny[1], "-i", "Once", "-n", 8, "-s", seed)
    assert again.stdout == r.stdout  # the seed on stderr tells the same story again


def test_settings_refuse_a_seed_of_65_bits():
    s = story.StorySettings(seed=1 << 64)
    with pytest.raises(StorybotError, match="seed"):
        s.resolve(64)


def test_default_seed_is_random_not_the_clock(tiny):
    """Two runs in the same second tell different stories, and the seed is reported."""
    seeds = []
    for _ in range(2):
        r = run_cli("--model", tiny[0], "-z", tiny[1], "-i", "Once", "-n", 8, "--format", "jsonl")
        assert r.returncode == 0, r.stderr
        seeds.append(json.loads(r.stdout.splitlines()[-1])["seed"])
    assert seeds[0] != seeds[1] and min(seeds) > 1 << 32, seeds  # a clock in seconds is below 2**32 until 2106


def test_engine_default_seed_is_random_not_the_clock(tiny):
    from robot.kernel.engine import Model
    m = Model(*tiny)
    seeds = {m.generate("Once", steps=4).seed for _ in range(3)}
    assert len(seeds) == 3 and min(seeds) > 1 << 32, seeds


def test_daemon_refuses_a_seed_of_65_bits(serve, tiny):
    s = serve(*tiny, story={"steps": 8}).ready()
    events = s.ask("Once", seed=1 << 64)
    assert events[-1]["event"] == "error" and "seed" in events[-1]["message"], events
    assert s.ask("Once", seed=3)[-1]["event"] == "summary"  # still telling stories


# item 16: --version from one place

def test_version_is_defined_once_and_printed_with_the_kernels():
    setup_py = open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read()
    assert not re.search(r"version\s*=\s*['\"]", setup_py), "setup.py should read robot.__version__"
    r = run_cli("--version")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    kernel = ffi.string(lib.sb_version()).decode()
    assert r.stdout.strip() == f"storybot {robot.__version__} (kernel {kernel})"


# item 16: global options on either side of the subcommand

@pytest.mark.parametrize("order", ["before", "before=", "after"])
def test_config_before_or_after_the_subcommand(tmp_path, order):
    sock = str(tmp_path / "nobody-here.sock")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[daemon]\nsocket = "{sock}"\n')
    args = {"before": ["--config", cfg, "status"], "before=": [f"--config={cfg}", "status"],
            "after": ["status", "--config", cfg]}[order]
    assert_clean_error(run_cli(*args), "no storybot is running on " + sock)


def test_a_story_option_before_a_subcommand_is_still_refused(tmp_path):
    r = run_cli("-n", "5", "status")
    assert r.returncode == 2 and "Traceback" not in r.stderr


# item 16: progress and quantize --help

def test_quantize_help_names_the_default_group_size_it_uses(tmp_path):
    from robot.kernel.formats import DEFAULT_GROUP_SIZE
    r = run_cli("quantize", "--help")
    assert r.returncode == 0
    helptext = " ".join(r.stdout.split())
    assert f"default: {DEFAULT_GROUP_SIZE} where it divides the width" in helptext, helptext
    m = modelgen.write_checkpoint(str(tmp_path / "w64.bin"), 64, 192, 2, 4, 4, 512, 32, seed=3)
    quantize.quantize(m, str(tmp_path / "w64.q8"))
    assert quantize.sbq_group_sizes(str(tmp_path / "w64.q8")) == (DEFAULT_GROUP_SIZE,) * 3


def test_calibrate_prints_progress_per_layer(tiny, tmp_path):
    r = run_cli("quantize", tiny[0], tmp_path / "c.q8", "-z", tiny[1], "--calibrate", "self",
                "--calibrate-tokens", 64, "--progress", timeout=300)
    assert r.returncode == 0, r.stderr
    for layer in (1, 2):
        assert f"layer {layer}/2" in r.stderr, r.stderr


def test_quantize_is_quiet_on_stderr_without_a_terminal(tiny, tmp_path):
    r = run_cli("quantize", tiny[0], tmp_path / "q.q8")
    assert r.returncode == 0 and r.stderr == "", r.stderr


# item 16: listen --devices with no device

def test_listen_devices_says_when_there_is_none():
    from robot.speech import audio
    try:
        found = list(audio.devices(output=False))
    except Exception as e:  # no PortAudio at all is covered by the command's own message
        found = [e]
    if found:
        pytest.skip("this machine has audio input devices")
    r = run_cli("listen", "--devices", timeout=HANG)
    assert r.returncode == 1 and r.stdout == "", (r.returncode, r.stdout)
    assert r.stderr.strip() == "storybot: no audio input devices found", r.stderr


# eval: inputs that would block

@pytest.fixture
def fifo(tmp_path):
    p = str(tmp_path / "fifo")
    os.mkfifo(p)
    return p


def test_eval_text_fifo_is_refused(tiny, fifo):
    assert_clean_error(run_cli("eval", "--model", tiny[0], "-z", tiny[1], "--text", fifo, timeout=HANG),
                       "text file", "pipe")


def test_eval_quantized_fifo_is_refused(tiny, fifo, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("Once upon a time there was a cat.<|endoftext|>")
    r = run_cli("eval", "--model", tiny[0], "-z", tiny[1], "--text", text, "-q", fifo, timeout=HANG)
    assert_clean_error(r, "pipe")
