"""Tells systemd how the robot is doing (sd_notify protocol) with the socket module alone.

systemd passes a datagram socket in $NOTIFY_SOCKET to a Type=notify service; each
datagram is newline-separated VAR=value lines (READY=1, STATUS=..., WATCHDOG=1,
RELOADING=1, STOPPING=1). Linking libsystemd for that would cost a dependency the
BusyBox image does not have, and without $NOTIFY_SOCKET every call is a no-op, so the
same daemon runs under systemd, BusyBox init or a terminal."""
from __future__ import annotations

import os
import socket
import time
from typing import Any, Mapping, Optional

from robot.service import readyfile

_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", readyfile.ENV)


def _address(value: str) -> str:
    # "@name" is Linux's abstract namespace, spelled with a leading NUL on the wire
    if value.startswith("@"):
        return "\0" + value[1:]
    return value


def watchdog_seconds(env: Mapping[str, str]) -> Optional[float]:
    """Seconds systemd allows between WATCHDOG=1 pings, or None when no watchdog is
    set for this process (WATCHDOG_PID names another process, e.g. after a fork)."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None
    try:
        n = int(usec)
    except ValueError:
        return None
    return n / 1e6 if n > 0 else None


class Notifier:
    def __init__(self, env: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.watchdog = watchdog_seconds(env)
        self._addr = _address(addr) if addr else None
        self._sock: Optional[socket.socket] = None
        self._ready_file = env.get(readyfile.ENV, "")  # the BusyBox script's readiness file
        self.errors = 0
        if self._addr:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        if env is os.environ:
            # speech helpers (espeak, aplay) are children: they must not speak for us
            for name in _ENV:
                os.environ.pop(name, None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: Any) -> bool:
        """send(READY=1, STATUS="telling a story"); returns False if nothing was sent."""
        if self._sock is None or self._addr is None:
            return False
        lines = []
        for key, value in fields.items():
            # one datagram line per field: a newline inside STATUS would start a new field
            text = str(value).replace("\n", " ")
            lines.append(f"{key}={text}")
        try:
            self._sock.sendto("\n".join(lines).encode("utf-8", "replace"), self._addr)
        except OSError:
            # systemd going away (shutdown, daemon-reexec) must never take the robot down
            self.errors += 1
            return False
        return True

    def ready(self, status: Optional[str] = None) -> bool:
        readyfile.mark(self._ready_file)
        return self.send(READY=1, **({"STATUS": status} if status else {}))

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def ping(self) -> bool:
        return self.send(WATCHDOG=1)

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload to this message
        return self.send(RELOADING=1, MONOTONIC_USEC=int(time.monotonic() * 1e6))

    def stopping(self, status: Optional[str] = None) -> bool:
        return self.send(STOPPING=1, **({"STATUS": status} if status else {}))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
