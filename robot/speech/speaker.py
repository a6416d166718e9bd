"""The Speaker: each finished sentence is spoken while the model writes the next one.

    speaker = Speaker(backend, sink, settings)   # robot/speech/output.py opens one from the config
    speaker.begin(prompt)        # a new story; the prompt starts its first sentence
    speaker.feed(tok.text)       # cheap; blocks only when the sentence queue is full
    speaker.end()                # speak the rest and wait for it
    speaker.cancel()             # or: stop within one audio chunk, drop the queue
    speaker.close()

Two threads per Speaker, joined by bounded queues of typed messages:

    feed() -> SentenceSplitter -> [Say] -> synth thread -> [Chunk] -> player thread -> sink

The synth thread owns the backend (robot/speech/backends.py), the player thread owns
the sink (robot/speech/sinks.py). The audio queue holds about a second of sound, so
synthesis runs just ahead of playback and cancel() has little to throw away. Every
message carries the epoch of its story: begin() and cancel() start a new epoch, and
both threads drop what belongs to an older one.
"""
import dataclasses
import queue
import sys
import threading
from typing import IO, Any, Callable, Dict, Mapping, Optional, Union

from robot.errors import StorybotError
from robot.speech.backends import CHUNK_MS, VOICE_KEYS, Backend
from robot.speech.sentences import SentenceSplitter, speakable
from robot.speech.sinks import DeviceSink, Sink
from robot.speech.timings import ComputeClock, SentenceRecord, Timings, now, report

AUDIO_AHEAD_S = 1.0      # sound the synth thread may render before the player takes it
END_PAUSE_AFTER = ".!?\"')\u2026\u201d\u2019"   # a sentence ending so gets espeak's pause after it

Warn = Callable[[str], None]


def warn_stderr(msg: str) -> None:
    print(f"storybot: warning: {msg}", file=sys.stderr, flush=True)


# -- the messages ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Open:
    """A story begins: the player opens the sink."""
    epoch: int


