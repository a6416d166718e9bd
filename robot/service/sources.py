"""Where prompts come from besides the control socket: standard input (one prompt per
line) and the microphone (push-to-talk). Each source is a daemon thread that hands
Jobs to `submit`; the control socket is served by the main loop (control.py)."""
from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Mapping, Optional

from robot.errors import StorybotError
from robot.service.jobs import Job

Submit = Callable[[Job], None]


class StdinSource:
    """Each non-empty line on standard input is a prompt."""

    name = "stdin"

    def __init__(self, submit: Submit, log: logging.Logger) -> None:
        self.submit = submit
        self.log = log
        self.thread = threading.Thread(target=self._run, name="stdin", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        # os.read, not sys.stdin: a thread parked in a buffered read holds the buffer's
        # lock, and the interpreter aborts at exit when it cannot take that lock
        pending = b""
        while True:
            try:
                data = os.read(0, 4096)
            except OSError as e:
                self.log.warning("stdin failed (%s); prompts still come from the other sources", e)
                return
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                self._line(raw)
        if pending:
            self._line(pending)
        self.log.debug("stdin closed; prompts now come from the other sources")

    def _line(self, raw: bytes) -> None:
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.log.warning("a line on stdin is not valid UTF-8; ignored (fix the terminal's encoding)")
            return
        if line:
            self.submit(Job(line, "stdin"))

    def close(self) -> None:
        pass  # a daemon thread blocked in read() ends with the process


class MicSource:
    """Push-to-talk through robot.speech.listen: each recognised utterance is a prompt."""

    name = "mic"

    def __init__(self, submit: Submit, log: logging.Logger, listener: Any) -> None:
        self.submit = submit
        self.log = log
        self.listener = listener
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mic", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.closed.is_set():
            try:
                text = self.listener.listen()
            except StorybotError as e:
                if self.closed.is_set():
                    return
                self.log.error("microphone: %s", e)
                self.closed.wait(5.0)  # a broken device must not spin the CPU
                continue
            if text is None:  # the trigger was closed
                self.log.debug("microphone trigger closed")
                return
            text = text.strip()
            if text:
                self.submit(Job(text, "mic"))

    def close(self) -> None:
        self.closed.set()
        try:
            self.listener.close()
        except Exception as e:  # noqa: BLE001 - shutting down; record and go on
            self.log.warning("microphone did not close cleanly: %s", e)


def open_listener(cfg: Mapping[str, Any], log: logging.Logger) -> Optional[Any]:
    """speech_in's push-to-talk listener, or None (with a logged reason). Called from the
    main thread: a "signal" trigger installs its handler there."""
    try:
        from robot.speech import listen as speech_in
    except ImportError:
        log.warning("[speech_in] enabled is true but speech input is not installed in this build; no microphone prompts")
        return None
    return speech_in.open_listener(cfg)  # None after logging why
