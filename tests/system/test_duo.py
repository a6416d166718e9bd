"""On the board without a board: the Milk-V Duo bundle (tools/duo/bundle.py) built with
the real cross compiler, and the real robot package from it driving the real RISC-V
kernel under qemu: as the C906 (XTheadVector) and as an RVV 1.0 core, from the glibc
riscv64 Python and from a musl process (the Duo's C library). The RISC-V toolbox is
installed on first use (tools/rvtoolbox.sh); a failure to install is a failure here.
qemu runs are few and short: emulated Python costs seconds per start."""
import concurrent.futures
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

from conftest import ROOT, data_path, run_cli

sys.path.insert(0, os.path.join(ROOT, "tools", "duo"))
import bundle as duo_bundle  # noqa: E402
import elfinfo  # noqa: E402
import emulate  # noqa: E402

PROMPT = "Once upon a time"
STORY = ["--prompt", PROMPT, "-n", 32, "-s", 123]


@pytest.fixture(scope="module")
def tb():
    try:
        return emulate.toolbox(setup=True)
    except emulate.ToolboxMissing as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def bundles(tb, tmp_path_factory):
    """Both bundles, built as `make duo` / `make duo-rvv1` build them (tomli left out: no network in tests)."""
    out = tmp_path_factory.mktemp("duo")
    env = dict(os.environ, G14=tb["G14"], RVROOT=tb["RVROOT"])
    for var in ("CROSS_COMPILE", "DUO_CC", "MARCH", "MABI"):
        env.pop(var, None)
    procs = {isa: subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "duo", "bundle.py"), "--isa", isa,
                                    "--out", str(out), "--tomli", "skip"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for isa in ("c906", "rvv1")}
    built = {}
    for isa, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        assert stdout.strip() == str(out / f"storybot-duo-{isa}.tar.gz")
        built[isa] = str(out / f"storybot-duo-{isa}")
    return built


def both_isas(fn):
    """fn(isa) for the C906 and the RVV 1.0 build at once: two emulators, two cores."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return dict(zip(("c906", "rvv1"), pool.map(fn, ("c906", "rvv1"))))


@pytest.fixture(scope="module")
def real_model():
    return data_path("stories260K.bin"), data_path("tok512.bin")


def host_ids(model, tok, *extra):
    r = run_cli("--model", model, "-z", tok, *STORY, "--format", "jsonl", *extra)
    assert r.returncode == 0, r.stderr
    return jsonl_ids(r.stdout)


def jsonl_ids(stdout):
    rows = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert rows and rows[-1]["event"] == "summary", stdout[-500:]
    return [row["token"] for row in rows if row["event"] == "token" and row["token"] >= 0]


def test_bundle_holds_what_the_board_needs(bundles):
    for isa, top in bundles.items():
        with tarfile.open(top + ".tar.gz") as tar:
            names = set(tar.getnames())
            assert all(m.uid == 0 and m.gid == 0 for m in tar.getmembers())
        base = os.path.basename(top)
        for need in ("install.sh", "SHA256SUMS", "MANIFEST.json", "files/usr/bin/storybot",
                     "files/usr/lib/storybot/robot/cli/__init__.py", "files/usr/lib/storybot/robot/libstorybot.so",
                     "files/usr/lib/storybot/robot/storybot.h", "files/etc/storybot/storybot.toml",
                     "files/etc/init.d/S99storybot", "files/usr/lib/systemd/system/storybot.service"):
            assert f"{base}/{need}" in names, need
        assert not [n for n in names if n.endswith((".pyc", "_storybot.abi3.so"))], "host build artefacts leaked into the bundle"
        manifest = json.load(open(os.path.join(top, "MANIFEST.json")))
        assert manifest["march"] == duo_bundle.ISAS[isa][0]
        # the libc question settled at build time: no DT_NEEDED, every symbol found in musl
        info = elfinfo.read(emulate.lib(top))
        assert info.machine == elfinfo.EM_RISCV and info.needed == []
        assert manifest["symbols_checked_against"] == "riscv64-linux-musl/libc.so"
        assert "sb_next" in info.defined and "malloc" in info.undefined
    # the board's config is valid for this version of the robot
    from robot import config
    cfg, used = config.load(os.path.join(bundles["c906"], "files", "etc", "storybot", "storybot.toml"), system=None)
    assert cfg["model"]["cache_dir"] == "/var/lib/storybot"


def test_bundle_refuses_a_library_the_board_cannot_load(tb, tmp_path):
    host_lib = os.path.join(ROOT, "robot", "_storybot.abi3.so")
    if os.path.exists(host_lib):
        with pytest.raises(duo_bundle.BundleError, match="not a RISC-V library"):
            duo_bundle.check_lib(host_lib)
    # a glibc-only function: the build must stop, not ship a robot that dies at boot
    src = tmp_path / "glibc_only.c"
    src.write_text("const char *gnu_get_libc_version(void);\n"
                   "const char *sb_isa(void) { return gnu_get_libc_version(); }\n"
                   "int sb_model_open(void) { return 0; }\nint sb_next(void) { return 0; }\n")
    so = tmp_path / "libbad.so"
    subprocess.run([tb["G14"], "-shared", "-fPIC", "-nostdlib", "-o", str(so), str(src)], check=True)
    os.environ.setdefault("RVROOT", tb["RVROOT"])
    with pytest.raises(duo_bundle.BundleError, match="gnu_get_libc_version, which musl does not provide"):
        duo_bundle.check_lib(str(so))


def test_python_package_drives_the_riscv_kernel_under_emulation(tb, bundles, real_model, tmp_path):
    """The proof: `python -m robot` of the bundle, under the C906 and under RVV 1.0, tells
    the host's story token for token (fp32), and both RISC-V builds agree on q8."""
    model, tok = real_model
    want = host_ids(model, tok)
    assert len(want) >= 20
    args = ["--model", model, "-z", tok, *STORY, "--format", "jsonl"]
    runs = both_isas(lambda isa: emulate.story(tb, isa, bundles[isa], args))
    for isa, r in runs.items():
        assert r.returncode == 0, f"{isa}: {r.stderr[-1500:]}"
    got = {isa: jsonl_ids(r.stdout) for isa, r in runs.items()}
    assert got["c906"] == want
    assert got["rvv1"] == want

    q8 = str(tmp_path / "stories260K.q8")
    r = run_cli("quantize", model, q8, "--format", "q8")
    assert r.returncode == 0, r.stderr
    args_q8 = ["--model", q8, "-z", tok, *STORY, "--format", "jsonl"]
    runs = both_isas(lambda isa: emulate.story(tb, isa, bundles[isa], args_q8))
    for isa, r in runs.items():
        assert r.returncode == 0, f"{isa} q8: {r.stderr[-1500:]}"
    got_q8 = {isa: jsonl_ids(r.stdout) for isa, r in runs.items()}
    assert got_q8["c906"] == got_q8["rvv1"]
    assert len(got_q8["c906"]) >= 20