@dataclasses.dataclass(frozen=True)
class Say:
    """A sentence for the synth thread."""
    epoch: int
    record: SentenceRecord
    text: str
    end_pause: bool


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Sound of one sentence for the player."""
    epoch: int
    record: SentenceRecord
    data: bytes


@dataclasses.dataclass(frozen=True)
class End:
    """The story is written: the player finishes the sink, then sets done."""
    epoch: int
    done: threading.Event


@dataclasses.dataclass(frozen=True)
class Abort:
    """Stop the sound now (a cancel); done is set once the sink is closed."""
    epoch: int
    done: threading.Event


@dataclasses.dataclass(frozen=True)
class Quit:
    """The Speaker is closed: both threads end."""
    epoch: int = -1


TextMessage = Union[Open, Say, End, Quit]
AudioMessage = Union[Open, Chunk, End, Abort, Quit]


def _drain(q: "queue.Queue[Any]") -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


class Speaker:
    """Speaks stories sentence by sentence; the interface is in the module docstring."""

    def __init__(self, backend: Backend, sink: Sink, settings: Mapping[str, Any], warn: Warn = warn_stderr) -> None:
        self.backend = backend
        self.sink = sink
        self._settings = dict(settings)
        self.warn = warn
        self.rate = backend.sample_rate
        self._splitter = self._new_splitter()
        self._text_q: "queue.Queue[TextMessage]" = queue.Queue(maxsize=self._settings["queue_sentences"])
        self._audio_q: "queue.Queue[AudioMessage]" = queue.Queue(maxsize=max(2, int(AUDIO_AHEAD_S * 1000 / CHUNK_MS)))
        self._lock = threading.Lock()
        self._epoch = 0
        self._active = False
        self._pending: Optional[Dict[str, Any]] = None   # voice settings for the next sentence (reconfigure)
        self._closed = False
        self._timings = Timings()
        self._threads = [threading.Thread(target=self._synth_loop, name="speech-synth", daemon=True),
                         threading.Thread(target=self._player_loop, name="speech-player", daemon=True)]
        for t in self._threads:
            t.start()

    def _new_splitter(self) -> SentenceSplitter:
        return SentenceSplitter(self._settings["max_sentence_chars"], self._settings.get("first_clause", True))

    # -- the story interface (generation thread) ---------------------------------

    def begin(self, prompt_text: str = "") -> None:
        if self._active:
            self.cancel()
        with self._lock:
            self._epoch += 1
            epoch = self._epoch
            self._splitter = self._new_splitter()
            self._timings = Timings()
            self._active = True
        self._put_text(Open(epoch))
        if prompt_text:
            self.feed(prompt_text)

    def feed(self, text: str) -> None:
        epoch = self._epoch
        self._timings.token()
        if not self._active or not text:
            return
        for piece in self._splitter.feed(text):
            self._enqueue(piece, epoch)

    def end(self) -> None:
        """The story is written: speak what is left and wait until it has been heard."""
        if not self._active:
            return
        epoch = self._epoch
        for piece in self._splitter.flush():
            self._enqueue(piece, epoch)
        self._timings.generation_ended()
        done = threading.Event()
        self._put_text(End(epoch, done))
        while not done.wait(0.05):
            if self._epoch != epoch or self._closed:
                break
        self._active = False

    def cancel(self) -> None:
        """Stop speaking now and drop everything queued (Ctrl-C, SIGTERM, a new prompt)."""
        t0 = now()
        timings = self._timings
        with self._lock:
            self._epoch += 1
            was_active, self._active = self._active, False
            self._splitter.reset()
        _drain(self._text_q)
        _drain(self._audio_q)
        done = threading.Event()
        self._audio_q.put(Abort(self._epoch, done))
        done.wait(1.0)
        if was_active:
            timings.cancelled_at(t0)

    def close(self) -> None:
        if self._closed:
            return
        if self._active:
            self.cancel()
        self._closed = True
        self._text_q.put(Quit())
        for t in self._threads:
            t.join(0.5)

    def reconfigure(self, cfg: Mapping[str, Any]) -> None:
        """New [speech_out] settings (after SIGHUP): voice, rate, pitch and volume apply
        from the next sentence, sentence settings and device from the next story."""
        so = cfg["speech_out"]
        if so["backend"] != self.backend.name:
            self.warn(f"the speech backend stays {self.backend.name} until storybot restarts")
        if so["queue_sentences"] != self._settings["queue_sentences"]:
            self.warn("a new [speech_out] queue_sentences takes effect when storybot restarts")
        voice = {k: so[k] for k in VOICE_KEYS}
        if voice != {k: self._settings[k] for k in VOICE_KEYS}:
            self._pending = voice
        if isinstance(self.sink, DeviceSink) and so["device"] != self.sink.device:
            self.sink.device, self.sink.index = so["device"], None
        self._settings.update({k: v for k, v in so.items() if k not in VOICE_KEYS + ("backend", "queue_sentences")})

    def settings(self) -> Dict[str, Any]:
        """What the voice really uses now (a reconfigure shows from the next sentence)."""
        out = {k: self._settings[k] for k in VOICE_KEYS}
        out["backend"] = self.backend.name
        out["output"] = self.sink.describe()
        return out

    def stats(self) -> Dict[str, Any]:
        """The timing of the current (or last) story; JSON keys in robot/speech/timings.py."""
        return self._timings.stats(self.backend.name, self._settings["voice"], self.sink.describe(), self.rate)

    def report(self, stream: IO[str] = sys.stderr) -> None:
        report(self.stats(), stream)

    # -- the generation thread's side of the queue ----------------------------------

    def _enqueue(self, piece: str, epoch: int) -> None:
        if not speakable(piece) or epoch != self._epoch:
            return
        text = piece.strip()
        rec = self._timings.sentence_ready(len(text))
        self._put_text(Say(epoch, rec, text, text[-1] in END_PAUSE_AFTER), measure=True)

    def _put_text(self, item: TextMessage, measure: bool = False) -> None:
        """Blocks while the sentence queue is full (that is the only time generation
        waits for speech); gives up if the story is cancelled meanwhile."""
        try:
            self._text_q.put_nowait(item)
            return
        except queue.Full:
            pass
        t = now()
        self._put(self._text_q, item)
        if measure:
            self._timings.feed_blocked(now() - t)

    def _put(self, q: "queue.Queue[Any]", item: Union[TextMessage, AudioMessage]) -> bool:
        """Waits for room in q as long as item's story lasts; False if it ended first."""
        while item.epoch == self._epoch and not self._closed:
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    # -- the synth thread ------------------------------------------------------------

    def _apply_pending(self) -> None:
        voice, self._pending = self._pending, None
        if voice is None:
            return
        try:
            self.backend.configure(**voice)
            self._settings.update(voice)
        except StorybotError as e:
            self.warn(f"{e}; keeping the voice {self.backend.voice!r}")

    def _synth_loop(self) -> None:
        while True:
            item = self._text_q.get()
            if isinstance(item, Quit):
                self._audio_q.put(item)
                return
            if item.epoch != self._epoch:
                continue
            if isinstance(item, Say):
                self._apply_pending()
                self._synthesize(item)
            else:
                self._put(self._audio_q, item)

    def _synthesize(self, say: Say) -> None:
        timings = self._timings
        clock = ComputeClock(timings)
        samples = 0
        first: Optional[float] = None

        def emit(data: bytes) -> bool:
            nonlocal samples, first
            clock.tick()
            if first is None:
                first = now()
            samples += len(data) // 2
            ok = self._put(self._audio_q, Chunk(say.epoch, say.record, data))
            clock.resume()
            return ok

        t0 = now()
        try:
            self.backend.synthesize(say.text, emit, say.end_pause)
        except Exception as e:  # a backend failure costs this sentence, never the story
            timings.error()
            self.warn(f"speech synthesis failed ({type(e).__name__}: {e}); skipping a sentence")
            return
        clock.tick()
        timings.sentence_done(say.record, clock.total, None if first is None else first - t0, samples, self.rate)

    # -- the player thread -----------------------------------------------------------

    def _player_loop(self) -> None:
        is_open = False
        while True:
            item = self._audio_q.get()
            if isinstance(item, Quit):
                if is_open:
                    self.sink.abort()
                return
            if isinstance(item, Abort):
                if is_open:
                    self._guard(self.sink.abort)
                    is_open = False
                item.done.set()
            elif item.epoch != self._epoch:
                if isinstance(item, End):
                    item.done.set()
            elif isinstance(item, Open):
                if is_open:
                    self._guard(self.sink.abort)
                is_open = self._guard(self.sink.open, self.rate)
            elif isinstance(item, Chunk):
                if is_open:
                    self._timings.played(item.record, len(item.data) / 2 / self.rate)
                    is_open = self._guard(self.sink.write, item.data)
            else:
                if is_open:
                    self._guard(self.sink.finish)
                    is_open = False
                self._timings.speech_ended()
                item.done.set()

    def _guard(self, fn: Callable[..., None], *args: Any) -> bool:
        """Runs a sink call; a failing device costs the sound of this story, not the story."""
        try:
            fn(*args)
            return True
        except Exception as e:
            if self._timings.audio_error():
                self.warn(f"sound output failed ({e}); the story goes on as text")
            try:
                self.sink.abort()
            except Exception:
                pass
            return False
