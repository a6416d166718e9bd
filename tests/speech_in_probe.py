"""Runs push-to-talk scenarios in one process, so the large Vosk model loads only once.

tests/system/test_speech_in.py starts it with ALSA_CONFIG_PATH naming tests/audio/vmic.conf and a
JSON job on stdin: {"model": DIR, "phrases": [...], "scenarios": [{"name", "mic", "device",
"rate", "unplug_after", "unload"}]}. Each scenario points the virtual microphone at its
file, presses a ManualTrigger and calls listen(); one JSON line per scenario comes back.

"unplug_after": N stops the real PortAudio stream after N reads, under the recorder's
feet, so its next read fails inside PortAudio as a vanished device's would (ALSA's file
plugin ignores read errors on its input, so the file cannot be made to vanish instead).
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from robot import config  # noqa: E402

from robot.speech import listen as speech_in
from robot.errors import StorybotError  # noqa: E402


class StopsAfter:
    def __init__(self, stream, reads):
        self.stream = stream
        self.left = reads

    def read(self, frames, exception_on_overflow=True):
        if self.left == 0:
            self.stream.stop_stream()
        self.left -= 1
        return self.stream.read(frames, exception_on_overflow=exception_on_overflow)

    def close(self):
        self.stream.close()


def main():
    job = json.load(sys.stdin)
    cfg = config.defaults()
    cfg["speech_in"].update(model_path=job["model"], phrases=job["phrases"], unload_after_use=False)
    trigger = speech_in.ManualTrigger()
    ptt = speech_in.PushToTalk(cfg, trigger=trigger)
    said = []
    ptt.on_miss = said.append
    real_open = speech_in._open_input
    for sc in job["scenarios"]:
        os.environ["STORYBOT_TEST_MIC"] = sc["mic"]
        ptt.settings.update(device=sc.get("device", ""), rate=sc.get("rate", 0))
        n = sc.get("unplug_after")
        speech_in._open_input = real_open if n is None else (lambda *a, n=n: StopsAfter(real_open(*a), n))
        out = {"name": sc["name"]}
        trigger.press()
        try:
            out["text"] = ptt.listen()
        except StorybotError as e:
            out["error"] = str(e)
        trigger.release()
        out["last"] = ptt.last
        out["said"] = said[:]
        del said[:]
        if sc.get("unload"):
            out["rss_loaded_kb"] = speech_in.memory_kb()[0]
            ptt.unload()
            out["rss_unloaded_kb"] = speech_in.memory_kb()[0]
        print(json.dumps(out, ensure_ascii=False), flush=True)
    ptt.close()


if __name__ == "__main__":
    main()
