"""Reads _kernel/build.mk, the one list of kernel sources and compiler flags, for the
Python builders (build_ffi.py, tools/duo/bundle.py). Standard library only: the Duo
bundle is built by a bare python3."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def read(path=os.path.join(HERE, "build.mk")):
    """{NAME: [words]} for every `NAME = words` line."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if "=" in line:
                name, value = line.split("=", 1)
                out[name.strip()] = value.split()
    return out


def sources(base=HERE):
    return [os.path.join(base, s) for s in read()["SB_SOURCES"]]


def cflags(riscv=False):
    v = read()
    return v["SB_CFLAGS"] + (v["SB_RV_CFLAGS"] if riscv else [])
