"""Sound devices through PortAudio (PyAudio): find a device by name, play 16-bit mono.

    index = find_device("USB", output=True)          # "" = the default device
    out = Output(index, rate=22050)
    out.write(pcm_bytes)
    out.finish()                                      # or out.abort() to stop at once

Problems end as NoAudio, one sentence naming the missing package or device; callers
decide whether that is fatal (a subcommand) or a warning (the story goes on as text).
PyAudio is imported only when sound is wanted, so the robot runs without it.
"""
import contextlib
import logging
import os
import tempfile
import threading
from typing import Any, Iterator, List, Optional, Tuple

from robot.errors import StorybotError

log = logging.getLogger("storybot.audio")

_pa: Any = None
_pa_lock = threading.Lock()


class NoAudio(StorybotError):
    """Sound cannot be played or recorded here; str(e) says why and what to do."""


@contextlib.contextmanager
def _stderr_to_log() -> Iterator[None]:
    """PortAudio's start-up probes every ALSA, JACK and OSS device and libasound /
    libjack print each failed probe on stderr (dozens of lines on a board without a
    sound card). Those lines go to the debug log instead; only our one-line warnings
    reach the user. Only used while PortAudio starts, before any story thread runs."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            noise = sink.read().decode("utf-8", "replace").strip()
            if noise:
                log.debug("PortAudio start-up said:\n%s", noise)


def portaudio() -> Any:
    """The process's one PyAudio instance (PortAudio is started once and kept)."""
    global _pa
    with _pa_lock:
        if _pa is None:
            try:
                import pyaudio
            except ImportError:
                raise NoAudio("PyAudio is not installed (pip install pyaudio, which needs the "
                              "portaudio19-dev package), so there is no sound") from None
            with _stderr_to_log():
                try:
                    _pa = pyaudio.PyAudio()
                except Exception as e:  # PortAudio's own start-up error, whatever its type
                    raise NoAudio(f"PortAudio could not start ({e}), so there is no sound") from None
        return _pa


def devices(output: bool = True) -> List[Tuple[int, str]]:
    """[(index, name)] of the devices that can play (output=True) or record."""
    pa = portaudio()
    key = "maxOutputChannels" if output else "maxInputChannels"
    found = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if info.get(key, 0) > 0:
            found.append((i, info["name"]))
    return found


def find_device(name: str = "", output: bool = True, setting: Optional[str] = None) -> int:
    """Index of the device whose name contains `name` (case does not matter; an exact
    name wins over a partial one), or of the default device when name is empty."""
    kind = "output" if output else "input"
    what = "speaker" if output else "microphone"
    setting = setting or ("[speech_out] device" if output else "[speech_in] device")
    pa = portaudio()
    if not name:
        try:
            info = pa.get_default_output_device_info() if output else pa.get_default_input_device_info()
        except (IOError, OSError):
            raise NoAudio(f"no sound {kind} device was found; connect a {what} or name one in {setting}") from None
        return int(info["index"])
    listed = devices(output)
    want = name.lower()
    exact = [i for i, n in listed if n.lower() == want]
    partial = [i for i, n in listed if want in n.lower()]
    if exact or partial:
        return (exact or partial)[0]
    names = ", ".join(repr(n) for _, n in listed) or "none"
    raise NoAudio(f"no sound {kind} device matches {name!r} (found: {names}); fix {setting}")


def device_name(index: Optional[int]) -> str:
    return str(portaudio().get_device_info_by_index(index)["name"])


def check_output(index: int, rate: int, channels: int = 1) -> None:
    """Raises NoAudio unless the device can play 16-bit audio at this rate."""
    import pyaudio

    pa = portaudio()
    try:
        pa.is_format_supported(rate, output_device=index, output_channels=channels,
                               output_format=pyaudio.paInt16)
    except ValueError as e:
        raise NoAudio(f"sound device {device_name(index)!r} cannot play {rate} Hz 16-bit audio ({e}); "
                      f"choose another device in [speech_out] device") from None


class Output:
    """A blocking 16-bit output stream. write() returns once the device has room for
    the data, so a writer thread is paced by the speaker itself."""

    def __init__(self, index: Optional[int], rate: int, channels: int = 1, frames_per_buffer: int = 1024) -> None:
        import pyaudio

        self.index = index
        self.rate = rate
        try:
            self._stream = portaudio().open(rate=rate, channels=channels, format=pyaudio.paInt16, output=True,
                                            output_device_index=index, frames_per_buffer=frames_per_buffer)
        except (IOError, OSError, ValueError) as e:
            raise NoAudio(f"sound device {device_name(index)!r} could not be opened ({e})") from None

    def write(self, data: bytes) -> None:
        self._stream.write(data)

    def finish(self) -> None:
        """Let what is buffered play to the end, then close."""
        s, self._stream = self._stream, None
        if s is not None:
            try:
                s.stop_stream()
            finally:
                s.close()

    def abort(self) -> None:
        """Stop at once: closing an active PortAudio stream drops its buffered audio."""
        s, self._stream = self._stream, None
        if s is not None:
            s.close()
