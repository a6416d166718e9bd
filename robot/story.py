"""One story: its settings and the loop that tells it, shared by `storybot` (the CLI),
`storybot listen --tell` and the daemon.

Imports flow one way: prompt sources (cli, service) -> story -> engine -> sentences ->
speech. Nothing here knows about argparse, sockets or threads other than the cancel
event it is handed.

Settings are merged once, here: [story] in the config, then the command line, then
(daemon) the request's own values; later layers win and None means "not given".
A seed of 0 means "a new story every time": it is replaced by 63 random bits, not by
the clock, which repeats within a second (two prompts in one second would otherwise
tell the same story). The seed actually used is reported with every story."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional

from robot.errors import StorybotError

if TYPE_CHECKING:  # the engine loads the C kernel; importing it is left to open_model
    from robot.kernel.engine import Generation, Model, Token

Warn = Callable[[str], None]
STORY_KEYS = ("steps", "temperature", "topp", "seed")


SEED_MAX = (1 << 64) - 1  # the sampler's state is 64 bits; a larger seed would be cut, 2**64 to 0


def _quiet(msg: str) -> None:
    pass


def check_seed(seed: int) -> int:
    """The seed if it fits the sampler's 64 bits, else one sentence (2**64 would silently
    become 0, which the xorshift generator never leaves)."""
    if not 0 <= seed <= SEED_MAX:
        raise StorybotError(f"the seed must be a whole number from 0 to {SEED_MAX} (got {seed}); 0 means a new story every time")
    return seed


def random_seed() -> int:
    """63 random bits from the system (never 0): what seed 0 means."""
    return int.from_bytes(os.urandom(8), "little") >> 1 or 1


@dataclass(frozen=True)
class StorySettings:
    """How long and how random one story is (the [story] table)."""

    steps: int = 256
    temperature: float = 1.0
    topp: float = 0.9
    seed: int = 0

    @classmethod
    def merge(cls, cfg: Mapping[str, Any], *layers: Mapping[str, Any]) -> StorySettings:
        """[story] from the config, overridden by each layer in turn (None: not given)."""
        st = cfg["story"]
        s = cls(steps=st["steps"], temperature=st["temperature"], topp=st["topp"], seed=st["seed"])
        for layer in layers:
            given = {k: layer[k] for k in STORY_KEYS if layer.get(k) is not None}
            s = replace(s, **given)
        return s

    def resolve(self, seq_len: int, warn: Warn = _quiet) -> StorySettings:
        """Checked and made concrete for a model of `seq_len` positions: steps clamped to
        the model (0 or less: all of it), seed 0 replaced by a random one."""
        steps = self.steps
        if steps <= 0:
            if steps < 0:
                warn(f"steps {steps} is not a length; telling a story of the model's full {seq_len} tokens")
            steps = seq_len
        elif steps > seq_len:
            warn(f"steps {steps} is more than this model can see; clamped to {seq_len}")
            steps = seq_len
        temperature, topp = float(self.temperature), float(self.topp)
        if not temperature >= 0:
            raise StorybotError(f"temperature must be 0 or more (got {self.temperature}); 0 means always the likeliest word")
        if not 0.0 <= topp <= 1.0:
            raise StorybotError(f"top-p must be between 0 and 1 (got {self.topp})")
        seed = check_seed(self.seed)
        if seed == 0:
            seed = random_seed()
        return StorySettings(steps, temperature, topp, seed)

    def start(self, model: Model, prompt: str) -> Generation:
        """The engine's generation for `prompt` (call on resolved settings)."""
        return model.generate(prompt, steps=self.steps, temperature=self.temperature, topp=self.topp, seed=self.seed)


@dataclass(frozen=True)
class ModelChoice:
    """Which model to load, as the command line names it (None: the config decides)."""

    model: Optional[str] = None
    tokenizer: Optional[str] = None
    kernel: Optional[str] = None
    kv_f16: Optional[bool] = None
    low_rss: Optional[bool] = None


@dataclass(frozen=True)
class ModelFiles:
    """A model resolved to its files and options: what open() loads, again and again."""

    model: str
    tokenizer: str
    kernel: str = "fast"
    kv_f16: bool = False
    low_rss: bool = False

    def open(self) -> Model:
        from robot.kernel.engine import Model

        return Model(self.model, self.tokenizer, kernel=self.kernel, kv_f16=self.kv_f16, low_rss=self.low_rss)


