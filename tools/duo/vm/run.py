"""`make duo-vm`: the Duo bundle in a whole riscv64 system under qemu-system, with the
Duo's free memory.

    python3 tools/duo/vm/run.py [--profile judged|stock] [--model stories260K|stories15M|PATH]
                                [--format fp32|q8|q8q4] [--speak 0|1] [--steps 256]

qemu-system-riscv64 -M virt (TCG, no KVM), a Debian riscv64 kernel and a small root
disk (ext2): BusyBox init, Debian's riscv64 python3 with cffi, espeak-ng with its data
(tools/duo/vm/fetch.sh fetches them once). The bundle (RVV 1.0 build: qemu-system has
no XTheadVector CPU) is installed into the root by its own install.sh, S99storybot
starts the robot at boot, and a guest script (guest/scenario.sh) asks it for a story
with `storybot ask`, then powers the VM off in the middle of a second story. The model
sits on a second virtual disk, so its pages are file pages as on the board's SD card.

VM memory is chosen so that MemAvailable just before the robot starts matches the
profile (judged: the ION-free image, 55 MB; stock: 12 MB); it is calibrated by
probe boots and cached. The last line printed is one JSON object (see RESULT_KEYS).
"""
import argparse
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
CACHE = os.environ.get("DUO_VM_CACHE") or os.path.expanduser("~/.cache/storybot/duo-vm")
BUILTIN = os.path.join(ROOT, "robot", "data")     # the real stories260K + tok512
TEST_DATA = os.path.join(ROOT, "tests", "data")   # the Llama 2 tokenizer.bin

# MemAvailable before the robot starts, KB: (target, tolerance)
PROFILES = {"judged": (55 * 1024, 1024), "stock": (12 * 1024, 1024)}
# The VM boots with the profile's memory plus about 105 MB (at least 120M: below about
# 110M the Debian kernel runs out of memory loading ext4 from the initramfs), and rcS
# pins what is above the profile in a ramfs before the robot starts. The same boot
# measures and pins, so MemAvailable lands within 128 kB of the profile every time;
# setting -m alone (--calibrate) varies by 2-3 MB from boot to boot with the page cache.
PIN_MEM_MB = 120
# qemu-system has no C906 (XTheadVector) CPU; RVV 1.0 at the C906's VLEN runs the rvv1 bundle
CPU = "rv64,v=true,vlen=128,vext_spec=v1.0"
MODULES = ["virtio_blk", "crc16", "crc32c_generic", "mbcache", "jbd2", "ext4"]
TRIM = ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
        "usr/share/bug", "usr/share/bash-completion", "usr/lib/python3.13/ensurepip",
        "usr/lib/python3.13/idlelib", "usr/lib/python3.13/tkinter", "usr/lib/python3.13/turtledemo",
        "usr/lib/python3.13/pydoc_data"]
RESULT_KEYS = ("profile", "model", "format", "spoken", "story_tokens", "mem_available_kb_before",
               "robot_peak_rss_kb", "majfaults_per_token_after_warmup", "oom_kills", "clean_shutdown")


def log(msg):
    print(f"duo-vm: {msg}", file=sys.stderr, flush=True)


class VMError(Exception):
    pass


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise VMError(f"{' '.join(map(str, cmd[:3]))} failed: {(r.stderr or r.stdout).strip()[-800:]}")
    return r.stdout


def qemu_user():
    q = shutil.which("qemu-riscv64") or shutil.which("qemu-riscv64-static")
    if not q:
        raise VMError("qemu-riscv64 (Debian's qemu-user) is needed to prepare the riscv64 root; apt install qemu-user")
    return q


# ---- the kernel, the initramfs and the root disk -------------------------------------------

def fetch():
    return run(["bash", os.path.join(HERE, "fetch.sh")]).strip().splitlines()[-1]


