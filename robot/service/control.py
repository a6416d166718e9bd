"""The control socket: how `storybot ask / stop / status` talk to a running robot.

A Unix stream socket; the client sends one JSON object on one line
({"cmd": "ask", "prompt": "..."}), the robot answers with JSON lines (for ask: "queued",
"start", one "token" per token, "end") and closes. Access is the file's permissions
(owner and group only, set at bind time so there is no moment when others could
connect) and, behind them, the peer's credentials (SO_PEERCRED), so a socket that
somebody chmods open still refuses strangers."""
from __future__ import annotations

import grp
import logging
import json
import os
import socket
import stat
import struct
import threading
import time
from typing import Any, Dict, Optional, Set, Tuple

from robot.errors import StorybotError

MAX_REQUEST = 16384      # bytes in one request line; a prompt is a sentence, not a book
SEND_TIMEOUT = 5.0       # a client that stops reading is dropped, the story goes on
REQUEST_TIMEOUT = 10.0   # a client that connects and says nothing is dropped


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
    """One accepted connection. The main loop reads the request; whoever serves it
    (the story worker, for ask) writes the replies."""

    def __init__(self, sock: socket.socket, peer: Tuple[int, int, int]) -> None:
        self.sock = sock
        self.peer = peer  # (pid, uid, gid)
        self.buf = b""
        self.opened = time.monotonic()
        self.dead = False
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_request(self) -> Optional[Dict[str, Any]]:
        """The request dict once a whole line has arrived, None while it is incomplete.
        Raises ValueError for something that is not a request."""
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return None
        except OSError as e:
            raise ValueError(f"connection failed: {e}") from None
        if not data:
            raise ValueError("client closed the connection before sending a request")
        self.buf += data
        if b"\n" not in self.buf:
            if len(self.buf) > MAX_REQUEST:
                raise ValueError(f"request longer than {MAX_REQUEST} bytes")
            return None
        line = self.buf.split(b"\n", 1)[0]
        try:
            req = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("request is not a line of JSON") from None
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            raise ValueError('request must be a JSON object with a "cmd"')
        self.sock.setblocking(True)
        self.sock.settimeout(SEND_TIMEOUT)
        return req

    def send(self, obj: Dict[str, Any]) -> bool:
        if self.dead:
            return False
        data = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                # a client that went away (Ctrl-C on `storybot ask`) does not stop the story
                self.dead = True
                return False

    def close(self) -> None:
        self.dead = True
        with self._lock:
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
        sock.listen(16)
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

    def accept(self) -> Optional[Client]:
        """A Client, or None (nothing pending, or a peer that was refused)."""
        assert self.sock is not None, "accept() before open()"
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as e:
            self.log.warning("control socket accept failed: %s", e)
            return None
        conn.setblocking(False)
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        peer = struct.unpack("3i", creds)
        client = Client(conn, peer)
        if not self.allowed(peer):
            self.log.warning("refused a control connection from uid %d (pid %d): not the robot's user, root, or in its socket group", peer[1], peer[0])
            conn.setblocking(True)
            client.send({"event": "error", "message": "permission denied: this user may not control the robot"})
            client.close()
            return None
        return client

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
