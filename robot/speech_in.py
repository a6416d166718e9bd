"""Speech in: push-to-talk prompts from a microphone, recognised offline by Vosk.

    from robot import speech_in
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
16 kHz mono here (robot/resample.py). The Vosk model loads in a thread at the press, so
its load time overlaps the talking; with `unload_after_use` it is freed again before the
story is told, which is what lets a 256 MB board tell stories at all (docs/speech_in.md).

Triggers: "enter" (a line on standard input toggles), "gpio" (a button on a Linux GPIO
line: libgpiod's `gpiod` module when installed, else /sys/class/gpio), "signal" (SIGUSR1
toggles; set up from the main thread). `storybot listen` runs it from the command line.
"""
import gc
import json
import logging
import os
import signal
import sys
import threading
import time

from . import resample
from .errors import StorybotError

log = logging.getLogger("storybot.speech_in")

RATE = 16000                 # what Vosk models are trained on
CHUNK_SECONDS = 0.1          # one read from the device; also how fast a release is noticed
MODELS_URL = "https://alphacephei.com/vosk/models"
PREFERRED_RATES = (16000, 48000, 44100, 32000, 22050, 8000)


def memory_kb():
    """(current RSS, peak RSS) of this process in kB, from /proc (0, 0 elsewhere)."""
    cur = peak = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return cur, peak


def _available_kb():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _give_back_memory():
    """glibc keeps freed heap pages mapped; a Vosk model is ~100k small allocations, so
    without a trim the RSS stays near its peak after the model is freed. musl returns
    memory on its own and has no malloc_trim."""
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError, ImportError):
        pass


# -- triggers ----------------------------------------------------------------------

