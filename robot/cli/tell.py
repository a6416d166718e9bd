"""`storybot [--prompt TEXT]`: tell one story on stdout (and aloud with --speak).

    storybot --prompt "Once upon a time" [-n 256 -t 1.0 -p 0.9 -s SEED] [--speak]

Text mode prints the story as it is generated and a tok/s line on stderr; --format
jsonl prints the events of docs/service.md's schema: one "token" line per token, then
the "summary" (the same lines `storybot ask --format jsonl` prints; the one story of a
command-line run is story 1)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, Mapping, Optional, TextIO

from robot import procinfo, story
from robot.cli import EXIT_BROKEN_PIPE, options
from robot.errors import StorybotError

MAX_PROMPT_BYTES = 1 << 16
STORY = 1  # the story number in jsonl lines: a command-line run tells one
STORY_HELP = {
    "steps": "tokens in the story including the prompt (default 256, 0 = the model's length)",
    "temperature": "randomness, 0 = always the likeliest word (default 1.0)",
    "topp": "top-p (nucleus) sampling in [0,1] (default 0.9)",
    "seed": "random seed, 0 to 2**64-1 (default 0: 63 random bits, a new story every run; "
            "the seed used is in the summary and on stderr)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", "-i", metavar="TEXT", default="", help="how the story begins ('-': read it from stdin)")
    options.add_model_arguments(p)
    options.add_story_arguments(p, STORY_HELP)
    p.add_argument("--format", choices=["text", "jsonl"], default="text", help="text, or one JSON object per token")
    options.add_speech_arguments(p, "speech", "speak each sentence as it is finished", "the spoken story")


def read_prompt(arg: Optional[str]) -> str:
    prompt = arg or ""
    if prompt == "-":
        data = sys.stdin.buffer.read(MAX_PROMPT_BYTES + 1)
        if len(data) > MAX_PROMPT_BYTES:
            raise StorybotError(f"the prompt on stdin is longer than {MAX_PROMPT_BYTES // 1024} KB; a story start should be a sentence or two")
        try:
            prompt = data.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise StorybotError(f"the prompt on stdin is not valid UTF-8 (bad byte at offset {e.start}); fix its encoding") from None
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise StorybotError("the prompt is not valid UTF-8; type it again or fix the terminal's encoding") from None
    return prompt


def run(args: argparse.Namespace) -> int:
    cfg = options.load_config(args)
    model = story.open_model(options.model_choice(args), cfg)
    prompt = read_prompt(args.prompt)
    return tell(model, cfg, prompt, options.story_layer(args), options.speech_choice(args), args.format == "jsonl")


def tell(model: Any, cfg: Mapping[str, Any], prompt: str, layer: Mapping[str, Any], speech: story.SpeechChoice,
         jsonl: bool, out: TextIO = sys.stdout) -> int:
    """Tells one story with robot.story's loop; 0, 130 when interrupted, 141 when
    stdout's reader went away (the story stops: nobody is reading it)."""
    settings = story.StorySettings.merge(cfg, layer).resolve(model.config.seq_len, warn=options.warn)
    gen = settings.start(model, prompt)
    speaker = story.open_speaker(speech, cfg) if speech.wanted(False) else None  # None after a warning

    def on_token(tok: Any) -> None:
        if jsonl:
            out.write(json.dumps({"event": "token", "story": STORY, "token": tok.id, "text": tok.text}, ensure_ascii=False) + "\n")
        else:
            out.write(tok.text)
        out.flush()

    stopped = None
    try:
        if not jsonl:
            out.write(prompt)
            out.flush()
        if speaker is not None:
            speaker.begin(prompt)
        story.tell(gen, on_token, speaker)
    except KeyboardInterrupt:
        stopped = "interrupted"
    except BrokenPipeError:
        stopped = "broken pipe"
    finally:
        if speaker is not None:
            if stopped:
                speaker.cancel()
            speaker.close()
    summary = _summary(model, gen, stopped)
    if speaker is not None:
        summary["speech"] = speaker.stats()
    _finish(out, summary, jsonl)
    if speaker is not None and summary.get("speech"):
        speaker.report(sys.stderr)
    return {"interrupted": 130, "broken pipe": EXIT_BROKEN_PIPE}.get(stopped or "", 0)


def _summary(model: Any, gen: Any, stopped: Optional[str]) -> Dict[str, Any]:
    return {
        "event": "summary",
        "story": STORY,
        "tokens": gen.n_generated,
        "tok_per_s": round(gen.tokens_per_second, 3),
        "seconds": round(gen.elapsed, 4),
        "peak_rss_kb": procinfo.peak_rss_kb(),
        "seed": gen.seed,
        "stop": stopped or gen.stop_reason,
        "model": os.path.basename(model.path),
        "format": model.config.format,
        "kernel": model.kernel,
    }


def _finish(out: TextIO, summary: Mapping[str, Any], jsonl: bool) -> None:
    try:
        if jsonl:
            out.write(json.dumps(summary) + "\n")
        else:
            out.write("\n")
        out.flush()
    except BrokenPipeError:
        pass
    print(f"achieved tok/s: {summary['tok_per_s']:.2f} ({summary['tokens']} tokens, peak RSS {summary['peak_rss_kb'] / 1024:.1f} MB, "
          f"seed {summary['seed']})", file=sys.stderr)
