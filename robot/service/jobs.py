"""Prompts on their way to becoming stories: the Job, the events a job's client hears,
and the queue the story worker takes jobs from.

[daemon] on_new_prompt decides what a new prompt does while a story runs: "interrupt"
(the new one replaces the running story and anything waiting) or "queue" (it waits its
turn, up to [daemon] queue_max)."""
from __future__ import annotations

import collections
import itertools
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

from robot.service import logs
from robot.words import count

Event = Dict[str, Any]   # one JSON line to a control client
_ids = itertools.count(1)


def end_event(job_id: int, stop: Optional[str], tokens: int = 0) -> Event:
    """The summary of a story that was never told to its end (dropped, shut down)."""
    return {"event": "summary", "story": job_id, "stop": stop, "tokens": tokens}


@dataclass
class Job:
    """One prompt on its way to becoming a story."""

    prompt: str
    source: str                      # stdin, mic, socket, reply
    client: Any = None               # control.Client that hears the events, or None
    overrides: Mapping[str, Any] = field(default_factory=dict)  # the request's steps/temperature/topp/seed
    say: bool = False                # speak the text as it is (a reply), no story
    wait: bool = True                # the client hears the story; False: only "queued" (or why not)
    id: int = field(default_factory=lambda: next(_ids))
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: Optional[str] = None     # why it was stopped: interrupted, stopped, shutdown, crash
    speaking: bool = False
    tokens: int = 0
    started: Optional[float] = None  # time.monotonic() when the story started

    def emit(self, event: Event) -> None:
        if self.client is not None:
            self.client.send(event)

    def finish(self, event: Event) -> None:
        self.emit(event)
        if self.client is not None:
            self.client.close()
            self.client = None


class Stopped(NamedTuple):
    """What a stop did: the story it stopped (None: nothing ran) and the waiting ones dropped."""

    story: Optional[int]
    dropped: List[int]


@dataclass(frozen=True)
class QueuePolicy:
    on_new_prompt: str = "interrupt"
    queue_max: int = 8

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> QueuePolicy:
        d = cfg["daemon"]
        return cls(d["on_new_prompt"], d["queue_max"])


class JobQueue:
    """The waiting jobs and the running one, behind one condition variable (which also
    orders a cancel against the speaker starting; see cancel())."""

    def __init__(self, policy: QueuePolicy, log: logging.Logger, speaker: Any = None) -> None:
        self.policy = policy
        self.log = log
        self.speaker = speaker       # the speaker a cancel must silence
        self.cond = threading.Condition()
        self.pending: Deque[Job] = collections.deque()
        self.current: Optional[Job] = None
        self.stopping = False

    def snapshot(self) -> Tuple[Optional[Job], int]:
        with self.cond:
            return self.current, len(self.pending)

    def submit(self, job: Job) -> None:
        """Queues a job (from any thread); in interrupt mode it replaces whatever runs."""
        dropped: List[Job] = []
        with self.cond:
            if self.stopping:
                job.finish(end_event(job.id, "shutdown"))
                return
            if self.policy.on_new_prompt == "interrupt":
                dropped = self._drain()
                if self.current is not None:
                    self.cancel(self.current, "interrupted")
            elif len(self.pending) >= self.policy.queue_max:
                self.log.warning("prompt from %s refused: %s already waiting ([daemon] queue_max)", job.source, count(len(self.pending), "story"))
                job.finish({"event": "error", "message": f"the robot already has {count(len(self.pending), 'story')} waiting; try again later"})
                return
            ahead = len(self.pending) + (self.current is not None)
            self.log.info("prompt %d from %s (%d characters, %d ahead)", job.id, job.source, len(job.prompt), ahead)
            logs.story_text(self.log, f"prompt {job.id}", job.prompt)
            # sent before the worker can see the job, so "queued" always precedes "started"
            job.emit({"event": "queued", "story": job.id, "ahead": ahead})
            if not job.wait and job.client is not None:
                job.client.close()
                job.client = None
            self.pending.append(job)
            self.cond.notify()
        for old in dropped:
            self.log.info("story %d dropped: replaced by prompt %d", old.id, job.id)
            old.finish(end_event(old.id, "replaced"))

    def _drain(self) -> List[Job]:
        dropped = list(self.pending)
        self.pending.clear()
        return dropped

    def cancel(self, job: Job, reason: str) -> None:
        # caller holds self.cond, which also orders this against speaker.begin()
        if job.reason is None:
            job.reason = reason
        job.cancel.set()
        if job.speaking and self.speaker is not None:
            self.speaker.cancel()

    def stop(self, drop_queue: bool = False) -> Stopped:
        """Stops the running story (and with drop_queue the waiting ones): (its id, dropped ids)."""
        with self.cond:
            job = self.current
            dropped = self._drain() if drop_queue else []
            if job is not None:
                self.cancel(job, "stopped")
        for old in dropped:
            old.finish(end_event(old.id, "stopped"))
        if job is not None or dropped:
            self.log.info("stop requested: story %s stopped, %d queued dropped", job.id if job else "-", len(dropped))
        return Stopped(job.id if job else None, [j.id for j in dropped])

    def close(self, reason: str) -> List[Job]:
        """No more jobs: cancels the running one, returns the waiting ones (not finished)."""
        with self.cond:
            self.stopping = True
            dropped = self._drain()
            if self.current is not None:
                self.cancel(self.current, reason)
            self.cond.notify_all()
        return dropped

    def jobs(self) -> Iterator[Job]:
        """The worker's side: each next job, marked as running, until the queue closes."""
        while True:
            with self.cond:
                while not self.pending and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    return
                job = self.pending.popleft()
                self.current = job
            yield job

    def done(self) -> None:
        with self.cond:
            self.current = None
