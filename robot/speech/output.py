"""Speech out: each finished sentence is spoken while the model writes the next one.

    speaker = open_from_args(args, cfg)     # None (after one warning) when it cannot speak
    speaker.begin(prompt)                   # a new story; the prompt starts its first sentence
    for tok in generation:
        speaker.feed(tok.text)              # cheap; blocks only when the sentence queue is full
    speaker.end()                           # speak the rest and wait for it
    speaker.cancel()                        # or: stop within one audio chunk, drop the queue
    speaker.close()

Two threads per Speaker, joined by bounded queues:

    feed() -> SentenceSplitter -> [sentences] -> synth thread -> [audio chunks] -> player thread -> sink

The synth thread owns the text-to-speech backend: `espeak` (libespeak-ng through cffi
in synchronous mode, audio streamed chunk by chunk from its callback) or `pyttsx3`
(driving the same library; a whole sentence is rendered before any of it can play).
The player thread owns the sink: a PortAudio device (robot/audio.py) or a WAV file.
The audio queue holds about a second of sound, so synthesis runs just ahead of playback
and cancel() has little to throw away.

libespeak-ng keeps global state, so one process uses one backend and one engine for its
whole life (pyttsx3 2.99 crashes after ~100 engines are created and collected).
"""
import argparse
import io
import json
import logging
import os
import queue
import sys
import threading
import time
import wave

from robot.speech import audio
from robot.errors import StorybotError
from robot.speech.sentences import SentenceSplitter, speakable

log = logging.getLogger("storybot.speech")

CHUNK_MS = 50            # audio chunk size: also the longest a cancel waits for the device
AUDIO_AHEAD_S = 1.0      # sound the synth thread may render before the player takes it
MAX_RECORDS = 500        # per-sentence timing kept per story (totals count every sentence)
BACKENDS = ("espeak", "pyttsx3")
VOICE_KEYS = ("voice", "rate", "pitch", "volume")


class NoSpeech(StorybotError):
    """Text-to-speech is not available here; str(e) names the missing package."""


def _now():
    return time.perf_counter()


# -- backends ------------------------------------------------------------------

_owner = None            # the backend that has libespeak-ng in this process


def _claim(name):
    global _owner
    if _owner not in (None, name):
        raise StorybotError(f"this process already speaks through {_owner}; restart storybot to switch to {name}")
    _owner = name


