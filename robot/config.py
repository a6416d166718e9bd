"""Configuration: one TOML file, validated against SCHEMA before anything starts.

Order (later wins): built-in defaults (the same values as config/storybot.toml),
/etc/storybot/storybot.toml, $STORYBOT_CONFIG, --config PATH. An unknown key or a bad
value stops the program with the file and key named: a robot that guesses at its
settings misbehaves for months without anybody noticing.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Tuple, overload

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from robot import fileio
from robot.errors import StorybotError

SYSTEM_CONFIG = "/etc/storybot/storybot.toml"


Check = Callable[[Any], Optional[str]]
Config = Dict[str, Dict[str, Any]]


def _range(lo: float, hi: float) -> Check:
    def check(v: Any) -> Optional[str]:
        return None if lo <= v <= hi else f"must be between {lo} and {hi}"
    return check


def _choice(*options: str) -> Check:
    def check(v: Any) -> Optional[str]:
        return None if v in options else "must be one of " + ", ".join(repr(o) for o in options)
    return check


def _octal_mode(v: str) -> Optional[str]:
    try:
        m = int(v, 8)
    except ValueError:
        return "must be an octal file mode such as \"0660\""
    return None if 0 <= m <= 0o777 and not m & 0o007 else "must be an octal mode with no access for others, such as \"0660\""


# section -> key -> (default, type, check or None, one-line doc)
SCHEMA: Dict[str, Dict[str, Tuple[Any, type, Optional[Check], str]]] = {
    "model": {
        "path": ("", str, None, "checkpoint to load; empty: $STORYBOT_MODEL, then the download cache"),
        "tokenizer": ("", str, None, "tokenizer.bin; empty: the one beside the model, then the cache"),
        "kernel": ("fast", str, _choice("fast", "naive"), "fast (vectorised) or naive (reference loops)"),
        "kv_f16": (False, bool, None, "keep the attention cache in half precision (halves its RAM)"),
        "low_rss": (False, bool, None, "release each weight slice after use: a smaller resident set for a few % of speed"),
        "cache_dir": ("~/.cache/storybot", str, None, "where 'storybot fetch' puts models; $STORYBOT_CACHE wins"),
        "fetch_base_url": ("https://huggingface.co/karpathy/tinyllamas/resolve/main", str, None,
                           "where 'storybot fetch' downloads from; a local mirror works"),
    },
    "story": {
        "steps": (256, int, _range(1, 1 << 20), "most tokens per story, prompt included (clamped to the model)"),
        "temperature": (1.0, float, _range(0.0, 100.0), "0 = always the likeliest word"),
        "topp": (0.9, float, _range(0.0, 1.0), "nucleus sampling threshold"),
        "seed": (0, int, _range(0, (1 << 63) - 1), "0 = a new story every time"),
    },
    "speech_out": {
        "enabled": (True, bool, None, "speak stories aloud"),
        "backend": ("espeak", str, _choice("espeak", "pyttsx3"), "espeak: libespeak-ng direct (low latency); pyttsx3"),
        "voice": ("en-us+robosoft", str, None, "espeak-ng voice and variant"),
        "rate": (165, int, _range(80, 500), "words per minute"),
        "pitch": (40, int, _range(0, 99), "espeak-ng pitch"),
        "volume": (1.0, float, _range(0.0, 2.0), "1.0 = normal"),
        "device": ("", str, None, "PortAudio output device name (substring); empty: the default device"),
        "queue_sentences": (8, int, _range(1, 256), "sentences waiting to be spoken before generation pauses"),
        "max_sentence_chars": (240, int, _range(40, 4000), "a longer run without a full stop is cut at a comma or here"),
        "first_clause": (True, bool, None, "speak the story's opening clause (up to its first comma) at once: a sooner first sound"),
    },
    "speech_in": {
        "enabled": (False, bool, None, "take prompts from the microphone (push-to-talk)"),
        "model_path": ("/usr/share/vosk/vosk-model-small-en-us-0.15", str, None, "Vosk model directory"),
        "trigger": ("enter", str, _choice("enter", "gpio", "signal"), "what starts a recording"),
        "gpio_chip": ("/dev/gpiochip0", str, None, "GPIO character device of the button"),
        "gpio_line": (0, int, _range(0, 1023), "GPIO line offset of the button"),
        "gpio_active_low": (True, bool, None, "the button pulls the line low when pressed"),
        "device": ("", str, None, "PortAudio input device name (substring); empty: the default device"),
        "max_seconds": (10.0, float, _range(0.5, 120.0), "longest recording"),
        "silence_seconds": (1.5, float, _range(0.2, 30.0), "trailing silence that ends a recording"),
        "unload_after_use": (True, bool, None, "free the Vosk model before telling the story (small boards)"),
        "phrases": ([], list, None, "optional phrase list that limits what Vosk can hear"),
        "rate": (0, int, _range(0, 384000), "capture rate in Hz, converted to 16 kHz; 0: 16000 if the device takes it, else its own rate"),
        "silence_level": (300, int, _range(0, 32767), "RMS level (16-bit scale) below which the microphone counts as silent"),
        "reply": ("I didn't catch that.", str, None, "what the robot says when it understood nothing"),
    },
    "daemon": {
        "socket": ("/run/storybot/control.sock", str, None, "control socket path; empty: no control socket"),
        "socket_mode": ("0660", str, _octal_mode, "permissions of the control socket"),
        "socket_group": ("", str, None, "group that may use the socket; empty: the robot's own group"),
        "on_new_prompt": ("interrupt", str, _choice("interrupt", "queue"), "what a prompt does while a story runs"),
        "queue_max": (8, int, _range(1, 1000), "prompts that may wait their turn (on_new_prompt = \"queue\")"),
        "stdin": (True, bool, None, "read prompts from standard input"),
        "log_level": ("info", str, _choice("debug", "info", "warning", "error"), "log verbosity"),
        "log_story_text": (False, bool, None, "log the prompt and story text at INFO"),
        "stall_seconds": (60.0, float, _range(1.0, 3600.0), "a kernel step this slow is a hang: log it and exit so the service restarts"),
    },
}


# what a value of each type is called in a message ("must be a int" read badly)
_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}


def defaults() -> Config:
    return {s: {k: v[0] for k, v in keys.items()} for s, keys in SCHEMA.items()}


def _merge(cfg: Config, data: Any, source: str) -> None:
    if not isinstance(data, dict):
        raise StorybotError(f"{source}: the file must hold TOML tables such as [model]")
    for section, values in data.items():
        if section not in SCHEMA:
            raise StorybotError(f"{source}: unknown section [{section}]; known sections are {', '.join(SCHEMA)}")
        if not isinstance(values, dict):
            raise StorybotError(f"{source}: [{section}] must be a table of settings")
        for key, value in values.items():
            if key not in SCHEMA[section]:
                raise StorybotError(f"{source}: unknown key '{key}' in [{section}]; known keys are {', '.join(SCHEMA[section])}")
            default, typ, check, _ = SCHEMA[section][key]
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                raise StorybotError(f"{source}: [{section}] {key} must be {_TYPE_WORDS[typ]}, not {value!r}")
            if check:
                problem = check(value)
                if problem:
                    raise StorybotError(f"{source}: [{section}] {key} {problem} (got {value!r})")
            cfg[section][key] = value


def read_file(path: str) -> Dict[str, Any]:
    # bounded, non-blocking read: a FIFO, /dev/zero or a huge file is refused, not waited on
    data = fileio.read_small_file(path, "config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StorybotError(f"config file {path} is not valid UTF-8 (bad byte at offset {e.start}); save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except RecursionError:  # the parser recurses once per nested [ or {
        raise StorybotError(f"config file {path} nests arrays or tables too deeply to be a config") from None
    except ValueError as e:  # TOMLDecodeError, or an integer longer than Python converts
        raise StorybotError(f"config file {path} is not valid TOML: {e}") from None


def load(path: Optional[str] = None, system: Optional[str] = SYSTEM_CONFIG) -> Tuple[Config, List[str]]:
    """Returns (config dict, list of files read)."""
    cfg = defaults()
    used: List[str] = []
    sources: List[str] = []
    if system and os.path.isfile(system):
        sources.append(system)
    env = os.environ.get("STORYBOT_CONFIG")
    if env:
        sources.append(env)
    if path:
        sources.append(os.fspath(path))
    for src in sources:
        _merge(cfg, read_file(src), src)
        used.append(src)
    return cfg, used


@overload
def expand(path: str) -> str: ...
@overload
def expand(path: None) -> None: ...
def expand(path: Optional[str]) -> Optional[str]:
    return os.path.expanduser(os.path.expandvars(path)) if path else path
