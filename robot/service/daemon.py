"""`storybot serve`: the robot as one long-running process (see docs/service.md).

Threads: the main thread runs the event loop (loop.py) over the control socket
(commands.py), signals, systemd notifications and the watchdog; one worker thread tells
one story at a time (worker.py, with robot.story's token loop); prompt sources
(sources.py: stdin, the microphone) are threads that hand Jobs to submit(). The queue
between them is jobs.py; SIGHUP is reload.py; the client side of the socket is client.py.

A Robot is built from a configuration dict and ServeOptions (what the command line
overrides), so a test can build one without argv: Robot(config.defaults())."""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from robot import config, story
from robot.service import control, logs, notify, status
from robot.service.commands import Commands
from robot.service.jobs import Event, Job, JobQueue, QueuePolicy, Stopped, end_event
from robot.service.loop import QUIT_SIGNALS, EventLoop
from robot.service.modelwatch import WatchedModel
from robot.service.reload import reload
from robot.service.sources import MicSource, StdinSource, open_listener
from robot.service.worker import StoryWorker, job_settings
from robot.words import count

JOIN_SECONDS = 1.2   # SIGTERM to exit must stay under 2 s, with speech cut and files closed
Source = Union[StdinSource, MicSource]


@dataclass(frozen=True)
class ServeOptions:
    """What `storybot serve`'s command line says over the configuration (None: not given)."""

    config_path: Optional[str] = None   # read again on SIGHUP
    socket: Optional[str] = None        # '' for no control socket
    stdin: Optional[bool] = None
    log_level: Optional[str] = None
    model: story.ModelChoice = story.ModelChoice()
    story_layer: Mapping[str, Any] = field(default_factory=dict)  # steps, temperature, topp, seed
    speech: story.SpeechChoice = story.SpeechChoice()


