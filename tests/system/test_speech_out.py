"""Speech out with the real espeak-ng (both backends), real PortAudio on a virtual ALSA
sound card (tests/audio/asound.conf: what is played lands in a WAV file), and
PocketSphinx listening to what was said.

In this process only the espeak backend is used (libespeak-ng is one global engine per
process); pyttsx3 and everything that goes through PortAudio run in child processes,
each with its own ALSA configuration."""
import ctypes
import json
import os
import sys
import time
import wave

import pytest

from conftest import ROOT, data_path, run_cli
from robot import config
from robot.speech import output as speech_out

np = pytest.importorskip("numpy")

ASOUND = os.path.join(ROOT, "tests", "audio", "asound.conf")
NO_CARD = os.path.join(ROOT, "tests", "audio", "no-card.conf")
FIXED = ["The robot has a red ball.", "Tim likes to play in the park!", "Do you want to hear a story?"]
NEAR_MISSES = ["the robot has a blue ball", "tim likes to run in the park", "do you want to read a story",
               "the robot is in the park"]


def _have_espeak():
    try:
        ctypes.CDLL("libespeak-ng.so.1")
        return True
    except OSError:
        return False


needs_espeak = pytest.mark.skipif(not _have_espeak(), reason="needs libespeak-ng1 (tools/apt-demo.txt; make test installs it)")


def need(module, package):
    try:
        __import__(module)
    except ImportError:
        pytest.skip(f"needs {package} (requirements-test.txt; make test installs it)")


def settings(**over):
    s = dict(config.defaults()["speech_out"])
    s.update(over)
    return s


def write_config(tmp_path, **speech):
    lines = ["[speech_out]"] + [f"{k} = {json.dumps(v)}" for k, v in speech.items()]
    p = tmp_path / "speech.toml"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def alsa_env(tmp_path, conf=None):
    return {"ALSA_CONFIG_PATH": conf or f"/usr/share/alsa/alsa.conf:{ASOUND}",
            "STORYBOT_TEST_SPEAKER": str(tmp_path / "speaker.wav"),
            "STORYBOT_TEST_HEADPHONES": str(tmp_path / "headphones.wav")}


def read_wav(path):
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def rms(x):
    return float(np.sqrt(np.mean(np.square(x.astype(np.float64))))) if len(x) else 0.0


def segments(samples, rate, st):
    """The audio of each sentence, cut from the recording by the lengths in the stats."""
    out, start = [], 0
    for r in st["sentences"]:
        n = int(round(r["audio_s"] * rate))
        out.append(samples[start:start + n])
        start += n
    return out


def words(sentence):
    return "".join(c for c in sentence.lower() if c.isalpha() or c in " '").split()


class Listener:
    """PocketSphinx (en-us) limited by a JSGF grammar to the expected sentences and some
    near misses: it tells which one it heard, or nothing."""

    def __init__(self, tmp_path, sentences):
        need("pocketsphinx", "pocketsphinx")
        from pocketsphinx import Decoder

        alts = sorted({" ".join(words(s)) for s in sentences})
        g = tmp_path / "heard.jsgf"
        g.write_text("#JSGF V1.0;\ngrammar heard;\npublic <s> = " + " | ".join(f"( {a} )" for a in alts) + " ;\n")
        self.decoder = Decoder(jsgf=str(g), samprate=16000, loglevel="FATAL")

    def hear(self, samples, rate):
        x = _to_16k(samples.astype(np.float64), rate)
        pad = np.zeros(8000)                       # it needs ~0.5 s of silence around speech
        pcm = np.clip(np.concatenate([pad, x, pad]), -32768, 32767).astype(np.int16).tobytes()
        d = self.decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        return d.hyp().hypstr if d.hyp() else ""


def _to_16k(x, rate):
    if rate == 16000:
        return x
    n = np.arange(-40, 41)
    fc = 0.45 * 16000 / rate                       # low-pass below the new Nyquist first
    h = 2 * fc * np.sinc(2 * fc * n) * np.hamming(len(n))
    y = np.convolve(x, h / h.sum(), mode="same")
    t = np.arange(int(len(x) * 16000 / rate)) * (rate / 16000)
    return np.interp(t, np.arange(len(x)), y)


