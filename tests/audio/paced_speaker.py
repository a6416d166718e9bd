"""A speaker with a clock, for tests: reads 16-bit mono PCM at 22,050 Hz from stdin no
faster than it would play, appending it to the file named on the command line.

The virtual card's `storybot_realtime` device pipes into this (ALSA's file plugin with
a "|command"), so a writer blocks as it would on a real sound card once the pipe's
buffer (about 1.5 s of sound) is full."""
import fcntl
import sys
import time

RATE = 22050
F_SETPIPE_SZ = 1031
try:
    fcntl.fcntl(0, F_SETPIPE_SZ, 4096)   # about 90 ms of sound, a sound card's buffer
except OSError:
    pass
out = open(sys.argv[1], "ab") if len(sys.argv) > 1 else None
start = time.monotonic()
frames = 0
while True:
    data = sys.stdin.buffer.read(RATE // 20 * 2)          # 50 ms
    if not data:
        break
    if out:
        out.write(data)
        out.flush()
    frames += len(data) // 2
    ahead = start + frames / RATE - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