def model_files(choice: ModelChoice, cfg: Mapping[str, Any]) -> ModelFiles:
    """The model and tokenizer the choice, config, environment and cache name."""
    from robot.models import fetch

    model_path, tok_path = fetch.resolve(choice.model, choice.tokenizer, cfg)
    m = cfg["model"]
    kv16 = m["kv_f16"] if choice.kv_f16 is None else choice.kv_f16
    low = m["low_rss"] if choice.low_rss is None else choice.low_rss
    return ModelFiles(model_path, tok_path, choice.kernel or m["kernel"], kv16, low)


def open_model(choice: ModelChoice, cfg: Mapping[str, Any]) -> Model:
    """The model and tokenizer the choice, config, environment and cache name, loaded."""
    return model_files(choice, cfg).open()


@dataclass
class Told:
    """What one pass of the token loop did."""

    tokens: int
    seconds: float
    tok_per_s: float
    seed: int
    stop: Optional[str]      # the engine's reason ("steps", "bos"); None when cancelled
    cancelled: bool
    speech_wait_s: float     # time the loop spent blocked on the speaker (feed + end)


def _no_beat(in_kernel: bool) -> None:
    pass


def tell(gen: Generation, on_token: Callable[[Token], None], speaker: Any = None,
         cancel: Optional[threading.Event] = None, beat: Callable[[bool], None] = _no_beat) -> Told:
    """The token loop: each token to `on_token` (text to stdout or a client), its text to
    `speaker` (already begun with the prompt; it splits and speaks sentences), then the
    speaker's end (or cancel). `beat(True)` is called before each step into the kernel and
    `beat(False)` after, so a watchdog can tell a slow story from a hung kernel. An
    exception (Ctrl-C, a closed pipe) closes the generation and is left to the caller,
    which also owns the speaker."""
    waited = 0.0
    cancelled = False
    try:
        beat(True)
        for tok in gen:
            beat(False)
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            on_token(tok)
            if speaker is not None and tok.text:
                t = time.perf_counter()
                speaker.feed(tok.text)  # blocks while the sentence queue is full
                waited += time.perf_counter() - t
            beat(True)
        beat(False)
        cancelled = cancelled or (cancel is not None and cancel.is_set())
        if speaker is not None:
            if cancelled:
                speaker.cancel()
            else:
                t = time.perf_counter()
                speaker.end()  # returns when the last sentence has been spoken
                waited += time.perf_counter() - t
    finally:
        beat(False)
        gen.close()
    # a cancel while the last sentences were spoken still makes the story a stopped one
    cancelled = cancelled or (cancel is not None and cancel.is_set())
    return Told(gen.n_generated, gen.elapsed, gen.tokens_per_second, gen.seed,
                None if cancelled else gen.stop_reason, cancelled, waited)


def speech_line(stats: Dict[str, Any], waited: float) -> str:
    """The speaker's figures for a story's log line."""
    first = stats.get("first_sound_s")
    return (f"speech: {stats.get('sentences_total')} sentences, {stats.get('audio_s')} s of audio, "
            f"TTS {stats.get('tts_ms')} ms, first sound {'-' if first is None else f'{first:.2f} s'}, "
            f"story waited {waited:.2f} s for the voice")


@dataclass(frozen=True)
class SpeechChoice:
    """Speech as the command line asks for it (None: the config or the command decides).
    Attribute names match speech_out.settings_from_args / open_from_args."""

    speak: Optional[bool] = None
    wav: Optional[str] = None
    voice: Optional[str] = None
    tts: Optional[str] = None

    def wanted(self, default: bool) -> bool:
        return bool(self.wav) or (default if self.speak is None else self.speak)


def open_speaker(choice: SpeechChoice, cfg: Mapping[str, Any], warn: Optional[Warn] = None) -> Any:
    """A begun-able Speaker, or None (after one warning) when it cannot speak. The caller
    has already decided that speech is wanted (choice.wanted)."""
    from robot.speech import output as speech_out

    if warn is None:
        return speech_out.open_from_args(choice, cfg)
    return speech_out.open_from_args(choice, cfg, warn=warn)


def speech_settings(choice: SpeechChoice, cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """[speech_out] with the command line's --voice / --tts applied (they win on reload too)."""
    from robot.speech import output as speech_out

    return dict(speech_out.settings_from_args(choice, cfg))
