"""The control socket: how `storybot ask / stop / status` talk to a running robot.

A Unix stream socket; the client sends one JSON object on one line
({"cmd": "ask", "prompt": "..."}), the robot answers with JSON lines (for ask: "queued",
"started", one "token" per token, "summary"; the schema is in docs/service.md) and closes. Access is the file's permissions
(owner and group only, set at bind time so there is no moment when others could
connect) and, behind them, the peer's credentials (SO_PEERCRED), so a socket that
somebody chmods open still refuses strangers."""
from __future__ import annotations

import grp
import logging
import json
import os
import re
import socket
import stat
import struct
import threading
import time
from typing import Any, Callable, Dict, Iterator, Optional, Set, Tuple

from robot.errors import StorybotError

MAX_REQUEST = 16384      # bytes in one request line; a prompt is a sentence, not a book
MAX_DEPTH = 4            # nesting in a request ({"cmd": ...} is 1); deeper is refused before parsing
MAX_OUTPUT = 1 << 20     # bytes waiting for a client that does not read; more and it is dropped
SEND_TIMEOUT = 5.0       # a client that stops reading this long is dropped, the story goes on
REQUEST_TIMEOUT = 10.0   # a client that connects and says nothing is dropped
BACKLOG = 128            # connections the kernel holds before accept(); a full one refuses connect()

_SPECIAL = re.compile(r'[\[\]{}"\\]')


def nesting(text: str) -> int:
    """How deep the brackets of a JSON text nest (outside strings), in one linear pass:
    json's parser recurses once per level and would hit the recursion limit first."""
    depth = deepest = 0
    in_string = False
    skip = -1  # the position an escaping backslash covers
    for m in _SPECIAL.finditer(text):
        c, at = m.group(), m.start()
        if at == skip:
            continue
        if in_string:
            if c == "\\":
                skip = at + 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a request may carry")


