"""Calibrated int8: GPTQ rounding for `storybot quantize --calibrate`.

Plain rounding puts every weight on its nearest int8 level on its own. GPTQ (Frantar et
al., 2022) rounds the columns of a matrix one after another and pushes each column's
rounding error onto the columns not yet rounded, weighted by how the model's real
inputs to that matrix correlate (H = sum of x x^T over calibration tokens), so that the
matrix's *outputs* on such inputs move as little as possible. The file format, the
kernels and the speed do not change: only which int8 value each weight gets, and its
group's scale (still absmax / 127 of the group, taken when the group's turn comes).

Runs on the PC, with numpy: an fp32 forward pass in numpy over the calibration tokens
gathers H for every matrix input, then the int8 matrices of the plainly rounded file
that the C quantiser wrote are rewritten in place (same layout, docs/formats.md); the
4-bit classifier of q8q4 too, with the C quantiser's 4-bit scale rule per group.

Calibration tokens: a text file (stories separated by <|endoftext|> or blank lines,
encoded with the model's tokenizer), or "self": stories the fp32 model tells itself."""
import os
import struct
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from robot.errors import StorybotError
from robot.models import sbq

SELF_PROMPTS = ("Once upon a time", "One day", "There was a little", "Lily and Tom", "The big dog", "A bird")


def _np() -> Any:
    try:
        import numpy
    except ImportError:
        raise StorybotError("--calibrate needs numpy on this computer (pip install numpy); "
                            "quantise without it, or on a PC that has it") from None
    return numpy


class _Fp32:
    """The fp32 checkpoint's arrays, mapped read-only (llama2.c's legacy layout)."""

    def __init__(self, path: str) -> None:
        np = _np()
        with open(path, "rb") as f:
            head = f.read(28)
        dim, hid, L, nh, nkv, V, seq = struct.unpack("<7i", head)
        self.shared = V > 0
        V = abs(V)
        self.dim, self.hid, self.L, self.nh, self.nkv, self.V, self.seq = dim, hid, L, nh, nkv, V, seq
        hs = dim // nh
        kv = hs * nkv
        data = np.memmap(path, dtype="<f4", mode="r", offset=28)
        off = 0

        def take(*shape: int) -> Any:
            nonlocal off
            n = 1
            for s in shape:
                n *= s
            a = data[off:off + n].reshape(shape)
            off += n
            return a
        self.tok = take(V, dim)
        self.rms_att = take(L, dim)
        self.wq, self.wk, self.wv, self.wo = take(L, dim, dim), take(L, kv, dim), take(L, kv, dim), take(L, dim, dim)
        self.rms_ffn = take(L, dim)
        self.w1, self.w2, self.w3 = take(L, hid, dim), take(L, dim, hid), take(L, hid, dim)
        self.rms_final = take(dim)
        off += seq * hs  # llama2.c's unused freq_cis block
        self.wcls = self.tok if self.shared else take(V, dim)


def _rmsnorm(np: Any, x: Any, w: Any) -> Any:
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5))


