"""The robot's side of the control protocol (docs/service.md): accepts connections on
the control socket, reads each client's one request line in the main loop and answers
ask, stop and status. An ask's client is handed to its Job: the story worker writes
its events."""
from __future__ import annotations

import itertools
import logging
import selectors
import time
from typing import Any, Callable, Dict, Mapping, Tuple

from robot.errors import StorybotError
from robot.service import control
from robot.service.jobs import Event, Job, Stopped
from robot.service.loop import EventLoop

# request key -> accepted JSON types (bool is refused even though it is an int)
STORY_KEYS: Dict[str, Tuple[type, ...]] = {"steps": (int,), "temperature": (int, float), "topp": (int, float), "seed": (int,)}
MAX_CLIENTS = 64     # connections open at once (sending a request or hearing a story)
EVICT_AFTER = 1.0    # at the cap, a connection silent this long makes room for a new one
BUSY = "the robot is busy: {n} control connections are open; try again in a moment"


def story_overrides(req: Mapping[str, Any]) -> Dict[str, Any]:
    """The request's steps / temperature / topp / seed, type-checked."""
    out = {}
    for key, typ in STORY_KEYS.items():
        value = req.get(key)
        if value is None:
            continue
        if not isinstance(value, typ) or isinstance(value, bool):
            raise StorybotError(f'"{key}" must be a number, not {value!r:.40}')
        out[key] = value
    return out


def prompt_of(req: Mapping[str, Any]) -> str:
    prompt = req.get("prompt", "")
    if not isinstance(prompt, str):
        raise StorybotError('"prompt" must be a string')
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise StorybotError('"prompt" is not valid text (it has a lone UTF-16 surrogate)') from None
    return prompt


class Commands:
    """All control connections, in the main thread. Nothing a client sends or fails to
    send may end the robot or keep another client waiting: every exception from a
    request becomes one error line to that client."""

    def __init__(self, server: control.Server, loop: EventLoop, log: logging.Logger, submit: Callable[[Job], None],
                 stop: Callable[[bool], Stopped], status: Callable[[], Event]) -> None:
        self.server = server
        self.loop = loop
        self.log = log
        self.submit = submit
        self.stop = stop
        self.status = status
        self.clients: Dict[int, control.Client] = {}   # by file descriptor
        self._busy_logged = 0.0

    def start(self) -> None:
        self.loop.register(self.server.sock, self._on_accept)

    def _on_accept(self, sock: Any) -> None:
        now = time.monotonic()
        # at most a backlog's worth per event, so a flood cannot keep the loop here
        for client in itertools.islice(self.server.accept(self.loop.wake), control.BACKLOG):
            if len(self.clients) >= MAX_CLIENTS and not self._evict(now):
                if now - self._busy_logged > 10:
                    self._busy_logged = now
                    self.log.warning("control: %d connections open; new ones are told the robot is busy", len(self.clients))
                control.refuse(client.sock, BUSY.format(n=len(self.clients)))
                continue
            self.clients[client.fileno()] = client
            self._update(client, now)

    def _evict(self, now: float) -> bool:
        """Drops the connection that has been silent longest, if it is silent enough."""
        silent = [c for c in self.clients.values() if not c.answered]
        oldest = min(silent, key=lambda c: c.opened, default=None)
        if oldest is None or now - oldest.opened < EVICT_AFTER:
            return False
        self._refuse(oldest, f"no request after {now - oldest.opened:.0f} s, and others are waiting; send the request at once")
        self._forget(oldest)
        return True

    def _on_event(self, sock: Any) -> None:
        client = self.clients.get(sock.fileno())
        if client is None or client.sock is not sock:
            self.loop.unregister(sock)
            return
        try:
            if not client.answered:
                self._read(client)
            client.flush()
        except Exception as e:  # noqa: BLE001 - a bug answers one client, never ends the robot
            self.log.error("control: a request failed: %s: %s", type(e).__name__, e)
            self.log.debug("control: the failure", exc_info=True)
            self._refuse(client, "the robot could not answer this request; see its log")
        self._update(client, time.monotonic())

    def _read(self, client: control.Client) -> None:
        try:
            req = client.read_request()
        except ValueError as e:
            self.log.warning("control: %s", e)
            self._refuse(client, str(e))
            return
        if req is None:
            return
        try:
            self._dispatch(client, req)
        except StorybotError as e:
            self._refuse(client, str(e))

    def _refuse(self, client: control.Client, message: str) -> None:
        client.send({"event": "error", "message": message})
        client.close()

    def _update(self, client: control.Client, now: float) -> None:
        """Closes a finished client, or watches its socket for what it waits for."""
        if client.done(now):
            self._forget(client)
            return
        if client.wants_write:
            want = selectors.EVENT_WRITE
        else:
            want = 0 if client.answered else selectors.EVENT_READ  # an answered one waits for its story
        if want == client.watching:
            return
        if want:
            self.loop.watch(client.sock, want, self._on_event)
        else:
            self.loop.unregister(client.sock)
        client.watching = want

    def _forget(self, client: control.Client) -> None:
        if self.clients.get(client.fileno()) is client:
            del self.clients[client.fileno()]
        self.loop.unregister(client.sock)
        client.shut()

    def _dispatch(self, client: control.Client, req: Mapping[str, Any]) -> None:
        cmd = req["cmd"]
        if cmd == "ask":
            prompt = prompt_of(req)
            overrides = story_overrides(req)
            # without wait the queue closes the client once it has said "queued" (or why not)
            self.submit(Job(prompt, "socket", client, overrides, wait=req.get("wait", True) is not False))
        elif cmd == "stop":
            done = self.stop(bool(req.get("all")))
            client.send({"event": "stopped", "story": done.story, "dropped": done.dropped})
            client.close()
        elif cmd == "status":
            client.send(self.status())
            client.close()
        else:
            raise StorybotError(f"unknown command {cmd!r:.40}; the robot understands ask, stop and status")

    def service(self, now: float) -> None:
        """Each pass of the main loop: drops clients that sent no request in time, writes
        out replies the story worker queued, closes the finished ones."""
        for client in list(self.clients.values()):
            if not client.answered and now - client.opened > control.REQUEST_TIMEOUT:
                self.log.warning("dropped a control client that sent no request in %g s", control.REQUEST_TIMEOUT)
                self._refuse(client, f"no request in {control.REQUEST_TIMEOUT:g} s")
            self._update(client, now)

    def close(self) -> None:
        for client in list(self.clients.values()):
            client.flush()  # the last events (shutdown) go out if the socket takes them
            self._forget(client)
