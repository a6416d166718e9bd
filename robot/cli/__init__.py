"""`storybot`: tell a story from the command line, or run one of the subcommands.

    storybot --prompt "Once upon a time" [-n 256 -t 1.0 -p 0.9 -s SEED] [--speak]
    storybot fetch | bench | quantize | eval | listen | say | serve | ask | stop | status

One module per command: tell.py (the default), serve.py, ask.py (ask, stop, status),
listen.py, bench.py; options.py holds the options several commands share. Nothing below
robot.cli imports from it. Every user-fixable problem ends as one sentence on stderr and
exit status 2."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from robot.errors import StorybotError

# subcommand -> (module with add_arguments(parser, command) and run(args, command) -> int, help)
SUBCOMMANDS: Dict[str, Tuple[str, str]] = {
    "fetch": ("robot.models.fetch", "download a model and its tokenizer into the cache"),
    "bench": ("robot.cli.bench", "measure tokens per second, naive against optimised"),
    "quantize": ("robot.models.quantize", "write an int8 (q8) or int8 + 4-bit classifier (q8q4) model"),
    "eval": ("robot.models.evaluate", "quality of a quantised model against fp32 (KL, top-1)"),
    "listen": ("robot.cli.listen", "push-to-talk: record a prompt and recognise it"),
    "serve": ("robot.cli.serve", "run the robot: wait for prompts, tell and speak stories"),
    "ask": ("robot.cli.ask", "send a prompt to a running robot"),
    "stop": ("robot.cli.ask", "stop the story a running robot is telling"),
    "status": ("robot.cli.ask", "what a running robot is doing"),
    "say": ("robot.speech.output", "speak a text aloud: try a voice or a speaker, time a speech backend"),
}


def story_parser() -> argparse.ArgumentParser:
    from robot.cli import tell

    p = argparse.ArgumentParser(
        prog="storybot",
        description="Tell a story with a llama2.c model. Subcommands: " + ", ".join(SUBCOMMANDS) +
                    " (storybot COMMAND --help).")
    tell.add_arguments(p)
    return p


def _run(argv: List[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        command = argv[0]
        modname, help_text = SUBCOMMANDS[command]
        mod = importlib.import_module(modname)
        p = argparse.ArgumentParser(prog=f"storybot {command}", description=help_text)
        mod.add_arguments(p, command)
        args = p.parse_args(argv[1:])
        return int(mod.run(args, command))
    from robot.cli import tell

    return tell.run(story_parser().parse_args(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except StorybotError as e:
        print(f"storybot: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("storybot: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("storybot: out of memory; use a quantised model (storybot quantize) or free some RAM", file=sys.stderr)
        return 2
