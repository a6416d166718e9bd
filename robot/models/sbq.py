"""The storybot SBQ file layout as Python reads it (docs/formats.md, section 3).

The C kernel (_kernel/quant.c) writes and validates SBQ files; Python reads them in two
places: `storybot quantize` reports the group sizes from the header, and --calibrate
rewrites the quantised matrices in place. Both go through this module, which states the
header once (one struct) and the order and size of the sections once (layout()). A file
the kernel has not accepted is never read here: callers open it with the kernel first,
and layout() checks its total against the header's file_bytes, so a Python layout that
disagreed with the C one would stop with an error instead of writing into wrong bytes.
"""
import struct
from typing import List, NamedTuple

from robot.errors import StorybotError

MAGIC = 0x31514253       # "SBQ1" little-endian
HEADER_BYTES = 256
ALIGN = 64               # every section starts at a multiple of 64
BLOCK_ROWS = 32          # rows of a quantised matrix stored side by side
CLS_Q8, CLS_Q4 = 1, 2    # cls_type: how the token table / classifier is stored

# magic version | dim hidden L nh nkv V seq | flags format gs_dim gs_hid gs_cls cls_type | pad | file_bytes
_HEADER = struct.Struct("<2I7i6I4xQ")


class Header(NamedTuple):
    magic: int
    version: int
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    flags: int
    format: int
    gs_dim: int          # group size of matrices whose rows are dim wide
    gs_hid: int          # group size of w2 (rows hidden wide)
    gs_cls: int          # group size of the token table / classifier
    cls_type: int
    file_bytes: int

    @property
    def shared_classifier(self) -> bool:
        return bool(self.flags & 1)

    @property
    def cls_bits(self) -> int:
        return 4 if self.cls_type == CLS_Q4 else 8


class Section(NamedTuple):
    """One quantised matrix of the file."""
    name: str            # "token table", "wq[0]", ..., "classifier"
    offset: int
    rows: int
    cols: int
    group: int
    bits: int


def read_header(path: str) -> Header:
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES or struct.unpack_from("<I", head)[0] != MAGIC:
        raise StorybotError(f"{path} is not a storybot quantised model (no SBQ1 header)")
    return Header(*_HEADER.unpack_from(head))


def pad(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def matrix_bytes(rows: int, cols: int, group: int, bits: int) -> int:
    """Values plus one f32 scale per group, padded: Q8(n, g) = n + 4n/g, Q4(n, g) = n/2 + 4n/g."""
    n = rows * cols
    return pad(n * bits // 8 + n // group * 4)


def layout(h: Header) -> List[Section]:
    """Every quantised matrix in file order, checked against the header's file_bytes."""
    dim, hid, L, V = h.dim, h.hidden_dim, h.n_layers, h.vocab_size
    kv = dim // h.n_heads * h.n_kv_heads
    off = HEADER_BYTES + 2 * pad(L * dim * 4) + pad(dim * 4)     # rms_att, rms_ffn, rms_final
    out: List[Section] = []

    def add(name: str, rows: int, cols: int, group: int, bits: int) -> None:
        nonlocal off
        out.append(Section(name, off, rows, cols, group, bits))
        off += matrix_bytes(rows, cols, group, bits)

    add("token table", V, dim, h.gs_cls, h.cls_bits)
    for l in range(L):
        for name, rows, cols, group in (("wq", dim, dim, h.gs_dim), ("wk", kv, dim, h.gs_dim),
                                        ("wv", kv, dim, h.gs_dim), ("wo", dim, dim, h.gs_dim),
                                        ("w1", hid, dim, h.gs_dim), ("w2", dim, hid, h.gs_hid),
                                        ("w3", hid, dim, h.gs_dim)):
            add(f"{name}[{l}]", rows, cols, group, 8)
    if not h.shared_classifier:
        add("classifier", V, dim, h.gs_cls, h.cls_bits)
    if off != h.file_bytes:
        raise StorybotError(f"the SBQ layout in robot/models/sbq.py gives {off} bytes but the file's header "
                            f"records {h.file_bytes}; this storybot's Python and C disagree, rebuild it")
    return out