class Robot:
    def __init__(self, cfg: Dict[str, Any], options: ServeOptions = ServeOptions(), files: Sequence[str] = ()) -> None:
        self.cfg = cfg
        self.files = list(files)
        self.options = options
        d = cfg["daemon"]
        self.log = logs.setup(options.log_level or d["log_level"], d["log_story_text"])
        self.notifier = notify.Notifier()
        self.socket_path = config.expand(options.socket if options.socket is not None else d["socket"])
        self.models: Optional[WatchedModel] = None
        self.speaker: Any = None
        self.server: Optional[control.Server] = None
        self.commands: Optional[Commands] = None
        self.sources: List[Source] = []
        self.loop = EventLoop()
        self.queue = JobQueue(QueuePolicy.from_config(cfg), self.log)
        self.worker: Optional[StoryWorker] = None
        self.crash: Optional[BaseException] = None
        self.echo = not logs.is_journal(sys.stdout)  # story text must not reach the journal
        self.t0 = time.monotonic()
        self.reloads = 0
        self.last_status: Optional[str] = None
        self.last_ping = 0.0
        self._stop_why = "stopped"

    @classmethod
    def from_files(cls, options: ServeOptions) -> Robot:
        cfg, files = config.load(options.config_path)
        return cls(cfg, options, files)

    @property
    def model(self) -> Any:
        """The model the next story uses (None while its file cannot be opened)."""
        return self.models.model if self.models is not None else None

    # ---- start --------------------------------------------------------------------

    def serve(self) -> int:
        faulthandler.enable(file=sys.stderr)  # a segfault or the watchdog's SIGABRT leaves stacks in the log
        threading.excepthook = self._thread_died
        self.loop.install_signals()
        try:
            self._start()
        except BaseException:
            self._close()
            raise
        self._on_signals(self.loop.pending_signals())  # a SIGTERM or SIGHUP that arrived while the model was loading
        try:
            if self.loop.running:
                wd = self.notifier.watchdog
                self.loop.run(self._on_signals, min(1.0, wd / 4) if wd else 1.0, self._housekeeping)
        except Exception as e:  # noqa: BLE001 - the one place a crash is recorded before dying
            self._crashed(e)
            return 1
        return self._shutdown(self._stop_why)

    def _thread_died(self, a: Any) -> None:
        # a dead prompt source or speech thread would leave a robot that looks alive but
        # no longer listens or talks: better to crash and be restarted
        if a.exc_type is SystemExit:
            return
        self.crash = a.exc_value or a.exc_type()
        self.log.error("thread %s died", a.thread.name if a.thread else "?")
        self.loop.wake()

    def _start(self) -> None:
        d = self.cfg["daemon"]
        self.notifier.status("starting")
        if self.socket_path:
            self.server = control.Server(self.socket_path, d["socket_mode"], d["socket_group"], self.log)
            self.server.open()
        self.notifier.status("loading the model")
        t = time.perf_counter()
        self.models = WatchedModel(story.model_files(self.options.model, self.cfg), self.log)
        model = self.models.load()
        load_s = time.perf_counter() - t
        self.speaker = self.queue.speaker = self._open_speaker()
        self._open_sources()
        settings = job_settings(lambda: self.cfg, self.options.story_layer, self.log)
        self.worker = StoryWorker(self.queue, self.models, self.speaker, self.log, self.echo, settings, self.loop.wake)
        self.worker.start()
        if self.server is not None:
            self.commands = Commands(self.server, self.loop, self.log, self.submit, self.queue.stop, self.status)
            self.commands.start()
        c = model.config
        names = [s.name for s in self.sources] + ([f"socket {self.socket_path}"] if self.server else [])
        self.log.info("ready: %s (%s, dim %d, %d layers, context %d, %s kernel) loaded in %.2f s; prompts from %s; speech %s; pid %d",
                      os.path.basename(model.path), c.format, c.dim, c.n_layers, c.seq_len, model.kernel,
                      load_s, ", ".join(names) or "nowhere", self._speech_summary(), os.getpid())
        if self.notifier.watchdog:
            self.log.debug("systemd watchdog: ping every %.2f s", self.notifier.watchdog / 4)
        self.last_status = self.status_line()
        self.notifier.ready(self.last_status)
        for src in self.sources:
            src.start()

    def _open_sources(self) -> None:
        d = self.cfg["daemon"]
        use_stdin = self.options.stdin if self.options.stdin is not None else d["stdin"]
        si = self.cfg["speech_in"]
        if si["enabled"]:
            enter = si["trigger"] == "enter"
            # both would read the same lines: with this trigger, Enter is the button
            cfg = dict(self.cfg, daemon=dict(d, stdin=use_stdin and not enter))
            listener = open_listener(cfg, self.log)
            if listener is not None:
                listener.on_miss = self._reply
                self.sources.append(MicSource(self.submit, self.log, listener))
                if use_stdin and enter:
                    self.log.info("standard input is the push-to-talk button ([speech_in] trigger = \"enter\"), not a prompt source")
                    use_stdin = False
        if use_stdin:
            self.sources.insert(0, StdinSource(self.submit, self.log))

    def _open_speaker(self) -> Any:
        choice = self.options.speech
        if not choice.wanted(self.cfg["speech_out"]["enabled"]):
            return None
        try:
            return story.open_speaker(choice, self.cfg, warn=self.log.warning)  # None after one warning
        except ImportError:
            self.log.warning("speech output is not installed in this build; telling stories as text only")
            return None

    def _reply(self, text: str) -> None:
        """Speaks a short answer ("I didn't catch that.") in the story's place."""
        self.log.info("microphone: nothing understood; replying")
        if self.speaker is not None:
            self.submit(Job(text, "reply", say=True))

    def _speech_summary(self) -> str:
        if self.speaker is None:
            return "off"
        s = self.cfg["speech_out"]
        return f"{s['backend']} voice {s['voice']} at {s['rate']} wpm"

    # ---- the main loop's work ----------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queues a prompt (from any thread); in interrupt mode it replaces whatever runs."""
        self.queue.submit(job)
        self.loop.wake()

    def stop(self, drop_queue: bool = False) -> Stopped:
        return self.queue.stop(drop_queue)

    def _on_signals(self, sigs: Any) -> None:
        for sig in sigs:
            if sig in QUIT_SIGNALS:
                self.loop.stop()
                self._stop_why = signal.Signals(sig).name
            elif sig == signal.SIGHUP:
                reload(self)

    def _housekeeping(self) -> None:
        crash = self.crash or (self.worker.crash if self.worker else None)
        if crash is not None:
            raise crash
        now = time.monotonic()
        self._check_stall(now)
        line = self.status_line()
        if line != self.last_status:
            self.last_status = line
            self.notifier.status(line)
        wd = self.notifier.watchdog
        if wd and now - self.last_ping >= wd / 4:
            self.last_ping = now
            self.notifier.ping()
        if self.commands is not None:
            self.commands.service(now)

    def _check_stall(self, now: float) -> None:
        job = self.queue.current
        p = self.worker.progress if self.worker else None
        limit = self.cfg["daemon"]["stall_seconds"]
        if job is not None and p is not None and p.in_kernel and now - p.at > limit:
            # a kernel step that never returns cannot be interrupted from Python; only a
            # restart helps, and the log must say why it happened
            raise RuntimeError(f"story {job.id} made no progress in the kernel for {now - p.at:.0f} s "
                               f"([daemon] stall_seconds = {limit})")

    # ---- status ---------------------------------------------------------------------

    def status_line(self) -> str:
        job, queued = self.queue.snapshot()
        if job is None:
            told = self.worker.counters.told if self.worker else 0
            return f"waiting for a prompt ({count(told, 'story')} told)"
        more = f", {queued} waiting" if queued else ""
        return f"telling story {job.id} (from {job.source}){more}"

    def status(self) -> Event:
        """What `storybot status` shows (status.py)."""
        return status.report(self)

    # ---- stop -----------------------------------------------------------------------

    def _shutdown(self, why: str) -> int:
        self.notifier.stopping("stopping")
        self.log.info("stopping (%s)", why)
        for job in self.queue.close("shutdown"):
            job.finish(end_event(job.id, "shutdown"))
        stuck = self.worker is not None and not self.worker.join(JOIN_SECONDS)
        self._close()
        n = self.worker.counters if self.worker else None
        self.log.info("stopped after %d stories (%d errors)", n.told if n else 0, n.errors if n else 0)
        if stuck:
            # the worker is blocked outside Python (a full stdout pipe, a wedged device);
            # waiting for it would break the 2-second promise to the init system
            self.log.warning("the story thread did not finish in %.1f s; exiting without it", JOIN_SECONDS)
            sys.stderr.flush()
            os._exit(0)
        return 0

    def _crashed(self, e: BaseException) -> None:
        if self.worker is not None:
            self.worker.counters.errors += 1
        self.log.critical("crashed: %s: %s", type(e).__name__, e, exc_info=(type(e), e, e.__traceback__))
        self.notifier.status(f"crashed: {type(e).__name__}: {e}")
        self.queue.close("crash")
        stuck = self.worker is not None and not self.worker.join(JOIN_SECONDS)
        self._close()
        if stuck:
            sys.stderr.flush()
            os._exit(1)

    def _close(self) -> None:
        for src in self.sources:
            src.close()
        if self.speaker is not None:
            try:
                self.speaker.close()
            except Exception as e:  # noqa: BLE001 - shutting down; record and go on
                self.log.warning("speech did not close cleanly: %s", e)
            self.speaker = None
        if self.commands is not None:
            self.commands.close()
        if self.server is not None:
            self.server.close()
        if self.models is not None:
            self.models.close()
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        self.notifier.close()