def kernel_files(cache):
    kroot = os.path.join(cache, "kernel", "root")
    image = next(os.path.join(kroot, "boot", f) for f in os.listdir(os.path.join(kroot, "boot")) if f.startswith("vmlinu"))
    mods = os.path.join(kroot, "usr", "lib", "modules")
    return image, os.path.join(mods, os.listdir(mods)[0])


def build_initramfs(cache, moddir):
    """A cpio with static BusyBox, /init and the modules that reach /dev/vda."""
    out = os.path.join(cache, "initramfs.cpio.gz")
    if os.path.isfile(out):
        return out
    with tempfile.TemporaryDirectory(dir=cache) as t:
        for d in ("bin", "dev", "proc", "modules"):
            os.makedirs(os.path.join(t, d))
        deb = next(os.path.join(cache, "debs", f) for f in os.listdir(os.path.join(cache, "debs")) if f.startswith("busybox-static_"))
        x = os.path.join(t, "x")
        run(["dpkg", "-x", deb, x])
        bb = next(os.path.join(dp, f) for dp, _, fs in os.walk(x) for f in fs
                  if f == "busybox" and dp.endswith("bin"))
        shutil.copy2(bb, os.path.join(t, "bin", "busybox"))
        shutil.rmtree(x)
        for m in MODULES:
            src = next((os.path.join(dp, f) for dp, _, fs in os.walk(moddir) for f in fs if f == m + ".ko.xz"), None)
            if src is None:
                raise VMError(f"the kernel package has no module {m}")
            with lzma.open(src) as f, open(os.path.join(t, "modules", m + ".ko"), "wb") as g:
                g.write(f.read())
        with open(os.path.join(t, "modules.order"), "w") as f:
            f.write("\n".join(MODULES) + "\n")
        shutil.copy2(os.path.join(HERE, "guest", "init"), os.path.join(t, "init"))
        os.chmod(os.path.join(t, "init"), 0o755)
        files = subprocess.run("find . -mindepth 1 | LC_ALL=C sort", shell=True, cwd=t, capture_output=True, text=True).stdout
        cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"], input=files.encode(), cwd=t,
                              capture_output=True, check=True).stdout
        import gzip
        with gzip.open(out + ".tmp", "wb") as g:
            g.write(cpio)
        os.replace(out + ".tmp", out)
    return out


BASE_VERSION = "1"  # bump when build_base changes what it puts in the tree


def digest(*parts):
    h = hashlib.sha256()
    for p in parts:
        if os.path.isfile(p):
            with open(p, "rb") as f:
                h.update(os.path.basename(p).encode() + f.read())
        else:
            h.update(str(p).encode())
    return h.hexdigest()[:12]


def base_key(cache):
    return digest(BASE_VERSION, *sorted(os.listdir(os.path.join(cache, "debs"))), *TRIM,
                  os.path.join(HERE, "guest", "inittab"))


def boot_key(image, base):
    """What MemAvailable before the robot depends on: the kernel, the initramfs, the root
    and the boot script; not the scenario or the shutdown script."""
    return digest(os.path.basename(image), os.path.basename(base), *[os.path.join(HERE, "guest", f) for f in ("init", "rcS")])


