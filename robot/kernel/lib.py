"""Finds the C kernel: the cffi extension built by setup.py (API mode), or, on boards
with no compiler, a cross-built libstorybot.so loaded in ABI mode from the same
header. Set STORYBOT_LIB to force a particular shared library."""
import os
from typing import Any, Iterable, Optional, Tuple

from robot.errors import StorybotError

# The bundle puts libstorybot.so and storybot.h at the top of the robot package.
_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_REPO = os.path.dirname(_PKG)


Loaded = Tuple[Any, Any, str]  # (ffi, lib, mode): cffi's objects are untyped


def _cdef(header: str) -> str:
    with open(header, encoding="utf-8") as f:
        text = f.read()
    return text.split("/* CDEF-BEGIN */", 1)[1].split("/* CDEF-END */", 1)[0]


def _first(paths: Iterable[Optional[str]]) -> Optional[str]:
    for p in paths:
        if p and os.path.isfile(p):
            return p
    return None


def _prebuilt_ffi() -> Any:
    """The board bundle's declarations, compiled ahead by tools/duo/bundle.py, so that
    cffi's C parser (pycparser, megabytes of a 64 MB board) is never imported there."""
    try:
        from robot._storybot_abi import ffi
    except Exception:  # noqa: BLE001 - absent (a source tree) or from another cffi: parse the header
        return None
    return ffi


def _load_abi(libpath: str) -> Loaded:
    ffi = _prebuilt_ffi()
    if ffi is not None:
        try:
            return ffi, ffi.dlopen(libpath), "abi:" + libpath
        except OSError as e:
            raise StorybotError(f"cannot load the storybot kernel {libpath}: {e}; rebuild it for this machine") from None
    import cffi

    header = _first([os.environ.get("STORYBOT_HEADER"),
                     os.path.join(os.path.dirname(libpath), "storybot.h"),
                     os.path.join(_PKG, "storybot.h"),
                     os.path.join(_REPO, "_kernel", "storybot.h")])
    if header is None:
        raise StorybotError(f"found {libpath} but not storybot.h beside it; install the whole storybot bundle")
    ffi = cffi.FFI()
    ffi.cdef(_cdef(header))
    try:
        lib = ffi.dlopen(libpath)
    except OSError as e:
        raise StorybotError(f"cannot load the storybot kernel {libpath}: {e}; rebuild it for this machine") from None
    return ffi, lib, "abi:" + libpath


def load() -> Loaded:
    forced = os.environ.get("STORYBOT_LIB")
    if forced:
        return _load_abi(forced)
    try:
        from robot._storybot import ffi, lib  # noqa: F401  (built by setup.py)
        return ffi, lib, "api"
    except ImportError:
        pass
    libpath = _first([os.path.join(_PKG, "libstorybot.so"), os.path.join(_REPO, "build", "libstorybot.so")])
    if libpath:
        return _load_abi(libpath)
    raise StorybotError("the storybot C kernel is not built; run 'make install' (or 'pip install .') in the storybot source tree")


ffi, lib, MODE = load()