class EspeakBackend:
    """libespeak-ng called directly: espeak_Synth runs in the calling thread and hands
    over audio every CHUNK_MS through a callback, so sound can start after the first
    chunk (well under a millisecond) instead of after the whole sentence."""

    name = "espeak"
    _lib = None
    _ffi = None
    _rate = None
    _lock = threading.Lock()   # one synthesis at a time in the process, whichever Speaker asks
    _job = None          # the emit function of the synthesis in progress
    _failure = None      # an exception raised inside the callback
    _callback = None

    CDEF = """
    typedef struct {
        int type;
        unsigned int unique_identifier;
        int text_position;
        int length;
        int audio_position;
        int sample;
        void *user_data;
        union { int number; const char *name; char string[8]; } id;
    } espeak_EVENT;
    int espeak_Initialize(int output, int buflength, const char *path, int options);
    void espeak_SetSynthCallback(int (*callback)(short *, int, espeak_EVENT *));
    int espeak_Synth(const char *text, size_t size, unsigned int position, int position_type,
                     unsigned int end_position, unsigned int flags, unsigned int *unique_identifier,
                     void *user_data);
    int espeak_SetVoiceByName(const char *name);
    int espeak_SetParameter(int parameter, int value, int relative);
    const char *espeak_Info(const char **path_data);
    """
    AUDIO_OUTPUT_SYNCHRONOUS = 2
    POS_CHARACTER = 1
    CHARS_UTF8 = 1
    ENDPAUSE = 0x1000
    RATE, VOLUME, PITCH = 1, 2, 3

    def __init__(self):
        cls = EspeakBackend
        if cls._lib is None:
            import cffi

            ffi = cffi.FFI()
            ffi.cdef(self.CDEF)
            path = os.environ.get("STORYBOT_ESPEAK_LIBRARY") or "libespeak-ng.so.1"
            try:
                lib = ffi.dlopen(path)
            except OSError:
                raise NoSpeech(f"libespeak-ng is not installed ({path} cannot be loaded; "
                               "sudo apt install libespeak-ng1 espeak-ng-data)") from None
            _claim(self.name)
            rate = lib.espeak_Initialize(self.AUDIO_OUTPUT_SYNCHRONOUS, CHUNK_MS, ffi.NULL, 0)
            if rate <= 0:
                raise NoSpeech("espeak-ng could not start because its data is missing (sudo apt install espeak-ng-data)")

            def on_audio(wav, n, events):
                job = cls._job
                if job is None:
                    return 1
                if n <= 0:
                    return 0
                return 0 if job(ffi.buffer(wav, 2 * n)[:]) else 1

            def on_error(exc_type, exc, tb):
                cls._failure = exc
                return 1          # stop this synthesis; synthesize() re-raises

            cls._callback = ffi.callback("int(short *, int, espeak_EVENT *)", on_audio, onerror=on_error)
            lib.espeak_SetSynthCallback(cls._callback)
            cls._ffi, cls._lib, cls._rate = ffi, lib, rate
        _claim(self.name)
        self.sample_rate = cls._rate
        self.version = cls._ffi.string(cls._lib.espeak_Info(cls._ffi.NULL)).decode()
        self.voice = None

    def configure(self, voice, rate, pitch, volume):
        with self._lock:
            self._configure(voice, rate, pitch, volume)

    def _configure(self, voice, rate, pitch, volume):
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            if self.voice:
                lib.espeak_SetVoiceByName(self.voice.encode())
            raise StorybotError(f"espeak-ng has no voice {voice!r}; list them with 'espeak-ng --voices' "
                                "(a variant is added as en-us+robosoft)")
        self.voice = voice
        lib.espeak_SetParameter(self.RATE, int(rate), 0)
        lib.espeak_SetParameter(self.PITCH, int(pitch), 0)
        lib.espeak_SetParameter(self.VOLUME, int(round(volume * 100)), 0)

    def synthesize(self, text, emit, end_pause=True):
        """Calls emit(pcm_bytes) for each chunk; emit returning False stops early."""
        cls = EspeakBackend
        data = text.encode("utf-8")
        flags = self.CHARS_UTF8 | (self.ENDPAUSE if end_pause else 0)
        with self._lock:
            cls._job, cls._failure = emit, None
            try:
                self._lib.espeak_Synth(data, len(data) + 1, 0, self.POS_CHARACTER, 0, flags,
                                       self._ffi.NULL, self._ffi.NULL)
            finally:
                cls._job = None
            failure, cls._failure = cls._failure, None
        if failure is not None:
            raise failure