def test_musl_process_loads_the_bundle_kernel(tb, bundles, real_model, tmp_path):
    """The Duo's userland is musl: a musl-linked program dlopen()s each bundle's library
    and tells the same story, on the emulator of its ISA, reporting that ISA."""
    model, tok = real_model
    want = host_ids(model, tok)
    prog = emulate.build_cstory(tb, str(tmp_path / "cstory-musl"), libc="musl")
    assert "ld-musl" in open(prog, "rb").read().decode("latin-1")
    for isa in ("c906", "rvv1"):
        r = emulate.cstory(tb, isa, prog, emulate.lib(bundles[isa]), model, tok, PROMPT, 32, 123)
        assert r.returncode == 0, f"{isa}: {r.stderr}"
        reported, ids = emulate.parse_cstory(r.stdout)
        assert ids == want, isa
        assert reported == duo_bundle.ISAS[isa][1], f"the {isa} bundle's kernel reports {reported}"


def busybox_sh():
    bb = shutil.which("busybox")
    if not bb:
        pytest.skip("busybox is not installed (tools/apt-test.txt lists it): the board's shell is BusyBox sh")
    return [bb, "sh"]


def unpack(bundle_dir, dest):
    with tarfile.open(bundle_dir + ".tar.gz") as tar:
        tar.extractall(dest)
    return os.path.join(dest, os.path.basename(bundle_dir))


