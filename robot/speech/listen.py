"""Speech in: push-to-talk prompts from a microphone, recognised offline by Vosk.

    from robot.speech import listen as speech_in
    ptt = speech_in.PushToTalk(cfg)     # cfg: the whole config (uses [speech_in])
    ptt.check()                         # StorybotError now if vosk or the model is missing
    text = ptt.listen()                 # waits for a press, records, recognises:
                                        #   "words"  heard; "" nothing usable (reply said);
                                        #   None     the trigger was closed (or timeout=)
    ptt.last                            # what happened: reason, seconds, latency, memory
    ptt.on_miss = say                   # called with "I didn't catch that." ([speech_in] reply)
    ptt.trigger.press() / .release()    # a control command can work any trigger
    ptt.close()                         # from any thread: a listen() in progress returns None

`open_listener(cfg)` is what the daemon calls: a PushToTalk, or None (logged) when the
trigger cannot be set up. listen() raises StorybotError, one sentence, for a missing
model, no microphone, or a microphone that stops mid-recording; the caller logs it and
calls listen() again, so a robot without its microphone still takes other prompts.

A recording starts at a press and ends at the release, after `silence_seconds` of quiet
following speech, or at `max_seconds`. The device is opened at 16 kHz when it takes that
(ALSA's default device converts for us) and otherwise at its own rate, then converted to
16 kHz mono here (robot/speech/resample.py). The Vosk model loads in a thread at the press, so
its load time overlaps the talking; with `unload_after_use` it is freed again before the
story is told, which is what lets a 256 MB board tell stories at all (docs/speech_in.md).

Triggers (robot/speech/triggers.py): "enter" (a line on standard input toggles), "gpio" (a
button on a Linux GPIO line), "signal" (SIGUSR1 toggles; set up from the main thread).
`storybot listen` (robot/cli/listen.py) runs all this from the command line.
"""
import gc
import json
import logging
import os
import threading
import time
from array import array
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from robot.speech import resample
from robot import textlog
from robot.errors import StorybotError
from robot.procinfo import memory as memory_kb  # (current RSS, peak RSS) in kB
from robot.speech.triggers import EnterTrigger, GpioTrigger, ManualTrigger, SignalTrigger, make_trigger  # noqa: F401 (the API)

log = logging.getLogger("storybot.speech_in")

RATE = 16000                 # what Vosk models are trained on
CHUNK_SECONDS = 0.1          # one read from the device; also how fast a release is noticed
MODELS_URL = "https://alphacephei.com/vosk/models"
PREFERRED_RATES = (16000, 48000, 44100, 32000, 22050, 8000)


def _available_kb() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _give_back_memory() -> None:
    """glibc keeps freed heap pages mapped; a Vosk model is ~100k small allocations, so
    without a trim the RSS stays near its peak after the model is freed. musl returns
    memory on its own and has no malloc_trim."""
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError, ImportError):
        pass


# -- the recogniser ------------------------------------------------------------------

def _import_vosk() -> Any:
    try:
        import vosk
    except ImportError:
        raise StorybotError("speech input needs the vosk package; install it with "
                            "pip install 'storybot[listen]'") from None
    except OSError as e:  # the wheel's libvosk.so does not load (e.g. a musl system)
        raise StorybotError(f"the vosk package cannot load its library here ({e}); "
                            f"see docs/speech_in.md for the boards it runs on") from None
    vosk.SetLogLevel(-1)  # Kaldi's progress lines are noise; its warnings stay
    return vosk


def _model_bytes(path: str) -> int:
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(d, f))
            except OSError:
                pass
    return total


class _Loader(threading.Thread):
    """Loads the model while the child talks: on a board the load takes seconds."""

    def __init__(self, vosk: Any, path: str) -> None:
        super().__init__(name="vosk-load", daemon=True)
        self.vosk, self.path = vosk, path
        self.model: Any = None
        self.error: Optional[Exception] = None
        self.seconds = 0.0

    def run(self) -> None:
        t = time.perf_counter()
        try:
            self.model = self.vosk.Model(self.path)
        except Exception as e:  # vosk raises a bare Exception for a bad model  # noqa: BLE001
            self.error = e
        self.seconds = time.perf_counter() - t