class ManualTrigger:
    """Pressed and released by calls (a control command, a test); the base of the others.
    A press is remembered until a listen() takes it; `closed` means no press will come."""

    name = "manual"

    def __init__(self):
        self._cond = threading.Condition()
        self._pending = False
        self._held = False
        self.closed = False

    def press(self):
        with self._cond:
            if not self.closed:
                self._pending = self._held = True
                self._cond.notify_all()

    def release(self):
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def toggle(self):
        with self._cond:
            if self._held:
                self.release()
            else:
                self.press()

    def wait_press(self, timeout=None):
        """True at a press; False when closed or after `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self.closed, timeout)
            if self._pending:
                self._pending = False
                return True
            return False

    def released(self):
        return not self._held

    def close(self):
        with self._cond:
            self.closed = True
            self._pending = self._held = False
            self._cond.notify_all()


class EnterTrigger(ManualTrigger):
    """Each line on the stream (Enter) toggles: the first starts a recording, the next
    one ends it early. The end of the stream means no more presses, but a press already
    made still records until the speaker stops talking (`echo | storybot listen`). The
    stream is read by a thread of its own, so a daemon that also reads prompts from
    standard input should not use this trigger."""

    name = "enter"

    def __init__(self, stream=None):
        super().__init__()
        self.stream = sys.stdin if stream is None else stream
        threading.Thread(target=self._read, name="enter-trigger", daemon=True).start()

    def _read(self):
        try:
            for _ in self.stream:
                self.toggle()
        except (OSError, ValueError):
            pass
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class SignalTrigger(ManualTrigger):
    """SIGUSR1 toggles: `kill -USR1 PID` once to start talking, once more to stop early
    (trailing silence ends the recording too)."""

    name = "signal"

    def __init__(self, signum=signal.SIGUSR1):
        super().__init__()
        self.signum = signum
        try:
            self._old = signal.signal(signum, lambda *_: self.toggle())
        except ValueError:
            raise StorybotError('trigger = "signal" must be set up by the main thread; '
                                'create the listener there or use another trigger') from None

    def close(self):
        super().close()
        try:
            signal.signal(self.signum, self._old if self._old is not None else signal.SIG_DFL)
        except (ValueError, TypeError):
            pass


class _GpiodLine:
    """A button line through libgpiod v2 (the GPIO character device): the kernel reports
    edges and debounces, so waiting costs nothing."""

    def __init__(self, chip, line, active_low):
        import datetime

        import gpiod
        from gpiod.line import Direction, Edge, Value

        self._active = Value.ACTIVE
        self.line = line
        settings = gpiod.LineSettings(direction=Direction.INPUT, edge_detection=Edge.BOTH, active_low=active_low,
                                      debounce_period=datetime.timedelta(milliseconds=10))
        self.req = gpiod.request_lines(chip, consumer="storybot", config={line: settings})
        self.how = "libgpiod"

    def active(self):
        return self.req.get_value(self.line) == self._active

    def wait(self, seconds):
        if self.req.wait_edge_events(seconds):
            self.req.read_edge_events()

    def close(self):
        self.req.release()


class _SysfsLine:
    """The same button through the older /sys/class/gpio interface (what a Duo's buildroot
    image has when no gpiod module is built). Waits for an edge interrupt where the line
    supports one, else reads the value every 20 ms."""

    def __init__(self, chip, line, active_low, root):
        base = _sysfs_base(chip, root)
        number = base + line
        d = os.path.join(root, f"gpio{number}")
        if not os.path.isdir(d):
            _write(os.path.join(root, "export"), str(number))
        _write(os.path.join(d, "direction"), "in", missing_ok=True)
        self.edges = _write(os.path.join(d, "edge"), "both", missing_ok=True)
        self.fd = os.open(os.path.join(d, "value"), os.O_RDONLY)
        self.active_low = active_low
        self.how = f"sysfs gpio{number}"

    def active(self):
        os.lseek(self.fd, 0, os.SEEK_SET)
        high = os.read(self.fd, 8).strip() == b"1"
        return high != self.active_low

    def wait(self, seconds):
        if self.edges:
            import select
            p = select.poll()
            p.register(self.fd, select.POLLPRI | select.POLLERR)
            p.poll(seconds * 1000)
        else:
            time.sleep(min(seconds, 0.02))

    def close(self):
        os.close(self.fd)


def _write(path, text, missing_ok=False):
    """Writes a sysfs attribute; False when it does not exist and that is allowed."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        if missing_ok:
            return False
        raise
    try:
        os.write(fd, text.encode())
    except OSError as e:
        if e.errno != 16:  # EBUSY: already exported
            raise
    finally:
        os.close(fd)
    return True


def _sysfs_base(chip, root):
    name = os.path.basename(chip)
    try:
        entries = sorted(e for e in os.listdir(root) if e.startswith("gpiochip"))
    except OSError:
        entries = []
    for e in entries:
        if os.path.basename(os.path.realpath(os.path.join(root, e, "device"))) == name:
            with open(os.path.join(root, e, "base")) as f:
                return int(f.read().strip())
    raise StorybotError(f"GPIO chip {name} is not in {root}; set [speech_in] gpio_chip to a /dev/gpiochipN "
                        f"that exists, or use trigger = \"enter\"")


