"""Builds the Milk-V Duo bundle: `make duo` (C906, XTheadVector) or `make duo-rvv1`.

    python3 tools/duo/bundle.py [--isa c906|rvv1] [--out build/duo] [--lib PREBUILT.so]

One tarball, build/duo/storybot-duo-<isa>.tar.gz, holding everything the board needs:
the robot package with libstorybot.so cross-compiled for the target and storybot.h
beside it (loaded by robot/kernel/lib.py through cffi's ABI mode, so the board needs no
compiler), /usr/bin/storybot, the board's config, the BusyBox init script and the
systemd unit, and install.sh. See docs/duo.md.

The compiler: $DUO_CC, else ${CROSS_COMPILE}gcc (the Milk-V SDK's musl toolchain),
else $G14 (tools/rvenv.sh, after tools/rvtoolbox.sh), else riscv64-linux-gnu-gcc-14 on PATH. MARCH and
MABI override the ISA's flags.

glibc or musl: the Duo runs musl, while a Debian cross GCC links against glibc. The
library is therefore linked with -nostdlib: it names no libc at all and takes malloc,
expf and the rest from the Python process that loads it, whichever C library that
is. The build then checks the result (elfinfo.py): no DT_NEEDED beyond libc names
musl maps onto itself, and, when a musl libc.so is at hand, every undefined symbol
exported by it.
"""
import argparse
import ast
import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "_kernel"))
import buildvars  # noqa: E402  (_kernel/build.mk: the kernel's sources and flags)
import elfinfo  # noqa: E402

ISAS = {
    # isa: (-march, the sb_isa() name a vector build reports)
    "c906": ("rv64gc_xtheadvector", "xtheadvector"),
    "rvv1": ("rv64gcv", "rvv1.0"),
}
# Names musl's dynamic linker resolves to itself, so a library may list them.
MUSL_SELF = {"libc.so", "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1"}
# The oldest Python the Duo images ship (buildroot 2021.05: 3.9).
OLDEST_PYTHON = (3, 9)
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))


class BundleError(Exception):
    pass


def find_compiler():
    if os.environ.get("DUO_CC"):
        return os.environ["DUO_CC"]
    if os.environ.get("CROSS_COMPILE"):
        return os.environ["CROSS_COMPILE"] + "gcc"
    g14 = os.environ.get("G14")
    if g14 and os.path.isfile(g14):
        return g14
    onpath = shutil.which("riscv64-linux-gnu-gcc-14")
    if onpath:
        return onpath
    raise BundleError("no RISC-V cross compiler found; run tools/rvtoolbox.sh (GCC 14 for riscv64), "
                      "or point CROSS_COMPILE at the Milk-V SDK toolchain, e.g. CROSS_COMPILE=riscv64-unknown-linux-musl-")


