"""Text-to-speech backends: each turns a sentence into 16-bit mono PCM, chunk by chunk.

`espeak` calls libespeak-ng through cffi in synchronous mode, audio streamed from its
callback every CHUNK_MS; `pyttsx3` drives the same library, but renders a whole sentence
before any of it can play.

libespeak-ng keeps global state, so one process uses one backend and one engine for its
whole life (pyttsx3 2.99 crashes after ~100 engines are created and collected).
"""
import io
import logging
import os
import threading
import wave
from typing import Any, Callable, Optional, Union

from robot.errors import StorybotError

log = logging.getLogger("storybot.speech")

CHUNK_MS = 50            # audio chunk size: also the longest a cancel waits for the device
BACKENDS = ("espeak", "pyttsx3")
VOICE_KEYS = ("voice", "rate", "pitch", "volume")

Emit = Callable[[bytes], bool]   # takes one chunk of PCM; False: stop this sentence


class NoSpeech(StorybotError):
    """Text-to-speech is not available here; str(e) names the missing package."""


_owner: Optional[str] = None   # the backend that has libespeak-ng in this process


def _claim(name: str) -> None:
    global _owner
    if _owner not in (None, name):
        raise StorybotError(f"this process already speaks through {_owner}; restart storybot to switch to {name}")
    _owner = name


class EspeakBackend:
    """libespeak-ng called directly: espeak_Synth runs in the calling thread and hands
    over audio every CHUNK_MS through a callback, so sound can start after the first
    chunk (well under a millisecond) instead of after the whole sentence."""

    name = "espeak"
    _lib: Any = None
    _ffi: Any = None
    _rate = 0
    _lock = threading.Lock()   # one synthesis at a time in the process, whichever Speaker asks
    _job: Optional[Emit] = None            # the emit function of the synthesis in progress
    _failure: Optional[BaseException] = None   # an exception raised inside the callback
    _callback: Any = None

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

    def __init__(self) -> None:
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

            def on_audio(wav: Any, n: int, events: Any) -> int:
                job = cls._job
                if job is None:
                    return 1
                if n <= 0:
                    return 0
                return 0 if job(ffi.buffer(wav, 2 * n)[:]) else 1

            def on_error(exc_type: Any, exc: BaseException, tb: Any) -> int:
                cls._failure = exc
                return 1          # stop this synthesis; synthesize() re-raises

            cls._callback = ffi.callback("int(short *, int, espeak_EVENT *)", on_audio, onerror=on_error)
            lib.espeak_SetSynthCallback(cls._callback)
            cls._ffi, cls._lib, cls._rate = ffi, lib, rate
        _claim(self.name)
        self.sample_rate = cls._rate
        self.version = cls._ffi.string(cls._lib.espeak_Info(cls._ffi.NULL)).decode()
        self.voice: Optional[str] = None

    def configure(self, voice: str, rate: int, pitch: int, volume: float) -> None:
        with self._lock:
            self._configure(voice, rate, pitch, volume)

    def _configure(self, voice: str, rate: int, pitch: int, volume: float) -> None:
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

    def synthesize(self, text: str, emit: Emit, end_pause: bool = True) -> None:
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
    _engine: Any = None  # one engine per process: pyttsx3 2.99 crashes after ~100 are collected
    _lock = threading.Lock()
    _finished = threading.Event()
    version = ""
    sample_rate = 22050  # what its espeak driver writes into every WAV header
    TIMEOUT_S = 30.0

    def __init__(self) -> None:
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
                engine.connect("finished-utterance", lambda **kw: cls._finished.set())
                cls._engine = engine
            except Exception as e:  # a missing libespeak-ng surfaces as OSError, RuntimeError, ...
                raise NoSpeech(f"pyttsx3 could not start espeak-ng ({e}; sudo apt install libespeak-ng1)") from None
            cls.version = getattr(pyttsx3, "__version__", "")
        _claim(self.name)
        self.engine = cls._engine
        self.voice: Optional[str] = None
        self.retries = 0

    def configure(self, voice: str, rate: int, pitch: int, volume: float) -> None:
        with self._lock:
            self._configure(voice, rate, pitch, volume)

    def _configure(self, voice: str, rate: int, pitch: int, volume: float) -> None:
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

    def _render(self, text: str) -> bytes:
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

    def synthesize(self, text: str, emit: Emit, end_pause: bool = True) -> None:
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


Backend = Union[EspeakBackend, Pyttsx3Backend]


def open_backend(name: str) -> Backend:
    if name == "espeak":
        return EspeakBackend()
    if name == "pyttsx3":
        return Pyttsx3Backend()
    raise StorybotError(f"unknown speech backend {name!r}; choose one of {', '.join(BACKENDS)}")
