"""Seeded random llama2.c checkpoints and tokenizers, for tests and benchmarks.

Speed depends on a model's shape, not its values, so `storybot bench --shape
stories15M` runs on weights made here. Needs numpy (a development tool, never used
on the story path)."""
import os
import struct
from typing import Any, Optional

SHAPES = {
    # name: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
    "stories15M": (288, 768, 6, 6, 6, 32000, 256),
    "stories42M": (512, 1376, 8, 8, 8, 32000, 1024),
    "stories260K": (64, 172, 5, 8, 4, 512, 512),
    "tiny": (48, 128, 2, 6, 3, 512, 64),
}


def write_checkpoint(path: str, dim: int, hidden_dim: int, n_layers: int, n_heads: int, n_kv_heads: int,
                     vocab_size: int, seq_len: int, shared: bool = True, seed: int = 0,
                     scale: Optional[float] = None) -> str:
    """Legacy llama2.c fp32 layout; init scaled like a trained model's so that the
    logits are neither flat nor one-hot."""
    import numpy as np

    rng = np.random.default_rng(seed)
    hs = dim // n_heads
    kv = hs * n_kv_heads
    s = scale if scale is not None else 1.0

    def w(*shape: int, fan_in: int) -> Any:
        return (rng.standard_normal(shape, dtype=np.float32) * (s / np.sqrt(fan_in))).astype(np.float32)

    tmp = f"{path}.partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("7i", dim, hidden_dim, n_layers, n_heads, n_kv_heads,
                            vocab_size if shared else -vocab_size, seq_len))
        emb = w(vocab_size, dim, fan_in=1) * 0.5
        f.write(emb.tobytes())
        f.write((1.0 + 0.1 * rng.standard_normal((n_layers, dim))).astype(np.float32).tobytes())
        for shape in ((dim, dim), (kv, dim), (kv, dim), (dim, dim)):
            for _ in range(n_layers):
                f.write(w(*shape, fan_in=shape[1]).tobytes())
        f.write((1.0 + 0.1 * rng.standard_normal((n_layers, dim))).astype(np.float32).tobytes())
        for shape in ((hidden_dim, dim), (dim, hidden_dim), (hidden_dim, dim)):
            for _ in range(n_layers):
                f.write(w(*shape, fan_in=shape[1]).tobytes())
        f.write((1.0 + 0.1 * rng.standard_normal(dim)).astype(np.float32).tobytes())
        f.write(np.zeros(seq_len * hs, dtype=np.float32).tobytes())  # unused freq_cis
        if not shared:
            f.write(w(vocab_size, dim, fan_in=dim).tobytes())
    os.replace(tmp, path)
    return path


# The random-weight test models (tests/data/README.md): name -> (shape, shared classifier,
# seed). write_fixture() reproduces each bit for bit; the sha256 is the proof.
FIXTURES = {
    "tiny-gqa-32k": ((64, 176, 2, 4, 2, 32000, 128), True, 1,
                     "1dd43e509f0d752f560c07ef58db6246687dd227259a39b2b2c5798a04947f78"),
    "tiny-unshared-32k": ((48, 128, 2, 6, 6, 32000, 96), False, 2,
                          "f86e125be76e0b394d004c57e7c5989f03fcf5a5a021693f17e590745fb854cd"),
}


def write_plain_checkpoint(path: str, dim: int, hidden_dim: int, n_layers: int, n_heads: int, n_kv_heads: int,
                           vocab_size: int, seq_len: int, shared: bool = True, seed: int = 0) -> str:
    """Legacy llama2.c fp32 layout with plain N(0,1) draws in file order (float64, then
    rounded to float32): token table 1.0, matrices 1/sqrt(fan_in), norms 1 + 0.1 N,
    the unused freq_cis rows 1.0, a separate classifier 0.5. This is how the golden
    run.c outputs' random models were made, so they can be rebuilt instead of shipped."""
    import numpy as np

    rng = np.random.default_rng(seed)
    hs = dim // n_heads
    kv = hs * n_kv_heads

    def draw(n: int, scale: float) -> Any:
        return (rng.standard_normal(n) * scale).astype(np.float32)

    tmp = f"{path}.partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("7i", dim, hidden_dim, n_layers, n_heads, n_kv_heads,
                            vocab_size if shared else -vocab_size, seq_len))
        f.write(draw(vocab_size * dim, 1.0).tobytes())
        f.write((1 + draw(n_layers * dim, 0.1)).tobytes())
        for rows, cols in ((dim, dim), (kv, dim), (kv, dim), (dim, dim)):
            f.write(draw(n_layers * rows * cols, 1 / np.sqrt(cols)).tobytes())
        f.write((1 + draw(n_layers * dim, 0.1)).tobytes())
        for rows, cols in ((hidden_dim, dim), (dim, hidden_dim), (hidden_dim, dim)):
            f.write(draw(n_layers * rows * cols, 1 / np.sqrt(cols)).tobytes())
        f.write((1 + draw(dim, 0.1)).tobytes())
        f.write(draw(seq_len * hs, 1.0).tobytes())
        if not shared:
            f.write(draw(vocab_size * dim, 0.5).tobytes())
    os.replace(tmp, path)
    return path


def write_fixture(path: str, name: str) -> str:
    shape, shared, seed, _ = FIXTURES[name]
    return write_plain_checkpoint(path, *shape, shared=shared, seed=seed)


def write_shape(path: str, shape: str, seed: int = 0, shared: bool = True) -> str:
    return write_checkpoint(path, *SHAPES[shape], shared=shared, seed=seed)


_WORDS = ("the a and to was he she it they of in on with his her little big said day time "
          "once upon there lived girl boy dog cat tree park play happy sad friend mom dad "
          "saw went wanted could would very one sun ball red blue bird fish home love").split()


def write_tokenizer(path: str, vocab_size: int, seed: int = 0) -> str:
    """A llama2.c tokenizer.bin: <unk>, <s>, </s>, the 256 byte tokens, printable
    characters, then merges (word pieces) with rising scores, up to vocab_size."""
    if vocab_size < 259 + 96:
        raise ValueError("a synthetic tokenizer needs vocab_size >= 355")
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % i for i in range(256)]
    pieces += [bytes([c]) for c in range(32, 127)]
    seen = set(pieces)
    extra = []
    for word in _WORDS:
        for piece in (word.encode(), b" " + word.encode()):
            for k in range(2, len(piece) + 1):
                p = piece[:k]
                if p not in seen:
                    seen.add(p)
                    extra.append(p)
    n = 0
    while len(pieces) + len(extra) < vocab_size:
        p = b" w%d" % n
        n += 1
        if p not in seen:
            seen.add(p)
            extra.append(p)
    pieces += extra[: vocab_size - len(pieces)]
    scores = [0.0] * 3 + [0.0] * 256 + [-1000.0 + i for i in range(95)]
    # longer pieces score higher so merges grow words left to right, like BPE ranks
    scores += [float(len(p)) * 10.0 - i * 1e-3 for i, p in enumerate(extra[: vocab_size - len(scores)])]
    max_len = max(len(p) for p in pieces)
    with open(path, "wb") as f:
        f.write(struct.pack("i", max_len))
        for p, sc in zip(pieces, scores):
            f.write(struct.pack("fi", sc, len(p)))
            f.write(p)
    return path
