"""Prints the fit table of docs/duo.md from the runs `make duo-vm` saved in
~/.cache/storybot/duo-vm/results (the latest run of each profile × model × mode).

    python3 tools/duo/vm/table.py [--all]"""
import glob
import json
import os
import sys

CACHE = os.environ.get("DUO_VM_CACHE") or os.path.expanduser("~/.cache/storybot/duo-vm")


def load():
    runs = []
    for path in sorted(glob.glob(os.path.join(CACHE, "results", "*", "result.json"))):
        with open(path) as f:
            r = json.load(f)
        r["dir"] = os.path.basename(os.path.dirname(path))
        runs.append(r)
    return runs


def spoken(r):
    return r.get("speak", bool(r["wav_s"]))


def key(r):
    return (r["profile"], r["model"], r["format"], spoken(r), r.get("kv_f16", False), tuple(r.get("undiet") or ()),
            r.get("client", "storybot"))


def main():
    latest = {}
    for r in load():
        if "--all" in sys.argv:
            latest[r["dir"]] = r
        else:
            latest[key(r)] = r
    print("| profile | model | format | mode | verdict | tokens | free before (MB) | robot peak RSS (MB) | "
          "major faults/token (32–256) | OOM kills | story s | audio s | SIGTERM to exit s | VM -m |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(latest.values(), key=lambda r: (r["profile"] != "judged", r["model"], r["format"], not spoken(r))):
        mode = "spoken" if spoken(r) else "text"
        extra = []
        if r.get("kv_f16"):
            extra.append("kv_f16")
        if r.get("client", "storybot") != "storybot":
            extra.append("C client")
        if r.get("undiet"):
            extra.append("undiet " + ",".join(r["undiet"]))
        if extra:
            mode += " (" + ", ".join(extra) + ")"
        mb = lambda v: f"{v / 1024:.1f}" if v else "–"  # noqa: E731
        print(f"| {r['profile']} | {r['model']} | {r['format']} | {mode} | {r['verdict']} | {r['story_tokens']} | "
              f"{mb(r['mem_available_kb_before'])} | {mb(r['robot_peak_rss_kb'])} | "
              f"{r['majfaults_per_token_after_warmup'] if r['majfaults_per_token_after_warmup'] is not None else '–'} | "
              f"{r['oom_kills']} | {r['story_s'] or '–'} | {r['wav_s'] or '–'} | {r.get('robot_stop_s') or '–'} | {r['vm_mem_mb']} |")


if __name__ == "__main__":
    main()