def build_base(cache):
    """The root tree without storybot: Debian's riscv64 packages unpacked, BusyBox as
    init and shell, our boot scripts, the Python standard library byte-compiled (a
    board's image ships .pyc files; compiling at every start would cost memory)."""
    base = os.path.join(cache, "base-" + base_key(cache))
    if os.path.isfile(os.path.join(base, ".done")):
        return base
    for old in os.listdir(cache):
        if old.startswith("base-"):
            shutil.rmtree(os.path.join(cache, old), ignore_errors=True)
    log("unpacking the riscv64 root (once)")
    os.makedirs(base)
    for f in sorted(os.listdir(os.path.join(cache, "debs"))):
        run(["dpkg", "-x", os.path.join(cache, "debs", f), base])
    for link, to in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")):
        if not os.path.lexists(os.path.join(base, link)):
            os.symlink(to, os.path.join(base, link))
    for t in TRIM:
        shutil.rmtree(os.path.join(base, t), ignore_errors=True)
    q = qemu_user()
    applets = run([q, "-L", base, os.path.join(base, "usr/bin/busybox"), "--list-full"]).split()
    for a in applets:
        p = os.path.join(base, a)
        if not os.path.lexists(p):
            os.makedirs(os.path.dirname(p), exist_ok=True)
            os.symlink("/usr/bin/busybox", p)
    for d in ("proc", "sys", "dev", "run", "tmp", "var/log", "var/lib/storybot", "etc/init.d", "etc/storybot-vm", "root"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    vr = os.path.join(base, "var", "run")
    if not os.path.lexists(vr):
        os.symlink("/run", vr)
    files = {
        "etc/inittab": open(os.path.join(HERE, "guest", "inittab")).read(),
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
        "etc/group": "root:x:0:\naudio:x:29:\n",
        "etc/hostname": "storybot-vm\n",
        "etc/fstab": "",
    }
    for path, text in files.items():
        with open(os.path.join(base, path), "w") as f:
            f.write(text)
    log("byte-compiling the riscv64 Python standard library (once, under qemu-user)")
    compileall(base, ["usr/lib/python3.13", "usr/lib/python3/dist-packages"])
    open(os.path.join(base, ".done"), "w").close()
    return base


def compileall(root, dirs):
    q = qemu_user()
    py = os.path.join(root, "usr", "bin", "python3.13")
    # unchecked-hash: the .pyc is used without comparing the source's time stamp, which
    # mke2fs -d copies but nobody should have to trust
    run([q, "-L", root, py, "-E", "-m", "compileall", "-q", "-s", root, "-p", "/",
         "--invalidation-mode", "unchecked-hash", *[os.path.join(root, d) for d in dirs]],
        env={"PATH": "/usr/bin:/bin"})


def build_bundle(isa="rvv1"):
    env = dict(os.environ)
    envsh = os.path.join(ROOT, "tools", "rvenv.sh")   # the project's toolbox (tools/rvtoolbox.sh)
    if os.path.isfile(envsh):
        # the cross compiler, and the riscv64 root whose musl libc.so the bundle's symbols
        # are checked against (without it bundle.py refuses glibc-looking names musl has)
        out = subprocess.run(["bash", "-c", f". {envsh}; echo $G14; echo $RVROOT"], capture_output=True, text=True).stdout.split()
        for key, val in zip(("G14", "RVROOT"), out):
            env.setdefault(key, val)
    tar = os.path.join(ROOT, "build", "duo", f"storybot-duo-{isa}.tar.gz")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "duo", "bundle.py"), "--isa", isa],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0 or not os.path.isfile(tar):
        raise VMError(f"building the {isa} bundle failed: {(r.stderr or r.stdout).strip()[-600:]}")
    return tar


def mke2fs(tree, image, extra_mb):
    du = int(run(["du", "-sk", "--apparent-size", tree]).split()[0])
    files = int(run(["bash", "-c", f"find {tree} | wc -l"]).strip())
    size_mb = du // 1024 + du // 8192 + extra_mb + 8
    if os.path.exists(image):
        os.unlink(image)
    run(["mke2fs", "-q", "-t", "ext2", "-b", "4096", "-m", "0", "-N", str(files + 512), "-E", "root_owner=0:0",
         "-d", tree, "-F", image, f"{size_mb}M"])
    return image


# the board launcher as it was before the memory diet: python3 with the site module
PLAIN_LAUNCHER = """#!/bin/sh
STORYBOT_HOME=${STORYBOT_HOME:-/usr/lib/storybot}
exec ${STORYBOT_PYTHON:-python3} -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from robot.cli import main; sys.exit(main())' \\
    "$STORYBOT_HOME" "$@"
"""


