"""The main thread's event loop: one selector over the control socket, its clients, a
wake-up pipe (other threads poke it) and the signal pipe.

Signal handlers only have to exist: signal.set_wakeup_fd writes each signal's number to
a pipe the loop reads, so SIGTERM, SIGINT and SIGHUP are handled between two events in
the main thread, never inside whatever the interrupted code was doing."""
from __future__ import annotations

import os
import selectors
import signal
from typing import Any, Callable, Set

Handler = Callable[[Any], None]
QUIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class EventLoop:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.running = True
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sig_r, self._sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def install_signals(self) -> None:
        signal.set_wakeup_fd(self._sig_w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            # the handler only has to exist: the wakeup fd carries the signal to the loop
            signal.signal(sig, lambda *_: None)

    def pending_signals(self) -> Set[int]:
        """Signal numbers that arrived since the last call (each at most once)."""
        try:
            data = os.read(self._sig_r, 512)
        except BlockingIOError:
            data = b""
        return set(data)

    def register(self, fileobj: Any, handler: Handler) -> None:
        self.sel.register(fileobj, selectors.EVENT_READ, handler)

    def watch(self, fileobj: Any, events: int, handler: Handler) -> None:
        """Calls handler when fileobj is ready for `events` (registered or changed)."""
        try:
            self.sel.modify(fileobj, events, handler)
        except KeyError:
            self.sel.register(fileobj, events, handler)

    def unregister(self, fileobj: Any) -> None:
        try:
            self.sel.unregister(fileobj)
        except (KeyError, ValueError):
            pass  # not registered (or already closed)

    def run(self, on_signals: Callable[[Set[int]], None], tick: float, each: Callable[[], None]) -> None:
        """Until stop(): dispatches ready files, hands signals to on_signals and calls
        `each` at least every `tick` seconds (the watchdog and the status line)."""
        self.register(self._sig_r, lambda fd: on_signals(self.pending_signals()))
        self.register(self._wake_r, self._drain)
        while self.running:
            for key, _ in self.sel.select(tick):
                key.data(key.fileobj)
            each()

    def _drain(self, fd: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass

    def wake(self) -> None:
        """Makes select() return now (from any thread)."""
        try:
            os.write(self._wake_w, b"w")
        except (BlockingIOError, OSError):
            pass  # a full pipe already guarantees a wake-up

    def stop(self) -> None:
        self.running = False
