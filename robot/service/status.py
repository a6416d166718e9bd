"""The robot's status answer (`storybot status`, the "status" control command): what it
is doing, what it has done, the model, the voice and the memory it uses."""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Dict, Optional

from robot import procinfo
from robot.service.jobs import Event

if TYPE_CHECKING:
    from robot.service.daemon import Robot

_SPEECH_KEYS = ("backend", "voice", "rate", "pitch", "volume", "device")


def report(robot: Robot) -> Event:
    job, queued = robot.queue.snapshot()
    n = robot.worker.counters if robot.worker else None
    story_now: Optional[Dict[str, Any]] = None
    if job is not None:
        story_now = {"id": job.id, "source": job.source, "tokens": job.tokens,
                     "seconds": round(time.monotonic() - job.started, 3) if job.started else 0.0}
    mem = procinfo.memory()
    return {
        "event": "status",
        "pid": os.getpid(),
        "state": "stopping" if robot.queue.stopping else ("telling" if job else "idle"),
        "status": robot.status_line(),
        "uptime_s": round(time.monotonic() - robot.t0, 1),
        "story": story_now,
        "queued": queued,
        "stories_told": n.told if n else 0,
        "errors": n.errors if n else 0,
        "tokens": n.tokens if n else 0,
        "on_new_prompt": robot.cfg["daemon"]["on_new_prompt"],
        "sources": [s.name for s in robot.sources] + (["socket"] if robot.server else []),
        "model": model(robot),
        "speech": speech(robot),
        "config_files": robot.files,
        "reloads": robot.reloads,
        "rss_kb": mem.rss_kb,
        "peak_rss_kb": max(mem.peak_kb, mem.rss_kb),  # VmHWM lags VmRSS just after growth
    }


def model(robot: Robot) -> Dict[str, Any]:
    m = robot.model
    if m is None:  # its file changed and could not be opened again; the next story retries
        files = robot.models.files if robot.models else None
        return {"file": os.path.basename(files.model) if files else "-", "format": "-", "kernel": "-",
                "dim": 0, "layers": 0, "context": 0, "loaded": False}
    c = m.config
    return {"file": os.path.basename(m.path), "format": c.format, "kernel": m.kernel, "dim": c.dim,
            "layers": c.n_layers, "context": c.seq_len, "loaded": True}


def speech(robot: Robot) -> Dict[str, Any]:
    s = robot.cfg["speech_out"]
    out: Dict[str, Any] = {"on": robot.speaker is not None}
    out.update({k: s[k] for k in _SPEECH_KEYS})
    settings = getattr(robot.speaker, "settings", None)
    if callable(settings):
        out.update(settings())  # what the voice really uses, when the speaker can say
    return out
