"""cffi build script (API / out-of-line mode) for the kernel, used by setup.py.

The C declarations come from the CDEF block of _kernel/storybot.h, the single
contract between the kernel and Python; the ABI-mode loader in robot/engine.py
reads the same block, so the two can never drift apart.
"""
import os
import platform
import sys

import cffi

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import buildvars  # noqa: E402  (_kernel/build.mk: the one list of sources and flags)


def cdef_text(header=os.path.join(HERE, "storybot.h")):
    with open(header, encoding="utf-8") as f:
        text = f.read()
    return text.split("/* CDEF-BEGIN */", 1)[1].split("/* CDEF-END */", 1)[0]


def compile_args():
    args = buildvars.cflags()
    # The extension is compiled on the machine that runs it (pip install / make), so
    # tuning for that CPU is safe; STORYBOT_NATIVE=0 builds a portable binary instead.
    if os.environ.get("STORYBOT_NATIVE", "1") != "0" and platform.machine() in ("x86_64", "AMD64", "aarch64", "arm64"):
        args.append("-march=native")
    return args


ffibuilder = cffi.FFI()
ffibuilder.cdef(cdef_text())
ffibuilder.set_source(
    "robot._storybot",
    '#include "storybot.h"',
    sources=[os.path.relpath(s, os.getcwd()) for s in buildvars.sources()],
    include_dirs=[HERE],
    extra_compile_args=compile_args(),
    libraries=["m"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=ROOT, verbose=False)