def hessians(ck: _Fp32, sequences: Sequence[Sequence[int]], log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """H for the input of every matrix, summed over all positions of all sequences:
    per layer 'att' (wq wk wv), 'o' (wo), 'ffn' (w1 w3), 'w2'; and 'cls'. `log` hears
    about every tenth of the stories."""
    np = _np()
    dim, L, nh, nkv = ck.dim, ck.L, ck.nh, ck.nkv
    hs = dim // nh
    H = {k: np.zeros((L, dim, dim)) for k in ("att", "o", "ffn")}
    H["w2"] = np.zeros((L, ck.hid, ck.hid))
    H["cls"] = np.zeros((dim, dim))
    freq = 1.0 / 10000.0 ** (np.arange(0, hs, 2) / hs)
    tenth = -1
    for i, toks in enumerate(sequences):
        if log and i * 10 // len(sequences) > tenth:
            tenth = i * 10 // len(sequences)
            log(f"inputs of the fp32 model: story {i + 1}/{len(sequences)}")
        T = len(toks)
        if T == 0:
            continue
        x = np.asarray(ck.tok[toks], dtype=np.float64)          # T x dim, all positions at once
        ang = np.arange(T)[:, None] * freq[None, :]
        cos, sin = np.cos(ang), np.sin(ang)

        def rope(v: Any, heads: int) -> Any:
            v = v.reshape(T, heads, hs // 2, 2)
            a, b = v[..., 0], v[..., 1]
            c, s = cos[:, None, :], sin[:, None, :]
            return np.stack([a * c - b * s, a * s + b * c], axis=-1).reshape(T, heads, hs)
        causal = np.triu(np.full((T, T), -np.inf), 1)
        for l in range(L):
            xb = _rmsnorm(np, x, ck.rms_att[l])
            H["att"][l] += xb.T @ xb
            q = rope(xb @ ck.wq[l].T, nh)
            k = rope(xb @ ck.wk[l].T, nkv)
            v = (xb @ ck.wv[l].T).reshape(T, nkv, hs)
            out = np.empty((T, nh, hs))
            for h in range(nh):
                kh = h // (nh // nkv)
                sc = q[:, h, :] @ k[:, kh, :].T / np.sqrt(hs) + causal
                p = np.exp(sc - sc.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                out[:, h, :] = p @ v[:, kh, :]
            out = out.reshape(T, dim)
            H["o"][l] += out.T @ out
            x = x + out @ ck.wo[l].T
            xb = _rmsnorm(np, x, ck.rms_ffn[l])
            H["ffn"][l] += xb.T @ xb
            a, b = xb @ ck.w1[l].T, xb @ ck.w3[l].T
            g = a / (1.0 + np.exp(-a)) * b
            H["w2"][l] += g.T @ g
            x = x + g @ ck.w2[l].T
        xf = _rmsnorm(np, x, ck.rms_final)
        H["cls"] += xf.T @ xf
    return H


Q4_ENDS = (6.5, 6.75, 7.0, 7.25, 7.5, 7.75, 8.0, -7.5, -7.75, -8.0, -8.25, -8.5, -8.75, -9.0)


def _q4_scales(np: Any, B: Any) -> Any:
    """Per row of B (rows x gs) the C quantiser's 4-bit scale rule: the largest-magnitude
    weight on +7, or with a negative scale on -8, tried around both ends, each refitted
    by least squares to the levels it picked, the least squared error kept."""
    rows = B.shape[0]
    mx = B[np.arange(rows), np.abs(B).argmax(axis=1)]

    def err(sc: Any) -> Tuple[Any, Any]:
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.clip(np.rint(B / sc[:, None]), -8, 7)
        q = np.nan_to_num(q)
        return ((B - sc[:, None] * q) ** 2).sum(axis=1), q
    best = mx / 7.0
    best_e, _ = err(best)
    for end in Q4_ENDS:
        _, q = err(mx / end)
        num, den = (q * B).sum(axis=1), (q * q).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            fit = np.where(den > 0, num / np.where(den > 0, den, 1), mx / end)
        e, _ = err(fit)
        take = np.isfinite(fit) & (fit != 0) & (e < best_e)
        best = np.where(take, fit, best)
        best_e = np.where(take, e, best_e)
    return np.where(mx == 0, 0.0, best).astype(np.float32)


def gptq(W: Any, H: Any, gs: int, bits: int = 8, damp: float = 0.01) -> Tuple[Any, Any]:
    """Integer values (int8 array, -127..127 or -8..7) and per-group scales (float32,
    rows x groups) for W, columns rounded in order with their error spread over the
    later columns (the inverse Hessian's Cholesky factor), one group of columns at a
    time. A group's scale follows the C quantiser's rule for `bits`, applied to the
    group's weights as the earlier groups' errors have left them."""
    np = _np()
    W = np.array(W, dtype=np.float64)
    rows, cols = W.shape
    H = np.array(H, dtype=np.float64)
    dead = np.diag(H) == 0                   # inputs that never varied: nothing to protect
    H[dead, dead] = 1.0
    H[np.diag_indices(cols)] += damp * np.mean(np.diag(H))
    U = np.linalg.cholesky(np.linalg.inv(H)).T
    lo, hi = (-127, 127) if bits == 8 else (-8, 7)
    q = np.zeros((rows, cols), dtype=np.int8)
    scales = np.zeros((rows, cols // gs), dtype=np.float32)
    for g0 in range(0, cols, gs):
        g1 = g0 + gs
        blk = W[:, g0:g1].astype(np.float32)
        if bits == 8:   # exactly as the C quantiser computes it
            s = (np.abs(blk).max(axis=1) / np.float32(127.0)).astype(np.float32)
        else:
            s = _q4_scales(np, blk.astype(np.float64))
        inv = np.where(s != 0, np.float32(1.0) / np.where(s != 0, s, 1), np.float32(0.0)).astype(np.float32)
        scales[:, g0 // gs] = s
        err = np.zeros((rows, gs))
        for j in range(g0, g1):
            col = W[:, j]
            qj = np.clip(np.rint(col.astype(np.float32) * inv), lo, hi)
            q[:, j] = qj.astype(np.int8)
            e = (col - qj * s.astype(np.float64)) / U[j, j]
            W[:, j + 1:g1] -= np.outer(e, U[j, j + 1:g1])
            err[:, j - g0] = e
        W[:, g1:] -= err @ U[g0:g1, g1:]
    return q, scales


def _nibbles(np: Any, q: Any, gs: int) -> Any:
    """4-bit rows as SBQ1 stores them: in each group, byte p holds column p (low nibble)
    and column p + gs/2 (high nibble), each as value + 8."""
    rows, cols = q.shape
    g = (q.astype(np.int16) + 8).astype(np.uint8).reshape(rows, cols // gs, 2, gs // 2)
    return (g[:, :, 0, :] | (g[:, :, 1, :] << 4)).reshape(rows, cols // 2)


def _blocks(q: Any, scales: Any, gs: int, bits: int = 8) -> bytes:
    """The SBQ1 bytes of a quantised matrix: per block of 32 rows its scales
    [group][row], then its value bytes [byte][row]."""
    np = _np()
    if bits == 4:
        q = _nibbles(np, q, gs)
    out = []
    for r0 in range(0, q.shape[0], sbq.BLOCK_ROWS):
        out.append(np.ascontiguousarray(scales[r0:r0 + sbq.BLOCK_ROWS].T).astype("<f4").tobytes())
        out.append(np.ascontiguousarray(q[r0:r0 + sbq.BLOCK_ROWS].T).tobytes())
    return b"".join(out)


_INPUTS = {"wq": "att", "wk": "att", "wv": "att", "wo": "o", "w1": "ffn", "w2": "w2", "w3": "ffn"}


def _target(ck: _Fp32, H: Dict[str, Any], name: str) -> Tuple[Any, Any]:
    """The fp32 weights and the input Hessian of the SBQ section `name` (robot/models/sbq.py)."""
    if name == "token table":
        # an unshared token table is only looked up, never multiplied: plain rounding is best
        return ck.tok, H["cls"] if ck.shared else None
    if name == "classifier":
        return ck.wcls, H["cls"]
    w, layer = name[:-1].split("[")
    l = int(layer)
    return getattr(ck, w)[l], H[_INPUTS[w]][l]


def rewrite(path: str, ck: _Fp32, H: Dict[str, Any], log: Optional[Callable[[str], None]] = None) -> None:
    """Replaces the quantised matrices of the SBQ1 file at path with GPTQ's, in place."""
    done = []
    layer = -1
    with open(path, "r+b") as f:
        for sec in sbq.layout(sbq.read_header(path)):
            w, h = _target(ck, H, sec.name)
            if h is None:
                continue
            if log and "[" in sec.name and int(sec.name[:-1].split("[")[1]) != layer:
                layer = int(sec.name[:-1].split("[")[1])
                log(f"GPTQ rounding: layer {layer + 1}/{ck.L}")
            q, s = gptq(w, h, sec.group, sec.bits)
            f.seek(sec.offset)
            f.write(_blocks(q, s, sec.group, sec.bits))
            done.append(sec.name)
        f.flush()
        os.fsync(f.fileno())
    if log:
        log(f"GPTQ rounded {len(done)} matrices ({done[0]} ... {done[-1]})")


def calibration_sequences(model: str, tokenizer: str, source: str, max_tokens: int) -> List[List[int]]:
    """Token id lists from a text file, or ("self") from stories the model tells."""
    from robot.kernel.engine import Model
    m = Model(model, tokenizer)
    seq = m.config.seq_len
    out, n = [], 0
    if source == "self":
        for i in range(10000):
            prompt = SELF_PROMPTS[i % len(SELF_PROMPTS)]
            ids = m.encode(prompt) + [t.id for t in m.generate(prompt, steps=seq, temperature=1.0, topp=0.9, seed=i + 1)]
            out.append(ids[:seq])
            n += len(out[-1])
            if n >= max_tokens:
                break
        return out
    if not os.path.isfile(source):
        raise StorybotError(f"cannot find the calibration text {source}; give a text file of stories, or 'self'")
    with open(source, encoding="utf-8", errors="replace") as f:
        text = f.read()
    parts = [p.strip() for p in text.replace("<|endoftext|>", "\n\n").split("\n\n")]
    for p in parts:
        if not p:
            continue
        ids = m.encode(p)[:seq]
        if len(ids) < 2:
            continue
        out.append(ids)
        n += len(ids)
        if n >= max_tokens:
            break
    if not out:
        raise StorybotError(f"the calibration text {source} holds no stories; give a text file of stories, or 'self'")
    return out