def compile_lib(isa, out):
    cc = find_compiler()
    march = os.environ.get("MARCH") or ISAS[isa][0]
    mabi = os.environ.get("MABI") or "lp64d"
    sources = buildvars.sources()
    # the RISC-V flags of bench/riscv.mk (auto-vectoriser off, no fortify: musl has no
    # __*_chk functions); no stack protector keeps the symbol list plain
    cmd = [cc, *buildvars.cflags(riscv=True), "-fPIC", "-shared",
           "-fno-stack-protector", f"-march={march}", f"-mabi={mabi}",
           "-nostdlib", "-Wl,-soname,libstorybot.so", "-I", os.path.join(ROOT, "_kernel"),
           "-o", out, *sources, "-lgcc"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BundleError(f"cross-compiling the kernel failed ({' '.join(cmd[:1])} -march={march}):\n{r.stderr.strip()}")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    return {"compiler": version[0] if version else cc, "march": march, "mabi": mabi}


def musl_reference():
    """musl's libc.so to check symbols against: $MUSL_LIBC or the riscv64 root's."""
    cands = [os.environ.get("MUSL_LIBC"),
             os.path.join(os.environ.get("RVROOT", ""), "usr/lib/riscv64-linux-musl/libc.so") if os.environ.get("RVROOT") else None]
    return next((c for c in cands if c and os.path.isfile(c)), None)


def check_lib(path):
    """Returns a list of notes; raises BundleError when the board could not load it."""
    info = elfinfo.read(path)
    if info.machine != elfinfo.EM_RISCV:
        raise BundleError(f"{path} is not a RISC-V library (ELF machine {info.machine}); build it with a riscv64 cross compiler")
    foreign = [n for n in info.needed if n not in MUSL_SELF]
    if foreign:
        raise BundleError(f"{path} needs {', '.join(foreign)}, which a musl board does not have; link it with -nostdlib")
    missing_api = [s for s in ("sb_model_open", "sb_next", "sb_isa") if s not in info.defined]
    if missing_api:
        raise BundleError(f"{path} does not export {', '.join(missing_api)}; it is not a storybot kernel")
    ref = musl_reference()
    if ref:
        musl = set(elfinfo.read(ref).defined)
        missing = [s for s in info.undefined if s not in musl]
        ours = [s for s in missing if s.startswith("sb_")]
        if ours:
            raise BundleError(f"{path} leaves {', '.join(ours)} undefined: the kernel has no implementation for "
                              "this -march yet (see _kernel/ops_rvv.c)")
        if missing:
            raise BundleError(f"{path} uses {', '.join(missing)}, which musl does not provide; rebuild without glibc extensions")
        return {"symbols_checked_against": os.path.basename(os.path.dirname(ref)) + "/libc.so",
                "undefined": info.undefined}
    glibcish = [s for s in info.undefined if s.startswith("__") and s not in ("__errno_location", "__stack_chk_fail")]
    if glibcish:
        raise BundleError(f"{path} uses {', '.join(glibcish)}, glibc internals a musl board lacks")
    return {"symbols_checked_against": None, "undefined": info.undefined}


def check_python_syntax(pkg):
    for path in sorted(glob.glob(os.path.join(pkg, "**", "*.py"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            src = f.read()
        try:
            ast.parse(src, path, feature_version=OLDEST_PYTHON)
        except SyntaxError as e:
            raise BundleError(f"{os.path.relpath(path, ROOT)} line {e.lineno} is not Python "
                              f"{'.'.join(map(str, OLDEST_PYTHON))} syntax, which the Duo's image runs: {e.msg}") from None


def tomli_wheel(out_dir, mode):
    """tomli for the Duo's Python 3.9 (no tomllib); pure Python, fetched once and cached."""
    have = sorted(glob.glob(os.path.join(out_dir, "wheels", "tomli-*-py3-none-any.whl")))
    if have or mode == "skip":
        return have[-1] if have else None
    # the pure-Python wheel for the board's Python, not one compiled for this PC
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", ".".join(map(str, OLDEST_PYTHON)), "--implementation", "py", "--abi", "none",
                    "--platform", "any", "--timeout", "15", "--retries", "1", "tomli>=1.1,<3",
                    "-d", os.path.join(out_dir, "wheels")], capture_output=True, text=True)
    have = sorted(glob.glob(os.path.join(out_dir, "wheels", "tomli-*-py3-none-any.whl")))
    if not have:
        print("bundle: warning: could not fetch tomli; on a Python 3.9 image copy it to the board "
              "(pip download tomli) or the config cannot be read", file=sys.stderr)
        return None
    return have[-1]


def abi_module(header, home):
    """robot/_storybot_abi.py: the header's declarations compiled ahead by cffi (out-of-line
    ABI mode, ffi.set_source(name, None)), which robot/kernel/lib.py loads before parsing
    storybot.h itself. The board then never imports cffi's C parser (pycparser and its
    tables: 2.6 MB of the robot's memory measured in the VM, docs/duo.md "Memory diet").
    Without cffi on this PC the bundle goes without it; the robot parses the header."""
    try:
        import cffi
    except ImportError:
        print("bundle: warning: no cffi on this PC, so no prebuilt robot/_storybot_abi.py; "
              "the board will parse storybot.h at every start (about 2.6 MB more memory)", file=sys.stderr)
        return None
    with open(header, encoding="utf-8") as f:
        cdef = f.read().split("/* CDEF-BEGIN */", 1)[1].split("/* CDEF-END */", 1)[0]
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source("robot._storybot_abi", None)
    return ffi.compile(tmpdir=home)


def ask_binary(out):
    """storybot-ask (askc.c): a static C client for the control socket, for images too
    small for a second Python (the stock Duo). Skipped, with a warning, when the cross
    compiler cannot link a static program (e.g. a toolchain without a static libc)."""
    cc = find_compiler()
    r = subprocess.run([cc, "-O2", "-static", "-march=rv64gc", "-mabi=lp64d", "-o", out,
                        os.path.join(HERE, "askc.c")], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"bundle: warning: no storybot-ask (static link failed: {r.stderr.strip()[-200:]})", file=sys.stderr)
        return None
    # its symbols are 40% of the file; the strip beside the compiler, when there is one
    strip = os.path.join(os.path.dirname(cc), os.path.basename(cc).replace("gcc-14", "strip").replace("gcc", "strip"))
    if os.path.isfile(strip):
        subprocess.run([strip, out], capture_output=True)
    return out


def git_describe():
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def stage(isa, out_dir, lib, build_info, wheel):
    name = f"storybot-duo-{isa}"
    top = os.path.join(out_dir, name)
    shutil.rmtree(top, ignore_errors=True)
    home = os.path.join(top, "files", "usr", "lib", "storybot")
    pkg = os.path.join(home, "robot")
    os.makedirs(pkg)
    for src in sorted(glob.glob(os.path.join(ROOT, "robot", "**", "*.py"), recursive=True)):
        dst = os.path.join(pkg, os.path.relpath(src, os.path.join(ROOT, "robot")))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    for data in sorted(glob.glob(os.path.join(ROOT, "robot", "data", "*"))):
        os.makedirs(os.path.join(pkg, "data"), exist_ok=True)
        shutil.copy2(data, os.path.join(pkg, "data"))
    check_python_syntax(pkg)
    shutil.copy2(lib, os.path.join(pkg, "libstorybot.so"))
    shutil.copy2(os.path.join(ROOT, "_kernel", "storybot.h"), os.path.join(pkg, "storybot.h"))
    abi_module(os.path.join(ROOT, "_kernel", "storybot.h"), home)
    # `storybot ask` in a few hundred kB (the launcher runs it), see ask_lean.py
    shutil.copy2(os.path.join(HERE, "ask_lean.py"), os.path.join(home, "storybot_ask.py"))
    ask_binary(os.path.join(home, "storybot-ask"))
    if wheel:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(home)

    def put(src, dst, mode=0o644):
        path = os.path.join(top, dst)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.isfile(src):
            raise BundleError(f"{os.path.relpath(src, ROOT)} is missing from the source tree; the bundle needs it")
        shutil.copyfile(src, path)
        os.chmod(path, mode)

    put(os.path.join(HERE, "storybot.sh"), "files/usr/bin/storybot", 0o755)
    put(os.path.join(HERE, "storybot.toml"), "files/etc/storybot/storybot.toml")
    put(os.path.join(ROOT, "systemd", "S99storybot"), "files/etc/init.d/S99storybot", 0o755)
    put(os.path.join(ROOT, "systemd", "storybot.service"), "files/usr/lib/systemd/system/storybot.service")
    put(os.path.join(HERE, "install.sh"), "install.sh", 0o755)
    if os.path.isfile(os.path.join(ROOT, "docs", "duo.md")):
        put(os.path.join(ROOT, "docs", "duo.md"), "duo.md")
    version = f"storybot {git_describe()} for {isa} ({build_info['march']})"
    with open(os.path.join(top, "VERSION"), "w") as f:
        f.write(version + "\n")

    sums, files = [], {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for fn in sorted(filenames):
            p = os.path.join(dirpath, fn)
            rel = os.path.relpath(p, top)
            if rel in ("SHA256SUMS", "MANIFEST.json"):
                continue
            with open(p, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            sums.append(f"{digest}  {rel}")
            files[rel] = {"sha256": digest, "bytes": os.path.getsize(p)}
    with open(os.path.join(top, "SHA256SUMS"), "w") as f:
        f.write("\n".join(sums) + "\n")
    with open(os.path.join(top, "MANIFEST.json"), "w") as f:
        json.dump({"version": version, "isa": isa, **build_info, "tomli": os.path.basename(wheel) if wheel else None,
                   "files": files}, f, indent=1, sort_keys=True)
    return top


def make_tarball(top):
    """Sorted entries, fixed times and root ownership: the same sources give the same bytes."""
    path = top + ".tar.gz"
    base = os.path.basename(top)

    def norm(ti):
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        ti.mtime = EPOCH
        return ti

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(top, arcname=base, recursive=False, filter=norm)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for n in sorted(dirnames) + sorted(filenames):
                p = os.path.join(dirpath, n)
                tar.add(p, arcname=os.path.join(base, os.path.relpath(p, top)), recursive=False, filter=norm)
    import gzip
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=EPOCH, filename="") as gz:
        gz.write(buf.getvalue())
    return path


def build(isa="c906", out_dir=None, lib=None, tomli="auto"):
    out_dir = os.path.abspath(out_dir or os.path.join(ROOT, "build", "duo"))
    os.makedirs(out_dir, exist_ok=True)
    if lib:
        if not os.path.isfile(lib):
            raise BundleError(f"library {lib} does not exist; build it first or leave --lib out")
        info = {"compiler": "prebuilt " + os.path.abspath(lib), "march": os.environ.get("MARCH") or ISAS[isa][0], "mabi": "lp64d"}
    else:
        lib = os.path.join(out_dir, f"libstorybot-{isa}.so")
        info = compile_lib(isa, lib)
    info.update(check_lib(lib))
    top = stage(isa, out_dir, lib, info, tomli_wheel(out_dir, tomli))
    return make_tarball(top)


def main(argv=None):
    p = argparse.ArgumentParser(description="build the storybot bundle for a Milk-V Duo")
    p.add_argument("--isa", choices=sorted(ISAS), default="c906", help="c906 (Duo, XTheadVector) or rvv1 (RVV 1.0 boards)")
    p.add_argument("--out", help="output directory (default build/duo)")
    p.add_argument("--lib", help="use this cross-built libstorybot.so instead of compiling one")
    p.add_argument("--tomli", choices=["auto", "skip"], default="auto",
                   help="bundle tomli for Python 3.9 images (auto: fetch once with pip and cache)")
    a = p.parse_args(argv)
    try:
        path = build(a.isa, a.out, a.lib, a.tomli)
    except BundleError as e:
        print(f"bundle: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
