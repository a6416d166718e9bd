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
import os
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
    p.add_argument("--version", action="store_true", help="print the version of storybot and of its C kernel")
    tell.add_arguments(p)
    return p


# Options every command that reads the config takes, accepted before the subcommand's
# name too (`storybot --config X status`): option -> whether it takes a value.
GLOBAL_OPTIONS: Dict[str, bool] = {"--config": True}
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away


def version() -> str:
    """`storybot --version`: the package's version (robot.__version__, which setup.py
    reads too) and the C kernel's (sb_version), which a stale build can differ from."""
    from robot import __version__
    try:
        from robot.kernel.lib import ffi, lib
        kernel = ffi.string(lib.sb_version()).decode()
    except (ImportError, OSError, StorybotError):
        kernel = "not built"
    return f"storybot {__version__} (kernel {kernel})"


def hoist_subcommand(argv: List[str]) -> List[str]:
    """`--config X status ...` -> `status ... --config X`: global options given before the
    subcommand move behind its name. Anything else before a name is left for the story
    parser to judge."""
    i = 0
    while i < len(argv) and argv[i].split("=", 1)[0] in GLOBAL_OPTIONS:
        takes_value = GLOBAL_OPTIONS[argv[i].split("=", 1)[0]] and "=" not in argv[i]
        i += 2 if takes_value else 1
    if 0 < i < len(argv) and argv[i] in SUBCOMMANDS:
        return argv[i:i + 1] + argv[i + 1:] + argv[:i]
    return argv


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

    args = story_parser().parse_args(argv)
    if args.version:
        print(version())
        return 0
    return tell.run(args)


def _reader_gone() -> int:
    """stdout's reader went away (`storybot status | head -1`): stop quietly, as other
    Unix tools do. stdout is pointed at /dev/null so that the interpreter's last flush
    cannot fail a second time (the Python docs' recipe for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _not_utf8(e: UnicodeError) -> Optional[str]:
    """The sentence for text that came in as undecodable bytes (an argument, a variable:
    Python keeps such bytes as lone surrogates, which no encoder takes), else None."""
    obj = getattr(e, "object", "")
    bad = obj[e.start:e.end] if isinstance(obj, str) and isinstance(e, UnicodeEncodeError) else ""
    if not bad or not all("\udc80" <= c <= "\udcff" for c in bad):
        return None
    shown = os.fsencode(bad)
    return (f"the bytes {shown!r} in an argument or in standard input are not valid UTF-8 text; "
            "type it again or fix the terminal's encoding")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = hoist_subcommand(list(sys.argv[1:] if argv is None else argv))
    if sys.stdout is None and argv[:1] != ["serve"]:  # started with stdout closed (`storybot ... >&-`)
        print("storybot: standard output is closed; redirect it to a file, or to /dev/null to discard it", file=sys.stderr)
        return 2
    try:
        rc = _run(argv)
        if sys.stdout is not None:
            sys.stdout.flush()  # a reader that went away shows here, not in the interpreter's exit
        return rc
    except BrokenPipeError:
        return _reader_gone()
    except StorybotError as e:
        print(f"storybot: {e}", file=sys.stderr)
        return e.exit_code
    except UnicodeEncodeError as e:
        msg = _not_utf8(e)
        if msg is None:
            raise
        print(f"storybot: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("storybot: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("storybot: out of memory; use a quantised model (storybot quantize) or free some RAM", file=sys.stderr)
        return 2
