"""What a Speaker measures about one story, written by three threads and read by a fourth.

The generation thread marks sentences ready, the synth thread adds synthesis time, the
player thread marks what was heard, and stats() may be read by anyone at any time: every
change and the snapshot go through one lock. stats() gives the JSON keys `storybot say
--json` prints and the tests read; report() is the same in plain words."""
import dataclasses
import sys
import threading
import time
from typing import IO, Any, Dict, List, Optional

MAX_RECORDS = 500        # per-sentence timing kept per story (totals count every sentence)


def now() -> float:
    return time.perf_counter()


@dataclasses.dataclass
class SentenceRecord:
    """One sentence: seconds are from the story's start, None until it happens."""
    i: int
    chars: int
    ready_s: float
    synth_ms: Optional[float] = None
    first_audio_ms: Optional[float] = None
    audio_s: Optional[float] = None
    sound_s: Optional[float] = None


class Timings:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.t0 = now()
        self.records: List[SentenceRecord] = []
        self.n = 0
        self.tts_s = self.tts_cpu_s = self.tts_overlap_s = 0.0
        self.samples = 0
        self.played_overlap_s = self.blocked_s = 0.0
        self.first_sound: Optional[float] = None
        self.first_ready: Optional[float] = None
        self.last_token: Optional[float] = None
        self.gen_end: Optional[float] = None
        self.speech_end: Optional[float] = None
        self.cancel_ms: Optional[float] = None
        self.cancelled = False
        self.errors = 0
        self.audio_failed = False

    # -- the generation thread ---------------------------------------------------------

    def token(self) -> None:
        self.last_token = now()

    def sentence_ready(self, chars: int) -> SentenceRecord:
        t = now()
        with self._lock:
            if self.first_ready is None:
                self.first_ready = t
            rec = SentenceRecord(self.n, chars, round(t - self.t0, 4))
            self.n += 1
            if len(self.records) < MAX_RECORDS:
                self.records.append(rec)
        return rec

    def feed_blocked(self, seconds: float) -> None:
        with self._lock:
            self.blocked_s += seconds

    def generation_ended(self) -> None:
        self.gen_end = now()

    def cancelled_at(self, t0: float) -> None:
        """A cancel asked at t0 has been carried out now."""
        with self._lock:
            self.cancelled = True
            if self.gen_end is None:
                self.gen_end = t0
            self.cancel_ms = round((now() - t0) * 1000, 2)

    # -- the synth thread --------------------------------------------------------------

    def synthesis(self, wall_s: float, cpu_s: float) -> None:
        with self._lock:
            self.tts_s += wall_s
            self.tts_cpu_s += cpu_s
            if self.gen_end is None:
                self.tts_overlap_s += wall_s

    def sentence_done(self, rec: SentenceRecord, synth_s: float, first_audio_s: Optional[float],
                      samples: int, rate: int) -> None:
        with self._lock:
            rec.synth_ms = round(synth_s * 1000, 3)
            rec.first_audio_ms = None if first_audio_s is None else round(first_audio_s * 1000, 3)
            rec.audio_s = round(samples / rate, 3)
            self.samples += samples

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    # -- the player thread -------------------------------------------------------------

    def played(self, rec: SentenceRecord, seconds: float) -> None:
        t = now()
        with self._lock:
            if rec.sound_s is None:
                rec.sound_s = round(t - self.t0, 4)
                if self.first_sound is None:
                    self.first_sound = t
            if self.gen_end is None:
                self.played_overlap_s += seconds

    def audio_error(self) -> bool:
        """Counts a failed sink call; True the first time in this story."""
        with self._lock:
            self.errors += 1
            first, self.audio_failed = not self.audio_failed, True
        return first

    def speech_ended(self) -> None:
        self.speech_end = now()

    # -- anyone ------------------------------------------------------------------------

    def stats(self, backend: str, voice: str, output: str, rate: int) -> Dict[str, Any]:
        with self._lock:
            return self._stats(backend, voice, output, rate)

    def _stats(self, backend: str, voice: str, output: str, rate: int) -> Dict[str, Any]:
        def rel(t: Optional[float]) -> Optional[float]:
            return None if t is None else round(t - self.t0, 4)

        audio_s = self.samples / rate
        cpu = backend == "espeak"   # pyttsx3 synthesises in a thread of libespeak-ng's own
        return {
            "backend": backend,
            "voice": voice,
            "output": output,
            "sample_rate": rate,
            "sentences_total": self.n,
            "first_sound_s": rel(self.first_sound),
            "first_ready_s": rel(self.first_ready),
            "tts_ms": round(self.tts_s * 1000, 3),
            "audio_s": round(audio_s, 3),
            "tts_ms_per_audio_s": round(self.tts_s * 1000 / audio_s, 3) if audio_s else None,
            "tts_cpu_ms": round(self.tts_cpu_s * 1000, 3) if cpu else None,
            "tts_cpu_ms_per_audio_s": round(self.tts_cpu_s * 1000 / audio_s, 3) if audio_s and cpu else None,
            "tts_overlap_ms": round(self.tts_overlap_s * 1000, 3),
            "speech_overlap_s": round(self.played_overlap_s, 3),
            "feed_blocked_s": round(self.blocked_s, 4),
            "last_token_s": rel(self.last_token),
            "generation_s": rel(self.gen_end),
            "speech_end_s": rel(self.speech_end),
            "cancelled": self.cancelled,
            "cancel_ms": self.cancel_ms,
            "errors": self.errors,
            "sentences": [dataclasses.asdict(r) for r in self.records],
        }


