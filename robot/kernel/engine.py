"""The engine: a llama2.c model behind the C kernel.

    m = Model("stories15M.bin", "tokenizer.bin")
    for tok in m.generate("Once upon a time", steps=64, seed=42):
        print(tok.text, end="", flush=True)

Each generated token costs one C call (forward + sample, GIL released by cffi) and
one small Token; numpy is never needed at run time.
"""
import codecs
import os
import time
from typing import Any, Generator, List, NamedTuple, Optional, Union

from robot.kernel.lib import ffi, lib
from robot import fileio
from robot.errors import StorybotError
from robot.kernel.formats import FORMATS, KERNELS, QUANT_FORMATS, format_name  # noqa: F401 (the API)

BOS, EOS = 1, 2
PathLike = Union[str, "os.PathLike[str]"]


class Config(NamedTuple):
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool
    format: str
    group_size: int
    file_bytes: int
    weight_bytes_per_token: int


class Token:
    """One generated token: its id, the text it adds (may be '' while a multi-byte
    character is still incomplete) and its position in the sequence."""

    __slots__ = ("id", "text", "pos")

    def __init__(self, id: int, text: str, pos: int) -> None:
        self.id = id
        self.text = text
        self.pos = pos

    def __repr__(self) -> str:
        return f"Token(id={self.id}, text={self.text!r}, pos={self.pos})"


def _check(rc: int, err: Any) -> None:
    if rc != 0:
        raise StorybotError(ffi.string(err.message).decode("utf-8", "replace"))


def _path_bytes(path: PathLike) -> bytes:
    return os.fsencode(os.fspath(path))


class Tokenizer:
    def __init__(self, path: PathLike, vocab_size: int = 0) -> None:
        err = ffi.new("sb_error *")
        out = ffi.new("sb_tokenizer **")
        fileio.check_regular_file(path, "tokenizer file")  # a FIFO would block the C open() forever
        _check(lib.sb_tokenizer_open(_path_bytes(path), vocab_size, out, err), err)
        self._t = ffi.gc(out[0], lib.sb_tokenizer_close)
        self.path = os.fspath(path)
        self.vocab_size = lib.sb_tokenizer_vocab_size(self._t)
        self.max_token_length = lib.sb_tokenizer_max_token_length(self._t)
        self._len = ffi.new("size_t *")

    def encode(self, text: Union[str, bytes], bos: bool = True, eos: bool = False) -> List[int]:
        if isinstance(text, str):
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:
                raise StorybotError("the prompt is not valid UTF-8; type it again or fix its encoding") from None
        else:
            data = bytes(text)
        cap = len(data) + 3
        buf = ffi.new("int[]", cap)
        n = ffi.new("int *")
        err = ffi.new("sb_error *")
        _check(lib.sb_encode(self._t, data, len(data), int(bos), int(eos), buf, cap, n, err), err)
        return list(buf[0:n[0]])

    def decode_bytes(self, prev: int, token: int) -> bytes:
        p = lib.sb_decode(self._t, prev, token, self._len)
        return ffi.buffer(p, self._len[0])[:]

    def piece(self, token: int) -> bytes:
        p = lib.sb_token_piece(self._t, token, self._len)
        return ffi.buffer(p, self._len[0])[:]

    def decode(self, tokens: List[int]) -> str:
        """Text of a whole token list, decoded as run.c prints it."""
        out = bytearray()
        prev = BOS
        for t in tokens:
            if t == BOS:
                prev = t
                continue
            out += self.decode_bytes(prev, t)
            prev = t
        return out.decode("utf-8", "replace")