class GpioTrigger:
    """A push button: pressed while the line is active (active-low by default: the
    button pulls the pin to ground). A recording that ends while the button is still
    held does not start another one until it is let go."""

    name = "gpio"

    def __init__(self, chip, line, active_low=True, sysfs_root="/sys/class/gpio"):
        self.closed = False
        self._armed = True
        self._users = 0          # threads inside wait_press(); the last one out closes the line
        self._guard = threading.Lock()
        where = f"GPIO line {line} of {chip}"
        try:
            if os.path.exists(chip) and _have_gpiod():
                self._line = _GpiodLine(chip, line, active_low)
            elif os.path.isdir(sysfs_root):
                self._line = _SysfsLine(chip, line, active_low, sysfs_root)
            elif not os.path.exists(chip):
                raise StorybotError(f"there is no GPIO chip {chip}; set [speech_in] gpio_chip to one that exists "
                                    f"(ls /dev/gpiochip*) or use trigger = \"enter\"")
            else:
                raise StorybotError(f"{where} needs the gpiod module (pip install gpiod) or /sys/class/gpio; "
                                    f"install one or use trigger = \"enter\"")
        except OSError as e:
            raise StorybotError(f"cannot watch {where} ({e.strerror or e}); check [speech_in] gpio_chip and "
                                f"gpio_line (gpioinfo lists the lines) and that storybot may open the chip") from None
        self.how = self._line.how

    def wait_press(self, timeout=None):
        with self._guard:
            if self.closed:
                return False
            self._users += 1
        try:
            return self._wait(timeout)
        finally:
            with self._guard:
                self._users -= 1
                if self.closed and not self._users:
                    self._release_line()

    def _wait(self, timeout):
        end = None if timeout is None else time.monotonic() + timeout
        while not self.closed:
            if self._line.active():
                if self._armed:
                    self._armed = False
                    return True
            else:
                self._armed = True
            left = 0.5 if end is None else min(0.5, end - time.monotonic())
            if left <= 0:
                return False
            self._line.wait(left)
        return False

    def released(self):
        with self._guard:
            if self.closed or self._line is None:
                return True
            if self._line.active():
                return False
        self._armed = True
        return True

    def press(self):
        raise StorybotError("a GPIO trigger is pressed with its button; use trigger = \"signal\" for a control command")

    release = press

    def close(self):
        """Takes effect within half a second in a thread waiting for a press."""
        with self._guard:
            self.closed = True
            if not self._users:
                self._release_line()

    def _release_line(self):
        line, self._line = self._line, None
        if line is not None:
            line.close()


def _have_gpiod():
    try:
        import gpiod  # noqa: F401
        return hasattr(gpiod, "request_lines")  # v2 API; the 1.x module is different
    except ImportError:
        return False


def make_trigger(settings):
    kind = settings["trigger"]
    if kind == "enter":
        return EnterTrigger()
    if kind == "signal":
        return SignalTrigger()
    if kind == "gpio":
        return GpioTrigger(settings["gpio_chip"], settings["gpio_line"], settings["gpio_active_low"])
    raise StorybotError(f"[speech_in] trigger {kind!r} is unknown; use \"enter\", \"gpio\" or \"signal\"")


# -- the recogniser ------------------------------------------------------------------

def _import_vosk():
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


def _model_bytes(path):
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

    def __init__(self, vosk, path):
        super().__init__(name="vosk-load", daemon=True)
        self.vosk, self.path = vosk, path
        self.model = None
        self.error = None
        self.seconds = 0.0

    def run(self):
        t = time.perf_counter()
        try:
            self.model = self.vosk.Model(self.path)
        except Exception as e:  # vosk raises a bare Exception for a bad model  # noqa: BLE001
            self.error = e
        self.seconds = time.perf_counter() - t