def undiet(tree, levers):
    for lever in levers:
        if lever == "launcher":
            p = os.path.join(tree, "usr", "bin", "storybot")
            os.unlink(p)
            with open(p, "w") as f:
                f.write(PLAIN_LAUNCHER)
            os.chmod(p, 0o755)
        elif lever == "abi":
            os.unlink(os.path.join(tree, "usr", "lib", "storybot", "robot", "_storybot_abi.py"))
        elif lever == "client":
            os.unlink(os.path.join(tree, "usr", "lib", "storybot", "storybot_ask.py"))
        else:
            raise VMError(f"--undiet knows launcher, abi and client, not {lever!r}")


def make_root(base, work, bundle_tar, job):
    """Per run: the base tree (hard links), storybot installed by the bundle's own
    install.sh, the run's settings, its Python byte-compiled; then an ext2 image."""
    tree = os.path.join(work, "root")
    run(["cp", "-al", base, tree])
    unpack = os.path.join(work, "bundle")
    os.makedirs(unpack)
    run(["tar", "xzf", bundle_tar, "-C", unpack])
    top = os.path.join(unpack, os.listdir(unpack)[0])
    out = run(["sh", os.path.join(top, "install.sh")], env={"PATH": os.environ["PATH"], "DESTDIR": tree})
    log(out.strip().splitlines()[-1])
    for path, text in job["files"].items():
        p = os.path.join(tree, path)
        if os.path.lexists(p):
            os.unlink(p)  # a hard link into the base tree: never write through it
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    # the boot scripts and the scenario, per run (they change more often than the root)
    for src, dst in (("rcS", "etc/init.d/rcS"), ("rcK", "etc/init.d/rcK"), ("scenario.sh", "etc/storybot-vm/scenario.sh"),
                     ("imports.py", "etc/storybot-vm/imports.py")):
        p = os.path.join(tree, dst)
        if os.path.lexists(p):
            os.unlink(p)
        shutil.copy2(os.path.join(HERE, "guest", src), p)
    undiet(tree, job.get("undiet", ()))
    compileall(tree, ["usr/lib/storybot"])
    return mke2fs(tree, os.path.join(work, "root.img"), 16)


def make_model_disk(work, model, tokenizer):
    tree = os.path.join(work, "models")
    os.makedirs(os.path.join(tree, "out"))
    for src, name in ((model, os.path.basename(model)), (tokenizer, "tokenizer.bin")):
        try:
            os.link(src, os.path.join(tree, name))
        except OSError:
            shutil.copy2(src, os.path.join(tree, name))
    return mke2fs(tree, os.path.join(work, "models.img"), 32)


# ---- models ------------------------------------------------------------------------------

def host_storybot():
    """The PC's storybot from this tree (the .venv make builds), for quantize."""
    py = os.path.join(ROOT, ".venv", "bin", "python")
    return [py if os.path.isfile(py) else sys.executable, "-m", "robot"]