def check_fixed_text(tmp_path, wav_path, st):
    rate, x = read_wav(wav_path)
    assert rate == st["sample_rate"] == 22050
    assert abs(len(x) / rate - st["audio_s"]) < 0.02
    assert rms(x) > 300, "the recording is silent"
    assert rms(x) < 8000, "loud noise: samples were split across chunks"
    assert [r["i"] for r in st["sentences"]] == [0, 1, 2]
    sounds = [r["sound_s"] for r in st["sentences"]]
    assert sounds == sorted(sounds)
    ear = Listener(tmp_path, FIXED + NEAR_MISSES)
    heard = [ear.hear(seg, rate) for seg in segments(x, rate, st)]
    assert heard == [" ".join(words(s)) for s in FIXED]


# -- espeak, in this process ----------------------------------------------------------------

class PacedWav(speech_out.WavSink):
    """A WAV file that takes sound only as fast as a speaker plays it: the clock that
    the virtual sound card lacks (its null device swallows audio instantly)."""

    def __init__(self, path):
        super().__init__(path)
        self.writes = []

    def open(self, rate):
        self.rate = rate
        super().open(rate)

    def write(self, data):
        self.writes.append(time.perf_counter())
        super().write(data)
        time.sleep(len(data) / 2 / self.rate)


def espeak_speaker(sink, warn=None, **over):
    s = settings(backend="espeak", **over)
    backend = speech_out.open_backend("espeak")
    backend.configure(**{k: s[k] for k in speech_out.VOICE_KEYS})
    return speech_out.Speaker(backend, sink, s, **({"warn": warn} if warn else {}))


@needs_espeak
def test_espeak_says_a_fixed_text_that_pocketsphinx_recognises(tmp_path):
    wav = tmp_path / "fixed.wav"
    sp = speech_out.open_speaker(settings(backend="espeak"), wav=str(wav))
    try:
        sp.begin(" ".join(FIXED))
        sp.end()
        st = sp.stats()
    finally:
        sp.close()
    json.dumps(st)
    assert st["sentences_total"] == 3 and st["errors"] == 0
    for r in st["sentences"]:
        assert r["synth_ms"] > 0 and r["first_audio_ms"] <= r["synth_ms"] and r["audio_s"] > 0.5
    check_fixed_text(tmp_path, wav, st)


@needs_espeak
def test_default_voice_is_a_robot_variant(tmp_path):
    voice = config.defaults()["speech_out"]["voice"]
    assert "+robo" in voice.lower()
    pcm = {}
    backend = speech_out.open_backend("espeak")
    for v in ("en-us", voice):
        chunks = []
        backend.configure(v, 165, 40, 1.0)
        backend.synthesize("Hello there.", lambda d: chunks.append(d) or True)
        pcm[v] = b"".join(chunks)
    assert pcm["en-us"] != pcm[voice] and len(pcm[voice]) > 10000


@needs_espeak
def test_cancel_stops_within_one_chunk_and_drops_the_queue(tmp_path):
    sink = PacedWav(tmp_path / "cut.wav")
    sp = espeak_speaker(sink)
    try:
        sp.begin("")
        sp.feed("The robot rolled to the park. It saw a red ball. It was very happy. "
                "The sun was warm. The birds sang a song. Then it went home. ")
        for _ in range(1000):                      # until the first sentence is being heard
            if sp.stats()["first_sound_s"] is not None:
                break
            time.sleep(0.01)
        t = time.perf_counter()
        sp.cancel()
        st = sp.stats()
        n = len(sink.writes)
        time.sleep(0.2)
        assert len(sink.writes) == n, "sound went on after cancel() returned"
        # what was being written when cancel() came may finish; nothing after it starts
        assert sum(1 for w in sink.writes if w > t) <= 1
        assert st["cancelled"] and st["cancel_ms"] is not None
        assert sp._text_q.empty() and sp._audio_q.empty()
        rate, x = read_wav(tmp_path / "cut.wav")
        assert 0 < len(x) / rate < 1.5            # the story had ~8 s to say
        print(f"cancel took {st['cancel_ms']} ms ({len(x) / rate:.2f} s had been spoken)")

        sp.begin("Tom ran home.")                  # the same Speaker tells the next story
        sp.end()
        st = sp.stats()
        assert st["sentences_total"] == 1 and not st["cancelled"] and st["audio_s"] > 0.5
    finally:
        sp.close()