def parse_request(line: bytes) -> Dict[str, Any]:
    """One request line as a dict; ValueError with the sentence for the client otherwise."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("request is not a line of JSON") from None
    if nesting(text) > MAX_DEPTH:
        raise ValueError(f"request nests deeper than {MAX_DEPTH} levels; send one flat JSON object")
    try:
        req = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise ValueError("request is not a line of JSON") from None
    if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
        raise ValueError('request must be a JSON object with a "cmd"')
    return req


def line(obj: Dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8", "replace")


def refuse(sock: socket.socket, message: str) -> None:
    """One error line to a connection that will not be served, then closes it (never blocks)."""
    try:
        sock.setblocking(False)
        sock.send(line({"event": "error", "message": message}))
    except OSError:
        pass
    sock.close()


def group_id(name: str) -> int:
    if name == "":
        return os.getegid()
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise StorybotError(f"[daemon] socket_group names the group {name!r}, which does not exist; create it or leave the key empty") from None


def peer_groups(pid: int, gid: int) -> Optional[Set[int]]:
    """The peer's primary and supplementary groups (SO_PEERCRED carries only the primary
    one), or None when /proc does not show them (hidepid, systemd's ProtectProc=)."""
    groups = {gid}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Groups:"):
                    groups.update(int(g) for g in line.split()[1:])
                    return groups
    except (OSError, ValueError):
        pass
    return None


class Client:
    """One accepted connection, non-blocking throughout, so no client can hold up the
    robot. The main loop reads the request; whoever serves it (the story worker, for
    ask) queues replies with send(), from any thread. What the socket cannot take at
    once waits in a buffer the main loop writes out when the client reads; only the
    main loop closes the socket (close() asks it to, once the replies are out)."""

    def __init__(self, sock: socket.socket, peer: Tuple[int, int, int], wake: Callable[[], None]) -> None:
        self.sock = sock
        self.peer = peer  # (pid, uid, gid)
        self.wake = wake  # pokes the main loop
        self.inbuf = b""
        self.opened = time.monotonic()
        self.answered = False               # its request has been read (main loop only)
        self.watching = 0                   # the selector events the main loop waits for
        self.out = bytearray()
        self.blocked_at: Optional[float] = None  # since when the socket takes nothing more
        self.closing = False
        self.dead = False
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_request(self) -> Optional[Dict[str, Any]]:
        """The request dict once a whole line has arrived, None while it is incomplete.
        Raises ValueError for something that is not a request."""
        try:
            data = self.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as e:
            raise ValueError(f"connection failed: {e}") from None
        if not data:
            raise ValueError("client closed the connection before sending a request")
        self.inbuf += data
        end = self.inbuf.find(b"\n")
        if end < 0 and len(self.inbuf) <= MAX_REQUEST:
            return None
        if end < 0 or end > MAX_REQUEST:
            raise ValueError(f"request longer than {MAX_REQUEST} bytes")
        self.answered = True
        return parse_request(self.inbuf[:end])

    def send(self, obj: Dict[str, Any]) -> bool:
        """Queues one reply line and writes what the socket takes now (any thread)."""
        data = line(obj)
        with self._lock:
            if self.dead or self.closing:
                return False
            if len(self.out) + len(data) > MAX_OUTPUT:
                self.dead = True  # it stopped reading long ago; the main loop closes it
            else:
                self.out += data
                self._write()
            later = bool(self.out) or self.dead
        if later:
            self.wake()
        return not self.dead

    def _write(self) -> None:
        # caller holds the lock
        while self.out and not self.dead:
            try:
                n = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                if self.blocked_at is None:
                    self.blocked_at = time.monotonic()
                return
            except OSError:
                # a client that went away (Ctrl-C on `storybot ask`) does not stop the story
                self.dead = True
                return
            del self.out[:n]
            self.blocked_at = None

    def flush(self) -> None:
        """Writes what waits (main loop, when the socket is writable)."""
        with self._lock:
            self._write()

    def close(self) -> None:
        """No more replies: the main loop closes the socket once they are out (any thread)."""
        with self._lock:
            self.closing = True
        self.wake()

    @property
    def wants_write(self) -> bool:
        return bool(self.out) and not self.dead

    def done(self, now: float) -> bool:
        """True when the main loop may close it: finished, gone, or not reading for too long."""
        with self._lock:
            if self.blocked_at is not None and now - self.blocked_at > SEND_TIMEOUT:
                self.dead = True
            return self.dead or (self.closing and not self.out)

    def shut(self) -> None:
        """Closes the socket (main loop only)."""
        with self._lock:
            self.dead = True
            self.out.clear()
            try:
                self.sock.close()
            except OSError:
                pass


class Server:
    def __init__(self, path: str, mode: str, group: str, log: logging.Logger) -> None:
        self.path = path
        self.mode = int(mode, 8)
        self.gid = group_id(group)
        self.log = log
        self.sock: Optional[socket.socket] = None
        self._ino: Optional[int] = None

    def fileno(self) -> int:
        assert self.sock is not None
        return self.sock.fileno()

    def open(self) -> None:
        path = self.path
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            try:
                os.makedirs(parent, mode=0o750, exist_ok=True)
            except OSError as e:
                raise StorybotError(f"cannot create {parent} for the control socket ({e.strerror}); create it or set [daemon] socket to another path") from None
        self._remove_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        # bind creates the file with the process umask: narrow it so the socket is never
        # briefly open to others (no other thread runs yet when this is called)
        old = os.umask(0o777 & ~self.mode)
        try:
            sock.bind(path)
        except OSError as e:
            sock.close()
            raise StorybotError(f"cannot create the control socket {path} ({e.strerror}); fix the directory's permissions or set [daemon] socket") from None
        finally:
            os.umask(old)
        try:
            self.apply(self.mode, self.gid)
        except StorybotError:
            sock.close()
            os.unlink(path)
            raise
        sock.listen(BACKLOG)
        sock.setblocking(False)
        self.sock = sock
        self._ino = os.stat(path).st_ino

    def _remove_stale(self, path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise StorybotError(f"{path} exists and is not a socket; remove it or set [daemon] socket to another path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # left behind by a robot that crashed
            return
        except OSError as e:
            raise StorybotError(f"cannot check the existing control socket {path} ({e.strerror}); remove it or set [daemon] socket") from None
        finally:
            probe.close()
        raise StorybotError(f"another storybot is already serving on {path}; stop it first or set [daemon] socket to another path")

    def apply(self, mode: int, gid: int) -> None:
        """Sets the socket file's mode and group (at start and when SIGHUP changes them)."""
        try:
            os.chmod(self.path, mode)
            if gid != os.stat(self.path).st_gid:
                os.chown(self.path, -1, gid)
        except PermissionError:
            raise StorybotError(f"cannot give the control socket {self.path} group {gid}: only root or a member of that group can; fix [daemon] socket_group") from None
        self.mode, self.gid = mode, gid

    def allowed(self, peer: Tuple[int, int, int]) -> bool:
        pid, uid, gid = peer
        if uid == 0 or uid == os.geteuid():
            return True
        # the group needs write permission to connect to a Unix socket
        if not self.mode & 0o020:
            return False
        groups = peer_groups(pid, gid)
        if groups is not None:
            return self.gid in groups
        # the peer's groups are hidden from us; the kernel checked them against the file
        # at connect(), which is enough while the file is not open to others
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return gid == self.gid or (st.st_gid == self.gid and not st.st_mode & 0o007)

    def accept(self, wake: Callable[[], None]) -> Iterator[Client]:
        """The pending connections as Clients (peers that are not allowed are refused)."""
        assert self.sock is not None, "accept() before open()"
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # EMFILE and friends: the next event retries; the log says why
                self.log.warning("control socket accept failed: %s", e)
                return
            try:
                conn.setblocking(False)
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            except OSError as e:
                self.log.warning("control: a connection failed as it was accepted: %s", e)
                conn.close()
                continue
            peer = struct.unpack("3i", creds)
            if not self.allowed(peer):
                self.log.warning("refused a control connection from uid %d (pid %d): not the robot's user, root, or in its socket group", peer[1], peer[0])
                refuse(conn, "permission denied: this user may not control the robot")
                continue
            yield Client(conn, peer, wake)

    def close(self) -> None:
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        try:
            # only remove the file if it is still ours (a second robot may have replaced it)
            if os.stat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        except OSError:
            pass