def pick_model(name, fmt):
    """(model path, tokenizer path, display name): the real stories260K, or stories15M-
    shaped seeded weights (the real one cannot be downloaded here), quantised as asked."""
    mdir = os.path.join(CACHE, "models")
    os.makedirs(mdir, exist_ok=True)
    if os.path.isfile(name):
        src, tok, label = name, os.path.join(os.path.dirname(name), "tokenizer.bin"), os.path.basename(name)
    elif name == "stories260K":
        label = name
        src, tok = os.path.join(BUILTIN, "stories260K.bin"), os.path.join(BUILTIN, "tok512.bin")
        if not (os.path.isfile(src) and os.path.isfile(tok)):
            raise VMError(f"stories260K.bin and tok512.bin are missing from {BUILTIN}")
    elif name == "stories15M":
        label = "stories15M-seeded"
        src = os.path.join(mdir, "stories15M-seeded.bin")
        tok = os.path.join(mdir, "tokenizer-32k.bin")
        if not os.path.isfile(src):
            log("writing stories15M-shaped seeded weights (once)")
            code = ("import sys; sys.path.insert(0, sys.argv[1]); from robot.models import modelgen; "
                    "modelgen.write_shape(sys.argv[2], 'stories15M', seed=15)")
            run([os.path.join(ROOT, ".venv", "bin", "python") if os.path.isfile(os.path.join(ROOT, ".venv", "bin", "python"))
                 else sys.executable, "-c", code, ROOT, src + ".tmp"])
            os.replace(src + ".tmp", src)
        if not os.path.isfile(tok):
            real = os.path.join(TEST_DATA, "tokenizer.bin")
            if os.path.isfile(real):
                shutil.copy2(real, tok)
            else:
                code = ("import sys; sys.path.insert(0, sys.argv[1]); from robot.models import modelgen; "
                        "modelgen.write_tokenizer(sys.argv[2], 32000)")
                run([sys.executable, "-c", code, ROOT, tok])
    else:
        raise VMError(f"unknown model {name!r}: stories260K, stories15M or a path")
    if fmt == "fp32":
        return src, tok, label
    out = os.path.join(mdir, os.path.splitext(os.path.basename(src))[0] + "." + fmt)
    if not os.path.isfile(out) or os.path.getmtime(out) < os.path.getmtime(src):
        log(f"quantising {os.path.basename(src)} to {fmt}")
        run(host_storybot() + ["quantize", src, out, "--format", fmt, "--force"], cwd=ROOT)
    return out, tok, label


# ---- the VM ------------------------------------------------------------------------------

def qemu_cmd(mem_mb, image, initrd, root_img, model_img, cmdline_extra=""):
    # -icount: the guest's clock counts instructions (2 ns each, a C906 at 1 GHz running
    # about one instruction every other cycle), not the host's time, so the seconds the
    # guest measures (the robot's stop within 2 s) do not depend on how busy this PC is;
    # sleep=off skips idle time instead of waiting for it.
    return ["qemu-system-riscv64", "-M", "virt", "-accel", "tcg", "-icount", "shift=1,sleep=off", "-cpu", CPU, "-smp", "1", "-m", f"{mem_mb}M",
            "-bios", "default", "-kernel", image, "-initrd", initrd,
            "-append", f"console=ttyS0 loglevel=3 panic=1 rootwait {cmdline_extra}".strip(),
            "-drive", f"file={root_img},format=raw,if=none,id=root", "-device", "virtio-blk-pci,drive=root",
            "-drive", f"file={model_img},format=raw,if=none,id=models", "-device", "virtio-blk-pci,drive=models",
            "-nic", "none", "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"]


def boot(cmd, timeout, console_log):
    """Runs the VM to its power-off; returns (SBVM key->value, console text, rc, seconds)."""
    t0 = time.monotonic()
    vals = {}
    lines = []
    with open(console_log, "w") as logf:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = t0 + timeout
            import selectors
            sel = selectors.DefaultSelector()
            sel.register(p.stdout, selectors.EVENT_READ)
            buf = b""
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    log(f"the VM did not power off within {timeout} s; stopping it")
                    vals["timed_out"] = str(timeout)
                    break
                if not sel.select(timeout=min(left, 5)):
                    continue
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    line = raw.decode("utf-8", "replace").rstrip("\r")
                    logf.write(line + "\n")
                    logf.flush()
                    lines.append(line)
                    m = re.search(r"SBVM (.*)", line)
                    if m:
                        log(f"[{time.monotonic() - t0:6.1f} s] {m.group(1)[:200]}")
                        for k, v in re.findall(r"(\w+)=(\{.*\}|\S*)", m.group(1)):
                            vals[k] = v
            rc = None if "timed_out" in vals else p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    return vals, "\n".join(lines), rc, time.monotonic() - t0