class ComputeClock:
    """Time the synth thread spends computing, not waiting for the player (wall clock,
    which includes waiting for the GIL, and the thread's CPU time); tick() hands each
    stretch to the Timings, which also count how much fell while the story was written."""

    def __init__(self, timings: Timings) -> None:
        self.timings = timings
        self.total = 0.0
        self._mark, self._cpu = now(), time.thread_time()

    def tick(self) -> None:
        t, c = now(), time.thread_time()
        d = t - self._mark
        self.total += d
        self.timings.synthesis(d, c - self._cpu)
        self._mark, self._cpu = t, c

    def resume(self) -> None:
        self._mark, self._cpu = now(), time.thread_time()


def _fmt(v: Optional[float], digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def report(st: Dict[str, Any], stream: IO[str] = sys.stderr) -> None:
    """stats() in words, one line per sentence and a summary."""
    if not st["sentences_total"]:
        print(f"speech: nothing to say ({st['backend']}, {st['output']})", file=stream)
        return
    for r in st["sentences"]:
        print(f"speech: sentence {r['i'] + 1}: ready {r['ready_s']:.3f} s, synthesis {_fmt(r['synth_ms'], 1)} ms, "
              f"{_fmt(r['audio_s'], 2)} s of audio, heard from {_fmt(r['sound_s'])} s", file=stream)
    print(f"speech: {st['backend']} {st['voice']} -> {st['output']}: {st['sentences_total']} sentences, "
          f"{st['audio_s']:.2f} s of audio", file=stream)
    if st["first_sound_s"] is None:
        print("speech: no sound", file=stream)
    else:
        print(f"speech: first sound {st['first_sound_s']:.3f} s after the prompt "
              f"({st['first_sound_s'] - st['first_ready_s']:.3f} s after its words were written)", file=stream)
    cpu = "" if st["tts_cpu_ms_per_audio_s"] is None else f"; CPU {st['tts_cpu_ms_per_audio_s']:.2f} ms/s"
    per_s = _fmt(st["tts_ms_per_audio_s"], 2)
    print(f"speech: TTS {st['tts_ms']:.1f} ms ({per_s} ms per second of audio{cpu}); "
          f"while the story was being written: {st['tts_overlap_ms']:.1f} ms of TTS, "
          f"{st['speech_overlap_s']:.2f} s of speech", file=stream)
    if st["cancelled"]:
        print(f"speech: stopped {st['cancel_ms']} ms after the cancel", file=stream)
