"""Which model and which tokenizer a command uses: the one rule, for every command
(a story, the daemon, `eval`, `quantize --calibrate`). docs/formats.md states it too.

The model, first found wins:
  1. --model PATH;  2. [model] path in the config;  3. $STORYBOT_MODEL;
  4. the newest (by modification time) of the known model files in the cache folder
     ($STORYBOT_CACHE, else [model] cache_dir): the model you fetched or quantised last;
  5. the built-in stories260K in the package (robot/data/).

The tokenizer, first found wins:
  1. -z PATH;  2. [model] tokenizer in the config;
  3. the tokenizer a storybot quantised file records (its name and sha256, written by
     `storybot quantize`), found by name beside the model, in the cache or built in,
     and only if its checksum matches;
  4. beside the model, then in the cache, then built in: tok{N}.bin, then tokenizer.bin,
     where N is the model's vocabulary size, and only a file with exactly N tokens.

Why the token count is checked: llama2.c's tokenizer.bin does not say how many tokens it
holds, so the 32,000-token file opened for a 512-token model reads its first 512 entries
without complaint and tells gibberish. Counting the entries is one pass over ~400 KB.
"""
from __future__ import annotations

import hashlib
import os
import struct
from typing import Iterator, List, Optional, Tuple

from robot.models import sbq

# The cache's model files, in the order that breaks a tie of modification times.
CACHE_MODELS = ["stories15M.q8q4", "stories15M.q8", "stories15M.bin", "stories260K.bin"]
BUILTIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
BUILTIN_MODEL = os.path.join(BUILTIN_DIR, "stories260K.bin")
BUILTIN_TOKENIZER = os.path.join(BUILTIN_DIR, "tok512.bin")

# Where an SBQ file records its tokenizer: the header's unused tail (the kernel reads
# bytes 0-71 of the 256 and ignores the rest, which its writer leaves zero).
_TOK_RECORD = struct.Struct("<4sI32s56s")
_TOK_OFFSET = sbq.HEADER_BYTES - _TOK_RECORD.size
_TOK_MAGIC = b"TOK1"


def newest_cached_model(cache: str) -> Optional[str]:
    """Rule 4 for the model: the newest known model file in `cache`, or None."""
    found = [os.path.join(cache, n) for n in CACHE_MODELS if os.path.isfile(os.path.join(cache, n))]
    if not found:
        return None
    # max keeps the first of equal times, and CACHE_MODELS lists the board's choice first
    return max(found, key=lambda p: os.stat(p).st_mtime_ns)


def tokenizer_size(path: str) -> Optional[int]:
    """How many tokens a llama2.c tokenizer file holds, or None if it is not one."""
    try:
        with open(path, "rb") as f:
            data = f.read(64 << 20)
    except OSError:
        return None
    off, n = 4, 0
    while off < len(data):
        if off + 8 > len(data):
            return None
        (length,) = struct.unpack_from("<i", data, off + 4)
        if length < 0 or off + 8 + length > len(data):
            return None
        off += 8 + length
        n += 1
    return n if len(data) >= 4 else None


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_tokenizer(model_path: str, tokenizer_path: str) -> None:
    """Writes the tokenizer's name and checksum into a storybot quantised file's header,
    so the model finds its tokenizer wherever the two are copied together."""
    name = os.path.basename(tokenizer_path).encode("utf-8")[:_TOK_RECORD.size - 40]
    size = tokenizer_size(tokenizer_path) or 0
    rec = _TOK_RECORD.pack(_TOK_MAGIC, size, bytes.fromhex(sha256(tokenizer_path)), name)
    sbq.read_header(model_path)  # refuses anything that is not SBQ
    with open(model_path, "r+b") as f:
        f.seek(_TOK_OFFSET)
        f.write(rec)


def recorded_tokenizer(model_path: str) -> Optional[Tuple[str, str]]:
    """(name, sha256) an SBQ file records, or None (other formats, older files)."""
    try:
        with open(model_path, "rb") as f:
            head = f.read(sbq.HEADER_BYTES)
    except OSError:
        return None
    if len(head) < sbq.HEADER_BYTES or struct.unpack_from("<I", head)[0] != sbq.MAGIC:
        return None
    magic, _, digest, name = _TOK_RECORD.unpack_from(head, _TOK_OFFSET)
    if magic != _TOK_MAGIC:
        return None
    return name.rstrip(b"\0").decode("utf-8", "replace"), digest.hex()


def _places(model_path: str, cache: Optional[str]) -> Iterator[str]:
    yield os.path.dirname(os.path.abspath(model_path))
    if cache:
        yield cache
    yield BUILTIN_DIR


def find_tokenizer(model_path: str, vocab_size: int, cache: Optional[str]) -> Optional[str]:
    """Rules 3 and 4 for the tokenizer; None when nothing fits."""
    rec = recorded_tokenizer(model_path)
    if rec is not None:
        name, digest = rec
        for d in _places(model_path, cache):
            p = os.path.join(d, os.path.basename(name))
            if os.path.isfile(p) and sha256(p) == digest:
                return p
    names: List[str] = [f"tok{vocab_size}.bin", "tokenizer.bin"]
    for d in _places(model_path, cache):
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p) and tokenizer_size(p) == vocab_size:
                return p
    return None
