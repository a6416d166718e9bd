"""The story thread: takes one job at a time from the queue and tells it with
robot.story's token loop, the text to the job's client (and to stdout when that is
not the journal), the sentences to the speaker.

The kernel releases the GIL, so the main thread stays responsive; a cancel takes
effect between two tokens. Progress marks let the main thread tell a slow story from a
kernel step that never returns (see Robot._check_stall)."""
from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional

from robot import story
from robot.errors import StorybotError
from robot.service import logs
from robot.service.jobs import Event, Job, JobQueue, end_event
from robot.service.modelwatch import WatchedModel

# the speaker's per-story figures worth sending with each story (not per-sentence records)
SPEECH_STATS = ("backend", "voice", "output", "sentences_total", "audio_s", "tts_ms", "first_sound_s",
                "feed_blocked_s", "cancelled", "cancel_ms", "errors")


@dataclass
class Counters:
    told: int = 0
    errors: int = 0
    tokens: int = 0


class Progress:
    """When the story thread last moved, and whether it is inside a kernel step."""

    def __init__(self) -> None:
        self.at = time.monotonic()
        self.in_kernel = False

    def beat(self, in_kernel: bool) -> None:
        self.at = time.monotonic()
        self.in_kernel = in_kernel


class StoryWorker:
    def __init__(self, queue: JobQueue, models: WatchedModel, speaker: Any, log: logging.Logger, echo: bool,
                 settings: Callable[[Job, int], story.StorySettings], wake: Callable[[], None]) -> None:
        self.queue = queue
        self.models = models              # the model, opened again when its file changed
        self.speaker = speaker
        self.log = log
        self.echo = echo                  # story text to stdout (never into the journal)
        self.settings = settings          # the job's settings, merged over config and command line
        self.wake = wake
        self.counters = Counters()
        self.progress = Progress()
        self.crash: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="story", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, seconds: float) -> bool:
        """True when the thread ended in time."""
        self.thread.join(seconds)
        return not self.thread.is_alive()

    def _run(self) -> None:
        try:
            for job in self.queue.jobs():
                try:
                    last = self._say_only(job) if job.say else self._tell(job)
                except StorybotError as e:
                    self.counters.errors += 1
                    self.log.warning("story %d not told: %s", job.id, e)
                    last = {"event": "error", "story": job.id, "message": str(e)}
                # idle before the client hears the end, so its next status says so
                self.queue.done()
                self.wake()
                job.finish(last)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which logs it and exits 1
            self.crash = e
            self.wake()

    def _echo(self, text: str) -> None:
        if not self.echo or not text:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (OSError, ValueError):
            self.echo = False
            self.log.warning("standard output is closed; stories are no longer echoed there")

    def _begin_speech(self, job: Job, text: str) -> bool:
        # under the queue's lock: a cancel either comes first (no speech) or sees job.speaking
        with self.queue.cond:
            if self.speaker is not None and not job.cancel.is_set():
                self.speaker.begin(text)
                job.speaking = True
        return job.speaking

    def _say_only(self, job: Job) -> Event:
        if not self._begin_speech(job, job.prompt):
            return end_event(job.id, job.reason)
        try:
            if not job.cancel.is_set():
                self.speaker.end()
        finally:
            with self.queue.cond:
                job.speaking = False
        return end_event(job.id, "said")

    def _tell(self, job: Job) -> Event:
        model = self.models.current()
        s = self.settings(job, model.config.seq_len)
        gen = s.start(model, job.prompt)
        job.started = time.monotonic()
        self.log.info("story %d started: %d steps, temperature %g, top-p %g, seed %d", job.id, s.steps, s.temperature, s.topp, gen.seed)
        job.emit({"event": "started", "story": job.id, "seed": gen.seed, "steps": s.steps})
        speaking = self._begin_speech(job, job.prompt)
        self._echo(job.prompt)
        keep: Optional[List[str]] = [] if logs.story_text_enabled() else None

        def on_token(tok: Any) -> None:
            job.tokens = gen.n_generated
            if tok.text:
                self._echo(tok.text)
                job.emit({"event": "token", "story": job.id, "token": tok.id, "text": tok.text})
                if keep is not None:
                    keep.append(tok.text)

        def beat(in_kernel: bool) -> None:
            self.progress.beat(in_kernel)
            if in_kernel and self.models.rewritten():
                raise StorybotError(f"the model file {model.path} was changed in place while story {job.id} was told; "
                                    "the story ends here and the next one opens the file again "
                                    "(replace a model by renaming a new file over it)")

        try:
            told = story.tell(gen, on_token, self.speaker if speaking else None, job.cancel, beat)
        except BaseException:
            if speaking:
                self.speaker.cancel()  # a story that failed half-way is not finished aloud
            raise
        finally:
            with self.queue.cond:
                job.speaking = False
        self._echo("\n")
        return self._ended(job, told, keep)

    def _ended(self, job: Job, told: story.Told, keep: Optional[List[str]]) -> Event:
        stop = job.reason if told.cancelled else told.stop
        c = self.counters
        c.told += 1
        c.tokens += told.tokens
        end: Dict[str, Any] = {"event": "summary", "story": job.id, "tokens": told.tokens, "seconds": round(told.seconds, 4),
                               "tok_per_s": round(told.tok_per_s, 3), "stop": stop, "seed": told.seed}
        speech = ""
        if self.speaker is not None:
            st = self.speaker.stats()
            end["speech"] = {k: st.get(k) for k in SPEECH_STATS}
            speech = "; " + story.speech_line(st, told.speech_wait_s)
        self.log.info("story %d ended: %d tokens in %.2f s, %.1f tok/s, stop=%s%s", job.id, told.tokens, told.seconds,
                      told.tok_per_s, stop, speech)
        if keep is not None:
            logs.story_text(self.log, f"story {job.id}", job.prompt + "".join(keep))
        return end


def job_settings(cfg: Callable[[], Mapping[str, Any]], command_line: Mapping[str, Any],
                 log: logging.Logger) -> Callable[[Job, int], story.StorySettings]:
    """The worker's settings function: [story] (as reloaded), the command line, the
    request, resolved for a model of seq_len positions."""
    def settings(job: Job, seq_len: int) -> story.StorySettings:
        s = story.StorySettings.merge(cfg(), command_line, job.overrides)
        return s.resolve(seq_len, warn=lambda m: log.debug("story %d: %s", job.id, m))
    return settings
