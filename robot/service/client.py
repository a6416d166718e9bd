"""The client side of the control socket: what `storybot ask / stop / status` (and
tools/soak.py, the tests) use to talk to a running robot. No argparse here: robot.cli
turns the command line into these calls."""
from __future__ import annotations

import json
import socket
import struct
import sys
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, TextIO

from robot import config
from robot.errors import StorybotError
from robot.words import count

Event = Dict[str, Any]
FINISHED = ("steps", "bos")
CONNECT_SECONDS = 10   # a story that ended by itself, not stopped or replaced


def socket_path(socket_arg: Optional[str], config_path: Optional[str]) -> str:
    """--socket, else [daemon] socket from the config."""
    if socket_arg:
        return str(config.expand(socket_arg))
    cfg, _ = config.load(config_path)
    path = config.expand(cfg["daemon"]["socket"])
    if not path:
        raise StorybotError("[daemon] socket is empty, so the robot has no control socket; set it or pass --socket PATH")
    return str(path)


def request(path: str, req: Mapping[str, Any], timeout: Optional[float] = None) -> Iterator[Event]:
    """Sends one request to the robot at `path`; yields its replies (dicts)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    # a blocking connect waits (up to SO_SNDTIMEO) for room in a busy robot's backlog;
    # one with a Python timeout is non-blocking and fails at once with EAGAIN
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("@ll", CONNECT_SECONDS, 0))
    try:
        sock.connect(path)
    except BlockingIOError:
        sock.close()
        raise StorybotError(f"the robot on {path} is too busy to take the connection (waited {CONNECT_SECONDS} s); try again") from None
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise StorybotError(f"no storybot is running on {path}; start it with 'storybot serve' (or 'systemctl start storybot')") from None
    except PermissionError:
        sock.close()
        raise StorybotError(f"permission denied on {path}; run this as the robot's user or a member of its group (see [daemon] socket_mode)") from None
    except OSError as e:
        sock.close()
        raise StorybotError(f"cannot reach the robot on {path} ({e.strerror or e}); check [daemon] socket") from None
    sock.settimeout(10.0)
    try:
        try:
            sock.sendall((json.dumps(req, ensure_ascii=False) + "\n").encode("utf-8"))
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused at once: its one-line reason is already waiting to be read
        sock.settimeout(timeout)
        yield from _replies(sock, path, timeout)
    finally:
        sock.close()


def _replies(sock: socket.socket, path: str, timeout: Optional[float]) -> Iterator[Event]:
    buf = b""
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            raise StorybotError(f"the robot on {path} did not answer in {timeout:g} s; see its log (journalctl -u storybot)") from None
        except ConnectionResetError:
            data = b""
        if not data:
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield json.loads(line.decode("utf-8"))


def first(replies: Iterable[Event]) -> Event:
    """The one answer to a stop or status request (an error answer raised)."""
    for ev in replies:
        if ev.get("event") == "error":
            raise StorybotError(ev.get("message", "the robot refused the request"))
        return ev
    raise StorybotError("the robot closed the connection without answering; see its log")


def ask(path: str, prompt: str, overrides: Mapping[str, Any], wait: bool = True, jsonl: bool = False,
        out: TextIO = sys.stdout) -> int:
    """Sends a prompt and writes the story (or the events) to `out` as it is told.
    0 when the story finished by itself (or was queued, without wait), 1 otherwise."""
    req: Dict[str, Any] = {"cmd": "ask", "prompt": prompt, "wait": wait}
    req.update({k: v for k, v in overrides.items() if v is not None})
    end = None
    queued = False
    started = False  # the story's line is open and needs its newline, however it ends
    try:
        for ev in request(path, req):
            kind = ev.get("event")
            if kind == "error":
                raise StorybotError(ev.get("message", "the robot refused the prompt"))
            if jsonl:
                out.write(json.dumps(ev, ensure_ascii=False) + "\n")
            elif kind == "queued" and not wait:
                out.write(f"queued as story {ev['story']}\n")
            elif kind == "started":
                out.write(prompt)
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
    if not wait:
        if not queued:
            raise StorybotError("the robot did not queue the prompt" + (f" ({end['stop']})" if end else "") + "; see its log")
        return 0
    if end is None:
        raise StorybotError("the robot closed the connection before the story ended; see its log")
    if end["stop"] not in FINISHED:
        print(f"storybot: story {end['story']} was not finished ({end['stop']})", file=sys.stderr)
        return 1
    return 0


def stop(path: str, drop_queue: bool) -> str:
    """Stops the robot's story; the sentence saying what happened."""
    ev = first(request(path, {"cmd": "stop", "all": drop_queue}, timeout=10))
    dropped: List[int] = ev["dropped"]
    if ev["story"] is None and not dropped:
        return "the robot was not telling a story"
    what = f"stopped story {ev['story']}" if ev["story"] is not None else "no story was running"
    return what + (f"; dropped {len(dropped)} waiting" if dropped else "")


def status(path: str) -> Event:
    return first(request(path, {"cmd": "status"}, timeout=10))


def status_text(s: Mapping[str, Any]) -> str:
    """The status as the lines `storybot status` prints."""
    story = s.get("story")
    line = f"storybot {s['pid']}: {s['status']}"
    if story:
        line += f"; story {story['id']}: {story['tokens']} tokens in {story['seconds']:.1f} s"
    m = s["model"]
    if m.get("loaded") is False:
        model = f"model: {m['file']} changed and could not be opened again; the next story tries again (see the log)"
    else:
        model = f"model: {m['file']} ({m['format']}, {m['kernel']} kernel, context {m['context']})"
    sp = s["speech"]
    if sp.get("on"):
        speech = f"speech: {sp['backend']} voice {sp['voice']}, rate {sp['rate']} wpm, pitch {sp['pitch']}, volume {sp['volume']}"
    else:
        speech = "speech: off"
    return "\n".join([
        line,
        model,
        speech,
        f"told {count(s['stories_told'], 'story')} ({count(s['tokens'], 'token')}), {count(s['errors'], 'error')}, {s['queued']} waiting, "
        f"new prompts {s['on_new_prompt']}; up {s['uptime_s']:.0f} s; memory {s['rss_kb'] / 1024:.1f} MB",
    ])
