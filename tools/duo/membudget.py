"""Where a story's memory goes, measured on this PC the way the board runs it: the kernel
as a plain shared library loaded through cffi's ABI mode (as /usr/lib/storybot does),
a stories15M-shaped model in each format, the real CLI with and without speech.

    python3 tools/duo/membudget.py [--steps 64] [--work DIR]

Needs numpy (the seeded stories15M-shaped model: speed and memory depend on the shape,
not the weights), a C compiler, and for the speech row libespeak-ng + PyAudio with the
virtual ALSA device named by $VAUDIO_CONF. Prints a Markdown table (docs/duo.md).
x86-64 Python 3.11 here; the Duo runs riscv64 Python 3.9, whose objects have the same
64-bit sizes, so the Python rows are estimates for the board, the rest is exact.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "tests", "data")

# Runs in a fresh interpreter: peak RSS after each stage, the model file's resident
# pages and the session size, all in kB. VmHWM, not getrusage: ru_maxrss survives
# execve, so a child would report its parent's peak.
PEAK = r"""
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
"""
CHILD = PEAK + r"""
import json, os, sys
def mapped(path):
    kb, cur = 0, None
    for line in open("/proc/self/smaps"):
        if "-" in line.split(" ", 1)[0] and len(line.split()) >= 5:
            cur = line.split()[-1] if len(line.split()) >= 6 else None
        elif line.startswith("Rss:") and cur == path:
            kb += int(line.split()[1])
    return kb
out = {"python": peak()}
from robot import cli
from robot.kernel import engine, lib as _lib
assert _lib.MODE.startswith("abi:"), _lib.MODE
out["package"] = peak()
m = engine.Model(sys.argv[1], sys.argv[2], kv_f16=sys.argv[4] == "1")
for tok in m.generate("Once upon a time", steps=int(sys.argv[3]), seed=1):
    pass
out["model_rss"] = mapped(os.path.realpath(sys.argv[1]))
out["lib_rss"] = mapped(os.path.realpath(os.environ["STORYBOT_LIB"]))
out["session"] = m.session_bytes // 1024
out["story"] = peak()
out["file"] = os.path.getsize(sys.argv[1]) // 1024
print(json.dumps(out))
"""


def run(cmd, env, cwd=ROOT):
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"membudget: {' '.join(map(str, cmd[:5]))} failed:\n{r.stderr[-2000:]}")
    return r.stdout


# The real CLI, then its peak RSS on the last line.
CLI = PEAK + r"""
import sys
from robot import cli
rc = cli.main(sys.argv[1:])
print(peak(), flush=True)
sys.exit(rc)
"""


def cli_peak(env, model, tok, steps, *extra):
    out = run([sys.executable, "-c", CLI, "--model", model, "-z", tok, "--prompt", "Once upon a time",
               "-n", str(steps), "-s", "1", *extra], env)
    return int(out.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--work", help="directory for the models (default: a temporary one)")
    a = p.parse_args(argv)
    tok = os.path.join(DATA, "tokenizer.bin")
    if not os.path.isfile(tok):
        raise SystemExit(f"membudget: needs {tok} (the project's test data)")
    work = a.work or tempfile.mkdtemp(prefix="membudget-")
    os.makedirs(work, exist_ok=True)
    lib = os.path.join(work, "libstorybot.so")
    subprocess.run(["cc", "-O2", "-std=c11", "-fPIC", "-shared", "-o", lib,
                    *sorted(os.path.join(ROOT, "_kernel", f) for f in os.listdir(os.path.join(ROOT, "_kernel")) if f.endswith(".c")),
                    "-lm"], check=True)
    env = dict(os.environ, STORYBOT_LIB=lib, STORYBOT_CACHE="/nonexistent", PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=ROOT)
    env.pop("STORYBOT_CONFIG", None)
    models = {"f32": os.path.join(work, "stories15M.bin")}
    if not os.path.isfile(models["f32"]):
        sys.path.insert(0, ROOT)
        from robot.models import modelgen
        modelgen.write_checkpoint(models["f32"], *modelgen.SHAPES["stories15M"], seed=7)
    for fmt in ("q8", "q8q4"):
        models[fmt] = os.path.join(work, f"stories15M.{fmt}")
        if not os.path.isfile(models[fmt]):
            run([sys.executable, "-m", "robot", "quantize", models["f32"], models[fmt], "--format", fmt], env)

    rows = {}
    for fmt, path in models.items():
        for kv16 in ("0", "1"):
            rows[fmt, kv16] = json.loads(run([sys.executable, "-c", CHILD, path, tok, str(a.steps), kv16], env))
    base = rows["q8", "0"]
    text_peak = cli_peak(env, models["q8"], tok, a.steps, "--no-speak")
    wav_peak = cli_peak(env, models["q8"], tok, a.steps, "--wav", os.path.join(work, "story.wav"))
    speech_peak = None
    vaudio = os.environ.get("VAUDIO_CONF", "")  # an ALSA virtual speaker, if the machine has one
    if vaudio and os.path.isfile(vaudio):
        senv = dict(env, ALSA_CONFIG_PATH=f"/usr/share/alsa/alsa.conf:{vaudio}", VSPK_WAV=os.path.join(work, "spk.wav"))
        try:
            speech_peak = cli_peak(senv, models["q8"], tok, a.steps, "--speak")
        except SystemExit as e:
            print(f"(speech row skipped: {str(e).splitlines()[0]})", file=sys.stderr)

    mb = lambda kb: f"{kb / 1024:.1f}"  # noqa: E731
    print(f"Measured with `python3 tools/duo/membudget.py --steps {a.steps}` (x86-64, Python "
          f"{sys.version.split()[0]}, kernel in ABI mode as on the board). MB = MiB.\n")
    print("| part | MB | how |")
    print("|---|---:|---|")
    print(f"| Python interpreter | {mb(base['python'])} | peak RSS of the bare interpreter |")
    print(f"| robot package + cffi (header parsed) | {mb(base['package'] - base['python'])} | after `import robot.cli, robot.kernel.engine` |")
    print(f"| kernel code (libstorybot.so) | {mb(base['lib_rss'])} | resident pages of the mapping |")
    for fmt in ("f32", "q8", "q8q4"):
        r = rows[fmt, "0"]
        print(f"| model pages, stories15M {fmt} | {mb(r['model_rss'])} | resident part of the {mb(r['file'])} MB file, "
              f"read-only mapping (clean: evictable, but re-read every token) |")
    print(f"| KV cache + activations, fp32 | {mb(rows['q8', '0']['session'])} | sb_session_bytes |")
    print(f"| KV cache + activations, kv_f16 | {mb(rows['q8', '1']['session'])} | sb_session_bytes, `kv_f16 = true` |")
    print(f"| whole story, q8, text only | {mb(text_peak)} | peak RSS of `storybot --no-speak` |")
    print(f"| speech synthesis (espeak-ng, its data, the speech threads) | {mb(wav_peak - text_peak)} | "
          f"`--wav FILE` peak RSS minus text only |")
    if speech_peak:
        print(f"| sound output (PyAudio, PortAudio, ALSA) | {mb(speech_peak - wav_peak)} | `--speak` minus `--wav`; "
              f"Debian's ALSA loads desktop plugins (codecs, JACK), a buildroot image only libasound |")
        print(f"| whole story, q8, spoken | {mb(speech_peak)} | peak RSS of `storybot --speak` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
