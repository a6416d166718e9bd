"""`storybot serve`: the robot as one long-running process; `storybot ask / stop / status`
talk to it over its control socket.

    storybot serve [--config FILE]        # loads the model once, then waits for prompts
    storybot ask "Once upon a time"       # streams the story back as it is told
    storybot stop | status

Threads: the main thread owns the control socket, signals, systemd notifications and
the watchdog; one worker thread tells one story at a time (the kernel releases the GIL,
so the main thread stays responsive and a stop takes effect between two tokens);
prompt sources (stdin, the microphone) are threads that hand prompts to submit().
"""
import collections
import faulthandler
import itertools
import json
import os
import resource
import selectors
import signal
import sys
import threading
import time

from robot import config
from robot.service import control
from robot.service import logs
from robot.service import notify
from robot.errors import StorybotError
from robot.words import count

JOIN_SECONDS = 1.2   # SIGTERM to exit must stay under 2 s, with speech cut and files closed
STORY_KEYS = {"steps": int, "temperature": (int, float), "topp": (int, float), "seed": int}
FINISHED = ("steps", "bos")
_SPEECH_KEYS = ("backend", "voice", "rate", "pitch", "volume", "device")
# the speaker's per-story figures worth sending with each story (not per-sentence records)
SPEECH_STATS = ("backend", "voice", "output", "sentences_total", "audio_s", "tts_ms", "first_sound_s",
                "feed_blocked_s", "cancelled", "cancel_ms", "errors")


def current_rss_kb():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss_kb():
    # ru_maxrss comes from the kernel's approximate (per-CPU batched) RSS counters, statm
    # from the exact sum: just after growth the "peak" read a few hundred KB below the
    # current RSS. The current RSS is a lower bound of the peak.
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, current_rss_kb())


class Job:
    """One prompt on its way to becoming a story."""

    _ids = itertools.count(1)

    def __init__(self, prompt, source, client=None, settings=None, say=False):
        self.id = next(Job._ids)
        self.prompt = prompt
        self.say = say            # speak the text as it is (a reply), no story
        self.source = source
        self.client = client
        self.settings = settings or {}
        self.cancel = threading.Event()
        self.reason = None        # why it was stopped: interrupted, stopped, shutdown
        self.speaking = False
        self.tokens = 0
        self.started = None

    def emit(self, event):
        if self.client is not None:
            self.client.send(event)

    def finish(self, event):
        self.emit(event)
        if self.client is not None:
            self.client.close()
            self.client = None


