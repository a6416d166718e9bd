"""This process's memory, the one reader every figure comes from (the CLI's summary,
`storybot bench`, the daemon's status, the microphone's record).

Both numbers come from /proc/self/status: VmRSS (resident now) and VmHWM (the peak).
getrusage's ru_maxrss is not used as a fallback: it survives fork+exec, so a child
started by a large parent (bench's variants, a test runner) would report the parent's
peak as its own. Where /proc is missing the figures are 0, which reads as "unknown"."""
from __future__ import annotations

from typing import NamedTuple


class Memory(NamedTuple):
    rss_kb: int    # resident set now (VmRSS)
    peak_kb: int   # highest resident set so far (VmHWM)


def memory(path: str = "/proc/self/status") -> Memory:
    """Current and peak resident set in KB; (0, 0) when /proc does not say."""
    cur = peak = 0
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return Memory(cur, peak)


def current_rss_kb() -> int:
    return memory().rss_kb


def peak_rss_kb() -> int:
    # VmHWM comes from the kernel's approximate (per-CPU batched) RSS counters: just after
    # growth it can read a few hundred KB below VmRSS, which is a lower bound of the peak
    m = memory()
    return max(m.peak_kb, m.rss_kb)