class _Microphone:
    """The input device, open at a rate it takes, with the converter to 16 kHz mono."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        from robot.speech import audio

        pa = audio.portaudio()
        index = audio.find_device(settings["device"], output=False, setting="[speech_in] device")
        info = pa.get_device_info_by_index(index)
        self.name: str = info["name"]
        self.rate, self.channels = _pick_format(pa, index, info, settings.get("rate", 0))
        self.conv = resample.Resampler(self.rate, RATE, self.channels)
        self.frames = max(1, int(self.rate * CHUNK_SECONDS))
        self.stream = _open_input(pa, index, info, self.rate, self.channels, self.frames)

    def read(self, got: int) -> "array[int]":
        """One chunk at 16 kHz mono; got (samples so far) only words the error."""
        try:
            data = self.stream.read(self.frames, exception_on_overflow=False)
        except (IOError, OSError) as e:
            raise StorybotError(f"the microphone {self.name!r} stopped delivering sound after "
                                f"{got / RATE:.1f} s ({_oserror_text(e)}); check its cable and press again") from None
        return self.conv.process(data)

    def close(self) -> None:
        try:
            self.stream.close()
        except (IOError, OSError):
            pass


class _Take:
    """One recording as it grows: counts in 16 kHz samples, and the sound the
    recogniser has not had yet."""

    def __init__(self, level: int, quiet_limit: int, max_samples: int) -> None:
        self.level, self.quiet_limit, self.max_samples = level, quiet_limit, max_samples
        self.pending: "List[array[int]]" = []
        self.rec: Any = None       # the Vosk recogniser, once the model is loaded
        self.got = self.voiced = self.quiet = 0
        self.why = "max_seconds"

    def add(self, chunk: "array[int]") -> bool:
        """Takes a chunk; True if it is the first with speech in it."""
        self.got += len(chunk)
        first = False
        if resample.rms(chunk) > self.level:
            first = not self.voiced
            self.voiced += len(chunk)
            self.quiet = 0
        else:
            self.quiet += len(chunk)
        self.pending.append(chunk)
        return first

    def feed_recogniser(self) -> None:
        if self.rec is not None:
            for c in self.pending:
                self.rec.AcceptWaveform(resample.pcm_bytes(c))
            self.pending = []


class PushToTalk:
    def __init__(self, cfg: Mapping[str, Any], trigger: Any = None) -> None:
        self.cfg = cfg
        self.settings = dict(cfg["speech_in"] if "speech_in" in cfg else cfg)
        s = self.settings
        self.model_path = os.path.expanduser(os.path.expandvars(s["model_path"]))
        self.trigger = trigger if trigger is not None else make_trigger(s)
        self.on_miss: Optional[Callable[[str], None]] = None
        self.last: Dict[str, Any] = {}
        self._vosk: Any = None
        self._model: Any = None
        self._loader: Optional[_Loader] = None
        self._lock = threading.Lock()  # one listen() at a time
        self._closing = threading.Event()

    # model ---------------------------------------------------------------------

    def check(self) -> None:
        """Raises StorybotError, one sentence, when vosk or the model is missing."""
        self._vosk = self._vosk or _import_vosk()
        p = self.model_path
        hint = f"download one from {MODELS_URL}, unpack it and set [speech_in] model_path to its folder"
        if not p:
            raise StorybotError(f"no Vosk model is configured; {hint}")
        if not os.path.isdir(p):
            raise StorybotError(f"there is no Vosk model at {p}; {hint}")
        if not (os.path.isdir(os.path.join(p, "am")) or os.path.isfile(os.path.join(p, "final.mdl"))):
            raise StorybotError(f"{p} is not a Vosk model (it has no am/ folder); {hint}")

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> float:
        """Loads the model now (a daemon with memory to spare loads it once at start)."""
        self._start_loading()
        return self._finish_loading()

    def unload(self) -> None:
        """Frees the model; the next listen() loads it again."""
        if self._loader is not None:
            self._loader.join()
            self._loader = None
        if self._model is not None:
            self._model = None
            gc.collect()
            _give_back_memory()

    def _start_loading(self) -> None:
        if self._model is not None or self._loader is not None:
            return
        self.check()
        need = _model_bytes(self.model_path)
        free = _available_kb()
        if free is not None and need // 1024 > free:
            raise StorybotError(f"the Vosk model in {self.model_path} needs more than {need >> 20} MB of memory but "
                                f"only {free >> 10} MB are free; use a smaller model or a board with more RAM "
                                f"(docs/speech_in.md)")
        self._loader = _Loader(self._vosk, self.model_path)
        self._loader.start()

    def _finish_loading(self) -> float:
        ld, self._loader = self._loader, None
        if ld is None:
            return 0.0
        ld.join()
        if ld.error is not None:
            raise StorybotError(f"the Vosk model in {self.model_path} could not be loaded; it is incomplete or "
                                f"not a Vosk model: download one from {MODELS_URL} and set [speech_in] model_path")
        self._model = ld.model
        return ld.seconds

    def _recognizer(self) -> Any:
        phrases = self.settings.get("phrases") or []
        if phrases:
            return self._vosk.KaldiRecognizer(self._model, RATE, json.dumps(list(phrases), ensure_ascii=False))
        return self._vosk.KaldiRecognizer(self._model, RATE)

    # listening -------------------------------------------------------------------

    def listen(self, timeout: Optional[float] = None) -> Optional[str]:
        """Waits for a press, records and recognises: the words heard, "" when nothing
        usable was heard (after on_miss got the reply), None when the trigger closed or
        `timeout` seconds passed without a press."""
        with self._lock:
            self.last = {"reason": None}
            if not self.trigger.wait_press(timeout):
                self.last["reason"] = "closed" if self.trigger.closed else "timeout"
                return None
            unload = self.settings["unload_after_use"]
            self.last["rss_before_kb"] = memory_kb()[0]
            try:
                self.check()
                text = self._record_and_recognise()
            except BaseException:
                if unload or self._closing.is_set():
                    self.unload()
                raise
            if unload or self._closing.is_set():
                self.unload()
            self.last["rss_after_kb"] = memory_kb()[0]
            if text is None:
                return None
            if not text:
                self._miss()
            return text

    def _record_and_recognise(self) -> Optional[str]:
        s = self.settings
        mic = _Microphone(s)
        self.last.update(device=mic.name, rate=mic.rate, channels=mic.channels)
        take = _Take(s.get("silence_level", 300), int(s["silence_seconds"] * RATE), int(s["max_seconds"] * RATE))
        try:
            self._record(mic, take)
        finally:
            mic.close()
        t_end = time.perf_counter()
        take.pending.append(mic.conv.flush())
        self.last.update(ended_by=take.why, audio_s=round(take.got / RATE, 2), voiced_s=round(take.voiced / RATE, 2))
        if take.why == "closed":
            self.last["reason"] = "closed"
            return None
        if not take.voiced:
            self.last["reason"] = "silence"
            log.info("microphone: %.1f s of silence (below level %d); nothing to recognise", take.got / RATE, take.level)
            return ""
        return self._recognise(take, t_end)

    def _record(self, mic: "_Microphone", take: "_Take") -> None:
        """Reads the microphone until a release, a pause after speech, max_seconds or a
        close; the recogniser gets the sound as soon as the model is there."""
        while not self._closing.is_set():
            chunk = mic.read(take.got)
            if take.add(chunk):
                # loading starts at the first sound, not at the press: an accidental
                # press costs no model load, and the load still overlaps the sentence
                self._start_loading()
            if take.rec is None and self._loader is not None and not self._loader.is_alive():
                self.last["load_s"] = round(self._finish_loading(), 3)
            if take.rec is None and self._model is not None:
                take.rec = self._recognizer()
            take.feed_recogniser()
            if self.trigger.released():
                take.why = "released"
                return
            if take.voiced and take.quiet >= take.quiet_limit:
                take.why = "silence"
                return
            if take.got >= take.max_samples:
                return
        take.why = "closed"

    def _recognise(self, take: "_Take", t_end: float) -> str:
        """The words in a recording that has speech in it (waits for the model if needed)."""
        if take.rec is None:
            load_s = self._finish_loading()
            if "load_s" not in self.last:
                self.last["load_s"] = round(load_s, 3)
            take.rec = self._recognizer()
        t_ready = time.perf_counter()
        take.feed_recogniser()
        result = json.loads(take.rec.FinalResult())
        take.rec = None
        words = [w for w in result.get("text", "").split() if w != "[unk]"]
        text = " ".join(words)
        t_done = time.perf_counter()
        # latency: what the child waits after the recording ends (includes any model
        # load still running); recognise: the decoding alone, once the model is there
        self.last.update(text=text, latency_s=round(t_done - t_end, 3), recognise_s=round(t_done - max(t_end, t_ready), 3),
                         rss_loaded_kb=memory_kb()[0], peak_rss_kb=memory_kb()[1])
        self.last["reason"] = "heard" if text else "not understood"
        log.info("microphone: %s %d words from %.1f s of sound in %.2f s after it ended (%s)",
                 "heard" if text else "understood no", len(words), take.got / RATE, self.last["latency_s"], take.why)
        if text:
            _log_text(text)
        return text

    def _miss(self) -> None:
        reply = self.settings.get("reply") or "I didn't catch that."
        if self.on_miss is not None:
            try:
                self.on_miss(reply)
            except StorybotError as e:
                log.warning("could not say %r: %s", reply, e)
        else:
            log.info("microphone: %s", reply)

    def close(self) -> None:
        """Ends waiting and recording, from any thread, without waiting: a listen() in
        progress returns None within one chunk and frees the model itself (a model
        still loading cannot be interrupted, so a shutdown does not wait for it)."""
        self._closing.set()
        self.trigger.close()
        if self._lock.acquire(blocking=False):
            try:
                if self._loader is None:
                    self.unload()
            finally:
                self._lock.release()


def _log_text(text: str) -> None:
    textlog.story_text(log, "heard", text)


def _oserror_text(e: BaseException) -> str:
    parts = [str(a) for a in getattr(e, "args", ()) if isinstance(a, str)]
    return parts[-1] if parts else str(e) or type(e).__name__


def _pick_format(pa: Any, index: int, info: Mapping[str, Any], want_rate: int = 0) -> Tuple[int, int]:
    """(rate, channels) the device takes for 16-bit capture: 16 kHz mono when it can
    (nothing to convert), else its own default rate, then common ones; stereo only for
    devices that refuse mono."""
    import pyaudio

    rates = [want_rate] if want_rate else list(dict.fromkeys(
        [RATE, int(info.get("defaultSampleRate") or 0)] + list(PREFERRED_RATES)))
    most = int(info.get("maxInputChannels") or 1)
    chans = list(dict.fromkeys([1, min(2, most), most]))
    for rate in rates:
        if rate <= 0:
            continue
        for ch in chans:
            try:
                if pa.is_format_supported(rate, input_device=index, input_channels=ch, input_format=pyaudio.paInt16):
                    return rate, ch
            except ValueError:
                continue
    if want_rate:
        raise StorybotError(f"the microphone {info['name']!r} cannot record at {want_rate} Hz; "
                            f"set [speech_in] rate = 0 to let storybot choose")
    raise StorybotError(f"the microphone {info['name']!r} records at none of {', '.join(map(str, rates))} Hz "
                        f"in 16 bits; choose another device in [speech_in] device")


def _open_input(pa: Any, index: int, info: Mapping[str, Any], rate: int, channels: int, frames: int) -> Any:
    import pyaudio

    try:
        return pa.open(rate=rate, channels=channels, format=pyaudio.paInt16, input=True,
                       input_device_index=index, frames_per_buffer=frames)
    except (IOError, OSError, ValueError) as e:
        raise StorybotError(f"the microphone {info['name']!r} could not be opened ({_oserror_text(e)}); "
                            f"is it plugged in and not used by another program?") from None


def open_listener(cfg: Mapping[str, Any]) -> Optional[PushToTalk]:
    """The daemon's microphone: a PushToTalk, or None (logged) when its trigger cannot be
    set up. A missing model is only logged here: each press then reports it again, so
    installing the model later needs no restart."""
    try:
        ptt = PushToTalk(cfg)
    except StorybotError as e:
        log.error("microphone disabled: %s", e)
        return None
    if isinstance(ptt.trigger, EnterTrigger) and cfg.get("daemon", {}).get("stdin"):
        log.warning('[speech_in] trigger = "enter" and [daemon] stdin both read standard input; '
                    'each line goes to one of them: turn one off')
    try:
        ptt.check()
        if not ptt.settings["unload_after_use"]:
            ptt.load()
    except StorybotError as e:
        log.error("microphone: %s", e)
    return ptt
