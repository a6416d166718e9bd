"""Bad input: one plain sentence on stderr, exit status 2, no traceback, no crash."""
import os
import struct

import pytest

from conftest import assert_clean_error, run_cli
from robot.models import modelgen


def story(model, tok, *extra, **kw):
    return run_cli("--model", model, "-z", tok, "-n", 8, "-s", 1, *extra, **kw)


@pytest.fixture
def broken(tmp_path, tiny):
    """Writes a variant of the tiny checkpoint: header fields replaced and/or size changed."""
    src = open(tiny[0], "rb").read()

    def make(header=None, size_delta=0, name="bad.bin"):
        data = bytearray(src)
        if header is not None:
            data[:28] = struct.pack("7i", *header)
        if size_delta < 0:
            data = data[:size_delta]
        elif size_delta > 0:
            data += b"\0" * size_delta
        p = tmp_path / name
        p.write_bytes(bytes(data))
        return str(p)
    return make


def test_truncated_checkpoint(broken, tiny):
    assert_clean_error(story(broken(size_delta=-1000), tiny[1]), "truncated")


def test_checkpoint_longer_than_header_says(broken, tiny):
    assert_clean_error(story(broken(size_delta=64), tiny[1]), "header")


@pytest.mark.parametrize("header,word", [
    ((0, 128, 2, 6, 3, 512, 64), "dim"),
    ((-48, 128, 2, 6, 3, 512, 64), "dim"),
    ((48, 128, 0, 6, 3, 512, 64), "n_layers"),
    ((48, 128, 2, 6, 3, 512, 1 << 30), "seq_len"),
    ((48, 1 << 30, 2, 6, 3, 512, 64), "hidden_dim"),
    ((48, 128, 2, 5, 5, 512, 64), "not divisible by n_heads"),
    ((48, 128, 2, 6, 4, 512, 64), "not a multiple of n_kv_heads"),
    ((48, 128, 2, 6, 3, 0, 64), "vocab_size"),
])
def test_impossible_headers(broken, tiny, header, word):
    assert_clean_error(story(broken(header=header), tiny[1]), word)


def test_foreign_file(tmp_path, tiny):
    p = tmp_path / "photo.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(5000))
    assert_clean_error(story(str(p), tiny[1]), "not a usable llama2.c checkpoint")


def test_empty_file(tmp_path, tiny):
    p = tmp_path / "empty.bin"
    p.write_bytes(b"")
    assert_clean_error(story(str(p), tiny[1]), "empty")


def test_directory_as_model(tmp_path, tiny):
    assert_clean_error(story(str(tmp_path), tiny[1]), "directory")


def test_missing_model(tmp_path, tiny):
    assert_clean_error(story(str(tmp_path / "nope.bin"), tiny[1]), "does not exist")


def test_tokenizer_vocab_mismatch(tmp_path, tiny):
    tok = modelgen.write_tokenizer(str(tmp_path / "tok1000.bin"), 1000)
    assert_clean_error(story(tiny[0], tok), "1000 tokens", "512")


def test_truncated_tokenizer(tmp_path, tiny):
    data = open(tiny[1], "rb").read()
    p = tmp_path / "tok_trunc.bin"
    p.write_bytes(data[: len(data) - 7])
    assert_clean_error(story(tiny[0], str(p)), "truncated")


def test_tokenizer_directory(tmp_path, tiny):
    assert_clean_error(story(tiny[0], str(tmp_path)), "directory")


def test_no_model_anywhere_tells_with_the_builtin(tmp_path):
    """Nothing named, nothing cached, no network: the package's stories260K tells the
    story, and one line on stderr says so and how to get stories15M."""
    r = run_cli("-i", "Once upon a time", "-n", 40, "-s", 1,
                env={"STORYBOT_CACHE": str(tmp_path), "STORYBOT_MODEL": "", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Once upon a time") and len(r.stdout) > 40
    notes = [line for line in r.stderr.splitlines() if "stories260K" in line]
    assert len(notes) == 1 and "built-in" in notes[0] and "storybot fetch stories15M" in notes[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("steps", [0, -5, 1000])
def test_steps_clamped_with_warning(tiny, steps):
    r = run_cli("--model", tiny[0], "-z", tiny[1], "-n", steps, "-s", 1, "-t", 0, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    if steps:
        assert "warning" in r.stderr and "64" in r.stderr
    assert "Traceback" not in r.stderr


def test_negative_temperature(tiny):
    assert_clean_error(story(*tiny, "-t", "-0.5"), "temperature")


@pytest.mark.parametrize("p", ["-0.1", "1.5", "nan"])
def test_topp_out_of_range(tiny, p):
    assert_clean_error(story(*tiny, "-p", p), "top-p")


def test_prompt_longer_than_context(tiny):
    assert_clean_error(story(*tiny, "-i", "w1 " * 200), "prompt", "64")


def test_invalid_utf8_prompt(tiny):
    import subprocess
    import sys
    from conftest import ROOT
    r = subprocess.run([sys.executable.encode(), b"-m", b"robot", b"--model", tiny[0].encode(), b"-z", tiny[1].encode(),
                        b"-i", b"caf\xe9 \xff", b"-n", b"8"], capture_output=True, text=True, cwd=ROOT)
    assert_clean_error(r, "utf-8")


def test_enormous_prompt_is_refused_not_crashed(tiny):
    # a megabyte of text on stdin, and 100 KB on the command line: refused with a sentence
    assert_clean_error(story(*tiny, "-i", "-", input="a" * (1 << 20)), "prompt")
    assert_clean_error(story(*tiny, "-i", "a" * 100000), "prompt")


def test_prompt_from_stdin(tiny):
    r = story(*tiny, "-i", "-", input="the dog\n")
    assert r.returncode == 0 and r.stdout.startswith("the dog"), r.stderr


def test_bad_config_names_the_key(tmp_path, tiny):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[story]\ntemprature = 0.5\n")
    assert_clean_error(story(*tiny, "--config", str(cfg)), "temprature")
