"""config/storybot.toml is the documentation of every setting, so it must hold exactly the
built-in defaults; and a bad file must stop the robot with the key named."""
import os
import re

import pytest

from conftest import ROOT
from robot import config
from robot.errors import StorybotError

DEFAULT_FILE = os.path.join(ROOT, "config", "storybot.toml")


def test_default_file_is_exactly_the_defaults():
    data = config.read_file(DEFAULT_FILE)
    want = config.defaults()
    missing = [f"[{s}] {k}" for s in want for k in want[s] if k not in data.get(s, {})]
    assert not missing, f"config/storybot.toml lacks {missing}; document every key of robot/config.py SCHEMA there"
    assert data == want
    for s, keys in want.items():
        for k, v in keys.items():
            # 1 == 1.0 in Python: the file must also show the right type (rate = 165, not 165.0)
            assert type(data[s][k]) is type(v), f"[{s}] {k}: {data[s][k]!r} in the file, default {v!r}"
    cfg, files = config.load(DEFAULT_FILE, system=None)
    assert cfg == want and files == [DEFAULT_FILE]


def test_every_key_in_the_default_file_has_a_comment():
    lines = open(DEFAULT_FILE, encoding="utf-8").read().splitlines()
    key = re.compile(r"^([a-z_0-9]+)\s*=")
    for i, line in enumerate(lines):
        m = key.match(line)
        if m:
            assert i > 0 and lines[i - 1].startswith("#"), f"config/storybot.toml: '{m.group(1)}' has no comment above it"


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_later_files_win_key_by_key(tmp_path, monkeypatch):
    system = write(tmp_path, "system.toml", "[story]\nsteps = 100\ntemperature = 0.5\n[daemon]\nqueue_max = 3\n")
    env = write(tmp_path, "env.toml", "[story]\nsteps = 120\n")
    given = write(tmp_path, "given.toml", "[daemon]\nqueue_max = 4\n")
    monkeypatch.setenv("STORYBOT_CONFIG", env)
    cfg, files = config.load(given, system=system)
    assert files == [system, env, given]
    assert cfg["story"]["steps"] == 120
    assert cfg["story"]["temperature"] == 0.5
    assert cfg["daemon"]["queue_max"] == 4
    assert cfg["daemon"]["on_new_prompt"] == "interrupt"  # untouched keys keep their defaults


@pytest.mark.parametrize("text, words", [
    ("[deamon]\nstdin = false\n", ["unknown section [deamon]", "daemon"]),
    ("[daemon]\nsocket_mod = \"0660\"\n", ["unknown key 'socket_mod'", "socket_mode"]),
    ("[daemon]\nqueue_max = \"8\"\n", ["[daemon] queue_max must be an integer"]),
    ("[daemon]\nqueue_max = true\n", ["[daemon] queue_max must be an integer"]),
    ("[daemon]\nqueue_max = 0\n", ["[daemon] queue_max must be between 1 and 1000"]),
    ("[daemon]\non_new_prompt = \"drop\"\n", ["[daemon] on_new_prompt must be one of 'interrupt', 'queue'"]),
    ("[daemon]\nsocket_mode = \"0666\"\n", ["[daemon] socket_mode", "no access for others"]),
    ("[daemon]\nsocket_mode = \"rw\"\n", ["[daemon] socket_mode", "octal"]),
    ("[daemon]\nlog_level = \"loud\"\n", ["[daemon] log_level"]),
    ("[daemon]\nstall_seconds = 0.1\n", ["[daemon] stall_seconds"]),
    ("daemon = 1\n", ["[daemon] must be a table"]),
    ("[daemon\n", ["not valid TOML"]),
])
def test_bad_values_are_named(tmp_path, text, words):
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(StorybotError) as e:
        config.load(path, system=None)
    msg = str(e.value)
    assert path in msg and "\n" not in msg
    for w in words:
        assert w in msg


def test_ints_are_accepted_where_floats_are_meant(tmp_path):
    cfg, _ = config.load(write(tmp_path, "c.toml", "[daemon]\nstall_seconds = 5\n"), system=None)
    assert cfg["daemon"]["stall_seconds"] == 5.0 and isinstance(cfg["daemon"]["stall_seconds"], float)


def test_unreadable_files_are_one_sentence(tmp_path):
    with pytest.raises(StorybotError, match="does not exist"):
        config.load(str(tmp_path / "nope.toml"), system=None)
    with pytest.raises(StorybotError, match="is a directory"):
        config.load(str(tmp_path), system=None)