class PushToTalk:
    def __init__(self, cfg, trigger=None):
        self.cfg = cfg
        self.settings = dict(cfg["speech_in"] if "speech_in" in cfg else cfg)
        s = self.settings
        self.model_path = os.path.expanduser(os.path.expandvars(s["model_path"]))
        self.trigger = trigger if trigger is not None else make_trigger(s)
        self.on_miss = None
        self.last = {}
        self._vosk = None
        self._model = None
        self._loader = None
        self._lock = threading.Lock()  # one listen() at a time
        self._closing = threading.Event()

    # model ---------------------------------------------------------------------

    def check(self):
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
    def loaded(self):
        return self._model is not None

    def load(self):
        """Loads the model now (a daemon with memory to spare loads it once at start)."""
        self._start_loading()
        return self._finish_loading()

    def unload(self):
        """Frees the model; the next listen() loads it again."""
        if self._loader is not None:
            self._loader.join()
            self._loader = None
        if self._model is not None:
            self._model = None
            gc.collect()
            _give_back_memory()

    def _start_loading(self):
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

    def _finish_loading(self):
        ld, self._loader = self._loader, None
        if ld is None:
            return 0.0
        ld.join()
        if ld.error is not None:
            raise StorybotError(f"the Vosk model in {self.model_path} could not be loaded; it is incomplete or "
                                f"not a Vosk model: download one from {MODELS_URL} and set [speech_in] model_path")
        self._model = ld.model
        return ld.seconds

    def _recognizer(self):
        phrases = self.settings.get("phrases") or []
        if phrases:
            return self._vosk.KaldiRecognizer(self._model, RATE, json.dumps(list(phrases), ensure_ascii=False))
        return self._vosk.KaldiRecognizer(self._model, RATE)

    # listening -------------------------------------------------------------------

    def listen(self, timeout=None):
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
                if unload:
                    self.unload()
                raise
            if unload:
                self.unload()
            self.last["rss_after_kb"] = memory_kb()[0]
            if text is None:
                return None
            if not text:
                self._miss()
            return text

    def _record_and_recognise(self):
        s = self.settings
        from . import audio

        pa = audio.portaudio()
        index = audio.find_device(s["device"], output=False, setting="[speech_in] device")
        info = pa.get_device_info_by_index(index)
        rate, channels = _pick_format(pa, index, info, s.get("rate", 0))
        conv = resample.Resampler(rate, RATE, channels)
        frames = max(1, int(rate * CHUNK_SECONDS))
        stream = _open_input(pa, index, info, rate, channels, frames)
        self.last.update(device=info["name"], rate=rate, channels=channels)

        level = s.get("silence_level", 300)
        quiet_limit = int(s["silence_seconds"] * RATE)
        max_samples = int(s["max_seconds"] * RATE)
        pending = []       # 16 kHz audio not yet given to the recogniser
        rec = None
        got = voiced = quiet = 0
        why = "max_seconds"
        try:
            while True:
                if self._closing.is_set():
                    why = "closed"
                    break
                try:
                    data = stream.read(frames, exception_on_overflow=False)
                except (IOError, OSError) as e:
                    raise StorybotError(f"the microphone {info['name']!r} stopped delivering sound after "
                                        f"{got / RATE:.1f} s ({_oserror_text(e)}); check its cable and press again") from None
                chunk = conv.process(data)
                got += len(chunk)
                if resample.rms(chunk) > level:
                    if not voiced:
                        # loading starts at the first sound, not at the press: an
                        # accidental press costs no model load, and the load still
                        # overlaps the rest of the sentence
                        self._start_loading()
                    voiced += len(chunk)
                    quiet = 0
                else:
                    quiet += len(chunk)
                pending.append(chunk)
                if rec is None and self._loader is not None and not self._loader.is_alive():
                    self.last["load_s"] = round(self._finish_loading(), 3)
                if rec is None and self._model is not None:
                    rec = self._recognizer()
                if rec is not None:
                    for c in pending:
                        rec.AcceptWaveform(resample.pcm_bytes(c))
                    pending = []
                if self.trigger.released():
                    why = "released"
                    break
                if voiced and quiet >= quiet_limit:
                    why = "silence"
                    break
                if got >= max_samples:
                    break
        finally:
            try:
                stream.close()
            except (IOError, OSError):
                pass
        t_end = time.perf_counter()
        pending.append(conv.flush())
        self.last.update(ended_by=why, audio_s=round(got / RATE, 2), voiced_s=round(voiced / RATE, 2))
        if why == "closed":
            self.last["reason"] = "closed"
            return None
        if not voiced:
            self.last["reason"] = "silence"
            log.info("microphone: %.1f s of silence (below level %d); nothing to recognise", got / RATE, level)
            return ""
        if rec is None:
            load_s = self._finish_loading()
            if "load_s" not in self.last:
                self.last["load_s"] = round(load_s, 3)
            rec = self._recognizer()
        t_ready = time.perf_counter()
        for c in pending:
            rec.AcceptWaveform(resample.pcm_bytes(c))
        result = json.loads(rec.FinalResult())
        del rec
        words = [w for w in result.get("text", "").split() if w != "[unk]"]
        text = " ".join(words)
        t_done = time.perf_counter()
        # latency: what the child waits after the recording ends (includes any model
        # load still running); recognise: the decoding alone, once the model is there
        self.last.update(text=text, latency_s=round(t_done - t_end, 3), recognise_s=round(t_done - max(t_end, t_ready), 3),
                         rss_loaded_kb=memory_kb()[0], peak_rss_kb=memory_kb()[1])
        self.last["reason"] = "heard" if text else "not understood"
        log.info("microphone: %s %d words from %.1f s of sound in %.2f s after it ended (%s)",
                 "heard" if text else "understood no", len(words), got / RATE, self.last["latency_s"], why)
        if text:
            _log_text(text)
        return text

    def _miss(self):
        reply = self.settings.get("reply") or "I didn't catch that."
        if self.on_miss is not None:
            try:
                self.on_miss(reply)
            except StorybotError as e:
                log.warning("could not say %r: %s", reply, e)
        else:
            log.info("microphone: %s", reply)

    def close(self):
        """Ends waiting and recording (from any thread) and frees the model."""
        self._closing.set()
        self.trigger.close()
        with self._lock:
            self.unload()


