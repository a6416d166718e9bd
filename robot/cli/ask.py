"""`storybot ask / stop / status`: talk to a running robot over its control socket
(robot.service.client).

    storybot ask "Once upon a time"       # streams the story back as it is told
    storybot stop [--all] | status [--json]"""
from __future__ import annotations

import argparse
import json
import sys

from robot.cli import options
from robot.service import client


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--config", metavar="PATH", help="config file naming the socket (default: /etc/storybot/storybot.toml)")
    p.add_argument("--socket", metavar="PATH", help="control socket of the robot (default: [daemon] socket)")
    if command == "ask":
        p.add_argument("prompt", nargs="*", help="how the story begins ('-': read one line from standard input)")
        options.add_story_arguments(p, options.DAEMON_STORY_HELP)
        p.add_argument("--no-wait", action="store_true", help="queue the prompt and return without the story")
        p.add_argument("--format", choices=["text", "jsonl"], default="text", help="text, or the robot's JSON events")
    elif command == "stop":
        p.add_argument("--all", action="store_true", help="also drop the prompts waiting their turn")
    elif command == "status":
        p.add_argument("--json", action="store_true", help="the whole status as one JSON object")


def run(args: argparse.Namespace, command: str) -> int:
    path = client.socket_path(args.socket, args.config)
    if command == "ask":
        if args.prompt == ["-"]:
            prompt = sys.stdin.readline().rstrip("\n")
        else:
            prompt = " ".join(args.prompt)
        return client.ask(path, prompt, options.story_layer(args), wait=not args.no_wait, jsonl=args.format == "jsonl")
    if command == "stop":
        print(client.stop(path, args.all))
        return 0
    s = client.status(path)
    print(json.dumps(s, ensure_ascii=False) if args.json else client.status_text(s))
    return 0