def test_install_into_an_empty_board_root(bundles, tmp_path):
    """install.sh (BusyBox sh, as on the board) lays the bundle out like the Duo's root;
    a second install keeps the user's config; --uninstall keeps config and models."""
    sh = busybox_sh()
    src = unpack(bundles["c906"], str(tmp_path / "unpacked"))
    root = tmp_path / "root"
    root.mkdir()
    env = dict(os.environ, DESTDIR=str(root))
    r = subprocess.run([*sh, os.path.join(src, "install.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    for path in ("usr/bin/storybot", "etc/init.d/S99storybot", "usr/lib/storybot/robot/libstorybot.so",
                 "usr/lib/storybot/robot/storybot.h", "usr/lib/storybot/robot/service/daemon.py", "etc/storybot/storybot.toml",
                 "usr/lib/systemd/system/storybot.service"):
        assert (root / path).is_file(), path
    assert os.access(root / "etc/init.d/S99storybot", os.X_OK) and os.access(root / "usr/bin/storybot", os.X_OK)
    assert (root / "var/lib/storybot").is_dir()

    (root / "etc/storybot/storybot.toml").write_text("[story]\nsteps = 99\n")
    (root / "var/lib/storybot/stories15M.q8").write_bytes(b"model")
    r = subprocess.run([*sh, os.path.join(src, "install.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "kept your" in r.stdout, r.stdout + r.stderr
    assert (root / "etc/storybot/storybot.toml").read_text() == "[story]\nsteps = 99\n"
    assert (root / "etc/storybot/storybot.toml.new").is_file()

    with open(os.path.join(src, "files/usr/lib/storybot/robot/kernel/engine.py"), "a") as f:
        f.write("# damaged in transit\n")
    r = subprocess.run([*sh, os.path.join(src, "install.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "damaged" in r.stderr and "Traceback" not in r.stderr

    r = subprocess.run([*sh, os.path.join(src, "install.sh"), "--uninstall"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not (root / "usr/lib/storybot").exists() and not (root / "usr/bin/storybot").exists()
    assert (root / "etc/storybot/storybot.toml").is_file() and (root / "var/lib/storybot/stories15M.q8").is_file()


def test_buildroot_package_installs_files_that_exist():
    """buildroot/ cannot be built here; at least every file its storybot package
    installs from this tree must exist, so a rename cannot silently break an image."""
    mk = open(os.path.join(ROOT, "buildroot", "package", "storybot", "storybot.mk")).read()
    used = set(re.findall(r"\$\(@D\)/([\w./*-]+)", mk))
    assert {"tools/duo/storybot.sh", "systemd/S99storybot", "_kernel/storybot.h"} <= used
    for rel in used - {"libstorybot.so"}:
        assert glob.glob(os.path.join(ROOT, rel)), f"buildroot/package/storybot/storybot.mk installs {rel}, which is missing"
    frag = open(os.path.join(ROOT, "buildroot", "configs", "storybot_duo.fragment")).read()
    ours = set(re.findall(r"config (BR2_\w+)", "".join(open(p).read() for p in glob.glob(
        os.path.join(ROOT, "buildroot", "package", "*", "Config.in")))))
    for sym in re.findall(r"^(BR2_PACKAGE_(?:STORYBOT|ESPEAK_NG|PYTHON_PYAUDIO)\w*)=", frag, re.M):
        assert sym in ours, f"{sym} in the defconfig fragment is not defined by buildroot/package/*/Config.in"


def test_init_script_runs_the_installed_robot_under_emulation(tb, bundles, real_model, tmp_path):
    """The installed C906 tree, started by its own S99storybot with BusyBox applets only on
    the PATH and the riscv64 Python under qemu as the board's python3: the daemon finds
    the model where the board keeps it, tells the host's story over its control socket,
    and stops."""
    from robot.service import client

    bb = busybox_sh()[0]
    model, tok = real_model
    want = host_ids(model, tok)
    src = unpack(bundles["c906"], str(tmp_path / "unpacked"))
    root = tmp_path / "root"
    root.mkdir()
    r = subprocess.run([bb, "sh", os.path.join(src, "install.sh")], env=dict(os.environ, DESTDIR=str(root)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for f in (model, tok):  # what scp puts on the board
        os.symlink(f, root / "var/lib/storybot" / os.path.basename(f))
    sock = str(root / "run/storybot/control.sock")
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/storybot").write_text(f'DAEMON_ARGS="--socket {sock} --no-speak"\n')
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for applet in subprocess.run([bb, "--list"], capture_output=True, text=True).stdout.split():
        os.symlink(bb, bindir / applet)
    env = {"PATH": str(bindir), "STORYBOT_ROOT": str(root), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8",
           "STORYBOT_HOME": str(root / "usr/lib/storybot"),              # /usr/lib/storybot on the board
           "STORYBOT_CACHE": str(root / "var/lib/storybot"),             # [model] cache_dir on the board
           "STORYBOT_PYTHON": " ".join(emulate.python(tb, "c906"))}      # the board's python3
    init = str(root / "etc/init.d/S99storybot")

    def service(action):
        return subprocess.run([bb, "sh", init, action], env=env, capture_output=True, text=True, timeout=60)

    r = service("start")
    try:
        assert r.returncode == 0 and r.stdout.startswith("storybot: started"), r.stdout + r.stderr
        log = root / "var/log/storybot.log"
        for _ in range(1200):  # emulated Python needs seconds to import and load
            text = log.read_text() if log.exists() else ""
            if " ready: " in text or "Error" in text or "storybot: " in text:
                break
            time.sleep(0.1)
        assert " ready: " in text and os.path.exists(sock), "the robot did not come up:\n" + text[-3000:]
        events = list(client.request(sock, {"cmd": "ask", "prompt": PROMPT, "steps": 32, "seed": 123}, timeout=120))
        assert events and events[-1]["event"] == "summary", f"{events[-3:]}\n{log.read_text()[-3000:]}"
        assert [e["token"] for e in events if e["event"] == "token" and e["token"] >= 0] == want
        assert service("status").stdout.startswith("storybot: running")
        robot_pid = int((root / "var/run/storybot.pid").read_text())
    finally:
        r = service("stop")
    assert r.returncode == 0 and r.stdout == "storybot: stopped\n", r.stdout + r.stderr
    with pytest.raises(ProcessLookupError):
        os.kill(robot_pid, 0)
    assert service("status").returncode == 3
    log = (root / "var/log/storybot.log").read_text()
    assert "stopping (SIGTERM)" in log and "Traceback" not in log, log[-2000:]
