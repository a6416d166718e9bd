"""Paths that name something other than a small regular file (issue 14, items 2 and 4):
a config that is not UTF-8, a FIFO, /dev/zero, a huge file. Each gets one sentence and
exit status 2 from the CLI; a running robot keeps its configuration and stays up.

The subprocess timeouts only turn a hang (the bug: open() of a FIFO waits forever for
a writer) into a failure instead of a stuck suite; no test measures time."""
import os
import signal

import pytest

from conftest import run_cli
from conftest import assert_clean_error
from test_daemon import rundir, serve  # noqa: F401 - fixtures: a real `storybot serve` process
from robot import config, fileio
from robot.errors import StorybotError

HANG = 60  # seconds before a run counts as hung


@pytest.fixture
def fifo(tmp_path):
    p = str(tmp_path / "fifo")
    os.mkfifo(p)
    return p


def tell(*args):
    return run_cli(*args, "-i", "Once", "-n", 4, "-s", 1, timeout=HANG)


def test_fifo_as_model_is_refused(tiny, fifo):
    assert_clean_error(tell("--model", fifo, "-z", tiny[1]), "model file", "pipe")


def test_fifo_as_tokenizer_is_refused(tiny, fifo):
    assert_clean_error(tell("--model", tiny[0], "-z", fifo), "tokenizer file", "pipe")


def test_fifo_as_config_is_refused(tiny, fifo):
    assert_clean_error(tell("--model", tiny[0], "-z", tiny[1], "--config", fifo), "config file", "pipe")


def test_fifo_as_quantize_input_is_refused(fifo, tmp_path):
    r = run_cli("quantize", fifo, str(tmp_path / "out.q8"), timeout=HANG)
    assert_clean_error(r, "pipe")
    assert not os.path.exists(tmp_path / "out.q8")


def test_dev_zero_as_config_is_refused_without_reading_it(tiny):
    assert_clean_error(tell("--model", tiny[0], "-z", tiny[1], "--config", "/dev/zero"), "/dev/zero", "device")


def test_a_config_over_1_mib_is_refused(tiny, tmp_path):
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(fileio.CONFIG_LIMIT + 1)  # sparse: costs no disk
    assert_clean_error(tell("--model", tiny[0], "-z", tiny[1], "--config", str(big)), "larger than 1 MiB")


def test_a_config_of_exactly_1_mib_is_read(tmp_path):
    p = tmp_path / "padded.toml"
    body = b"[story]\nsteps = 7\n"
    p.write_bytes(body + b"#" * (fileio.CONFIG_LIMIT - len(body) - 1) + b"\n")
    cfg, _ = config.load(str(p), system=None)
    assert cfg["story"]["steps"] == 7


def test_config_that_is_not_utf8_is_one_sentence(tiny, tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[speech_out]\nvoice = \"caf\xe9\"\n")
    assert_clean_error(tell("--model", tiny[0], "-z", tiny[1], "--config", str(bad)), "not valid UTF-8", "offset 25")


@pytest.mark.parametrize("text, words", [
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", "nests arrays or tables too deeply"),
    ("a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n", "nests arrays or tables too deeply"),
    ("[story]\nseed = " + "9" * 5000 + "\n", "not valid TOML"),
])
def test_a_config_the_toml_parser_chokes_on_is_one_sentence(tiny, tmp_path, text, words):
    # found while fixing the above: RecursionError and ValueError escaped the parser
    p = tmp_path / "odd.toml"
    p.write_text(text)
    assert_clean_error(tell("--model", tiny[0], "-z", tiny[1], "--config", str(p)), "config file", words)


def test_check_regular_file_names_what_the_path_is(tmp_path, fifo):
    with pytest.raises(StorybotError, match="model file .* does not exist"):
        fileio.check_regular_file(tmp_path / "nope", "model file")
    with pytest.raises(StorybotError, match="is a directory"):
        fileio.check_regular_file(tmp_path, "model file")
    with pytest.raises(StorybotError, match="is a device"):
        fileio.check_regular_file("/dev/null", "model file")
    with pytest.raises(StorybotError, match="is a pipe"):
        fileio.read_small_file(fifo, "config file")
    with pytest.raises(StorybotError, match="NUL"):
        fileio.check_regular_file("a\0b", "model file")


# -- a running robot, SIGHUP -----------------------------------------------------------

def _reload_is_refused(s, words):
    before = s.status()
    s.signal(signal.SIGHUP)
    line = s.wait_log(r"ERROR configuration NOT reloaded, the running one stays: .*").group(0)
    assert words in line, line
    after = s.status()  # still up, still answering, settings kept
    assert after["pid"] == before["pid"] and after["reloads"] == before["reloads"] == 0
    assert after["speech"]["rate"] == before["speech"]["rate"] == 123
    assert "Traceback" not in s.log
    rc, _ = s.terminate()
    assert rc == 0, s.log


def test_sighup_with_a_non_utf8_config_keeps_the_old_one(serve, tiny):
    s = serve(*tiny, speech_out={"rate": 123}).ready()
    with open(s.config, "ab") as f:
        f.write(b"# \xff\xfe not UTF-8\n")
    _reload_is_refused(s, "is not valid UTF-8")


def test_sighup_with_a_fifo_config_does_not_block_sigterm(serve, tiny):
    s = serve(*tiny, speech_out={"rate": 123}).ready()
    os.unlink(s.config)
    os.mkfifo(s.config)  # nobody ever writes to it: open() for reading would wait forever
    _reload_is_refused(s, "is a pipe")
