"""Command-line options more than one subcommand takes (the model, the story, speech),
and their translation into the plain objects robot.story and robot.service use, so that
nothing below robot.cli sees argparse."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, Mapping, Optional

from robot import config
from robot.story import STORY_KEYS, ModelChoice, SpeechChoice

Parser = Any  # an ArgumentParser or an argument group


def warn(msg: str) -> None:
    print(f"storybot: warning: {msg}", file=sys.stderr, flush=True)


def load_config(args: argparse.Namespace) -> Dict[str, Any]:
    cfg, _ = config.load(getattr(args, "config", None))
    return cfg


def add_model_arguments(p: Parser) -> None:
    p.add_argument("--model", "-m", metavar="PATH", help="llama2.c checkpoint (.bin) or storybot quantised model")
    p.add_argument("-z", "--tokenizer", metavar="PATH", help="tokenizer.bin (default: beside the model)")
    p.add_argument("--kernel", choices=["fast", "naive"], help="op implementations (default: fast)")
    p.add_argument("--kv-f16", action="store_true", default=None, help="half-precision attention cache")
    p.add_argument("--low-rss", action="store_true", default=None,
                   help="keep only the weight slice in use resident (smaller RSS, slightly slower)")
    p.add_argument("--config", metavar="PATH", help="config file (TOML); overrides /etc/storybot/storybot.toml")


# -n/-t/-p/-s where a robot's config gives the defaults (serve, ask)
DAEMON_STORY_HELP = {
    "steps": "tokens per story including the prompt (default: [story] steps)",
    "temperature": "randomness, 0 = always the likeliest word",
    "topp": "top-p (nucleus) sampling in [0,1]",
    "seed": "random seed, 0 to 2**64-1 (0: a new story every time)",
}


def add_story_arguments(p: Parser, helps: Mapping[str, str]) -> None:
    """-n/-t/-p/-s, with each command's own help text."""
    p.add_argument("-n", "--steps", type=int, help=helps["steps"])
    p.add_argument("-t", "--temperature", type=float, help=helps["temperature"])
    p.add_argument("-p", "--topp", type=float, help=helps["topp"])
    p.add_argument("-s", "--seed", type=int, help=helps["seed"])


def add_speech_arguments(p: Parser, title: str, speak_help: str, wav_what: str) -> None:
    """The options speech_choice() reads, shared by every command that speaks."""
    speak = p.add_argument_group(title)
    speak.add_argument("--speak", action="store_true", default=None, help=speak_help)
    speak.add_argument("--no-speak", dest="speak", action="store_false", help="text only")
    speak.add_argument("--wav", metavar="FILE", help=f"write {wav_what} to a WAV file instead of the speaker")
    speak.add_argument("--voice", help="espeak-ng voice, e.g. en-us+robosoft")
    speak.add_argument("--tts", choices=["espeak", "pyttsx3"], help="speech backend")


def model_choice(args: argparse.Namespace) -> ModelChoice:
    return ModelChoice(getattr(args, "model", None), getattr(args, "tokenizer", None), getattr(args, "kernel", None),
                       getattr(args, "kv_f16", None), getattr(args, "low_rss", None))


def speech_choice(args: argparse.Namespace) -> SpeechChoice:
    return SpeechChoice(getattr(args, "speak", None), getattr(args, "wav", None),
                        getattr(args, "voice", None), getattr(args, "tts", None))


def story_layer(args: argparse.Namespace) -> Dict[str, Optional[Any]]:
    """The command line's layer for StorySettings.merge (None: not given)."""
    return {k: getattr(args, k, None) for k in STORY_KEYS}
