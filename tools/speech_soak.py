#!/usr/bin/env python3
"""Many sentences through one Speaker, the way the daemon uses it for weeks: does the
process survive, and does its memory stay flat?

    python3 tools/speech_soak.py --tts espeak --sentences 1000
    python3 tools/speech_soak.py --tts pyttsx3 --sentences 1000 --device   # through PortAudio

Stories of --per-story sentences are told back to back; the resident set size is sampled
after each story. Prints one JSON object: RSS after the warm-up and at the end, the
largest growth, TTS totals. Audio goes to a WAV sink on /dev/null unless --device
(then to PortAudio's default device; see tests/audio/asound.conf for a virtual one).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from robot import config  # noqa: E402

from robot.speech import output as speech_out

SENTENCES = [
    "The little robot rolled to the park.",
    "It saw a red ball under a big tree!",
    "Do you want to play with me?",
    "The sun was warm, and the birds sang.",
    "Mr. Brown waved and said hello.",
]
SHORT = ["Tom ran.", "Is it red?", "Yes!"]


def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tts", choices=speech_out.BACKENDS, default="espeak")
    p.add_argument("--sentences", type=int, default=1000)
    p.add_argument("--per-story", type=int, default=10)
    p.add_argument("--warmup", type=int, default=100, help="sentences before the baseline RSS is taken")
    p.add_argument("--device", action="store_true", help="play on PortAudio's default device")
    p.add_argument("--short", action="store_true", help="two-word sentences (a quicker run)")
    a = p.parse_args(argv)

    cfg, _ = config.load(None, system=None)
    so = dict(cfg["speech_out"], backend=a.tts)
    speaker = speech_out.open_speaker(so, wav=None if a.device else os.devnull)
    if speaker is None:
        return 1
    texts = SHORT if a.short else SENTENCES
    t0 = time.perf_counter()
    said = tts_ms = audio_s = errors = 0
    base = None
    samples = []
    while said < a.sentences:
        n = min(a.per_story, a.sentences - said)
        speaker.begin("")
        for k in range(n):
            # fed word by word, as tokens arrive
            for word in texts[(said + k) % len(texts)].split(" "):
                speaker.feed(word + " ")
        speaker.end()
        st = speaker.stats()
        said += st["sentences_total"]
        tts_ms += st["tts_ms"]
        audio_s += st["audio_s"]
        errors += st["errors"]
        if base is None and said >= a.warmup:
            base = rss_kb()
        if base is not None:
            samples.append(rss_kb())
    speaker.close()
    out = {
        "backend": a.tts,
        "sentences": said,
        "seconds": round(time.perf_counter() - t0, 2),
        "tts_ms": round(tts_ms, 1),
        "audio_s": round(audio_s, 1),
        "tts_ms_per_audio_s": round(tts_ms / audio_s, 3) if audio_s else None,
        "errors": errors,
        "rss_kb_after_warmup": base,
        "rss_kb_end": samples[-1] if samples else None,
        "rss_kb_max": max(samples) if samples else None,
        "rss_growth_kb": (max(samples) - base) if samples else None,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
