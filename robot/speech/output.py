"""Speech out: a Speaker opened from the configuration, and the `storybot say` command.

    speaker = open_from_args(args, cfg)     # None (after one warning) when it cannot speak
    speaker.begin(prompt) / feed(text) / end() / cancel() / close()   (robot/speech/speaker.py)

The parts: robot/speech/backends.py (espeak-ng through cffi, pyttsx3), sinks.py (a
PortAudio device, a WAV file), speaker.py (the two threads and their queues), timings.py
(what is measured). This module only puts them together; its names stay importable from
here because the daemon, the CLI and the tests open speakers through it.
"""
import argparse
import json
import sys
from typing import Any, Dict, Mapping, Optional

from robot.errors import StorybotError
from robot.speech import audio
from robot.speech.backends import (BACKENDS, CHUNK_MS, VOICE_KEYS, EspeakBackend, NoSpeech,  # noqa: F401 (the API)
                                   Pyttsx3Backend, open_backend)
from robot.speech.sinks import DeviceSink, Sink, WavSink  # noqa: F401 (the API)
from robot.speech.speaker import Speaker, Warn, warn_stderr  # noqa: F401 (the API)


def open_speaker(settings: Mapping[str, Any], wav: Optional[str] = None, warn: Warn = warn_stderr) -> Optional[Speaker]:
    """A Speaker for [speech_out] settings (plus a WAV path), or None after one warning
    naming what is missing. A bad voice or an unwritable WAV path is an error."""
    sink: Sink = WavSink(wav) if wav else DeviceSink(settings["device"])
    try:
        backend = open_backend(settings["backend"])
        backend.configure(**{k: settings[k] for k in VOICE_KEYS})
        sink.check(backend.sample_rate)
    except (NoSpeech, audio.NoAudio) as e:
        hint = "" if wav else " (--wav FILE writes the speech to a file instead)"
        warn(f"{e}{hint}; the story goes on as text")
        return None
    return Speaker(backend, sink, settings, warn=warn)


def settings_from_args(args: Any, cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """[speech_out] with the command line's --voice and --tts applied."""
    so = dict(cfg["speech_out"])
    if getattr(args, "voice", None):
        so["voice"] = args.voice
    if getattr(args, "tts", None):
        so["backend"] = args.tts
    return so


def open_from_args(args: Any, cfg: Mapping[str, Any], warn: Warn = warn_stderr) -> Optional[Speaker]:
    return open_speaker(settings_from_args(args, cfg), getattr(args, "wav", None), warn)


# -- `storybot say`: speak a text (try a voice, a speaker, measure a backend) ------

def add_arguments(p: argparse.ArgumentParser, command: str = "say") -> None:
    """The options of `storybot say`."""
    p.add_argument("text", nargs="*", help="what to say (default: standard input)")
    p.add_argument("--tts", choices=BACKENDS, help="speech backend (default: [speech_out] backend)")
    p.add_argument("--voice", help="espeak-ng voice, e.g. en-us+robosoft")
    p.add_argument("--wav", metavar="FILE", help="write the speech to a WAV file instead of the speaker")
    p.add_argument("--config", metavar="PATH", help="config file (TOML)")
    p.add_argument("--json", action="store_true", help="print the timing as one JSON object on stdout")


def run_say(args: argparse.Namespace) -> int:
    """`storybot say`: speaks args.text (or standard input); the exit status. A
    StorybotError (a bad voice, an unwritable WAV path) is left to the caller."""
    from robot import config

    cfg, _ = config.load(args.config)
    text = " ".join(args.text) if args.text else sys.stdin.read()
    speaker = open_from_args(args, cfg)
    if speaker is None:
        return 1
    try:
        speaker.begin(text)
        speaker.end()
    except KeyboardInterrupt:
        speaker.cancel()
        return 130
    finally:
        speaker.close()
    speaker.report(sys.stderr)
    if args.json:
        print(json.dumps(speaker.stats()))
    return 0


def run(args: argparse.Namespace, command: str = "say") -> int:
    """The CLI's subcommand entry point (robot/cli: add_arguments + run)."""
    return run_say(args)
