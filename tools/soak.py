"""Soak: many prompts through one `storybot serve`, to show the robot can run for months.

    python3 tools/soak.py [--prompts 1000] [--steps 256] [--model M.bin -z TOK.bin] [--wav]

Starts the real daemon (python -m robot serve) with a throw-away config and control
socket, asks one story at a time over the socket (as `storybot ask` does), and reports:
RSS after the model is loaded, after a warm-up, and at the end (read from /proc, outside
the daemon), errors (error replies, unfinished stories, ERROR lines in its log, a
non-zero exit after SIGTERM) and tokens per second. Exit status 1 when there was an
error or the RSS grew by more than --rss-slack-kb between the warm-up and the end.

Default model: the package's built-in stories260K (robot/data) with its tok512.bin.
--wav also speaks every story into a
WAV file with espeak-ng (the speech path, minus a sound card).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from robot.service import client  # noqa: E402
from robot.errors import StorybotError  # noqa: E402

PROMPTS = [
    "Once upon a time", "One day, a little girl named Lily", "The dog saw a big red ball",
    "Tom and his mom went to the park", "There was a tiny bird", "The sun was hot and the cat",
    "A boy found a shiny stone", "In a small house lived a happy frog", "Sam wanted to play",
    "The little car could not go up the hill", "", "Mia had a blue balloon",
]


def vm_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def default_model(work):
    """The package's built-in stories260K (robot/data)."""
    return (os.path.join(ROOT, "robot", "data", "stories260K.bin"), os.path.join(ROOT, "robot", "data", "tok512.bin"))


def wait_ready(proc, sock, timeout=120):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise SystemExit(f"soak: the daemon exited with status {proc.returncode} before it was ready")
        try:
            for ev in client.request(sock, {"cmd": "status"}, timeout=5):
                return ev
        except StorybotError:
            time.sleep(0.05)
    raise SystemExit("soak: the daemon did not get ready")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=20, help="stories before the starting RSS is taken")
    ap.add_argument("--model", "-m")
    ap.add_argument("--tokenizer", "-z")
    ap.add_argument("--kernel", choices=["fast", "naive"], default="fast")
    ap.add_argument("--wav", action="store_true", help="speak every story into a WAV file (espeak-ng)")
    ap.add_argument("--rss-slack-kb", type=int, default=1024)
    ap.add_argument("--work", help="folder for the config, socket and log (default: a temporary one)")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    a = ap.parse_args(argv)

    work = a.work or tempfile.mkdtemp(prefix="sbsoak")
    os.makedirs(work, exist_ok=True)
    model, tok = (a.model, a.tokenizer) if a.model else default_model(work)
    sock = os.path.join(work, "control.sock")
    cfg = os.path.join(work, "soak.toml")
    with open(cfg, "w") as f:
        f.write(f'[model]\npath = "{model}"\n' + (f'tokenizer = "{tok}"\n' if tok else "") + f'kernel = "{a.kernel}"\n'
                f"[story]\nsteps = {a.steps}\n"
                f"[speech_out]\nenabled = {'true' if a.wav else 'false'}\n"
                f'[daemon]\nsocket = "{sock}"\non_new_prompt = "queue"\nstdin = false\n')
    log_path = os.path.join(work, "daemon.log")
    cmd = [sys.executable, "-m", "robot", "serve", "--config", cfg]
    if a.wav:
        cmd += ["--wav", os.path.join(work, "story.wav")]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT, env=env)
    t0 = time.monotonic()
    try:
        wait_ready(proc, sock)
        rss_loaded = vm_kb(proc.pid, "VmRSS")
        errors, tokens, gen_s, audio_s, trend = [], 0, 0.0, 0.0, []
        rss_start = None
        for i in range(a.prompts):
            if i == a.warmup:
                rss_start = vm_kb(proc.pid, "VmRSS")
            req = {"cmd": "ask", "prompt": PROMPTS[i % len(PROMPTS)], "seed": i + 1}
            end = None
            try:
                for ev in client.request(sock, req, timeout=300):
                    if ev.get("event") == "error":
                        errors.append(f"prompt {i}: {ev.get('message')}")
                    elif ev.get("event") == "summary":
                        end = ev
            except StorybotError as e:
                errors.append(f"prompt {i}: {e}")
            if end is None:
                errors.append(f"prompt {i}: no end of story")
            elif end["stop"] not in ("steps", "bos"):
                errors.append(f"prompt {i}: story stopped ({end['stop']})")
            else:
                tokens += end["tokens"]
                gen_s += end["seconds"]
                audio_s += (end.get("speech") or {}).get("audio_s") or 0.0
            if (i + 1) % 100 == 0:
                trend.append(vm_kb(proc.pid, "VmRSS"))
        if rss_start is None:
            rss_start = rss_loaded
        rss_end = vm_kb(proc.pid, "VmRSS")
        hwm = vm_kb(proc.pid, "VmHWM")
        wall = time.monotonic() - t0
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log_errors = [line.rstrip() for line in open(log_path) if " ERROR " in line or " CRITICAL " in line]
    if rc != 0:
        errors.append(f"the daemon exited with status {rc} after SIGTERM")
    errors += log_errors
    result = {
        "prompts": a.prompts, "steps": a.steps, "model": os.path.basename(model), "kernel": a.kernel, "speech": a.wav,
        "rss_loaded_kb": rss_loaded, "rss_start_kb": rss_start, "rss_end_kb": rss_end, "rss_growth_kb": rss_end - rss_start,
        "rss_every_100_kb": trend, "peak_rss_kb": hwm, "errors": len(errors), "tokens": tokens,
        "tok_per_s": round(tokens / gen_s, 1) if gen_s else 0.0, "audio_s": round(audio_s, 1),
        "wall_s": round(wall, 1), "exit_status": rc, "log": log_path,
    }
    if a.json:
        print(json.dumps(result))
    else:
        print(f"soak: {a.prompts} prompts x {a.steps} steps, {result['model']} ({a.kernel} kernel), speech {'to WAV' if a.wav else 'off'}")
        print(f"RSS: {rss_loaded} kB loaded, {rss_start} kB after {min(a.warmup, a.prompts)} stories, {rss_end} kB at the end "
              f"({rss_end - rss_start:+d} kB); peak {hwm} kB")
        print(f"RSS every 100 prompts (kB): {' '.join(map(str, trend))}")
        print(f"errors: {len(errors)}; exit status after SIGTERM: {rc}")
        print(f"tokens: {tokens} in {gen_s:.1f} s of generation = {result['tok_per_s']} tok/s; wall {wall:.1f} s"
              + (f"; {audio_s:.0f} s of speech rendered" if a.wav else ""))
    for e in errors[:10]:
        print("  " + e, file=sys.stderr)
    ok = not errors and abs(rss_end - rss_start) <= a.rss_slack_kb
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