class StdinSource:
    """Each non-empty line on standard input is a prompt."""

    name = "stdin"

    def __init__(self, robot):
        self.robot = robot
        self.thread = threading.Thread(target=self._run, name="stdin", daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        # os.read, not sys.stdin: a thread parked in a buffered read holds the buffer's
        # lock, and the interpreter aborts at exit when it cannot take that lock
        log = self.robot.log
        pending = b""
        while True:
            try:
                data = os.read(0, 4096)
            except OSError as e:
                log.warning("stdin failed (%s); prompts still come from the other sources", e)
                return
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                self._line(raw)
        if pending:
            self._line(pending)
        log.debug("stdin closed; prompts now come from the other sources")

    def _line(self, raw):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.robot.log.warning("a line on stdin is not valid UTF-8; ignored (fix the terminal's encoding)")
            return
        if line:
            self.robot.submit(Job(line, "stdin"))

    def close(self):
        pass  # a daemon thread blocked in read() ends with the process


class MicSource:
    """Push-to-talk through robot.speech.listen: each recognised utterance is a prompt."""

    name = "mic"

    def __init__(self, robot, listener):
        self.robot = robot
        self.listener = listener
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mic", daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        log = self.robot.log
        while not self.closed.is_set():
            try:
                text = self.listener.listen()
            except StorybotError as e:
                if self.closed.is_set():
                    return
                log.error("microphone: %s", e)
                self.closed.wait(5.0)  # a broken device must not spin the CPU
                continue
            if text is None:  # the trigger was closed
                log.debug("microphone trigger closed")
                return
            text = text.strip()
            if text:
                self.robot.submit(Job(text, "mic"))

    def close(self):
        self.closed.set()
        try:
            self.listener.close()
        except Exception as e:  # noqa: BLE001 - shutting down; record and go on
            self.robot.log.warning("microphone did not close cleanly: %s", e)


def open_listener(cfg, log):
    """speech_in's push-to-talk listener, or None (with a logged reason). Called from the
    main thread: a "signal" trigger installs its handler there."""
    try:
        from robot.speech import listen as speech_in
    except ImportError:
        log.warning("[speech_in] enabled is true but speech input is not installed in this build; no microphone prompts")
        return None
    return speech_in.open_listener(cfg)  # None after logging why


class Robot:
    def __init__(self, args):
        self.args = args
        self.cfg, self.files = config.load(args.config)
        d = self.cfg["daemon"]
        self.log = logs.setup(args.log_level or d["log_level"], d["log_story_text"])
        self.notifier = notify.Notifier()
        self.socket_path = config.expand(args.socket if args.socket is not None else d["socket"])
        self.model = None
        self.speaker = None
        self.server = None
        self.sources = []
        self.clients = {}
        self.sel = selectors.DefaultSelector()
        self.cond = threading.Condition()
        self.pending = collections.deque()
        self.current = None
        self.stopping = False
        self.crash = None
        self.progress = time.monotonic()
        self.in_kernel = False
        self.stalled = False
        self.echo = not logs.is_journal(sys.stdout)  # story text must not reach the journal
        self.t0 = time.monotonic()
        self.told = 0
        self.errors = 0
        self.tokens = 0
        self.reloads = 0
        self.last_status = None
        self.last_ping = 0.0
        self.worker = None
        self._quit = False
        self._stop_why = "stopped"
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sig_r, self._sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # ---- start --------------------------------------------------------------------

    def serve(self):
        faulthandler.enable(file=sys.stderr)  # a segfault or the watchdog's SIGABRT leaves stacks in the log
        threading.excepthook = self._thread_died
        self._install_signals()
        try:
            self._start()
        except BaseException:
            self._close()
            raise
        self._on_signal(None)  # a SIGTERM or SIGHUP that arrived while the model was loading
        try:
            if not self._quit:
                self._loop()
        except Exception as e:  # noqa: BLE001 - the one place a crash is recorded before dying
            self._crashed(e)
            return 1
        return self._shutdown(self._stop_why)

    def _thread_died(self, a):
        # a dead prompt source or speech thread would leave a robot that looks alive but
        # no longer listens or talks: better to crash and be restarted
        if a.exc_type is SystemExit:
            return
        self.crash = a.exc_value or a.exc_type()
        self.log.error("thread %s died", a.thread.name if a.thread else "?")
        self._wake()

    def _install_signals(self):
        signal.set_wakeup_fd(self._sig_w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            # the handler only has to exist: the wakeup fd carries the signal to the loop
            signal.signal(sig, lambda *_: None)

    def _pending_signals(self):
        try:
            data = os.read(self._sig_r, 512)
        except BlockingIOError:
            data = b""
        return set(data)

    def _start(self):
        d = self.cfg["daemon"]
        self.notifier.status("starting")
        if self.socket_path:
            self.server = control.Server(self.socket_path, d["socket_mode"], d["socket_group"], self.log)
            self.server.open()
        self.notifier.status("loading the model")
        t = time.perf_counter()
        from robot import cli
        self.model = cli.open_model(self.args, self.cfg)
        load_s = time.perf_counter() - t
        self.speaker = self._open_speaker()
        use_stdin = self.args.stdin if self.args.stdin is not None else d["stdin"]
        si = self.cfg["speech_in"]
        if si["enabled"]:
            enter = si["trigger"] == "enter"
            # both would read the same lines: with this trigger, Enter is the button
            cfg = dict(self.cfg, daemon=dict(d, stdin=use_stdin and not enter))
            listener = open_listener(cfg, self.log)
            if listener is not None:
                listener.on_miss = self._reply
                self.sources.append(MicSource(self, listener))
                if use_stdin and enter:
                    self.log.info("standard input is the push-to-talk button ([speech_in] trigger = \"enter\"), not a prompt source")
                    use_stdin = False
        if use_stdin:
            self.sources.insert(0, StdinSource(self))
        self.worker = threading.Thread(target=self._work, name="story", daemon=True)
        self.worker.start()
        c = self.model.config
        names = [s.name for s in self.sources] + ([f"socket {self.socket_path}"] if self.server else [])
        self.log.info("ready: %s (%s, dim %d, %d layers, context %d, %s kernel) loaded in %.2f s; prompts from %s; speech %s; pid %d",
                      os.path.basename(self.model.path), c.format, c.dim, c.n_layers, c.seq_len, self.model.kernel,
                      load_s, ", ".join(names) or "nowhere", self._speech_summary(), os.getpid())
        if self.notifier.watchdog:
            self.log.debug("systemd watchdog: ping every %.2f s", self.notifier.watchdog / 4)
        self.last_status = self._status_line()
        self.notifier.ready(self.last_status)
        for src in self.sources:
            src.start()

    def _open_speaker(self):
        want = self.args.speak if self.args.speak is not None else self.cfg["speech_out"]["enabled"]
        if not want and not self.args.wav:
            return None
        try:
            from robot.speech import output as speech_out
        except ImportError:
            self.log.warning("speech output is not installed in this build; telling stories as text only")
            return None
        # returns None after one warning when there is no voice or sound device
        return speech_out.open_from_args(self.args, self.cfg, warn=self.log.warning)

    def _reply(self, text):
        """Speaks a short answer ("I didn't catch that.") in the story's place."""
        self.log.info("microphone: nothing understood; replying")
        if self.speaker is not None:
            self.submit(Job(text, "reply", say=True))

    def _speech_summary(self):
        if self.speaker is None:
            return "off"
        s = self.cfg["speech_out"]
        return f"{s['backend']} voice {s['voice']} at {s['rate']} wpm"

    # ---- main loop ------------------------------------------------------------------

    def _loop(self):
        self.sel.register(self._sig_r, selectors.EVENT_READ, self._on_signal)
        self.sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        if self.server:
            self.sel.register(self.server.sock, selectors.EVENT_READ, self._on_accept)
        wd = self.notifier.watchdog
        tick = min(1.0, wd / 4) if wd else 1.0
        while not self._quit:
            for key, _ in self.sel.select(tick):
                key.data(key.fileobj)
            if self.crash is not None:
                raise self.crash
            self._housekeeping()

    def _on_signal(self, fd):
        for sig in self._pending_signals():
            if sig in (signal.SIGTERM, signal.SIGINT):
                self._quit = True
                self._stop_why = signal.Signals(sig).name
            elif sig == signal.SIGHUP:
                self.reload()

    def _on_wake(self, fd):
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass

    def _wake(self):
        try:
            os.write(self._wake_w, b"w")
        except (BlockingIOError, OSError):
            pass  # a full pipe already guarantees a wake-up

    def _housekeeping(self):
        now = time.monotonic()
        job = self.current
        limit = self.cfg["daemon"]["stall_seconds"]
        if job is not None and self.in_kernel and now - self.progress > limit:
            # a kernel step that never returns cannot be interrupted from Python; only a
            # restart helps, and the log must say why it happened
            raise RuntimeError(f"story {job.id} made no progress in the kernel for {now - self.progress:.0f} s "
                               f"([daemon] stall_seconds = {limit})")
        line = self._status_line()
        if line != self.last_status:
            self.last_status = line
            self.notifier.status(line)
        wd = self.notifier.watchdog
        if wd and now - self.last_ping >= wd / 4:
            self.last_ping = now
            self.notifier.ping()
        for client in list(self.clients.values()):
            if now - client.opened > control.REQUEST_TIMEOUT:
                self.log.warning("dropped a control client that sent no request in %g s", control.REQUEST_TIMEOUT)
                self._forget(client)
                client.close()

    def _status_line(self):
        with self.cond:
            job, queued = self.current, len(self.pending)
        if job is None:
            return f"waiting for a prompt ({count(self.told, 'story')} told)"
        more = f", {queued} waiting" if queued else ""
        return f"telling story {job.id} (from {job.source}){more}"

    # ---- control socket ---------------------------------------------------------------

    def _on_accept(self, sock):
        client = self.server.accept()
        if client is None:
            return
        if len(self.clients) >= 32:
            self.log.warning("too many control connections waiting; refused one")
            client.close()
            return
        self.clients[client.fileno()] = client
        self.sel.register(client.sock, selectors.EVENT_READ, self._on_client)

    def _forget(self, client):
        if self.clients.pop(client.fileno(), None) is not None:
            self.sel.unregister(client.sock)

    def _on_client(self, sock):
        client = self.clients[sock.fileno()]
        try:
            req = client.read_request()
        except ValueError as e:
            self._forget(client)
            self.log.warning("control: %s", e)
            client.sock.setblocking(True)
            client.send({"event": "error", "message": str(e)})
            client.close()
            return
        if req is None:
            return
        self._forget(client)
        try:
            self._dispatch(client, req)
        except StorybotError as e:
            client.send({"event": "error", "message": str(e)})
            client.close()

    def _dispatch(self, client, req):
        cmd = req["cmd"]
        if cmd == "ask":
            prompt = req.get("prompt", "")
            if not isinstance(prompt, str):
                raise StorybotError('"prompt" must be a string')
            settings = {}
            for key, typ in STORY_KEYS.items():
                value = req.get(key)
                if value is None:
                    continue
                if not isinstance(value, typ) or isinstance(value, bool):
                    raise StorybotError(f'"{key}" must be a number, not {value!r}')
                settings[key] = value
            wait = req.get("wait", True) is not False
            job = Job(prompt, "socket", client if wait else None, settings)
            if not wait:
                client.send({"event": "queued", "id": job.id})
                client.close()
            self.submit(job)
        elif cmd == "stop":
            stopped, dropped = self.stop(drop_queue=bool(req.get("all")))
            client.send({"event": "stopped", "story": stopped, "dropped": dropped})
            client.close()
        elif cmd == "status":
            client.send(self.status())
            client.close()
        else:
            raise StorybotError(f"unknown command {cmd!r}; the robot understands ask, stop and status")

    # ---- stories ----------------------------------------------------------------------

    def submit(self, job):
        """Queues a prompt (from any thread); in interrupt mode it replaces whatever runs."""
        dropped = []
        with self.cond:
            d = self.cfg["daemon"]
            if self.stopping:
                job.finish({"event": "end", "id": job.id, "stop": "shutdown", "tokens": 0})
                return
            if d["on_new_prompt"] == "interrupt":
                dropped = list(self.pending)
                self.pending.clear()
                if self.current is not None:
                    self._cancel(self.current, "interrupted")
            elif len(self.pending) >= d["queue_max"]:
                self.log.warning("prompt from %s refused: %s already waiting ([daemon] queue_max)", job.source, count(len(self.pending), "story"))
                job.finish({"event": "error", "message": f"the robot already has {count(len(self.pending), 'story')} waiting; try again later"})
                return
            ahead = len(self.pending) + (self.current is not None)
            self.log.info("prompt %d from %s (%d characters, %d ahead)", job.id, job.source, len(job.prompt), ahead)
            logs.story_text(self.log, f"prompt {job.id}", job.prompt)
            # sent before the worker can see the job, so "queued" always precedes "start"
            job.emit({"event": "queued", "id": job.id, "ahead": ahead})
            self.pending.append(job)
            self.cond.notify()
        for old in dropped:
            self.log.info("story %d dropped: replaced by prompt %d", old.id, job.id)
            old.finish({"event": "end", "id": old.id, "stop": "replaced", "tokens": 0})
        self._wake()

    def _cancel(self, job, reason):
        # caller holds self.cond, which also orders this against speaker.begin()
        if job.reason is None:
            job.reason = reason
        job.cancel.set()
        if job.speaking and self.speaker is not None:
            self.speaker.cancel()

    def stop(self, drop_queue=False):
        with self.cond:
            job = self.current
            dropped = list(self.pending) if drop_queue else []
            if drop_queue:
                self.pending.clear()
            if job is not None:
                self._cancel(job, "stopped")
        for old in dropped:
            old.finish({"event": "end", "id": old.id, "stop": "stopped", "tokens": 0})
        if job is not None or dropped:
            self.log.info("stop requested: story %s stopped, %d queued dropped", job.id if job else "-", len(dropped))
        return (job.id if job else None), [j.id for j in dropped]

    def _work(self):
        try:
            while True:
                with self.cond:
                    while not self.pending and not self.stopping:
                        self.cond.wait()
                    if self.stopping:
                        return
                    job = self.pending.popleft()
                    self.current = job
                try:
                    last = self._say_only(job) if job.say else self._tell(job)
                except StorybotError as e:
                    self.errors += 1
                    self.log.warning("story %d not told: %s", job.id, e)
                    last = {"event": "error", "id": job.id, "message": str(e)}
                # idle before the client hears the end, so its next status says so
                with self.cond:
                    self.current = None
                self._wake()
                job.finish(last)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which logs it and exits 1
            self.crash = e
            self._wake()

    def _settings(self, job):
        st = self.cfg["story"]
        a = self.args
        steps = job.settings.get("steps", st["steps"] if a.steps is None else a.steps)
        temperature = float(job.settings.get("temperature", st["temperature"] if a.temperature is None else a.temperature))
        topp = float(job.settings.get("topp", st["topp"] if a.topp is None else a.topp))
        seed = job.settings.get("seed", st["seed"] if a.seed is None else a.seed)
        seq = self.model.config.seq_len
        if steps <= 0 or steps > seq:
            steps = seq
        if seed < 0:
            raise StorybotError(f"the seed must be a positive whole number (got {seed})")
        if seed == 0:
            # "a new story every time": the clock alone repeats within a second
            seed = int.from_bytes(os.urandom(8), "little") >> 1 or 1
        return steps, temperature, topp, seed

    def _say(self, text):
        if not self.echo or not text:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (OSError, ValueError):
            self.echo = False
            self.log.warning("standard output is closed; stories are no longer echoed there")

    def _say_only(self, job):
        with self.cond:
            if job.cancel.is_set():
                return {"event": "end", "id": job.id, "stop": job.reason, "tokens": 0}
            self.speaker.begin(job.prompt)
            job.speaking = True
        try:
            if not job.cancel.is_set():
                self.speaker.end()
        finally:
            with self.cond:
                job.speaking = False
        return {"event": "end", "id": job.id, "stop": "said", "tokens": 0}

    def _tell(self, job):
        steps, temperature, topp, seed = self._settings(job)
        gen = self.model.generate(job.prompt, steps=steps, temperature=temperature, topp=topp, seed=seed)
        job.started = time.monotonic()
        self.log.info("story %d started: %d steps, temperature %g, top-p %g, seed %d", job.id, steps, temperature, topp, gen.seed)
        job.emit({"event": "start", "id": job.id, "seed": gen.seed, "steps": steps})
        speaker = self.speaker
        with self.cond:
            if speaker is not None and not job.cancel.is_set():
                speaker.begin(job.prompt)
                job.speaking = True
        self._say(job.prompt)
        keep = [] if logs.story_text_enabled() else None
        tts_s = 0.0
        try:
            self.progress = time.monotonic()
            self.in_kernel = True
            for tok in gen:
                self.in_kernel = False
                self.progress = time.monotonic()
                if job.cancel.is_set():
                    break
                job.tokens = gen.n_generated
                if tok.text:
                    self._say(tok.text)
                    job.emit({"event": "token", "id": tok.id, "text": tok.text})
                    if keep is not None:
                        keep.append(tok.text)
                    if job.speaking:
                        t = time.perf_counter()
                        speaker.feed(tok.text)  # blocks while the sentence queue is full
                        tts_s += time.perf_counter() - t
                self.progress = time.monotonic()
                self.in_kernel = True
            self.in_kernel = False
            if job.speaking:
                if job.cancel.is_set():
                    speaker.cancel()
                else:
                    t = time.perf_counter()
                    speaker.end()  # returns when the last sentence has been spoken
                    tts_s += time.perf_counter() - t
        finally:
            self.in_kernel = False
            gen.close()
            with self.cond:
                job.speaking = False
        self._say("\n")
        stop = job.reason if job.cancel.is_set() else gen.stop_reason
        self.told += 1
        self.tokens += gen.n_generated
        end = {"event": "end", "id": job.id, "tokens": gen.n_generated, "seconds": round(gen.elapsed, 4),
               "tok_per_s": round(gen.tokens_per_second, 3), "stop": stop, "seed": gen.seed}
        speech = ""
        if speaker is not None:
            st = speaker.stats()
            end["speech"] = {k: st.get(k) for k in SPEECH_STATS}
            first = st.get("first_sound_s")
            speech = (f"; speech: {st.get('sentences_total')} sentences, {st.get('audio_s')} s of audio, "
                      f"TTS {st.get('tts_ms')} ms, first sound {'-' if first is None else f'{first:.2f} s'}, "
                      f"story waited {tts_s:.2f} s for the voice")
        self.log.info("story %d ended: %d tokens in %.2f s, %.1f tok/s, stop=%s%s", job.id, gen.n_generated, gen.elapsed,
                      gen.tokens_per_second, stop, speech)
        if keep is not None:
            logs.story_text(self.log, f"story {job.id}", job.prompt + "".join(keep))
        return end

    # ---- status, reload, shutdown -------------------------------------------------------

    def status(self):
        with self.cond:
            job, queued = self.current, len(self.pending)
        c = self.model.config
        story = None
        if job is not None:
            story = {"id": job.id, "source": job.source, "tokens": job.tokens,
                     "seconds": round(time.monotonic() - job.started, 3) if job.started else 0.0}
        return {
            "event": "status",
            "pid": os.getpid(),
            "state": "stopping" if self.stopping else ("telling" if job else "idle"),
            "status": self._status_line(),
            "uptime_s": round(time.monotonic() - self.t0, 1),
            "story": story,
            "queued": queued,
            "stories_told": self.told,
            "errors": self.errors,
            "tokens": self.tokens,
            "on_new_prompt": self.cfg["daemon"]["on_new_prompt"],
            "sources": [s.name for s in self.sources] + (["socket"] if self.server else []),
            "model": {"file": os.path.basename(self.model.path), "format": c.format, "kernel": self.model.kernel,
                      "dim": c.dim, "layers": c.n_layers, "context": c.seq_len},
            "speech": self._speech_status(),
            "config_files": self.files,
            "reloads": self.reloads,
            "rss_kb": current_rss_kb(),
            "peak_rss_kb": peak_rss_kb(),
        }

    def _speech_status(self):
        s = self.cfg["speech_out"]
        out = {"on": self.speaker is not None}
        out.update({k: s[k] for k in _SPEECH_KEYS})
        settings = getattr(self.speaker, "settings", None)
        if callable(settings):
            out.update(settings())  # what the voice really uses, when the speaker can say
        return out

    def reload(self):
        self.notifier.reloading()
        self.log.info("reloading the configuration (SIGHUP)")
        try:
            cfg, files = config.load(self.args.config)
            d = cfg["daemon"]
            gid = control.group_id(d["socket_group"]) if self.server else None
        except StorybotError as e:
            self.log.error("configuration NOT reloaded, the running one stays: %s", e)
            self.notifier.ready(self._status_line())
            return False
        old = self.cfg
        changes = [(s, k, v) for s in cfg for k, v in cfg[s].items() if old[s][k] != v]
        later = [f"[{s}] {k}" for s, k, _ in changes
                 if s in ("model", "speech_in") or (s, k) in (("daemon", "socket"), ("daemon", "stdin"), ("speech_out", "enabled"))]
        try:
            if self.speaker is not None and any(s == "speech_out" for s, _, _ in changes):
                from robot.speech import output as speech_out
                # --voice / --tts on the command line keep winning over the file
                self.speaker.reconfigure(dict(cfg, speech_out=speech_out.settings_from_args(self.args, cfg)))
            if self.server is not None:
                self.server.apply(int(d["socket_mode"], 8), gid)
        except StorybotError as e:
            self.log.error("configuration NOT fully reloaded: %s", e)
            self.notifier.ready(self._status_line())
            return False
        logs.configure(self.args.log_level or d["log_level"], d["log_story_text"])
        with self.cond:
            self.cfg, self.files = cfg, files
        self.reloads += 1
        applied = "; ".join(f"[{s}] {k} = {v!r}" for s, k, v in changes) or "no changes"
        self.log.info("configuration reloaded from %s: %s", ", ".join(files) or "built-in defaults", applied)
        if later:
            self.log.warning("%s: takes effect when the robot restarts", ", ".join(later))
        self.notifier.ready(self._status_line())
        return True

    def _shutdown(self, why):
        self.notifier.stopping("stopping")
        self.log.info("stopping (%s)", why)
        dropped = []
        with self.cond:
            self.stopping = True
            dropped = list(self.pending)
            self.pending.clear()
            if self.current is not None:
                self._cancel(self.current, "shutdown")
            self.cond.notify_all()
        for job in dropped:
            job.finish({"event": "end", "id": job.id, "stop": "shutdown", "tokens": 0})
        stuck = False
        if self.worker is not None:
            self.worker.join(JOIN_SECONDS)
            stuck = self.worker.is_alive()
        self._close()
        self.log.info("stopped after %d stories (%d errors)", self.told, self.errors)
        if stuck:
            # the worker is blocked outside Python (a full stdout pipe, a wedged device);
            # waiting for it would break the 2-second promise to the init system
            self.log.warning("the story thread did not finish in %.1f s; exiting without it", JOIN_SECONDS)
            sys.stderr.flush()
            os._exit(0)
        return 0

    def _crashed(self, e):
        self.errors += 1
        self.log.critical("crashed: %s: %s", type(e).__name__, e, exc_info=(type(e), e, e.__traceback__))
        self.notifier.status(f"crashed: {type(e).__name__}: {e}")
        with self.cond:
            self.stopping = True
            if self.current is not None:
                self._cancel(self.current, "crash")
            self.cond.notify_all()
        if self.worker is not None:
            self.worker.join(JOIN_SECONDS)
        self._close()
        if self.worker is not None and self.worker.is_alive():
            sys.stderr.flush()
            os._exit(1)

    def _close(self):
        for src in self.sources:
            src.close()
        if self.speaker is not None:
            try:
                self.speaker.close()
            except Exception as e:  # noqa: BLE001 - shutting down; record and go on
                self.log.warning("speech did not close cleanly: %s", e)
            self.speaker = None
        for client in list(self.clients.values()):
            client.close()
        self.clients.clear()
        if self.server is not None:
            self.server.close()
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        self.notifier.close()


# ---- command line ---------------------------------------------------------------------

def _story_options(p):
    p.add_argument("-n", "--steps", type=int, help="tokens per story including the prompt (default: [story] steps)")
    p.add_argument("-t", "--temperature", type=float, help="randomness, 0 = always the likeliest word")
    p.add_argument("-p", "--topp", type=float, help="top-p (nucleus) sampling in [0,1]")
    p.add_argument("-s", "--seed", type=int, help="random seed (0: a new story every time)")


def add_arguments(p, command):
    from robot import cli

    if command == "serve":
        cli.add_model_arguments(p)
        p.add_argument("--socket", metavar="PATH", help="control socket (default: [daemon] socket; '' for none)")
        p.add_argument("--no-stdin", dest="stdin", action="store_false", default=None, help="do not read prompts from standard input")
        p.add_argument("--log-level", choices=list(logs.LEVELS), help="log verbosity (default: [daemon] log_level)")
        _story_options(p)
        from robot.cli import add_speech_arguments
        add_speech_arguments(p, "speech", "speak stories (default: [speech_out] enabled)", "the spoken stories")
        return
    p.add_argument("--config", metavar="PATH", help="config file naming the socket (default: /etc/storybot/storybot.toml)")
    p.add_argument("--socket", metavar="PATH", help="control socket of the robot (default: [daemon] socket)")
    if command == "ask":
        p.add_argument("prompt", nargs="*", help="how the story begins ('-': read one line from standard input)")
        _story_options(p)
        p.add_argument("--no-wait", action="store_true", help="queue the prompt and return without the story")
        p.add_argument("--format", choices=["text", "jsonl"], default="text", help="text, or the robot's JSON events")
    elif command == "stop":
        p.add_argument("--all", action="store_true", help="also drop the prompts waiting their turn")
    elif command == "status":
        p.add_argument("--json", action="store_true", help="the whole status as one JSON object")


def _socket_path(args):
    if args.socket:
        return config.expand(args.socket)
    cfg, _ = config.load(args.config)
    path = config.expand(cfg["daemon"]["socket"])
    if not path:
        raise StorybotError("[daemon] socket is empty, so the robot has no control socket; set it or pass --socket PATH")
    return path


def _first(replies):
    for ev in replies:
        if ev.get("event") == "error":
            raise StorybotError(ev.get("message", "the robot refused the request"))
        return ev
    raise StorybotError("the robot closed the connection without answering; see its log")


def _ask(args, path):
    if args.prompt == ["-"]:
        prompt = sys.stdin.readline().rstrip("\n")
    else:
        prompt = " ".join(args.prompt)
    req = {"cmd": "ask", "prompt": prompt, "wait": not args.no_wait}
    for key in STORY_KEYS:
        if getattr(args, key) is not None:
            req[key] = getattr(args, key)
    out = sys.stdout
    end = None
    started = False  # the story's line is open and needs its newline, however it ends
    try:
        for ev in control.request(path, req):
            kind = ev.get("event")
            if kind == "error":
                raise StorybotError(ev.get("message", "the robot refused the prompt"))
            if args.format == "jsonl":
                out.write(json.dumps(ev, ensure_ascii=False) + "\n")
            elif kind == "queued" and args.no_wait:
                out.write(f"queued as story {ev['id']}\n")
            elif kind == "start":
                out.write(prompt)
                started = True
            elif kind == "token":
                out.write(ev["text"])
            out.flush()
            if kind == "end":
                end = ev
    finally:
        if started:
            out.write("\n")
            out.flush()
    if args.no_wait:
        return 0
    if end is None:
        raise StorybotError("the robot closed the connection before the story ended; see its log")
    if end["stop"] not in FINISHED:
        print(f"storybot: story {end['id']} was not finished ({end['stop']})", file=sys.stderr)
        return 1
    return 0


def _print_status(s):
    story = s.get("story")
    line = f"storybot {s['pid']}: {s['status']}"
    if story:
        line += f"; story {story['id']}: {story['tokens']} tokens in {story['seconds']:.1f} s"
    print(line)
    m = s["model"]
    print(f"model: {m['file']} ({m['format']}, {m['kernel']} kernel, context {m['context']})")
    sp = s["speech"]
    if sp.get("on"):
        print(f"speech: {sp['backend']} voice {sp['voice']}, rate {sp['rate']} wpm, pitch {sp['pitch']}, volume {sp['volume']}")
    else:
        print("speech: off")
    print(f"told {count(s['stories_told'], 'story')} ({count(s['tokens'], 'token')}), {count(s['errors'], 'error')}, {s['queued']} waiting, "
          f"new prompts {s['on_new_prompt']}; up {s['uptime_s']:.0f} s; memory {s['rss_kb'] / 1024:.1f} MB")


def run(args, command):
    if command == "serve":
        try:
            return Robot(args).serve()
        except StorybotError as e:
            return logs.refused(e)
    path = _socket_path(args)
    if command == "ask":
        return _ask(args, path)
    if command == "stop":
        ev = _first(control.request(path, {"cmd": "stop", "all": args.all}, timeout=10))
        if ev["story"] is None and not ev["dropped"]:
            print("the robot was not telling a story")
        else:
            what = f"stopped story {ev['story']}" if ev["story"] is not None else "no story was running"
            print(what + (f"; dropped {len(ev['dropped'])} waiting" if ev["dropped"] else ""))
        return 0
    s = _first(control.request(path, {"cmd": "status"}, timeout=10))
    if args.json:
        print(json.dumps(s, ensure_ascii=False))
    else:
        _print_status(s)
    return 0
