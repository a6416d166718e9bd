"""`storybot serve [--config FILE]`: run the robot (robot.service.daemon): load the model
once, then wait for prompts from stdin, the microphone and the control socket."""
from __future__ import annotations

import argparse

from robot.cli import options
from robot.errors import StorybotError
from robot.service import logs


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    options.add_model_arguments(p)
    p.add_argument("--socket", metavar="PATH", help="control socket (default: [daemon] socket; '' for none)")
    p.add_argument("--no-stdin", dest="stdin", action="store_false", default=None, help="do not read prompts from standard input")
    p.add_argument("--log-level", choices=list(logs.LEVELS), help="log verbosity (default: [daemon] log_level)")
    options.add_story_arguments(p, options.DAEMON_STORY_HELP)
    options.add_speech_arguments(p, "speech", "speak stories (default: [speech_out] enabled)", "the spoken stories")


def run(args: argparse.Namespace, command: str) -> int:
    from robot.service.daemon import Robot, ServeOptions

    opts = ServeOptions(config_path=args.config, socket=args.socket, stdin=args.stdin, log_level=args.log_level,
                        model=options.model_choice(args), story_layer=options.story_layer(args),
                        speech=options.speech_choice(args))
    try:
        return Robot.from_files(opts).serve()
    except StorybotError as e:
        return logs.refused(e)
