"""The robot's side of the control protocol (docs/service.md): accepts connections on
the control socket, reads each client's one request line in the main loop and answers
ask, stop and status. An ask's client is handed to its Job: the story worker writes
its events."""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Mapping, Tuple

from robot.errors import StorybotError
from robot.service import control
from robot.service.jobs import Event, Job, Stopped
from robot.service.loop import EventLoop

# request key -> accepted JSON types (bool is refused even though it is an int)
STORY_KEYS: Dict[str, Tuple[type, ...]] = {"steps": (int,), "temperature": (int, float), "topp": (int, float), "seed": (int,)}
MAX_WAITING_CLIENTS = 32


def story_overrides(req: Mapping[str, Any]) -> Dict[str, Any]:
    """The request's steps / temperature / topp / seed, type-checked."""
    out = {}
    for key, typ in STORY_KEYS.items():
        value = req.get(key)
        if value is None:
            continue
        if not isinstance(value, typ) or isinstance(value, bool):
            raise StorybotError(f'"{key}" must be a number, not {value!r}')
        out[key] = value
    return out


class Commands:
    def __init__(self, server: control.Server, loop: EventLoop, log: logging.Logger, submit: Callable[[Job], None],
                 stop: Callable[[bool], Stopped], status: Callable[[], Event]) -> None:
        self.server = server
        self.loop = loop
        self.log = log
        self.submit = submit
        self.stop = stop
        self.status = status
        self.clients: Dict[int, control.Client] = {}

    def start(self) -> None:
        self.loop.register(self.server.sock, self._on_accept)

    def _on_accept(self, sock: Any) -> None:
        client = self.server.accept()
        if client is None:
            return
        if len(self.clients) >= MAX_WAITING_CLIENTS:
            self.log.warning("too many control connections waiting; refused one")
            client.close()
            return
        self.clients[client.fileno()] = client
        self.loop.register(client.sock, self._on_client)

    def _forget(self, client: control.Client) -> None:
        if self.clients.pop(client.fileno(), None) is not None:
            self.loop.unregister(client.sock)

    def _on_client(self, sock: Any) -> None:
        client = self.clients[sock.fileno()]
        try:
            req = client.read_request()
        except ValueError as e:
            self._forget(client)
            self.log.warning("control: %s", e)
            client.sock.setblocking(True)
            client.send({"event": "error", "message": str(e)})
            client.close()
            return
        if req is None:
            return
        self._forget(client)
        try:
            self._dispatch(client, req)
        except StorybotError as e:
            client.send({"event": "error", "message": str(e)})
            client.close()

    def _dispatch(self, client: control.Client, req: Mapping[str, Any]) -> None:
        cmd = req["cmd"]
        if cmd == "ask":
            prompt = req.get("prompt", "")
            if not isinstance(prompt, str):
                raise StorybotError('"prompt" must be a string')
            overrides = story_overrides(req)
            wait = req.get("wait", True) is not False
            job = Job(prompt, "socket", client if wait else None, overrides)
            if not wait:
                client.send({"event": "queued", "id": job.id})
                client.close()
            self.submit(job)
        elif cmd == "stop":
            done = self.stop(bool(req.get("all")))
            client.send({"event": "stopped", "story": done.story, "dropped": done.dropped})
            client.close()
        elif cmd == "status":
            client.send(self.status())
            client.close()
        else:
            raise StorybotError(f"unknown command {cmd!r}; the robot understands ask, stop and status")

    def drop_silent(self, now: float) -> None:
        """Closes clients that connected but sent no request in time."""
        for client in list(self.clients.values()):
            if now - client.opened > control.REQUEST_TIMEOUT:
                self.log.warning("dropped a control client that sent no request in %g s", control.REQUEST_TIMEOUT)
                self._forget(client)
                client.close()

    def close(self) -> None:
        for client in list(self.clients.values()):
            client.close()
        self.clients.clear()