def _log_text(text):
    try:
        from . import logs
    except ImportError:
        return
    logs.story_text(log, "heard", text)


def _oserror_text(e):
    parts = [str(a) for a in getattr(e, "args", ()) if isinstance(a, str)]
    return parts[-1] if parts else str(e) or type(e).__name__


def _pick_format(pa, index, info, want_rate=0):
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


def _open_input(pa, index, info, rate, channels, frames):
    import pyaudio

    try:
        return pa.open(rate=rate, channels=channels, format=pyaudio.paInt16, input=True,
                       input_device_index=index, frames_per_buffer=frames)
    except (IOError, OSError, ValueError) as e:
        raise StorybotError(f"the microphone {info['name']!r} could not be opened ({_oserror_text(e)}); "
                            f"is it plugged in and not used by another program?") from None


def open_listener(cfg):
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


# -- `storybot listen` ---------------------------------------------------------------

def add_arguments(p, command):
    from . import cli

    p.add_argument("--once", action="store_true", help="one recording, then exit (status 1 if nothing was understood)")
    p.add_argument("--trigger", choices=["enter", "gpio", "signal"], help="what starts a recording (default: config)")
    p.add_argument("--device", metavar="NAME", help="input device name or part of it (default: config, then the default device)")
    p.add_argument("--rate", type=int, metavar="HZ", help="record at this rate and convert to 16 kHz (default: 16000 if the device takes it)")
    p.add_argument("--vosk-model", metavar="DIR", help="Vosk model folder (default: [speech_in] model_path)")
    p.add_argument("--phrase", action="append", metavar="TEXT", help="only these phrases can be heard (repeatable)")
    p.add_argument("--keep-model", dest="unload", action="store_false", default=None, help="keep the Vosk model loaded between recordings")
    p.add_argument("--unload-model", dest="unload", action="store_true", help="free the Vosk model after each recording")
    p.add_argument("--devices", action="store_true", help="list the input devices and exit")
    p.add_argument("--format", choices=["text", "jsonl"], default="text", help="text, or one JSON object per recording")
    tell = p.add_argument_group("telling (--tell: each recognised prompt starts a story)")
    tell.add_argument("--tell", action="store_true", help="tell a story from each recognised prompt")
    cli.add_model_arguments(tell)
    tell.add_argument("-n", "--steps", type=int, help="tokens in the story including the prompt")
    tell.add_argument("-t", "--temperature", type=float, help="randomness, 0 = always the likeliest word")
    tell.add_argument("-p", "--topp", type=float, help="top-p (nucleus) sampling in [0,1]")
    tell.add_argument("-s", "--seed", type=int, help="random seed")
    speak = p.add_argument_group("speech (the story, and the reply when nothing was understood)")
    speak.add_argument("--speak", action="store_true", default=None, help="speak aloud")
    speak.add_argument("--no-speak", dest="speak", action="store_false", help="text only")
    speak.add_argument("--wav", metavar="FILE", help="write the speech to a WAV file instead of the speaker")
    speak.add_argument("--voice", help="espeak-ng voice, e.g. en-us+robosoft")
    speak.add_argument("--tts", choices=["espeak", "pyttsx3"], help="speech backend")


