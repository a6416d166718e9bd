"""`storybot listen`: push-to-talk from the command line (robot.speech.listen does the
recording and recognising); prints each recognised prompt, and with --tell tells a
story from it with the same loop as `storybot --prompt`."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, Mapping

from robot import story
from robot.cli import options, tell
from robot.errors import StorybotError

STORY_HELP = {
    "steps": "tokens in the story including the prompt",
    "temperature": "randomness, 0 = always the likeliest word",
    "topp": "top-p (nucleus) sampling in [0,1]",
    "seed": "random seed",
}


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--once", action="store_true", help="one recording, then exit (status 1 if nothing was understood)")
    p.add_argument("--trigger", choices=["enter", "gpio", "signal"], help="what starts a recording (default: config)")
    p.add_argument("--device", metavar="NAME", help="input device name or part of it (default: config, then the default device)")
    p.add_argument("--rate", type=int, metavar="HZ", help="record at this rate and convert to 16 kHz (default: 16000 if the device takes it)")
    p.add_argument("--vosk-model", metavar="DIR", help="Vosk model folder (default: [speech_in] model_path)")
    p.add_argument("--phrase", action="append", metavar="TEXT", help="only these phrases can be heard (repeatable)")
    p.add_argument("--keep-model", dest="unload", action="store_false", default=None, help="keep the Vosk model loaded between recordings")
    p.add_argument("--unload-model", dest="unload", action="store_true", help="free the Vosk model after each recording")
    p.add_argument("--devices", action="store_true", help="list the input devices and exit (status 1 when there is none)")
    p.add_argument("--format", choices=["text", "jsonl"], default="text", help="text, or one JSON object per recording")
    group = p.add_argument_group("telling (--tell: each recognised prompt starts a story)")
    group.add_argument("--tell", action="store_true", help="tell a story from each recognised prompt")
    options.add_model_arguments(group)
    options.add_story_arguments(group, STORY_HELP)
    options.add_speech_arguments(p, "speech (the story, and the reply when nothing was understood)", "speak aloud", "the speech")


def listen_settings(args: argparse.Namespace, cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """[speech_in] with the command line's choices applied."""
    s = dict(cfg["speech_in"])
    if args.trigger:
        s["trigger"] = args.trigger
    if args.device is not None:
        s["device"] = args.device
    if args.rate is not None:
        if args.rate != 0 and not 8000 <= args.rate <= 384000:
            raise StorybotError(f"--rate must be 0 or between 8000 and 384000 Hz (got {args.rate})")
        s["rate"] = args.rate
    if args.vosk_model:
        s["model_path"] = args.vosk_model
    if args.phrase:
        s["phrases"] = list(args.phrase)
    if args.unload is not None:
        s["unload_after_use"] = args.unload
    return s


def _say(choice: story.SpeechChoice, cfg: Mapping[str, Any], text: str) -> None:
    """The spoken reply, when speech was asked for and can be had; printed always."""
    print(f"storybot: {text}", file=sys.stderr, flush=True)
    if not (choice.speak or choice.wav):
        return
    try:
        speaker = story.open_speaker(choice, cfg)
    except ImportError:
        return
    if speaker is None:
        return
    try:
        speaker.begin(text)
        speaker.end()
    finally:
        speaker.close()


def _summary(last: Mapping[str, Any]) -> str:
    load = f", model loaded in {last['load_s']:.2f} s" if last.get("load_s") is not None else ""
    mem = f"; RSS {last.get('rss_loaded_kb', 0) / 1024:.0f} MB with the model"
    if "rss_after_kb" in last and last["rss_after_kb"] < last.get("rss_loaded_kb", 0):
        mem += f", {last['rss_after_kb'] / 1024:.0f} MB after freeing it"
    return (f"heard {last.get('voiced_s', 0):.1f} s of speech at {last.get('rate')} Hz; text {last.get('latency_s', 0):.2f} s "
            f"after the recording ended (decoding {last.get('recognise_s', 0):.2f} s{load}){mem}")


def _list_devices() -> int:
    """Index and name of each input device; none is said on stderr with status 1, so a
    script can test for a microphone (`storybot listen --devices >/dev/null`)."""
    from robot.speech import audio

    found = list(audio.devices(output=False))
    if not found:
        print("storybot: no audio input devices found", file=sys.stderr)
        return 1
    for index, name in found:
        print(f"{index}\t{name}")
    return 0


def _greet(ptt: Any) -> None:
    from robot.speech.triggers import EnterTrigger, SignalTrigger

    if isinstance(ptt.trigger, EnterTrigger) and sys.stdin.isatty():
        print("storybot: press Enter, say how the story begins; Enter again (or a pause) ends it",
              file=sys.stderr, flush=True)
    elif isinstance(ptt.trigger, SignalTrigger):
        print(f"storybot: kill -USR1 {os.getpid()} starts (and ends) a recording", file=sys.stderr, flush=True)


def _tell(args: argparse.Namespace, cfg: Mapping[str, Any], prompt: str) -> None:
    # the model is opened per story, as before: with unload_after_use the recogniser's
    # memory is given back first, which is what lets a small board hold both in turn
    model = story.open_model(options.model_choice(args), cfg)
    tell.tell(model, cfg, prompt, options.story_layer(args), options.speech_choice(args), args.format == "jsonl")


def run(args: argparse.Namespace, command: str) -> int:
    from robot.speech.listen import PushToTalk

    if args.devices:
        return _list_devices()
    cfg = options.load_config(args)
    cfg = dict(cfg, speech_in=listen_settings(args, cfg))
    ptt = PushToTalk(cfg)
    choice = options.speech_choice(args)
    ptt.on_miss = lambda text: _say(choice, cfg, text)
    try:
        ptt.check()
        _greet(ptt)
        while True:
            try:
                text = ptt.listen()
            except StorybotError as e:
                if args.once:
                    raise
                print(f"storybot: {e}", file=sys.stderr, flush=True)
                continue
            if text is None:
                return 0
            if args.format == "jsonl":
                print(json.dumps(dict(ptt.last, text=text), ensure_ascii=False), flush=True)
            elif text:
                print(text, flush=True)
                print("storybot: " + _summary(ptt.last), file=sys.stderr, flush=True)
            if text and args.tell:
                _tell(args, cfg, text)
            if args.once:
                return 0 if text else 1
    finally:
        ptt.close()
