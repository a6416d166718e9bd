"""The C forward pass against the independent numpy oracle (tests/oracle.py).

fp32: the logits of both kernels agree with the oracle (float64) within 1e-4 of the
largest logit, at every position of several shapes: grouped-query, multi-query,
separate classifier, a vocabulary that leaves a partial 32-row block.

Quantised (q8, q8q4, llama2.c int8): the oracle runs the file's own dequantised
weights and quantises every matrix input per group as the kernel does (16-bit for
storybot's int8 matrices, int8 for the 4-bit classifier and llama2.c's files), so the
same bound holds (5e-4 with 16-bit activations, see TIGHT_16; a kernel quantising
those to int8 fails it) -- until an int8 activation lands within TIE_MARGIN of a rounding
boundary. There the kernel, whose activations differ from the oracle's in the last
bits, may legitimately round the other way (measured: up to ~1.4e-2 when it does);
such a position is held only to LOOSE and the conversation starts again at position
0, since the KV cache would carry the difference on. Each case must keep at least
half of its positions tight (the seeds used keep 70-95 %)."""
import hashlib

import numpy as np
import pytest

import oracle
from conftest import data_path
from robot.models import modelgen, quantize
from robot.kernel.engine import Model

TIGHT = 1e-4        # max |C - oracle| / max |oracle|
# storybot's q8 matrices read 16-bit activations: a value the kernel rounds the other way
# than the oracle (their float32 / float64 inputs differ in the last bits) moves a logit
# by ~1/32767 of its group's maximum times the weights, up to 1.3e-4 seen on these shapes.
# An int8 activation anywhere (the old quantisation, or a wrong scale) is 1e-3 or more.
TIGHT_16 = 5e-4
LOOSE = 5e-2        # after a rounding tie (see above)
TIE_MARGIN = 1e-4   # in quantisation steps; flips were seen up to 2.3e-5 (4 shapes x 3 formats)