class Generation:
    """An iterator of Tokens with timing figures filled in as it runs."""

    def __init__(self, model: "Model", tokens: List[int], steps: int, temperature: float, topp: float,
                 seed: int) -> None:
        self.model = model
        self.prompt_tokens = tokens
        self.steps = steps
        self.temperature = temperature
        self.topp = topp
        self.seed = seed
        self.n_generated = 0
        self.stop_reason: Optional[str] = None
        self.t_start: Optional[float] = None
        self.t_first: Optional[float] = None
        self.t_end: Optional[float] = None
        self._it = self._run()

    def __iter__(self) -> "Generation":
        return self

    def __next__(self) -> Token:
        return next(self._it)

    def close(self) -> None:
        self._it.close()

    @property
    def elapsed(self) -> float:
        if self.t_start is None:
            return 0.0
        return (self.t_end or time.perf_counter()) - self.t_start

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens over the time spent since the prompt was read; run.c
        counts from its first token the same way, so the figures compare."""
        e = self.elapsed
        return self.n_generated / e if e > 0 else 0.0

    def _run(self) -> Generator[Token, None, None]:
        m = self.model
        err = ffi.new("sb_error *")
        out = ffi.new("sb_sampler **")
        _check(lib.sb_sampler_new(m.config.vocab_size, self.temperature, self.topp, self.seed, out, err), err)
        smp = ffi.gc(out[0], lib.sb_sampler_free)
        tokens = self.prompt_tokens
        n = len(tokens)
        sess, nxt_fn, decode = m._session, lib.sb_next, m.tokenizer.decode_bytes
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        token, pos = tokens[0], 0
        self.t_start = time.perf_counter()
        self.stop_reason = "steps"
        try:
            while pos < self.steps:
                forced = tokens[pos + 1] if pos < n - 1 else -1
                nxt = nxt_fn(sess, smp, token, pos, forced)
                if nxt < 0:
                    raise StorybotError(f"the kernel failed at position {pos}: {ffi.string(lib.sb_status_name(-nxt)).decode()}")
                pos += 1
                if nxt == BOS:
                    self.stop_reason = "bos"
                    break
                if forced < 0:
                    text = utf8.decode(decode(token, nxt))
                    self.n_generated += 1
                    if self.t_first is None:
                        self.t_first = time.perf_counter()
                    yield Token(nxt, text, pos)
                token = nxt
            tail = utf8.decode(b"", final=True)
            if tail:
                yield Token(-1, tail, pos)
        finally:
            self.t_end = time.perf_counter()


def peek_config(checkpoint: PathLike) -> Config:
    """A model file's shape and format, validated by the kernel, without a tokenizer
    (to choose one: robot/models/discover.py). Mapping a file costs no reads."""
    err = ffi.new("sb_error *")
    out = ffi.new("sb_model **")
    fileio.check_regular_file(checkpoint, "model file")
    _check(lib.sb_model_open(_path_bytes(checkpoint), out, err), err)
    try:
        return _config(lib.sb_model_config(out[0]))
    finally:
        lib.sb_model_close(out[0])


def _config(c: Any) -> Config:
    return Config(c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size,
                  c.seq_len, bool(c.shared_classifier), format_name(c.format),
                  c.group_size, c.file_bytes, c.weight_bytes_per_token)


class Model:
    def __init__(self, checkpoint: PathLike, tokenizer: Union[None, PathLike, Tokenizer] = None, kernel: str = "fast",
                 kv_f16: bool = False, low_rss: bool = False) -> None:
        if kernel not in KERNELS:
            raise StorybotError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
        err = ffi.new("sb_error *")
        out = ffi.new("sb_model **")
        fileio.check_regular_file(checkpoint, "model file")  # a FIFO would block the C open() forever
        _check(lib.sb_model_open(_path_bytes(checkpoint), out, err), err)
        self._m = ffi.gc(out[0], lib.sb_model_close)
        self.path = os.fspath(checkpoint)
        self.config = _config(lib.sb_model_config(self._m))
        if tokenizer is None:
            tokenizer = os.path.join(os.path.dirname(os.path.abspath(self.path)), "tokenizer.bin")
        self.tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer(tokenizer, self.config.vocab_size)
        if self.tokenizer.vocab_size != self.config.vocab_size:
            raise StorybotError(f"tokenizer {self.tokenizer.path} has {self.tokenizer.vocab_size} tokens but the model expects {self.config.vocab_size}; use the tokenizer that came with this model (-z PATH)")
        self.kernel = kernel
        self.kv_f16 = kv_f16
        self.low_rss = low_rss
        flags = (lib.SB_SESSION_KV_F16 if kv_f16 else 0) | (lib.SB_SESSION_LOW_RSS if low_rss else 0)
        sout = ffi.new("sb_session **")
        _check(lib.sb_session_new(self._m, KERNELS[kernel], flags, sout, err), err)
        self._session = ffi.gc(sout[0], lib.sb_session_free)
        self._logits_ptr = ffi.new("float **")
        self._logits_view: "Optional[memoryview[float]]" = None

    @property
    def isa(self) -> str:
        return ffi.string(lib.sb_isa()).decode() if self.kernel == "fast" else "naive"

    @property
    def session_bytes(self) -> int:
        return lib.sb_session_bytes(self._session)

    def encode(self, text: Union[str, bytes], bos: bool = True, eos: bool = False) -> List[int]:
        return self.tokenizer.encode(text, bos=bos, eos=eos)

    def forward(self, token: int, pos: int) -> "memoryview[float]":
        """Logits for `token` at `pos` as a float32 memoryview into the session
        (valid until the next call; numpy.frombuffer can wrap it without a copy)."""
        if not (0 <= token < self.config.vocab_size):
            raise StorybotError(f"token {token} is outside the vocabulary (0..{self.config.vocab_size - 1})")
        if not (0 <= pos < self.config.seq_len):
            raise StorybotError(f"position {pos} is outside the model's context (0..{self.config.seq_len - 1})")
        rc = lib.sb_forward(self._session, token, pos, self._logits_ptr)
        if rc:
            raise StorybotError(f"the kernel failed: {ffi.string(lib.sb_status_name(rc)).decode()}")
        view = self._logits_view
        if view is None:
            view = self._logits_view = memoryview(ffi.buffer(self._logits_ptr[0], 4 * self.config.vocab_size)).cast("f")
        return view

    def prepare(self, prompt: str, steps: Optional[int] = 256, temperature: Optional[float] = 1.0,
                topp: Optional[float] = 0.9, seed: Optional[int] = None) -> Generation:
        """Checks every argument the way run.c would use it; returns the Generation."""
        c = self.config
        if temperature is None or temperature != temperature or temperature < 0:
            raise StorybotError(f"temperature must be 0 or more (got {temperature}); 0 means always the likeliest word")
        if topp is None or topp != topp or not (0.0 <= topp <= 1.0):
            raise StorybotError(f"top-p must be between 0 and 1 (got {topp})")
        # a piece covers at most max_token_length bytes: refuse hopeless prompts before encoding them
        nbytes = len(prompt.encode("utf-8", "surrogatepass")) if prompt else 0
        if nbytes // max(1, self.tokenizer.max_token_length) + 2 > c.seq_len:
            raise StorybotError(f"the prompt is {nbytes} bytes long but this model can only see {c.seq_len} tokens; shorten the prompt")
        tokens = self.encode(prompt or "")
        if len(tokens) >= c.seq_len:
            raise StorybotError(f"the prompt is {len(tokens)} tokens long but this model can only see {c.seq_len}; shorten the prompt")
        if steps is None or steps <= 0 or steps > c.seq_len:
            steps = c.seq_len
        if seed is None or seed == 0:  # as in robot.story: random bits, not the clock (repeats within a second)
            seed = int.from_bytes(os.urandom(8), "little") >> 1 or 1
        if not 0 <= seed < 1 << 64:
            raise StorybotError(f"the seed must be a whole number from 0 to {(1 << 64) - 1} (got {seed})")
        return Generation(self, tokens, steps, float(temperature), float(topp), seed)

    def quantize(self, out_path: PathLike, format: str = "q8", group_size: int = 0) -> PathLike:
        """Writes this (fp32) model as a storybot SBQ1 file; see docs/formats.md."""
        if format not in QUANT_FORMATS:
            raise StorybotError(f"unknown format {format!r}; choose one of {', '.join(QUANT_FORMATS)}")
        err = ffi.new("sb_error *")
        _check(lib.sb_quantize(self._m, _path_bytes(out_path), QUANT_FORMATS[format], int(group_size), err), err)
        return out_path

    def generate(self, prompt: str, steps: Optional[int] = 256, temperature: Optional[float] = 1.0,
                 topp: Optional[float] = 0.9, seed: Optional[int] = None) -> Generation:
        """The tokens of a story (plain arguments; the settings are merged by the caller)."""
        return self.prepare(prompt, steps, temperature, topp, seed)