class Pyttsx3Backend:
    """pyttsx3 (the design's choice) with its espeak driver. A sentence is rendered into
    an in-memory WAV (one save_to_file per runAndWait: two queued files would leave only
    the last one written) and then handed over in chunks; say() is not used because it
    returns before playback ends and plays through an `aplay` child process.

    runAndWait() does not wait either: its queued endLoop runs before the synthesis
    starts, so it returns after one 10 ms poll, and on a busy machine the WAV is written
    later (into the next sentence's file if that has been queued). Each sentence
    therefore waits for the driver's 'finished-utterance' notice."""

    name = "pyttsx3"
    _engine = None       # one engine per process: pyttsx3 2.99 crashes after ~100 are collected
    _lock = threading.Lock()
    _finished = None
    version = ""
    sample_rate = 22050  # what its espeak driver writes into every WAV header
    TIMEOUT_S = 30.0

    def __init__(self):
        cls = Pyttsx3Backend
        if cls._engine is None:
            try:
                import pyttsx3
            except ImportError:
                raise NoSpeech("pyttsx3 is not installed (pip install pyttsx3, or use --tts espeak)") from None
            _claim(self.name)
            try:
                from pyttsx3.drivers import espeak as driver
                # The driver print()s "Audio saved to ..." on stdout, into the story text.
                driver.print = lambda *a, **k: log.debug("pyttsx3: %s", " ".join(map(str, a)))
                engine = pyttsx3.init("espeak")
                cls._finished = threading.Event()
                engine.connect("finished-utterance", lambda **kw: cls._finished.set())
                cls._engine = engine
            except Exception as e:  # a missing libespeak-ng surfaces as OSError, RuntimeError, ...
                raise NoSpeech(f"pyttsx3 could not start espeak-ng ({e}; sudo apt install libespeak-ng1)") from None
            cls.version = getattr(pyttsx3, "__version__", "")
        _claim(self.name)
        self.engine = cls._engine
        self.voice = None
        self.retries = 0

    def configure(self, voice, rate, pitch, volume):
        with self._lock:
            self._configure(voice, rate, pitch, volume)

    def _configure(self, voice, rate, pitch, volume):
        # engine.setProperty only queues the change (a bad voice would fail unseen at the
        # next runAndWait), so the voice is first tried through the driver's own binding.
        from pyttsx3.drivers import _espeak

        if _espeak.SetVoiceByName(voice.encode()) != 0:
            if self.voice:
                _espeak.SetVoiceByName(self.voice.encode())
            raise StorybotError(f"espeak-ng has no voice {voice!r}; list them with 'espeak-ng --voices' "
                                "(a variant is added as en-us+robosoft)")
        self.engine.setProperty("voice", voice)
        self.voice = voice
        self.engine.setProperty("rate", int(rate))
        self.engine.setProperty("pitch", int(pitch))
        self.engine.setProperty("volume", float(volume))

    def _render(self, text):
        buf = io.BytesIO()
        done = self._finished
        done.clear()
        self.engine.save_to_file(text, buf)
        self.engine.runAndWait()
        if not done.wait(self.TIMEOUT_S):
            raise RuntimeError(f"pyttsx3 did not finish a sentence in {self.TIMEOUT_S:.0f} s")
        if buf.tell() == 0:
            return b""
        buf.seek(0)
        with wave.open(buf) as w:
            return w.readframes(w.getnframes())

    def synthesize(self, text, emit, end_pause=True):
        # On a busy machine about one sentence in a few thousand comes back as an empty
        # WAV (the driver's callbacks race its own state across threads): say it again.
        for attempt in range(3):
            with self._lock:
                pcm = self._render(text)
            if pcm:
                break
            self.retries += 1
            log.debug("pyttsx3 returned no audio for %r (attempt %d)", text, attempt + 1)
        else:
            raise RuntimeError("pyttsx3 returned no audio three times")
        step = 2 * (self.sample_rate * CHUNK_MS // 1000)     # whole samples: a device takes whole frames
        for i in range(0, len(pcm), step):
            if not emit(pcm[i:i + step]):
                return


def open_backend(name):
    if name == "espeak":
        return EspeakBackend()
    if name == "pyttsx3":
        return Pyttsx3Backend()
    raise StorybotError(f"unknown speech backend {name!r}; choose one of {', '.join(BACKENDS)}")


# -- sinks ---------------------------------------------------------------------

class DeviceSink:
    """A PortAudio output device, opened for each story and closed after it."""

    def __init__(self, device=""):
        self.device = device
        self._out = None
        self.index = None

    def describe(self):
        return f"device {self.device!r}" if self.device else "the default sound device"

    def check(self, rate):
        self.index = audio.find_device(self.device, output=True)
        audio.check_output(self.index, rate)

    def open(self, rate):
        if self.index is None:
            self.check(rate)
        self._out = audio.Output(self.index, rate, frames_per_buffer=rate * CHUNK_MS // 1000)

    def write(self, data):
        self._out.write(data)

    def finish(self):
        out, self._out = self._out, None
        if out:
            out.finish()

    def abort(self):
        out, self._out = self._out, None
        if out:
            out.abort()


class WavSink:
    """The whole story as one 16-bit mono WAV file (for boards without a speaker)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._w = None

    def describe(self):
        return f"WAV file {self.path}"

    def check(self, rate):
        try:
            with open(self.path, "ab"):
                pass
        except OSError as e:
            raise StorybotError(f"cannot write the WAV file {self.path} ({e.strerror}); choose another path for --wav") from None

    def open(self, rate):
        w = wave.open(self.path, "wb")
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        self._w = w

    def write(self, data):
        self._w.writeframesraw(data)

    def finish(self):
        w, self._w = self._w, None
        if w:
            w.close()          # rewrites the header with the final length

    abort = finish


# -- the speaker -----------------------------------------------------------------

def _warn(msg):
    print(f"storybot: warning: {msg}", file=sys.stderr, flush=True)


class Speaker:
    def __init__(self, backend, sink, settings, warn=_warn):
        self.backend = backend
        self.sink = sink
        self._settings = dict(settings)
        self.warn = warn
        self.rate = backend.sample_rate
        self._splitter = self._new_splitter()
        self._text_q = queue.Queue(maxsize=self._settings["queue_sentences"])
        self._audio_q = queue.Queue(maxsize=max(2, int(AUDIO_AHEAD_S * 1000 / CHUNK_MS)))
        self._lock = threading.Lock()
        self._epoch = 0
        self._active = False
        self._pending = None      # voice settings for the next sentence (reconfigure)
        self._closed = False
        self._story = self._new_story()
        self._threads = [threading.Thread(target=self._synth_loop, name="speech-synth", daemon=True),
                         threading.Thread(target=self._player_loop, name="speech-player", daemon=True)]
        for t in self._threads:
            t.start()

    def _new_splitter(self):
        return SentenceSplitter(self._settings["max_sentence_chars"], self._settings.get("first_clause", True))

    def _new_story(self):
        return {"t0": _now(), "records": [], "n": 0, "tts_s": 0.0, "tts_cpu_s": 0.0, "tts_overlap_s": 0.0, "samples": 0,
                "played_overlap_s": 0.0, "blocked_s": 0.0, "first_sound": None, "first_ready": None,
                "last_token": None, "gen_end": None, "speech_end": None, "cancel_ms": None,
                "cancelled": False, "errors": 0, "audio_failed": False}

    # -- the story interface (generation thread) ---------------------------------

    def begin(self, prompt_text=""):
        if self._active:
            self.cancel()
        with self._lock:
            self._epoch += 1
            epoch = self._epoch
            self._splitter = self._new_splitter()
            self._story = self._new_story()
            self._active = True
        self._put_text(("open", epoch))
        if prompt_text:
            self.feed(prompt_text)

    def feed(self, text):
        epoch = self._epoch
        self._story["last_token"] = _now()
        if not self._active or not text:
            return
        for piece in self._splitter.feed(text):
            self._enqueue(piece, epoch)

    def end(self):
        """The story is written: speak what is left and wait until it has been heard."""
        if not self._active:
            return
        epoch = self._epoch
        for piece in self._splitter.flush():
            self._enqueue(piece, epoch)
        self._story["gen_end"] = _now()
        done = threading.Event()
        self._put_text(("end", epoch, done))
        while not done.wait(0.05):
            if self._epoch != epoch or self._closed:
                break
        self._active = False

    def cancel(self):
        """Stop speaking now and drop everything queued (Ctrl-C, SIGTERM, a new prompt)."""
        t0 = _now()
        story = self._story
        with self._lock:
            self._epoch += 1
            was_active, self._active = self._active, False
            self._splitter.reset()
        _drain(self._text_q)
        _drain(self._audio_q)
        done = threading.Event()
        self._audio_q.put(("abort", self._epoch, done))
        done.wait(1.0)
        if was_active:
            story["cancelled"] = True
            if story["gen_end"] is None:
                story["gen_end"] = t0
            story["cancel_ms"] = round((_now() - t0) * 1000, 2)

    def close(self):
        if self._closed:
            return
        if self._active:
            self.cancel()
        self._closed = True
        self._text_q.put(("quit",))
        for t in self._threads:
            t.join(0.5)

    def reconfigure(self, cfg):
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

    def settings(self):
        """What the voice really uses now (a reconfigure shows from the next sentence)."""
        out = {k: self._settings[k] for k in VOICE_KEYS}
        out["backend"] = self.backend.name
        out["output"] = self.sink.describe()
        return out

    # -- timing ------------------------------------------------------------------

    def stats(self):
        s = self._story
        t0 = s["t0"]

        def rel(t):
            return None if t is None else round(t - t0, 4)

        audio_s = s["samples"] / self.rate
        out = {
            "backend": self.backend.name,
            "voice": self._settings["voice"],
            "output": self.sink.describe(),
            "sample_rate": self.rate,
            "sentences_total": s["n"],
            "first_sound_s": rel(s["first_sound"]),
            "first_ready_s": rel(s["first_ready"]),
            "tts_ms": round(s["tts_s"] * 1000, 3),
            "audio_s": round(audio_s, 3),
            "tts_ms_per_audio_s": round(s["tts_s"] * 1000 / audio_s, 3) if audio_s else None,
            # CPU time of the synth thread; pyttsx3 synthesises in a thread of libespeak-ng's own
            "tts_cpu_ms": round(s["tts_cpu_s"] * 1000, 3) if self.backend.name == "espeak" else None,
            "tts_cpu_ms_per_audio_s": (round(s["tts_cpu_s"] * 1000 / audio_s, 3)
                                       if audio_s and self.backend.name == "espeak" else None),
            "tts_overlap_ms": round(s["tts_overlap_s"] * 1000, 3),
            "speech_overlap_s": round(s["played_overlap_s"], 3),
            "feed_blocked_s": round(s["blocked_s"], 4),
            "last_token_s": rel(s["last_token"]),
            "generation_s": rel(s["gen_end"]),
            "speech_end_s": rel(s["speech_end"]),
            "cancelled": s["cancelled"],
            "cancel_ms": s["cancel_ms"],
            "errors": s["errors"],
            "sentences": [dict(r) for r in s["records"]],
        }
        return out

    def report(self, stream=sys.stderr):
        st = self.stats()
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

    # -- internals -------------------------------------------------------------------

    def _enqueue(self, piece, epoch):
        if not speakable(piece) or epoch != self._epoch:
            return
        s = self._story
        t = _now()
        if s["first_ready"] is None:
            s["first_ready"] = t
        text = piece.strip()
        rec = {"i": s["n"], "chars": len(text), "ready_s": round(t - s["t0"], 4), "synth_ms": None,
               "first_audio_ms": None, "audio_s": None, "sound_s": None}
        s["n"] += 1
        if len(s["records"]) < MAX_RECORDS:
            s["records"].append(rec)
        end_pause = text[-1] in ".!?\"')\u2026\u201d\u2019"
        self._put_text(("say", epoch, rec, text, end_pause), measure=True)

    def _put_text(self, item, measure=False):
        """Blocks while the sentence queue is full (that is the only time generation
        waits for speech); gives up if the story is cancelled meanwhile."""
        try:
            self._text_q.put_nowait(item)
            return
        except queue.Full:
            pass
        t = _now()
        epoch = item[1]
        while epoch == self._epoch and not self._closed:
            try:
                self._text_q.put(item, timeout=0.05)
                break
            except queue.Full:
                continue
        if measure:
            self._story["blocked_s"] += _now() - t

    def _put_audio(self, item):
        epoch = item[1]
        while epoch == self._epoch and not self._closed:
            try:
                self._audio_q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _apply_pending(self):
        voice, self._pending = self._pending, None
        if voice is None:
            return
        try:
            self.backend.configure(**voice)
            self._settings.update(voice)
        except StorybotError as e:
            self.warn(f"{e}; keeping the voice {self.backend.voice!r}")

    def _synth_loop(self):
        while True:
            item = self._text_q.get()
            kind = item[0]
            if kind == "quit":
                self._audio_q.put(item)
                return
            if item[1] != self._epoch:
                continue
            if kind != "say":
                self._put_audio(item)
                continue
            _, epoch, rec, text, end_pause = item
            self._apply_pending()
            story = self._story
            clock = _Compute(story)
            samples = 0
            first = None

            def emit(data):
                nonlocal samples, first
                clock.tick()
                if first is None:
                    first = _now()
                samples += len(data) // 2
                ok = self._put_audio(("chunk", epoch, rec, data))
                clock.resume()
                return ok

            t0 = _now()
            try:
                self.backend.synthesize(text, emit, end_pause)
            except Exception as e:  # a backend failure costs this sentence, never the story
                story["errors"] += 1
                self.warn(f"speech synthesis failed ({type(e).__name__}: {e}); skipping a sentence")
                continue
            clock.tick()
            rec["synth_ms"] = round(clock.total * 1000, 3)
            rec["first_audio_ms"] = None if first is None else round((first - t0) * 1000, 3)
            rec["audio_s"] = round(samples / self.rate, 3)
            story["samples"] += samples

    def _player_loop(self):
        open_ = False
        while True:
            item = self._audio_q.get()
            kind = item[0]
            if kind == "quit":
                if open_:
                    self.sink.abort()
                return
            if kind == "abort":
                if open_:
                    self._guard(self.sink.abort)
                    open_ = False
                item[2].set()
                continue
            if item[1] != self._epoch:
                if kind == "end":
                    item[2].set()
                continue
            story = self._story
            if kind == "open":
                if open_:
                    self._guard(self.sink.abort)
                open_ = self._guard(self.sink.open, self.rate)
            elif kind == "chunk":
                rec, data = item[2], item[3]
                if not open_:
                    continue
                t = _now()
                if rec["sound_s"] is None:
                    rec["sound_s"] = round(t - story["t0"], 4)
                    if story["first_sound"] is None:
                        story["first_sound"] = t
                if story["gen_end"] is None:
                    story["played_overlap_s"] += len(data) / 2 / self.rate
                open_ = self._guard(self.sink.write, data)
            elif kind == "end":
                if open_:
                    self._guard(self.sink.finish)
                    open_ = False
                story["speech_end"] = _now()
                item[2].set()

    def _guard(self, fn, *args):
        """Runs a sink call; a failing device costs the sound of this story, not the story."""
        try:
            fn(*args)
            return True
        except Exception as e:
            story = self._story
            story["errors"] += 1
            if not story["audio_failed"]:
                story["audio_failed"] = True
                self.warn(f"sound output failed ({e}); the story goes on as text")
            try:
                self.sink.abort()
            except Exception:
                pass
            return False


class _Compute:
    """Time the synth thread spends computing, not waiting for the player (wall clock,
    which includes waiting for the GIL, and the thread's CPU time); and how much of it
    fell while the story was still being written."""

    def __init__(self, story):
        self.story = story
        self.total = 0.0
        self.resume()

    def tick(self):
        t, c = _now(), time.thread_time()
        d = t - self._mark
        self.total += d
        self.story["tts_s"] += d
        self.story["tts_cpu_s"] += c - self._cpu
        if self.story["gen_end"] is None:
            self.story["tts_overlap_s"] += d
        self._mark, self._cpu = t, c

    def resume(self):
        self._mark, self._cpu = _now(), time.thread_time()


def _drain(q):
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


def _fmt(v, digits=3):
    return "-" if v is None else f"{v:.{digits}f}"


# -- opening -----------------------------------------------------------------------

def open_speaker(settings, wav=None, warn=_warn):
    """A Speaker for [speech_out] settings (plus a WAV path), or None after one warning
    naming what is missing. A bad voice or an unwritable WAV path is an error."""
    sink = WavSink(wav) if wav else DeviceSink(settings["device"])
    try:
        backend = open_backend(settings["backend"])
        backend.configure(**{k: settings[k] for k in VOICE_KEYS})
        sink.check(backend.sample_rate)
    except (NoSpeech, audio.NoAudio) as e:
        hint = "" if wav else " (--wav FILE writes the speech to a file instead)"
        warn(f"{e}{hint}; the story goes on as text")
        return None
    return Speaker(backend, sink, settings, warn=warn)


def settings_from_args(args, cfg):
    so = dict(cfg["speech_out"])
    if getattr(args, "voice", None):
        so["voice"] = args.voice
    if getattr(args, "tts", None):
        so["backend"] = args.tts
    return so


def open_from_args(args, cfg, warn=_warn):
    return open_speaker(settings_from_args(args, cfg), getattr(args, "wav", None), warn)


# -- `storybot say`: speak a text (try a voice, a speaker, measure a backend) ------

def add_arguments(p, command):
    p.add_argument("text", nargs="*", help="what to say (default: standard input)")
    p.add_argument("--tts", choices=BACKENDS, help="speech backend (default: [speech_out] backend)")
    p.add_argument("--voice", help="espeak-ng voice, e.g. en-us+robosoft")
    p.add_argument("--wav", metavar="FILE", help="write the speech to a WAV file instead of the speaker")
    p.add_argument("--config", metavar="PATH", help="config file (TOML)")
    p.add_argument("--json", action="store_true", help="print the timing as one JSON object on stdout")


def run(args, command):
    from robot import config

    cfg, _ = config.load(args.config)
    text = " ".join(args.text) if args.text else sys.stdin.read()
    speaker = open_from_args(args, cfg)
    if speaker is None:
        return 1
    try:
        speaker.begin(text)
        speaker.end()
    except KeyboardInterrupt:
        speaker.cancel()
        return 130
    finally:
        speaker.close()
    speaker.report(sys.stderr)
    if args.json:
        print(json.dumps(speaker.stats()))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m robot.speech.output", description="speak a text aloud")
    add_arguments(p, "say")
    try:
        return run(p.parse_args(argv), "say")
    except StorybotError as e:
        print(f"storybot: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