def _feed_blocked_s(wav, queue_sentences):
    """Seconds the writer waited to hand six sentences to a paced speaker."""
    sp = espeak_speaker(PacedWav(wav), queue_sentences=queue_sentences)
    try:
        sp.begin("")
        sp.feed("Tom ran. Sam sat. Ann hid. Bob hopped. Kim sang. Lee slept. ")
        st = sp.stats()
        sp.cancel()
    finally:
        sp.close()
    return st["feed_blocked_s"]


@needs_espeak
def test_generation_waits_only_when_the_sentence_queue_is_full(tmp_path):
    assert _feed_blocked_s(tmp_path / "big.wav", 16) == 0    # 6 sentences fit a queue of 16
    assert _feed_blocked_s(tmp_path / "small.wav", 1) > 0    # a queue of 1 held the writer back


@needs_espeak
def test_reconfigure_changes_the_voice_from_the_next_sentence(tmp_path):
    warnings = []
    sp = espeak_speaker(speech_out.WavSink(tmp_path / "r.wav"), warn=warnings.append)
    sentence = "The little dog ran to the big park."
    try:
        sp.begin(sentence + " ")
        sp.feed("It")
        for _ in range(1000):
            if sp.stats()["sentences"][0]["synth_ms"] is not None:
                break
            time.sleep(0.01)
        cfg = config.defaults()
        cfg["speech_out"].update(rate=330, pitch=70)
        sp.reconfigure(cfg)
        sp.feed(" was fun. " + sentence)
        sp.end()
        first, _, again = (r["audio_s"] for r in sp.stats()["sentences"])
        assert again < 0.75 * first
        assert sp.settings()["rate"] == 330

        cfg["speech_out"]["voice"] = "no-such-voice"
        sp.reconfigure(cfg)
        sp.begin(sentence)
        sp.end()
        assert sp.stats()["sentences"][0]["audio_s"] > 0.5      # still spoken, with the old voice
        assert len(warnings) == 1 and "no-such-voice" in warnings[0]
        assert sp.settings()["voice"] == config.defaults()["speech_out"]["voice"]
    finally:
        sp.close()


# -- through PortAudio and in child processes -------------------------------------------------

def story_model():
    return data_path("stories260K.bin"), data_path("tok512.bin")


def summary_of(stdout):
    lines = stdout.splitlines()
    objs = [json.loads(line) for line in lines if line.strip()]   # nothing but JSON on stdout
    assert objs[-1]["event"] == "summary"
    return objs[:-1], objs[-1]


