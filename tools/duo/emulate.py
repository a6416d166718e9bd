"""Running the bundle without a board: the project's RISC-V toolbox (tools/rvtoolbox.sh:
GCC 14, qemu for RVV 1.0 and for the C906, a riscv64 Debian root with Python 3.13 + cffi,
the rvcount plugin), used by tests/system/test_duo.py and tools/duo/overhead.py.

A bundle directory (build/duo/storybot-duo-ISA) holds files/usr/lib/storybot, the tree
that becomes /usr/lib/storybot on the board; running `python -m robot` with that as the
working directory is exactly what /usr/bin/storybot does there: the package finds its
own libstorybot.so and storybot.h and loads them through cffi's ABI mode."""
import os
import shlex
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOOLS = os.path.join(ROOT, "tools")
# qemu inherits nothing else, so instruction counts and hash order repeat exactly.
BASE_ENV = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "STORYBOT_CACHE": "/nonexistent-storybot-cache", "LANG": "C.UTF-8"}


class ToolboxMissing(Exception):
    pass


def toolbox(setup=False, timeout=1500):
    """The toolbox's variables (G14, QRVV, QC906, RVROOT, RVCOUNT); with setup=True it
    first runs tools/rvtoolbox.sh (idempotent; 1-3 minutes the first time, then instant)."""
    if setup:
        try:
            r = subprocess.run(["bash", os.path.join(TOOLS, "rvtoolbox.sh")], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolboxMissing("installing the RISC-V toolbox took too long") from None
        if r.returncode != 0:
            raise ToolboxMissing("the RISC-V toolbox could not be installed here: " + (r.stderr.strip().splitlines() or ["?"])[-1])
    env_sh = os.path.join(TOOLS, "rvenv.sh")
    out = subprocess.run(["bash", "-c", f'. "{env_sh}" && env -0'], capture_output=True, text=True).stdout
    env = dict(kv.split("=", 1) for kv in out.split("\0") if "=" in kv)
    tb = {k: env.get(k, "") for k in ("G14", "QRVV", "QC906", "RVROOT", "RVCOUNT")}
    missing = [k for k, path in (("G14", tb["G14"]), ("RVROOT", os.path.join(tb["RVROOT"], "usr/bin/python3.13")))
               if not os.path.exists(path)]
    if missing or not tb["QC906"].split() or not os.path.exists(tb["QC906"].split()[0]):
        raise ToolboxMissing(f"the RISC-V toolbox is incomplete ({', '.join(missing) or 'xuantie qemu'} missing); run tools/rvtoolbox.sh")
    return tb


def qemu(tb, isa):
    """The emulator for a bundle: the C906 (XTheadVector) or a generic RVV 1.0 core, VLEN 128."""
    return shlex.split(tb["QC906"] if isa == "c906" else tb["QRVV"])


def python(tb, isa, plugin=None):
    cmd = qemu(tb, isa) + ["-L", tb["RVROOT"]]
    if plugin:
        cmd += ["-plugin", plugin]
    return cmd + [os.path.join(tb["RVROOT"], "usr", "bin", "python3.13")]


def home(bundle):
    return os.path.join(bundle, "files", "usr", "lib", "storybot")


def lib(bundle):
    return os.path.join(home(bundle), "robot", "libstorybot.so")


def build_cstory(tb, out, libc="musl"):
    """tools/duo/cstory.c for riscv64, linked against musl (the board's C library) or glibc
    (the emulated Python's, for a like-for-like instruction count)."""
    cmd = [tb["G14"], "-O2", "-Wall", "-march=rv64gc", "-mabi=lp64d", "-I", os.path.join(ROOT, "_kernel"),
           "-o", out, os.path.join(HERE, "cstory.c")]
    if libc == "musl":
        cmd += ["-ffreestanding", "-nostdlib", "-no-pie", "-DOWN_START",
                "-L", os.path.join(tb["RVROOT"], "usr/lib/riscv64-linux-musl"), "-lc",
                "-Wl,--dynamic-linker=/lib/ld-musl-riscv64.so.1"]
    else:
        # the kernel names no libraries (bundle.py), so the process must bring libm, as CPython does
        cmd += ["-Wl,--no-as-needed", "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"building cstory for {libc} failed:\n{r.stderr}")
    return out


def cstory(tb, isa, prog, libpath, model, tok, prompt, steps, seed, temperature=1.0, topp=0.9, plugin=None, timeout=600):
    cmd = qemu(tb, isa) + ["-L", tb["RVROOT"]] + (["-plugin", plugin] if plugin else [])
    cmd += [prog, libpath, model, tok, prompt, str(steps), str(temperature), str(topp), str(seed)]
    return subprocess.run(cmd, env=BASE_ENV, capture_output=True, text=True, timeout=timeout)


def parse_cstory(stdout):
    """(isa, [ids]) from cstory's output."""
    lines = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    ids = [int(x) for x in lines.get("ids", "").split(",") if x]
    return lines.get("isa"), ids


def story(tb, isa, bundle, args, plugin=None, env=None, timeout=600):
    """`python3.13 -m robot ARGS` under qemu, from the bundle's package tree."""
    e = dict(BASE_ENV)
    e.update(env or {})
    return subprocess.run(python(tb, isa, plugin) + ["-m", "robot", *map(str, args)], cwd=home(bundle), env=e,
                          capture_output=True, text=True, timeout=timeout)
