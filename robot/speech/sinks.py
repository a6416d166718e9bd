"""Where the speech goes: a PortAudio device (robot/speech/audio.py) or a WAV file.

A sink is opened for each story by the player thread, takes 16-bit mono PCM chunks, and
is finished (everything heard) or aborted (a cancel: stop within one chunk)."""
import os
import wave
from typing import Optional, Union

from robot.errors import StorybotError
from robot.speech import audio
from robot.speech.backends import CHUNK_MS


class DeviceSink:
    """A PortAudio output device, opened for each story and closed after it."""

    def __init__(self, device: str = "") -> None:
        self.device = device
        self._out: Optional[audio.Output] = None
        self.index: Optional[int] = None

    def describe(self) -> str:
        return f"device {self.device!r}" if self.device else "the default sound device"

    def check(self, rate: int) -> None:
        self.index = audio.find_device(self.device, output=True)
        audio.check_output(self.index, rate)

    def open(self, rate: int) -> None:
        if self.index is None:
            self.check(rate)
        self._out = audio.Output(self.index, rate, frames_per_buffer=rate * CHUNK_MS // 1000)

    def write(self, data: bytes) -> None:
        if self._out is None:
            raise StorybotError("the sound device is not open")
        self._out.write(data)

    def finish(self) -> None:
        out, self._out = self._out, None
        if out:
            out.finish()

    def abort(self) -> None:
        out, self._out = self._out, None
        if out:
            out.abort()


class WavSink:
    """The whole story as one 16-bit mono WAV file (for boards without a speaker)."""

    def __init__(self, path: "Union[str, os.PathLike[str]]") -> None:
        self.path = os.fspath(path)
        self._w: Optional[wave.Wave_write] = None

    def describe(self) -> str:
        return f"WAV file {self.path}"

    def check(self, rate: int) -> None:
        try:
            with open(self.path, "ab"):
                pass
        except OSError as e:
            raise StorybotError(f"cannot write the WAV file {self.path} ({e.strerror}); "
                                "choose another path for --wav") from None

    def open(self, rate: int) -> None:
        w = wave.open(self.path, "wb")
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        self._w = w

    def write(self, data: bytes) -> None:
        if self._w is None:
            raise StorybotError(f"the WAV file {self.path} is not open")
        self._w.writeframesraw(data)

    def finish(self) -> None:
        w, self._w = self._w, None
        if w:
            w.close()          # rewrites the header with the final length

    def abort(self) -> None:
        self.finish()


Sink = Union[DeviceSink, WavSink]