def calibrate(profile, image, initrd, root_img, model_img, work, key):
    """-m (MB) so that MemAvailable before the robot starts is the profile's, by probe
    boots (the same kernel and root; the robot is not started), cached per kernel+root."""
    target, tol = PROFILES[profile]
    if target // 1024 + 95 < PIN_MEM_MB:
        raise VMError(f"the {profile} profile cannot be reached with -m alone (the kernel needs more to boot); leave out --calibrate")
    path = os.path.join(CACHE, "calibration.json")
    table = {}
    if os.path.isfile(path):
        with open(path) as f:
            table = json.load(f)
    ck = f"{profile}:{key}"
    if ck in table:
        return table[ck]["mem_mb"]
    # the Debian kernel (31 MB image) and the rest of the boot take about 95 MB of -m
    # before MemAvailable: 150M gives about 55 MB; much below 100M the kernel cannot boot
    mem = max(100, target // 1024 + 95)
    tried = {}
    for _ in range(6):
        vals, _, rc, secs = boot(qemu_cmd(mem, image, initrd, root_img, model_img, "sbvm.probe"), 600,
                                 os.path.join(work, f"probe-{mem}.log"))
        avail = int(vals.get("mem_before_kb", "0") or 0)
        if not avail:
            raise VMError(f"the probe boot with -m {mem}M printed no MemAvailable (see {work}/probe-{mem}.log)")
        tried[mem] = avail
        log(f"calibrating {profile}: -m {mem}M gives MemAvailable {avail} kB (target {target} ± {tol}) in {secs:.0f} s")
        if abs(avail - target) <= tol // 2:
            break
        step = round((target - avail) / 1024 / 0.97)
        nxt = mem + (step if step else (1 if target > avail else -1))
        if nxt in tried:
            break
        mem = nxt
    best = min(tried, key=lambda m: abs(tried[m] - target))
    if abs(tried[best] - target) > tol:
        raise VMError(f"no -m gives MemAvailable {target} ± {tol} kB: tried {tried}")
    table[ck] = {"mem_mb": best, "mem_available_kb": tried[best]}
    with open(path + ".tmp", "w") as f:
        json.dump(table, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)
    return best


def job_files(args, model_name):
    speak = "--wav /var/lib/storybot/out/story.wav" if args.speak else "--no-speak"
    extra = (" --kv-f16" if args.kv_f16 else "") + (f" --kernel {args.kernel}" if args.kernel != "fast" else "")
    daemon_args = f"--model /var/lib/storybot/{model_name} -z /var/lib/storybot/tokenizer.bin --no-stdin {speak}{extra}"
    env = {"SBVM_MODE": args.mode, "SBVM_STEPS": str(args.steps), "SBVM_SEED": str(args.seed),
           "SBVM_TEMP": str(args.temperature), "SBVM_PROMPT": args.prompt, "SBVM_CLIENT": args.client}
    files = {
        "etc/default/storybot": f'DAEMON_ARGS="{daemon_args}"\n',
        "etc/storybot-vm/job.env": "".join(f"{k}='{v}'\n" for k, v in env.items()) +
        # a probe boot (calibration) is told so on the kernel command line
        'grep -q sbvm.probe /proc/cmdline && SBVM_MODE=probe\n',
    }
    return files


def verdict(res):
    if res["timed_out"] and not res["oom_kills"]:
        return f"did not finish in {res['timed_out']} s"
    if res["oom_kills"] or not res["completed"]:
        return "killed"
    m = res["majfaults_per_token_after_warmup"]
    return "fits" if m is not None and m < 1 else "thrashes"


def wav_seconds(path):
    import wave
    try:
        with wave.open(path) as w:
            return w.getnframes() / w.getframerate()
    except (OSError, EOFError, wave.Error):
        return 0.0


def options(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", choices=sorted(PROFILES), default="judged")
    p.add_argument("--model", default="stories260K")
    p.add_argument("--format", default="fp32", choices=["fp32", "q8", "q8q4"])
    p.add_argument("--speak", type=int, default=1, choices=[0, 1])
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--prompt", default="Once upon a time")
    p.add_argument("--kv-f16", action="store_true")
    # naive: the scalar loops, no vector instruction in the story (docs/duo.md: the VM's
    # qemu-system 7.2 intermittently kills RVV code on a Linux guest with SIGILL)
    p.add_argument("--kernel", choices=["fast", "naive"], default="fast")
    p.add_argument("--undiet", type=lambda v: [x for x in v.split(",") if x], default=[],
                   help="take memory savings back out, to measure them: launcher (Python with site), abi (parse storybot.h), client (the full storybot ask)")
    p.add_argument("--client", choices=["storybot", "c"], default="storybot",
                   help="who asks for the story: storybot ask (Python), or the bundle's static storybot-ask")
    p.add_argument("--mode", choices=["story", "imports"], default="story",
                   help="imports: the robot's memory import by import, no story (docs/duo.md)")
    p.add_argument("--calibrate", action="store_true",
                   help="reach the profile with -m alone (probe boots, cached) instead of pinning memory")
    p.add_argument("--mem", type=int, help="VM memory in MB, as given (no pinning)")
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--keep", action="store_true", help="keep the work directory (disks, console)")
    return p.parse_args(argv)


def save_imports(console):
    steps = [dict(re.findall(r"(\w+)=(\S+)", line.split("SBVM imports", 1)[1]))
             for line in console.splitlines() if "SBVM imports" in line]
    os.makedirs(os.path.join(CACHE, "results"), exist_ok=True)
    with open(os.path.join(CACHE, "results", f"imports-{time.strftime('%Y%m%d-%H%M%S')}.json"), "w") as f:
        json.dump(steps, f, indent=1)
    return steps


def main(argv=None):
    args = options(argv)
    if "'" in args.prompt:
        raise VMError("the prompt may not contain a single quote")
    if not shutil.which("qemu-system-riscv64"):
        raise VMError("qemu-system-riscv64 is missing: apt install qemu-system-misc")
    t_start = time.monotonic()
    cache = fetch()
    image, moddir = kernel_files(cache)
    initrd = build_initramfs(cache, moddir)
    base = build_base(cache)
    bundle = build_bundle("rvv1")
    model, tok, label = pick_model(args.model, args.format)
    work = tempfile.mkdtemp(prefix="run-", dir=CACHE)
    try:
        root_img = make_root(base, work, bundle, {"files": job_files(args, os.path.basename(model)), "undiet": args.undiet})
        model_img = make_model_disk(work, model, tok)
        t_prep = time.monotonic() - t_start
        key = boot_key(image, base)
        mem = args.mem or (calibrate(args.profile, image, initrd, root_img, model_img, work, key) if args.calibrate
                           else max(PIN_MEM_MB, PROFILES[args.profile][0] // 1024 + 105))
        log(f"booting: -m {mem}M, {label} {args.format}, {'spoken' if args.speak else 'text'}, profile {args.profile}")
        pin = "" if args.calibrate or args.mem else f"sbvm.avail={PROFILES[args.profile][0]}"
        vals, console, rc, secs = boot(qemu_cmd(mem, image, initrd, root_img, model_img, pin), args.timeout,
                                       os.path.join(work, "console.log"))
        if args.mode == "imports":
            steps = save_imports(console)
            shutil.rmtree(work, ignore_errors=True)
            print(json.dumps({"profile": args.profile, "imports": steps}))
            return 0
        outdir = os.path.join(work, "out")
        os.makedirs(outdir)
        subprocess.run(["debugfs", "-R", f"rdump /out {outdir}", model_img], capture_output=True)
        res = summarise(args, label, mem, vals, console, rc, outdir)
        res["seconds"] = {"prepare": round(t_prep, 1), "vm": round(secs, 1), "total": round(time.monotonic() - t_start, 1)}
        save(res, work, outdir)
        if args.keep:
            log(f"disks, console and outputs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps({k: res[k] for k in RESULT_KEYS} | {"verdict": res["verdict"], "vm_mem_mb": mem,
                                                               "story_s": res["story_s"], "wav_s": res["wav_s"],
                                                               "robot_stop_s": res["robot_stop_s"]}))
        return 0 if res["completed"] else 1
    except BaseException:
        log(f"work directory kept: {work}")
        raise


def summarise(args, label, mem, vals, console, rc, outdir):
    def num(k, cast=int):
        try:
            return cast(vals[k])
        except (KeyError, ValueError):
            return None

    tokens = num("story_tokens") or 0
    at32 = (vals.get("majflt_at32") or "").split(",")
    atend = (vals.get("majflt_end") or "").split(",")
    per_tok = None
    if len(at32) >= 1 and at32[0] and len(atend) >= 1 and atend[0] and tokens > 32:
        per_tok = round((int(atend[0]) - int(at32[0])) / (tokens - 32), 3)
    try:
        end = json.loads(vals.get("end") or "{}")
    except ValueError:
        end = {}
    wav = os.path.join(outdir, "out", "story1.wav")
    if not os.path.isfile(wav):
        wav = os.path.join(outdir, "story1.wav")
    wav_s = round(wav_seconds(wav), 2) if os.path.isfile(wav) else 0.0
    stop_s = num("robot_stop_s", float)
    if stop_s is not None and stop_s < 0:
        stop_s = None
    completed = end.get("stop") in ("steps", "bos") and tokens > 0
    clean = (rc == 0 and "reboot: Power down" in console and stop_s is not None and stop_s < 2.0
             and "stop_killed" not in vals and vals.get("unmounted_models") == "1" and vals.get("root_ro") == "1")
    res = {
        "profile": args.profile, "model": label, "format": args.format, "speak": bool(args.speak),
        "spoken": bool(args.speak and wav_s > 1.0),
        "story_tokens": tokens,
        "mem_available_kb_before": num("mem_before_kb"),
        "robot_peak_rss_kb": num("robot_hwm_kb"),
        "majfaults_per_token_after_warmup": per_tok,
        "oom_kills": num("oom_kills") if num("oom_kills") is not None else (1 if "Out of memory" in console else None),
        "clean_shutdown": bool(clean),
        "completed": completed, "timed_out": vals.get("timed_out"), "robot_stop_s": stop_s, "stop_script_s": num("stop_s", float), "story_s": num("story_s", float), "wav_s": wav_s,
        "robot_ready_s": num("robot_ready_s", float), "client_rss_kb": num("client_rss_kb"), "client_anon_kb": num("client_anon_kb"),
        "robot_anon_kb": num("robot_anon_kb"), "robot_file_kb": num("robot_file_kb"), "ready_rss_kb": num("ready_rss_kb"),
        "mem_total_kb": num("mem_total_kb"), "pinned_kb": num("hog_kb"), "mem_ready_kb": num("mem_ready_kb"), "kv_f16": args.kv_f16, "client": args.client,
        "undiet": args.undiet, "vm_mem_mb": mem, "end": end,
    }
    res["verdict"] = verdict(res)
    return res


def save(res, work, outdir):
    """Every run's figures, console and robot log under results/, for the docs' tables."""
    name = f"{res['profile']}-{res['model']}-{res['format']}-{'spoken' if res['speak'] else 'text'}"
    if res["kv_f16"]:
        name += "-kvf16"
    if res["undiet"]:
        name += "-undiet-" + "-".join(res["undiet"])
    if res["client"] != "storybot":
        name += "-client-" + res["client"]
    d = os.path.join(CACHE, "results", f"{time.strftime('%Y%m%d-%H%M%S')}-{name}")
    os.makedirs(d)
    with open(os.path.join(d, "result.json"), "w") as f:
        json.dump(res, f, indent=1)
    shutil.copy2(os.path.join(work, "console.log"), d)
    for f in ("storybot.log", "stoptrace", "ask.err"):
        for src in (os.path.join(outdir, "out", f), os.path.join(outdir, f)):
            if os.path.isfile(src):
                shutil.copy2(src, d)
                break


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VMError as e:
        print(f"duo-vm: {e}", file=sys.stderr)
        sys.exit(2)