@needs_espeak
@pytest.mark.parametrize("backend", ["espeak", "pyttsx3"])
def test_a_story_is_spoken_through_the_sound_card_while_it_is_written(tmp_path, backend):
    need("pyaudio", "pyaudio")
    if backend == "pyttsx3":
        need("pyttsx3", "pyttsx3")
    model, tok = story_model()
    # A sentence queue of one makes the overlap provable from the order of events: the
    # writer can queue sentence k+2 only after sentence k is synthesised, and sentence 1
    # (~2.5 s, ~50 chunks) can only be synthesised once the player has taken more chunks
    # than the audio queue holds (20), i.e. has started playing it.
    cfg = write_config(tmp_path, queue_sentences=1, first_clause=False)
    r = run_cli("-m", model, "-z", tok, "--prompt", "Once upon a time", "-s", "1", "-t", "0.8", "-n", "300",
                "--speak", "--tts", backend, "--format", "jsonl", "--config", cfg, env=alsa_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "ALSA lib" not in r.stderr and "warning" not in r.stderr
    tokens, summary = summary_of(r.stdout)
    st = summary["speech"]
    text = "Once upon a time" + "".join(t["text"] for t in tokens)
    n = st["sentences_total"]
    assert n >= 8 and st["errors"] == 0 and st["backend"] == backend

    # speech started before the story was finished
    assert st["sentences"][0]["sound_s"] < st["last_token_s"] <= st["generation_s"]
    assert st["tts_overlap_ms"] > 0 and st["speech_overlap_s"] > 0
    assert st["first_sound_s"] == st["sentences"][0]["sound_s"]
    # CPU time is only measurable where synthesis runs in our thread
    assert (st["tts_cpu_ms"] > 0) if backend == "espeak" else (st["tts_cpu_ms"] is None)

    # in order, each sentence heard after it was written
    recs = st["sentences"]
    assert [x["i"] for x in recs] == list(range(n))
    for a, b in zip(recs, recs[1:]):
        assert a["ready_s"] <= b["ready_s"] and a["sound_s"] <= b["sound_s"]
    assert all(x["ready_s"] <= x["sound_s"] for x in recs)

    rate, x = read_wav(tmp_path / "speaker.wav")
    assert rate == 22050
    assert abs(len(x) / rate - st["audio_s"]) < 0.05, "the sound card got all the speech and nothing else"
    assert 300 < rms(x) < 8000, "silent, or noise from samples split across chunks"
    assert all(rms(seg) > 300 for seg in segments(x, rate, st)), "a sentence came out silent"
    # its length fits the words at 165 words a minute (espeak adds pauses at full stops)
    expect_s = len(text.split()) / 165 * 60
    assert 0.6 < st["audio_s"] / expect_s < 1.7, (st["audio_s"], expect_s)
    assert "speech: first sound" in r.stderr and "speech: TTS" in r.stderr
    print(f"{backend}: first sound {st['first_sound_s'] * 1000:.1f} ms after the prompt, "
          f"{st['tts_ms_per_audio_s']} TTS ms per s of audio, {n} sentences")


@needs_espeak
def test_ctrl_c_stops_the_speaker_and_the_rest_of_the_story_is_not_said(tmp_path):
    need("pyaudio", "pyaudio")
    import signal
    import subprocess
    model, tok = story_model()
    heard = tmp_path / "heard.raw"
    env = dict(os.environ, **alsa_env(tmp_path), STORYBOT_CACHE="/nonexistent-storybot-cache",
               STORYBOT_TEST_PIPE=f"|{sys.executable} {ROOT}/tests/audio/paced_speaker.py {heard}")
    cmd = [sys.executable, "-m", "robot", "-m", model, "-z", tok, "--prompt", "Once upon a time", "-s", "1",
           "-t", "0.8", "-n", "300", "--speak", "--format", "jsonl",
           "--config", write_config(tmp_path, device="realtime")]
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(2000):                      # until half a second has been heard
            if heard.exists() and heard.stat().st_size > 22050 or p.poll() is not None:
                break
            time.sleep(0.01)
        p.send_signal(signal.SIGINT)
        at_signal = heard.stat().st_size
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err and "speech: stopped" in err
    _, summary = summary_of(out)
    st = summary["speech"]
    assert summary["stop"] == "interrupted" and st["cancelled"] and st["cancel_ms"] is not None
    assert any(r["sound_s"] is None for r in st["sentences"]), "every sentence was played anyway"
    # What the paced speaker still plays was already in ALSA's file plugin (flushed when the
    # stream closes; ~1 s here, where a sound card drops its buffer) or in the pipe, not the
    # ~30 s of story that were left.
    time.sleep(2.0)
    after_s = (heard.stat().st_size - at_signal) / 2 / 22050
    assert after_s < 2.0
    print(f"Ctrl-C: {after_s:.2f} s heard after the signal, {st['cancel_ms']} ms to close the stream")


@needs_espeak
@pytest.mark.parametrize("backend", ["espeak", "pyttsx3"])
def test_a_fixed_text_through_the_sound_card_is_recognised(tmp_path, backend):
    need("pyaudio", "pyaudio")
    if backend == "pyttsx3":
        need("pyttsx3", "pyttsx3")
    r = run_cli("say", "--tts", backend, "--json", " ".join(FIXED), env=alsa_env(tmp_path))
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)                     # pyttsx3's own print()s must not reach stdout
    assert st["backend"] == backend and st["sentences_total"] == 3
    assert st["output"] == "the default sound device"
    check_fixed_text(tmp_path, tmp_path / "speaker.wav", st)


@needs_espeak
def test_a_tiny_model_story_to_a_wav_file(tmp_path, tiny):
    model, tok = tiny
    wav = tmp_path / "story.wav"
    r = run_cli("-m", model, "-z", tok, "--prompt", "once upon a time", "-s", "7", "-n", "64",
                "--wav", wav, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    tokens, summary = summary_of(r.stdout)
    st = summary["speech"]
    assert st["sentences_total"] >= 1 and st["output"] == f"WAV file {wav}"
    rate, x = read_wav(wav)
    assert abs(len(x) / rate - st["audio_s"]) < 0.01 and rms(x) > 100


@needs_espeak
def test_speaker_chosen_by_name(tmp_path):
    need("pyaudio", "pyaudio")
    env = alsa_env(tmp_path)
    r = run_cli("say", "--config", write_config(tmp_path, device="headphones"), "Hello.", env=env)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "speaker.wav").exists()
    rate, x = read_wav(tmp_path / "headphones.wav")
    assert rms(x) > 300

    r = run_cli("say", "--config", write_config(tmp_path, device="loudspeaker"), "Hello.", env=env)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "no sound output device matches 'loudspeaker'" in r.stderr
    assert "storybot_headphones" in r.stderr