# name: (dim, hidden, layers, heads, kv_heads, vocab, seq), shared classifier
SHAPES = {
    "gqa": ((48, 128, 2, 6, 3, 512, 64), True),
    "unshared": ((32, 96, 2, 4, 4, 512, 48), False),
    "mqa": ((64, 160, 3, 8, 1, 512, 40), True),
    "gqa-unshared-oddvocab": ((96, 256, 2, 4, 2, 600, 24), False),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("oracle")
    out = {}
    for i, (name, (shape, shared)) in enumerate(SHAPES.items()):
        m = modelgen.write_checkpoint(str(d / f"{name}.bin"), *shape, shared=shared, seed=10 + i)
        t = modelgen.write_tokenizer(str(d / f"tok{name}.bin"), shape[5])
        out[name] = (m, t)
    return out


def tokens(n, vocab, seed):
    return [int(x) for x in np.random.default_rng(seed).integers(3, vocab, n)]


def rel_err(c, r):
    return float(np.abs(np.asarray(c, dtype=np.float64) - r).max() / np.abs(r).max())


def check_sequence(model, ck, toks, restart_on_tie=True):
    """Feeds toks to the kernel and a fresh oracle, position by position; returns how
    many positions were held to TIGHT. After a position with a rounding tie (held to
    LOOSE) both start a new conversation at position 0, so one tie taints nothing else."""
    o, pos, tight = oracle.Oracle(ck), 0, 0
    tol = TIGHT_16 if ck.format in ("q8", "q8q4") else TIGHT
    for t in toks:
        c = model.forward(t, pos)
        r = o.forward(t, pos)
        err = rel_err(c, r)
        if o.tie_margin < TIE_MARGIN:
            assert err <= LOOSE, f"position {pos}: relative error {err:.2e} even allowing for a rounding tie"
            if restart_on_tie:
                o, pos = oracle.Oracle(ck), 0
                continue
        else:
            assert err <= tol, f"position {pos}: relative error {err:.2e} > {tol}"
            tight += 1
        pos += 1
        if pos == ck.seq_len:
            o, pos = oracle.Oracle(ck), 0
    return tight


@pytest.mark.parametrize("kernel", ["naive", "fast"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_fp32_matches_oracle(models, name, kernel):
    path, tok = models[name]
    ck = oracle.read_checkpoint(path)
    m = Model(path, tok, kernel=kernel)
    toks = tokens(min(ck.seq_len, 32), ck.vocab_size, seed=1)
    assert check_sequence(m, ck, toks) == len(toks)  # nothing is quantised: never a tie


def quantised_file(src, fmt, tmp):
    if fmt == "llama2c":
        return oracle.write_llama2c_q8(str(tmp / "model.l2c"), oracle.read_checkpoint(src))
    out = str(tmp / f"model.{fmt}")
    quantize.quantize(src, out, fmt)
    return out


@pytest.mark.parametrize("fmt", ["q8", "q8q4", "llama2c"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_quantised_matches_oracle(models, name, fmt, tmp_path):
    src, tok = models[name]
    path = quantised_file(src, fmt, tmp_path)
    ck = oracle.read_checkpoint(path)
    assert ck.format == {"q8": "q8", "q8q4": "q8q4", "llama2c": "q8-llama2c"}[fmt]
    for kernel in ("naive", "fast"):
        m = Model(path, tok, kernel=kernel)
        assert m.config.format == ck.format
        toks = tokens(24, ck.vocab_size, seed=2)
        tight = check_sequence(m, ck, toks)
        assert tight >= len(toks) // 2, f"only {tight} of {len(toks)} positions were free of rounding ties"


def test_quantisation_is_visible(models, tmp_path):
    """The quantised comparisons would prove little if dequantisation were a no-op:
    q8 must differ from fp32 by far more than TIGHT, and q8q4 by more again."""
    src, tok = models["gqa"]
    ref = oracle.Oracle(oracle.read_checkpoint(src)).forward(5, 0)
    errs = {fmt: rel_err(Model(quantised_file(src, fmt, tmp_path), tok).forward(5, 0), ref) for fmt in ("q8", "q8q4")}
    assert 50 * TIGHT < errs["q8"] < errs["q8q4"]


# --- the real model and the larger-vocabulary golden models

@pytest.mark.parametrize("name", sorted(modelgen.FIXTURES))
def test_generated_golden_models_are_the_originals(name):
    """run.c's golden cases were made on these random models; the generated copies
    must be the very same bytes (tests/data/README.md)."""
    with open(data_path(name + ".bin"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == modelgen.FIXTURES[name][3]


@pytest.mark.parametrize("fname,tokname", [("stories260K.bin", "tok512.bin"),
                                           ("tiny-gqa-32k.bin", "tokenizer.bin"),
                                           ("tiny-unshared-32k.bin", "tokenizer.bin")])
def test_shared_models_match_oracle(fname, tokname):
    path, tok = data_path(fname), data_path(tokname)
    ck = oracle.read_checkpoint(path)
    m = Model(path, tok, kernel="fast")
    assert check_sequence(m, ck, tokens(16, ck.vocab_size, seed=4)) == 16


@pytest.mark.parametrize("kernel", ["naive", "fast"])
def test_llama2c_int8_of_stories260K(kernel, tmp_path):
    """A real model in llama2.c's own int8 layout (group size 4: the largest that
    divides both dim 64 and hidden 172) reads and runs like the oracle says."""
    src = data_path("stories260K.bin")
    tok = data_path("tok512.bin")
    path = oracle.write_llama2c_q8(str(tmp_path / "s260.l2c"), oracle.read_checkpoint(src))
    ck = oracle.read_checkpoint(path)
    assert ck.group_size == 4
    m = Model(path, tok, kernel=kernel)
    assert m.config.format == "q8-llama2c" and m.config.group_size == 4
    toks = m.encode("Once upon a time, there was a little girl named Lily. She loved to play outside.")
    assert check_sequence(m, ck, toks) >= len(toks) // 2