def _settings_from_args(args, cfg):
    s = dict(cfg["speech_in"])
    if args.trigger:
        s["trigger"] = args.trigger
    if args.device is not None:
        s["device"] = args.device
    if args.rate is not None:
        if args.rate != 0 and not 8000 <= args.rate <= 384000:
            raise StorybotError(f"--rate must be 0 or between 8000 and 384000 Hz (got {args.rate})")
        s["rate"] = args.rate
    if args.vosk_model:
        s["model_path"] = args.vosk_model
    if args.phrase:
        s["phrases"] = list(args.phrase)
    if args.unload is not None:
        s["unload_after_use"] = args.unload
    return s


def _say(args, cfg, text):
    """The spoken reply, when speech was asked for and can be had; printed always."""
    print(f"storybot: {text}", file=sys.stderr, flush=True)
    if not (args.speak or args.wav):
        return
    try:
        from . import speech_out
    except ImportError:
        return
    speaker = speech_out.open_from_args(args, cfg)
    if speaker is None:
        return
    try:
        speaker.begin(text)
        speaker.end()
    finally:
        speaker.close()


def _summary(last):
    load = f", model loaded in {last['load_s']:.2f} s" if last.get("load_s") is not None else ""
    mem = f"; RSS {last.get('rss_loaded_kb', 0) / 1024:.0f} MB with the model"
    if "rss_after_kb" in last and last["rss_after_kb"] < last.get("rss_loaded_kb", 0):
        mem += f", {last['rss_after_kb'] / 1024:.0f} MB after freeing it"
    return (f"heard {last.get('voiced_s', 0):.1f} s of speech at {last.get('rate')} Hz; text {last.get('latency_s', 0):.2f} s "
            f"after the recording ended (decoding {last.get('recognise_s', 0):.2f} s{load}){mem}")


def _list_devices():
    from . import audio

    for index, name in audio.devices(output=False):
        print(f"{index}\t{name}")
    return 0


def run(args, command):
    from . import cli

    if args.devices:
        return _list_devices()
    cfg = cli.load_config(args)
    cfg = dict(cfg, speech_in=_settings_from_args(args, cfg))
    ptt = PushToTalk(cfg)
    ptt.on_miss = lambda text: _say(args, cfg, text)
    jsonl = args.format == "jsonl"
    try:
        ptt.check()
        if isinstance(ptt.trigger, EnterTrigger) and sys.stdin.isatty():
            print("storybot: press Enter, say how the story begins; Enter again (or a pause) ends it",
                  file=sys.stderr, flush=True)
        elif isinstance(ptt.trigger, SignalTrigger):
            print(f"storybot: kill -USR1 {os.getpid()} starts (and ends) a recording", file=sys.stderr, flush=True)
        while True:
            try:
                text = ptt.listen()
            except StorybotError as e:
                if args.once:
                    raise
                print(f"storybot: {e}", file=sys.stderr, flush=True)
                continue
            if text is None:
                return 0
            if jsonl:
                print(json.dumps(dict(ptt.last, text=text), ensure_ascii=False), flush=True)
            elif text:
                print(text, flush=True)
                print("storybot: " + _summary(ptt.last), file=sys.stderr, flush=True)
            if text and args.tell:
                args.prompt = text
                cli.tell(args)
            if args.once:
                return 0 if text else 1
    finally:
        ptt.close()