def _one_warning(r, *needles):
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if not x.startswith("achieved tok/s")]
    assert len(lines) == 1 and lines[0].startswith("storybot: warning: "), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert r.stdout.startswith("once upon a time") and len(r.stdout) > 40    # the story went on as text


@needs_espeak
def test_no_sound_card_is_one_warning_and_the_story_goes_on(tmp_path, tiny):
    need("pyaudio", "pyaudio")
    model, tok = tiny
    r = run_cli("-m", model, "-z", tok, "--prompt", "once upon a time", "-s", "3", "-n", "48", "--speak",
                env=alsa_env(tmp_path, conf=NO_CARD))
    _one_warning(r, "no sound output device", "--wav FILE")


def test_missing_espeak_library_is_one_warning(tmp_path, tiny):
    model, tok = tiny
    r = run_cli("-m", model, "-z", tok, "--prompt", "once upon a time", "-s", "3", "-n", "48", "--speak",
                env={"STORYBOT_ESPEAK_LIBRARY": str(tmp_path / "libespeak-ng.so.1")})
    _one_warning(r, "libespeak-ng is not installed", "apt install")


@pytest.mark.parametrize("module, backend, needle", [("pyaudio", "espeak", "PyAudio is not installed"),
                                                     ("pyttsx3", "pyttsx3", "pyttsx3 is not installed")])
def test_missing_python_package_is_one_warning(tmp_path, tiny, module, backend, needle):
    if module == "pyaudio" and not _have_espeak():
        pytest.skip("needs libespeak-ng1")
    model, tok = tiny
    # the closest stand-in for a package that is not installed: its import fails
    code = (f"import sys; sys.modules[{module!r}] = None; from robot.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    import subprocess
    r = subprocess.run([sys.executable, "-c", code, "-m", model, "-z", tok, "--prompt", "once upon a time",
                        "-s", "3", "-n", "48", "--speak", "--tts", backend],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    _one_warning(r, needle, "pip install")


@needs_espeak
@pytest.mark.parametrize("backend", ["espeak", "pyttsx3"])
def test_bad_voice_and_unwritable_wav_are_errors(tmp_path, backend):
    if backend == "pyttsx3":
        need("pyttsx3", "pyttsx3")
    r = run_cli("say", "--tts", backend, "--voice", "nosuchvoice", "--wav", tmp_path / "x.wav", "Hello.")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "no voice 'nosuchvoice'" in r.stderr and "espeak-ng --voices" in r.stderr
    r = run_cli("say", "--tts", backend, "--wav", tmp_path / "no" / "such" / "dir.wav", "Hello.")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot write the WAV file" in r.stderr


@needs_espeak
@pytest.mark.parametrize("backend, n", [("espeak", 1000), ("pyttsx3", 300)])
def test_many_sentences_in_one_process_keep_memory_flat(backend, n):
    if backend == "pyttsx3":
        need("pyttsx3", "pyttsx3")           # 300 > the ~100 syntheses that crash pyttsx3 with new engines
    import subprocess
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "speech_soak.py"), "--tts", backend,
                        "--sentences", str(n), "--short"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["sentences"] == n and out["errors"] == 0
    assert out["rss_growth_kb"] < 2048, out
    print(out)


def test_the_virtual_microphone_replays_its_file(tmp_path):
    """tests/audio/asound.conf also has a microphone (for speech-in tests)."""
    need("pyaudio", "pyaudio")
    raw = tmp_path / "said.raw"
    data = (np.arange(16000, dtype=np.int16) % 1000).tobytes()
    raw.write_bytes(data + bytes(32000))
    code = ("import sys; from robot.speech import audio; import pyaudio; pa = audio.portaudio(); "
            "i = audio.find_device('', output=False); "
            "s = pa.open(rate=16000, channels=1, format=pyaudio.paInt16, input=True, input_device_index=i); "
            "sys.stdout.buffer.write(s.read(8000)); s.close()")
    import subprocess
    env = dict(os.environ, **alsa_env(tmp_path), STORYBOT_TEST_MIC=str(raw))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data[:16000]
