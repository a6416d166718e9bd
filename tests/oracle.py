"""An independent numpy implementation of the llama2.c maths, for checking the C kernel.

Nothing here uses _kernel/ or robot/: the files are read from their documented byte
layouts (docs/formats.md) and the forward step is written out plainly in float64, so a
shared mistake would have to be made twice. Quantised models are run with their
dequantised weights, and every matrix input is quantised per group exactly as the
kernel does it (per group of the matrix's group size: int16 with scale = absmax/32767
for storybot's int8 matrices, int8 with scale = absmax/127 for its 4-bit classifier and
llama2.c's Q8_0), so the only difference left between the two is the order of summation.

    ck = read_checkpoint("model.bin")
    o = Oracle(ck)
    logits = o.forward(token, pos)

`write_llama2c_q8` writes llama2.c's own int8 export (export.py --version 2) from an
fp32 checkpoint, so the tests can check that users' existing files load.
"""
import struct

import numpy as np

LLAMA2C_Q8_MAGIC = 0x616B3432   # "ak42"
SBQ_MAGIC = 0x31514253          # "SBQ1"
SBQ_HEADER = 256
SBQ_ALIGN = 64
SBQ_BLOCK = 32
SBQ_FORMATS = {2: "q8", 3: "q8q4"}


class Tensor:
    """A weight matrix: `w` its values (dequantised when stored quantised), `gs` the
    group size the file used along each row (None for fp32), `kind` f32/q8/q4, and
    the raw integer values and scales for tests that look at the encoding itself."""

    def __init__(self, w, kind="f32", gs=None, q=None, s=None):
        self.w, self.kind, self.gs, self.q, self.s = w, kind, gs, q, s

    @property
    def shape(self):
        return self.w.shape


class Checkpoint:
    FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")

    def __init__(self, shape, shared, fmt):
        for k, v in zip(self.FIELDS, shape):
            setattr(self, k, int(v))
        self.shared = bool(shared)
        self.format = fmt
        self.group_size = 0
        self.extra = {}

    @property
    def head_size(self):
        return self.dim // self.n_heads

    @property
    def kv_dim(self):
        return self.head_size * self.n_kv_heads

    def shape_tuple(self):
        return tuple(getattr(self, k) for k in self.FIELDS)


class _Reader:
    def __init__(self, data):
        self.data = data
        self.off = 0

    def take(self, dtype, count):
        dt = np.dtype(dtype)
        end = self.off + dt.itemsize * count
        if end > len(self.data):
            raise ValueError(f"file ends at {len(self.data)} but needs {end}")
        a = np.frombuffer(self.data, dtype=dt, count=count, offset=self.off)
        self.off = end
        return a

    def skip_to(self, off):
        self.off = off

    def align(self, n):
        self.off = (self.off + n - 1) // n * n


def _dequant_q8(q, s, rows, cols, gs):
    w = q.astype(np.float64).reshape(-1, gs) * s.astype(np.float64)[:, None]
    return w.reshape(rows, cols)


