"""Log lines for a robot nobody watches: one plain line per event on stderr, tagged with
its level, which journald (or the BusyBox script's log file) keeps.

    2025-03-01T08:00:00 INFO story 3 ended: 212 tokens, 41.2 tok/s, stop=steps

Under journald the line also starts with the kernel-style "<6>" priority prefix so that
`journalctl -p warning` filters by level. A child's prompt and the story told are
private: they appear only when [daemon] log_story_text is true, at any level."""
from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from typing import Any, Dict, Optional, TextIO

from robot import textlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SYSLOG = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
NAME = "storybot"


def is_journal(stream: Any) -> bool:
    """True when `stream` is connected to journald ($JOURNAL_STREAM is "device:inode"
    of the stream systemd set up; a redirect in between changes the inode)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    if not value or ":" not in value:
        return False
    try:
        st = os.fstat(stream.fileno())
        dev, ino = value.split(":", 1)
        return st.st_dev == int(dev) and st.st_ino == int(ino)
    except (OSError, ValueError, AttributeError):
        return False


class _Format(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname
        if self.journal:
            prefix = f"<{_SYSLOG.get(record.levelno, 6)}>{level} "
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
            prefix = f"{stamp} {level} "
        lines = record.getMessage().splitlines() or [""]
        if record.exc_info:
            lines += "".join(traceback.format_exception(*record.exc_info)).rstrip().splitlines()
        # every line carries the tag, so a traceback keeps its level in the journal
        return "\n".join(prefix + line for line in lines)


class _Flushing(logging.StreamHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        # a closed stderr must not turn a log line into a crash
        pass


_state: Dict[str, Any] = {"handler": None}


def setup(level: str = "info", story_text: bool = False, stream: Optional[TextIO] = None) -> logging.Logger:
    """The 'storybot' logger writing to `stream` (stderr by default)."""
    log = logging.getLogger(NAME)
    stream = sys.stderr if stream is None else stream
    if _state["handler"] is not None:
        log.removeHandler(_state["handler"])
    handler = _Flushing(stream)
    handler.setFormatter(_Format(is_journal(stream)))
    log.addHandler(handler)
    log.propagate = False
    _state["handler"] = handler
    configure(level, story_text)
    return log


def configure(level: str, story_text: bool) -> None:
    """Applies [daemon] log_level and log_story_text (at start and on SIGHUP)."""
    logging.getLogger(NAME).setLevel(LEVELS[level])
    textlog.configure(story_text)


def refused(error: BaseException) -> int:
    """A robot that will not start (a bad config, a missing model) says why as one log
    line with its time and level like every other, so the BusyBox script's log file and
    the journal date it; returns the exit status (2)."""
    if _state["handler"] is None:
        setup()
    logging.getLogger(NAME).error("cannot start: %s", error)
    return getattr(error, "exit_code", 2)


story_text_enabled = textlog.enabled
story_text = textlog.story_text
