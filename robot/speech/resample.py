"""Pure-Python sample-rate conversion of 16-bit PCM for the microphone path.

    rs = Resampler(48000, 16000, channels=2)
    out = rs.process(chunk_bytes)      # array('h'), mono, 16 kHz
    out += rs.flush()                  # the last few samples held back by the filter

Many USB microphones only record at 44.1 or 48 kHz, sometimes only in stereo, while Vosk
models want 16 kHz mono. The conversion is a polyphase windowed-sinc filter for any
rational ratio: a naive pick-every-third-sample decimator would fold everything above
8 kHz (fricatives, fan noise) back into the speech band. No numpy at run time, so the
inner product is `sum(map(mul, ...))`, which runs the multiply-add loop in C; that costs
a few tens of milliseconds per second of audio on a desktop and is skipped entirely when
the device records at the target rate already.
"""
import math
import sys
from array import array
from operator import mul
from typing import List, Optional, Union


__all__ = ["Resampler", "to_mono", "rms", "pcm_bytes"]


def _bessel_i0(x: float) -> float:
    # power series of the modified Bessel function; converges fast for Kaiser betas < 20
    total, term, k = 1.0, 1.0, 1
    while term > 1e-12 * total:
        term *= (x / (2.0 * k)) ** 2
        total += term
        k += 1
    return total


def _samples(pcm: bytes) -> "array[int]":
    a = array("h")
    a.frombytes(bytes(pcm[:len(pcm) - len(pcm) % 2]))
    if sys.byteorder == "big":  # the bytes are little-endian S16_LE
        a.byteswap()
    return a


def pcm_bytes(samples: "array[int]") -> bytes:
    """array('h') -> S16_LE bytes, whatever the machine's byte order."""
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def to_mono(pcm: "Union[bytes, array[int]]", channels: int) -> "array[int]":
    """Interleaved S16_LE bytes (or an array('h')) with `channels` channels -> array('h') mono."""
    a = pcm if isinstance(pcm, array) else _samples(pcm)
    if channels == 1:
        return a
    n = len(a) // channels
    a = a[:n * channels]
    if channels == 2:
        return array("h", [(x + y) >> 1 for x, y in zip(a[0::2], a[1::2])])
    cols = [a[c::channels] for c in range(channels)]
    return array("h", [sum(f) // channels for f in zip(*cols)])


def rms(samples: "array[int]") -> float:
    """Root mean square of an array('h'); 0 for an empty one."""
    if not samples:
        return 0.0
    return math.sqrt(sum(map(mul, samples, samples)) / len(samples))


class Resampler:
    """Streaming converter: interleaved S16 at `rate_in` -> mono S16 at `rate_out`.

    The filter is centred (zero delay): output sample n lies at input time n*rate_in/rate_out,
    and after flush() the total output length is ceil(inputs * rate_out / rate_in)."""

    def __init__(self, rate_in: int, rate_out: int = 16000, channels: int = 1, zeros: int = 6, rolloff: float = 0.94,
                 beta: float = 7.0) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError("sample rates must be positive")
        g = math.gcd(int(rate_in), int(rate_out))
        self.rate_in, self.rate_out, self.channels = int(rate_in), int(rate_out), int(channels)
        self.up, self.down = self.rate_out // g, self.rate_in // g
        self.passthrough = self.up == self.down
        self._n_in = 0
        self._n_out = 0
        if self.passthrough:
            return
        # cutoff in cycles per input sample: below both Nyquist limits, with a little room
        # for the transition band so the stop band starts at the new Nyquist frequency
        fc = 0.5 * min(1.0, self.up / self.down) * rolloff
        half = max(2, int(math.ceil(zeros / (2.0 * fc))))
        self.taps = 2 * half
        self._left = half - 1  # input samples before the centre that each output reads
        self.phases: List[List[float]] = []
        for p in range(self.up):
            frac = p / self.up
            row = []
            for k in range(self.taps):
                d = frac + self._left - k  # distance from the output time, in input samples
                x = 2.0 * fc * d
                s = 2.0 * fc * (math.sin(math.pi * x) / (math.pi * x) if x else 1.0)
                w = d / half
                win = _bessel_i0(beta * math.sqrt(1.0 - w * w)) / _bessel_i0(beta) if abs(w) < 1.0 else 0.0
                row.append(s * win)
            total = sum(row)
            # every phase gets exactly unit gain at DC, so a constant stays constant
            self.phases.append([c / total for c in row])
        # pretend the signal was silent before it started, so output 0 sits on input 0
        self._buf = array("h", bytes(2 * self._left))
        self._buf_start = -self._left  # input index of _buf[0]

    def process(self, pcm: "Union[bytes, array[int]]") -> "array[int]":
        """Converts the next chunk (bytes or array('h'), interleaved); returns array('h')."""
        mono = to_mono(pcm, self.channels)
        self._n_in += len(mono)
        if self.passthrough:
            self._n_out += len(mono)
            return array("h", mono)
        self._buf.extend(mono)
        return self._run(final=False)

    def flush(self) -> "array[int]":
        """The outputs still owed for the input so far (reads silence after the end)."""
        if self.passthrough:
            return array("h")
        owed = -(-self._n_in * self.up // self.down) - self._n_out
        if owed <= 0:
            return array("h")
        self._buf.extend(array("h", bytes(2 * (self.taps + self.down // self.up + 1))))
        return self._run(final=True, limit=owed)

    def _run(self, final: bool, limit: Optional[int] = None) -> "array[int]":
        up, down, taps, left = self.up, self.down, self.taps, self._left
        phases, buf, start = self.phases, self._buf, self._buf_start
        out: List[int] = []
        n = self._n_out
        end = len(buf)
        while limit is None or len(out) < limit:
            num = n * down
            centre = num // up  # input index at or just before the output time
            i0 = centre - left - start
            if i0 + taps > end:
                break
            v = sum(map(mul, phases[num % up], buf[i0:i0 + taps]))
            v = int(v + 0.5) if v >= 0 else -int(0.5 - v)
            out.append(32767 if v > 32767 else -32768 if v < -32768 else v)
            n += 1
        self._n_out = n
        # keep only the history the next output still needs
        need = (n * down) // up - left - start
        if need > 0 and not final:
            del buf[:need]
            self._buf_start = start + need
        return array("h", out)
