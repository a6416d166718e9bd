"""Messages a user reads (issue 14, item 16): counts agree with their noun ("1 story",
not "1 stories") and a wrong type is named in plain words ("an integer", not "a int")."""
import os
import re

import pytest

from conftest import ROOT, run_cli
from test_daemon import cli, rundir, serve  # noqa: F401 - fixtures: a real `storybot serve` process
from robot import config
from robot.models import modelgen, quantize
from robot.errors import StorybotError
from robot.words import count


def test_count_agrees_with_its_noun():
    assert [count(n, "story") for n in (0, 1, 2)] == ["0 stories", "1 story", "2 stories"]
    assert [count(n, "token") for n in (1, 40)] == ["1 token", "40 tokens"]


@pytest.mark.parametrize("text, words", [
    ('[daemon]\nqueue_max = "8"\n', "[daemon] queue_max must be an integer, not '8'"),
    ('[story]\ntopp = "high"\n', "[story] topp must be a number, not 'high'"),
    ('[daemon]\nstdin = 1\n', "[daemon] stdin must be true or false, not 1"),
    ('[model]\npath = 3\n', "[model] path must be a string, not 3"),
    ('[speech_in]\nphrases = "yes"\n', "[speech_in] phrases must be a list, not 'yes'"),
])
def test_a_wrong_type_is_named_in_plain_words(tmp_path, text, words):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(StorybotError) as e:
        config.load(str(p), system=None)
    assert words in str(e.value)


def test_cli_says_must_be_an_integer(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[story]\nsteps = 2.5\n")
    r = run_cli("--config", str(p), "-i", "Once")
    assert r.returncode == 2 and "[story] steps must be an integer, not 2.5" in r.stderr, r.stderr


def test_status_after_one_story_says_1_story(serve, tiny):
    s = serve(*tiny, story={"steps": 12}).ready()
    assert s.ask("Once", seed=1)[-1]["event"] == "summary"
    st = s.status()
    assert st["stories_told"] == 1 and st["status"] == "waiting for a prompt (1 story told)", st
    r = cli("status", "--socket", s.sock)
    assert r.returncode == 0 and "told 1 story (" in r.stdout and " 0 errors," in r.stdout, r.stdout
    assert "1 stories" not in r.stdout


def _text(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("var", ["STORYBOT_CACHE", "STORYBOT_MODEL", "STORYBOT_CONFIG"])
def test_user_environment_variables_are_documented(var):
    docs = _text("README.md") + "".join(_text("docs", n) for n in os.listdir(os.path.join(ROOT, "docs")) if n.endswith(".md"))
    assert var in docs, f"${var} changes what the robot does but README.md and docs/ never say so"
    assert var in _text("config", "storybot.toml"), f"config/storybot.toml does not say ${var} overrides it"


def test_unit_sizing_comment_names_the_real_q8_file_size(tmp_path):
    # the stories15M shape in fp32, quantised by the real kernel: the file the unit's
    # MemoryHigh/MemoryMax comment counts as page cache
    src = modelgen.write_checkpoint(str(tmp_path / "s15.bin"), 288, 768, 6, 6, 6, 32000, 256)
    assert round(os.path.getsize(src) / 1e6, 1) == 60.8
    quantize.quantize(src, str(tmp_path / "s15.q8"), "q8")
    q8_mb = os.path.getsize(tmp_path / "s15.q8") / 1e6
    unit = _text("systemd", "storybot.service")
    sizes = re.findall(r"([\d.]+) MB model file", unit)
    assert sizes == [f"{q8_mb:.1f}"], (sizes, q8_mb)
