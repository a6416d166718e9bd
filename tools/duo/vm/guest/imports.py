"""Run in the VM (SBVM_MODE=imports): the robot's memory, import by import, in the order
`storybot serve` imports them; prints one "SBVM imports ..." line per step with the
process's resident set (VmRSS, kB) and the heavy modules each step pulled in.
    python3 [-I -S] imports.py HOME SITE_DIRS..."""
import sys

sys.path.insert(0, sys.argv[1])
sys.path += sys.argv[2:]


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


HEAVY = ("pycparser", "cffi", "tomllib", "tomli", "logging", "traceback", "typing", "dataclasses", "inspect",
         "tempfile", "random", "shutil", "socket", "selectors", "threading", "json", "argparse", "wave",
         "queue", "pathlib", "importlib.util", "email", "ast", "enum", "re")
STEPS = [
    ("robot.errors", "import robot.errors"),
    ("robot.config", "import robot.config"),
    ("robot.cli", "import robot.cli"),
    ("robot.service.daemon", "import robot.service.daemon"),
    ("robot.kernel.engine", "import robot.kernel.engine"),
    ("robot.speech.output", "import robot.speech.output"),
    ("kernel.loaded", "robot.kernel.lib.lib.sb_isa()"),
    ("espeak.cdef", "robot.speech.output.open_backend('espeak')"),
]
mode = "site" if "site" in sys.modules else "lean"
before = set(sys.modules)
print(f"SBVM imports mode={mode} step=interpreter rss_kb={rss()} modules={len(sys.modules)}", flush=True)
for name, code in STEPS:
    try:
        exec(code)
        err = ""
    except Exception as e:  # noqa: BLE001 - a probe: report and go on
        err = f" error={type(e).__name__}"
    new = set(sys.modules) - before
    before = set(sys.modules)
    heavy = ",".join(sorted(m for m in new if m in HEAVY)) or "-"
    print(f"SBVM imports mode={mode} step={name} rss_kb={rss()} new_modules={len(new)} heavy={heavy}{err}", flush=True)
