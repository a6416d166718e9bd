"""`storybot ask` on the board, in a few hundred kB instead of 7 MB.

The full client (robot.service.daemon) imports the config reader, logging, argparse and
the daemon to send one JSON line to a socket; on the stock Duo image (12 MB available)
that second Python is what gets the robot OOM-killed (docs/duo.md, "Memory diet").
This one imports json and socket only. It understands the common case (a prompt,
-n/-s/-t/-p, --format, --no-wait, --socket) and hands anything else (--config,
--help, a config naming another socket) to the full client. Installed by the bundle
as /usr/lib/storybot/storybot_ask.py; /usr/bin/storybot runs it for `ask`."""
import json
import socket
import sys

DEFAULT_SOCKET = "/run/storybot/control.sock"   # [daemon] socket's default
CONFIG = "/etc/storybot/storybot.toml"
OPTIONS = {"-n": "steps", "--steps": "steps", "-s": "seed", "--seed": "seed",
           "-t": "temperature", "--temperature": "temperature", "-p": "topp", "--topp": "topp"}
FINISHED = ("steps", "bos")


class Fallback(Exception):
    """Something only the full client handles."""


class Refused(Exception):
    """One sentence for the user (exit status 2)."""


def config_names_socket():
    try:
        with open(CONFIG, encoding="utf-8") as f:
            return any(line.split("=")[0].strip() == "socket" for line in f if not line.lstrip().startswith("#"))
    except OSError:
        return False


def parse(argv):
    req, words, fmt, path = {"cmd": "ask", "wait": True}, [], "text", None
    it = iter(argv)
    for a in it:
        if a in OPTIONS:
            v = next(it, None)
            if v is None:
                raise Fallback
            try:
                req[OPTIONS[a]] = float(v) if OPTIONS[a] in ("temperature", "topp") else int(v)
            except ValueError:
                raise Fallback from None  # the full client words the error
        elif a == "--format":
            fmt = next(it, None)
            if fmt not in ("text", "jsonl"):
                raise Fallback
        elif a == "--no-wait":
            req["wait"] = False
        elif a == "--socket":
            path = next(it, None)
            if not path:
                raise Fallback
        elif a.startswith("-") and a != "-":
            raise Fallback
        else:
            words.append(a)
    if words == ["-"]:
        words = [sys.stdin.readline().rstrip("\n")]
    if path is None:
        if config_names_socket():
            raise Fallback
        path = DEFAULT_SOCKET
    req["prompt"] = " ".join(words)
    return req, fmt, path


def replies(path, req):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        raise Refused(f"no storybot is running on {path}; start it with '/etc/init.d/S99storybot start'") from None
    except PermissionError:
        raise Refused(f"permission denied on {path}; run this as the robot's user or a member of its group") from None
    with sock:
        sock.sendall((json.dumps(req, ensure_ascii=False) + "\n").encode("utf-8"))
        buf = b""
        while True:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield json.loads(line.decode("utf-8"))


def ask(argv):
    req, fmt, path = parse(argv)
    out, end, started, queued = sys.stdout, None, False, False
    try:
        for ev in replies(path, req):
            kind = ev.get("event")
            if kind == "error":
                print(f"storybot: {ev.get('message', 'the robot refused the prompt')}", file=sys.stderr)
                return 2
            if fmt == "jsonl":
                out.write(json.dumps(ev, ensure_ascii=False) + "\n")
            elif kind == "queued" and not req["wait"]:
                out.write(f"queued as story {ev['story']}\n")
            elif kind == "started":
                out.write(req["prompt"])
                started = True
            elif kind == "token":
                out.write(ev["text"])
            out.flush()
            if kind == "queued":
                queued = True
            if kind == "summary":
                end = ev
    finally:
        if started:
            out.write("\n")
            out.flush()
    if not req["wait"]:
        if not queued:  # the robot refused or closed without queueing (docs/service.md)
            print("storybot: the robot did not queue the prompt; see /var/log/storybot.log", file=sys.stderr)
            return 2
        return 0
    if end is None:
        print("storybot: the robot closed the connection before the story ended; see /var/log/storybot.log", file=sys.stderr)
        return 2
    if end.get("stop") not in FINISHED:
        print(f"storybot: story {end.get('story')} was not finished ({end.get('stop')})", file=sys.stderr)
        return 1
    return 0


def main(argv):
    try:
        return ask(argv)
    except Fallback:
        from robot.cli import main as full
        return full(["ask"] + argv)
    except Refused as e:
        print(f"storybot: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