def _dequant_q4(packed, s, rows, cols, gs):
    # in each group, byte j carries element j in its low nibble and j + gs/2 in its high one
    b = packed.reshape(-1, gs // 2)
    vals = np.concatenate([(b & 15).astype(np.int64) - 8, (b >> 4).astype(np.int64) - 8], axis=1)
    return (vals.astype(np.float64) * s.astype(np.float64)[:, None]).reshape(rows, cols), vals


# ------------------------------------------------------------------ llama2.c fp32

def _read_f32(data):
    r = _Reader(data)
    h = r.take("<i4", 7)
    shared = h[5] > 0
    shape = list(h)
    shape[5] = abs(int(h[5]))
    ck = Checkpoint(shape, shared, "f32")
    dim, hid, L, V = ck.dim, ck.hidden_dim, ck.n_layers, ck.vocab_size
    kv = ck.kv_dim

    def mats(rows, cols):
        return [Tensor(r.take("<f4", rows * cols).astype(np.float64).reshape(rows, cols)) for _ in range(L)]

    ck.tok = Tensor(r.take("<f4", V * dim).astype(np.float64).reshape(V, dim))
    ck.rms_att = r.take("<f4", L * dim).astype(np.float64).reshape(L, dim)
    ck.wq, ck.wk, ck.wv, ck.wo = mats(dim, dim), mats(kv, dim), mats(kv, dim), mats(dim, dim)
    ck.rms_ffn = r.take("<f4", L * dim).astype(np.float64).reshape(L, dim)
    ck.w1, ck.w2, ck.w3 = mats(hid, dim), mats(dim, hid), mats(hid, dim)
    ck.rms_final = r.take("<f4", dim).astype(np.float64)
    r.take("<f4", ck.seq_len * ck.head_size)  # freq_cis real and imaginary halves: unused
    ck.wcls = ck.tok if shared else Tensor(r.take("<f4", V * dim).astype(np.float64).reshape(V, dim))
    if r.off != len(data):
        raise ValueError(f"fp32 checkpoint has {len(data) - r.off} bytes after its last tensor")
    return ck


# ------------------------------------------------------------------ llama2.c v2 (Q8_0)

def _read_llama2c_q8(data):
    r = _Reader(data)
    magic, version = r.take("<u4", 1)[0], r.take("<i4", 1)[0]
    assert magic == LLAMA2C_Q8_MAGIC
    if version != 2:
        raise ValueError(f"llama2.c export version {version}")
    h = r.take("<i4", 7)
    shared = r.take("u1", 1)[0]
    gs = int(r.take("<i4", 1)[0])
    ck = Checkpoint(h, shared, "q8-llama2c")
    ck.group_size = gs
    r.skip_to(256)
    dim, hid, L, V, kv = ck.dim, ck.hidden_dim, ck.n_layers, ck.vocab_size, ck.kv_dim
    ck.rms_att = r.take("<f4", L * dim).astype(np.float64).reshape(L, dim)
    ck.rms_ffn = r.take("<f4", L * dim).astype(np.float64).reshape(L, dim)
    ck.rms_final = r.take("<f4", dim).astype(np.float64)

    def q8(rows, cols):
        n = rows * cols
        q = r.take("i1", n)
        s = r.take("<f4", n // gs)
        return Tensor(_dequant_q8(q, s, rows, cols, gs), "q8", gs, q, s)

    ck.tok = q8(V, dim)
    ck.wq = [q8(dim, dim) for _ in range(L)]
    ck.wk = [q8(kv, dim) for _ in range(L)]
    ck.wv = [q8(kv, dim) for _ in range(L)]
    ck.wo = [q8(dim, dim) for _ in range(L)]
    ck.w1 = [q8(hid, dim) for _ in range(L)]
    ck.w2 = [q8(dim, hid) for _ in range(L)]
    ck.w3 = [q8(hid, dim) for _ in range(L)]
    ck.wcls = ck.tok if shared else q8(V, dim)
    if r.off != len(data):
        raise ValueError(f"llama2.c int8 file has {len(data) - r.off} bytes after its last tensor")
    return ck


# ------------------------------------------------------------------ storybot SBQ1

def sbq_header(data):
    """The SBQ1 header fields by name (offsets as in docs/formats.md)."""
    magic, version = struct.unpack_from("<II", data, 0)
    shape = struct.unpack_from("<7i", data, 8)
    flags, fmt, gs_dim, gs_hid, gs_cls, cls_type = struct.unpack_from("<6I", data, 36)
    (file_bytes,) = struct.unpack_from("<Q", data, 64)
    return dict(magic=magic, version=version, shape=shape, flags=flags, format=fmt, gs_dim=gs_dim,
                gs_hid=gs_hid, gs_cls=gs_cls, cls_type=cls_type, file_bytes=file_bytes)


def sbq_size(shape, shared, gs_dim, gs_hid, gs_cls, cls_q4):
    """Bytes of an SBQ1 file, from the layout alone."""
    dim, hid, L, nh, nkv, V, _ = shape
    kv = dim // nh * nkv

    def pad(n):
        return (n + SBQ_ALIGN - 1) // SBQ_ALIGN * SBQ_ALIGN

    def q8(n, gs):
        return pad(n + n // gs * 4)

    cls = pad(V * dim // 2 + V * dim // gs_cls * 4) if cls_q4 else q8(V * dim, gs_cls)
    n = SBQ_HEADER + 2 * pad(L * dim * 4) + pad(dim * 4) + cls
    n += L * (2 * q8(dim * dim, gs_dim) + 2 * q8(kv * dim, gs_dim) + 2 * q8(hid * dim, gs_dim) + q8(dim * hid, gs_hid))
    return n + (0 if shared else cls)


def _read_sbq(data):
    h = sbq_header(data)
    if h["version"] != 2:
        raise ValueError(f"SBQ version {h['version']}")
    ck = Checkpoint(h["shape"], h["flags"] & 1, SBQ_FORMATS[h["format"]])
    gs_dim, gs_hid, gs_cls = h["gs_dim"], h["gs_hid"], h["gs_cls"]
    cls_q4 = h["cls_type"] == 2
    ck.group_size = gs_dim
    ck.extra = h
    r = _Reader(data)
    r.skip_to(SBQ_HEADER)
    dim, hid, L, V, kv = ck.dim, ck.hidden_dim, ck.n_layers, ck.vocab_size, ck.kv_dim

    def norms(n):
        a = r.take("<f4", n).astype(np.float64)
        r.align(SBQ_ALIGN)
        return a

    ck.rms_att = norms(L * dim).reshape(L, dim)
    ck.rms_ffn = norms(L * dim).reshape(L, dim)
    ck.rms_final = norms(dim)

    def blocked(rows, cols, gs, nibbles):
        # SBQ1 keeps matrices in blocks of SBQ_BLOCK rows (fewer in the last): the
        # block's scales as [group][row], then its value bytes as [byte][row]
        groups, vrow = cols // gs, cols // 2 if nibbles else cols
        scales, values = [], []
        for r0 in range(0, rows, SBQ_BLOCK):
            rr = min(SBQ_BLOCK, rows - r0)
            scales.append(r.take("<f4", groups * rr).reshape(groups, rr).T)
            values.append(r.take("i1" if not nibbles else "u1", vrow * rr).reshape(vrow, rr).T)
        r.align(SBQ_ALIGN)
        return np.concatenate(values).reshape(-1), np.concatenate(scales).reshape(-1)

    def q8(rows, cols, gs):
        q, s = blocked(rows, cols, gs, False)
        return Tensor(_dequant_q8(q, s, rows, cols, gs), "q8", gs, q, s)

    def q4(rows, cols, gs):
        packed, s = blocked(rows, cols, gs, True)
        w, vals = _dequant_q4(packed, s, rows, cols, gs)
        return Tensor(w, "q4", gs, vals.reshape(-1), s)

    cls = q4 if cls_q4 else q8
    ck.tok = cls(V, dim, gs_cls)
    ck.wq, ck.wk, ck.wv, ck.wo, ck.w1, ck.w2, ck.w3 = ([] for _ in range(7))
    for _ in range(L):  # SBQ1 keeps each layer's matrices together
        ck.wq.append(q8(dim, dim, gs_dim))
        ck.wk.append(q8(kv, dim, gs_dim))
        ck.wv.append(q8(kv, dim, gs_dim))
        ck.wo.append(q8(dim, dim, gs_dim))
        ck.w1.append(q8(hid, dim, gs_dim))
        ck.w2.append(q8(dim, hid, gs_hid))
        ck.w3.append(q8(hid, dim, gs_dim))
    ck.wcls = ck.tok if ck.shared else cls(V, dim, gs_cls)
    if r.off != len(data):
        raise ValueError(f"SBQ file has {len(data) - r.off} bytes after its last tensor")
    return ck


def read_checkpoint(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack_from("<I", data, 0)[0] if len(data) >= 4 else 0
    if magic == LLAMA2C_Q8_MAGIC:
        return _read_llama2c_q8(data)
    if magic == SBQ_MAGIC:
        return _read_sbq(data)
    return _read_f32(data)


# ------------------------------------------------------------------ forward

def act_levels(gs, bits):
    """The largest quantised activation: 127 at 8 bits; at 16 bits 32767, less for
    groups so wide (> 512) that gs * 128 * level would overflow an int32 sum."""
    if bits == 8:
        return 127
    return 32767 if gs <= 512 else int(2147483647.0 / (128.0 * gs))


def quantize_act(x, gs, bits=8):
    """x as the kernel sees it after group quantisation to `bits` (float32 arithmetic,
    ties to even), returned dequantised, with the distance (in quantisation steps) of
    the value that came closest to a rounding boundary: below ~1e-4 the kernel, whose x
    differs from ours in the last bits, may round that value the other way."""
    g = np.asarray(x, dtype=np.float32).reshape(-1, gs)
    amax = np.abs(g).max(axis=1)
    scale = (amax / np.float32(act_levels(gs, bits))).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(scale > 0, np.float32(1.0) / scale, np.float32(0.0)).astype(np.float32)
    y = g * inv[:, None]
    q = np.rint(y)
    margin = float(np.min(np.abs(np.abs(y - np.floor(y)) - 0.5))) if y.size else 0.5
    return (q.astype(np.float64) * scale.astype(np.float64)[:, None]).reshape(-1), margin


def rmsnorm(x, w):
    return w * (x / np.sqrt(np.mean(x * x) + 1e-5))


class Oracle:
    """One conversation with a checkpoint: a KV cache and forward(token, pos)."""

    def __init__(self, ck, quantize_activations=None):
        self.ck = ck
        self.qact = ck.format != "f32" if quantize_activations is None else quantize_activations
        # smallest distance to a rounding boundary of any activation quantised in the
        # last forward step (0.5 when nothing was quantised); see quantize_act
        self.tie_margin = 0.5
        self.kcache = np.zeros((ck.n_layers, ck.seq_len, ck.kv_dim))
        self.vcache = np.zeros((ck.n_layers, ck.seq_len, ck.kv_dim))

    # A 16-bit quantiser flipping a value the other way than the kernel costs 1/32767 of
    # its group's maximum: too little to count as a tie. But those flips move the
    # kernel's later activations by up to ~3e-3 int8 steps (seen on the test shapes),
    # against ~2e-5 when only float32 sums differ, so an int8 quantiser downstream of
    # 16-bit ones (the 4-bit classifier of q8q4) reports its margin divided by 50.
    DRIFT_AFTER_16_BITS = 50.0

    def linear(self, t, x):
        if self.qact and t.gs:
            bits = 16 if t.kind == "q8" and self.ck.format != "q8-llama2c" else 8
            x, margin = quantize_act(x, t.gs, bits)
            if bits == 8:
                drift = self.DRIFT_AFTER_16_BITS if self.ck.format == "q8q4" else 1.0
                self.tie_margin = min(self.tie_margin, margin / drift)
        return t.w @ x

    def forward(self, token, pos):
        ck = self.ck
        hs, nh, nkv = ck.head_size, ck.n_heads, ck.n_kv_heads
        self.tie_margin = 0.5
        x = ck.tok.w[token].astype(np.float64).copy()
        # rotary embedding: pair (2i, 2i+1) of each head turns by pos / 10000^(2i/hs)
        pair = np.arange(0, hs, 2)
        theta = pos * (1.0 / 10000.0 ** (pair / hs))
        cos, sin = np.cos(theta), np.sin(theta)

        def rope(v, heads):
            v = v.reshape(heads, hs // 2, 2)
            a, b = v[..., 0], v[..., 1]
            return np.stack([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(-1)

        for l in range(ck.n_layers):
            xb = rmsnorm(x, ck.rms_att[l])
            q = rope(self.linear(ck.wq[l], xb), nh)
            k = rope(self.linear(ck.wk[l], xb), nkv)
            v = self.linear(ck.wv[l], xb)
            self.kcache[l, pos] = k
            self.vcache[l, pos] = v
            keys = self.kcache[l, :pos + 1].reshape(pos + 1, nkv, hs)
            vals = self.vcache[l, :pos + 1].reshape(pos + 1, nkv, hs)
            out = np.empty((nh, hs))
            for h in range(nh):
                kh = h // (nh // nkv)  # grouped-query: heads share kv heads in blocks
                scores = keys[:, kh, :] @ q[h * hs:(h + 1) * hs] / np.sqrt(hs)
                p = np.exp(scores - scores.max())
                p /= p.sum()
                out[h] = p @ vals[:, kh, :]
            x = x + self.linear(ck.wo[l], out.reshape(-1))
            xb = rmsnorm(x, ck.rms_ffn[l])
            a = self.linear(ck.w1[l], xb)
            b = self.linear(ck.w3[l], xb)
            x = x + self.linear(ck.w2[l], a / (1.0 + np.exp(-a)) * b)
        x = rmsnorm(x, ck.rms_final)
        return self.linear(ck.wcls, x)


# ------------------------------------------------------------------ llama2.c int8 writer

def q8_0(w, gs):
    """llama2.c's Q8_0: the tensor flattened into groups of gs, scale = absmax/127,
    values w/scale rounded half to even."""
    g = np.asarray(w, dtype=np.float32).reshape(-1, gs)
    scale = (np.abs(g).max(axis=1) / np.float32(127.0)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1.0))
    q = np.rint(g / safe[:, None]).astype(np.int8)
    return q.reshape(-1), scale


def llama2c_group_size(dim, hidden_dim, start=64):
    """export.py halves 64 until it divides dim; we also need it to divide hidden_dim,
    or w2's groups would straddle rows (which run.c's int8 matmul cannot read)."""
    gs = start
    while dim % gs or hidden_dim % gs:
        gs //= 2
    return gs


def write_llama2c_q8(path, ck, group_size=None):
    """llama2.c export.py --version 2 layout, written from an fp32 Checkpoint."""
    if ck.format != "f32":
        raise ValueError("write_llama2c_q8 needs an fp32 checkpoint")
    gs = group_size or llama2c_group_size(ck.dim, ck.hidden_dim)
    head = struct.pack("<Ii7iBi", LLAMA2C_Q8_MAGIC, 2, *ck.shape_tuple(), int(ck.shared), gs)
    with open(path, "wb") as f:
        f.write(head + b"\0" * (256 - len(head)))
        for a in (ck.rms_att, ck.rms_ffn, ck.rms_final):
            f.write(np.asarray(a, dtype="<f4").tobytes())
        tensors = [ck.tok] + ck.wq + ck.wk + ck.wv + ck.wo + ck.w1 + ck.w2 + ck.w3
        if not ck.shared:
            tensors.append(ck.wcls)
        for t in tensors:
            q, s = q8_0(t.w, gs)
            f.write(q.tobytes())
            f.write(s.astype("<f4").tobytes())
    return path
