"""Issue 14.13: one rule for which model and tokenizer a command uses
(robot/models/discover.py), the same for a story, eval and quantize --calibrate."""
import os
import shutil
import time

from conftest import run_cli, data_path

from robot.models import discover, fetch


def _copy(src, dst_dir, name=None):
    dst = os.path.join(str(dst_dir), name or os.path.basename(src))
    shutil.copyfile(src, dst)
    return dst


def test_the_newest_cached_model_wins_not_a_fixed_preference(tmp_path, monkeypatch):
    # the config's documented rule: an older q8q4 must not shadow a newer q8
    monkeypatch.setenv("STORYBOT_CACHE", str(tmp_path))
    monkeypatch.delenv("STORYBOT_MODEL", raising=False)
    old = _copy(data_path("stories260K.bin"), tmp_path, "stories15M.q8q4")
    new = _copy(data_path("stories260K.bin"), tmp_path, "stories15M.q8")
    _copy(data_path("tok512.bin"), tmp_path)
    t = time.time()
    os.utime(old, (t - 100, t - 100))
    os.utime(new, (t, t))
    assert fetch.resolve(None, None, None)[0] == new
    os.utime(old, (t + 100, t + 100))
    assert fetch.resolve(None, None, None)[0] == old


def test_a_quantised_model_finds_its_tokenizer_by_the_record(tmp_path):
    src = _copy(data_path("stories260K.bin"), tmp_path)
    _copy(data_path("tok512.bin"), tmp_path)
    out = tmp_path / "s.q8"
    r = run_cli("quantize", src, out, "--format", "q8")
    assert r.returncode == 0, r.stderr
    assert discover.recorded_tokenizer(str(out))[0] == "tok512.bin"
    # copied elsewhere with its tokenizer under the same name: found, by checksum
    other = tmp_path / "board"
    other.mkdir()
    moved = _copy(str(out), other)
    _copy(data_path("tok512.bin"), other)
    r = run_cli("--model", moved, "-n", 12, "-t", 0, "--prompt", "Once upon a time")
    assert r.returncode == 0, r.stderr
    assert "no tokenizer" not in r.stderr


def test_s_q8_beside_tok512_tells_a_story(tmp_path):
    # the reported case: quantize stories260K.bin s.q8, then storybot -m s.q8
    src = _copy(data_path("stories260K.bin"), tmp_path)
    _copy(data_path("tok512.bin"), tmp_path)
    assert run_cli("quantize", src, tmp_path / "s.q8").returncode == 0
    r = run_cli("-m", tmp_path / "s.q8", "-n", 12, "-t", 0, "--prompt", "Once upon a time")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Once upon a time")


def test_a_tokenizer_of_the_wrong_size_is_passed_over(tmp_path):
    # tokenizer.bin (32,000 tokens) beside a 512-token model would read its first 512
    # entries without complaint; the rule counts them and takes tok512.bin instead
    model = _copy(data_path("stories260K.bin"), tmp_path, "mine.bin")
    _copy(data_path("tokenizer.bin"), tmp_path)
    tok = _copy(data_path("tok512.bin"), tmp_path)
    assert discover.tokenizer_size(tok) == 512
    assert discover.tokenizer_size(data_path("tokenizer.bin")) == 32000
    assert fetch.resolve(model, None, None) == (model, tok)


def test_no_matching_tokenizer_is_one_sentence(tmp_path):
    model = _copy(data_path("tiny-gqa-32k.bin"), tmp_path, "big.bin")
    _copy(data_path("tok512.bin"), tmp_path, "tokenizer.bin")  # the wrong size under the usual name
    r = run_cli("-m", model, "--prompt", "x", env={"STORYBOT_CACHE": str(tmp_path / "none")})
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "no tokenizer with 32000 tokens" in r.stderr, r.stderr


def test_eval_finds_the_same_tokenizer_as_a_story(tmp_path):
    # eval -m stories260K.bin used to look for tokenizer.bin where the story found tok512.bin
    model = _copy(data_path("stories260K.bin"), tmp_path)
    _copy(data_path("tok512.bin"), tmp_path)
    text = tmp_path / "t.txt"
    text.write_text("Once upon a time there was a little dog. He liked to run.\n<|endoftext|>\n")
    r = run_cli("eval", "--model", model, "--text", text, "--tokens", 20)
    assert r.returncode == 0, r.stderr
    assert "tokenizer" not in r.stderr
