"""The C sampler against run.c's sampling written here in numpy: the same token for the
same logits and coin, over distributions from flat to peaked, vocabularies from 33 to
32,000, greedy, multinomial and top-p. The kernel takes shortcuts (it divides only the
probabilities it reads and sorts only the top exponent buckets of the candidates); this
is the check that they change nothing."""
import numpy as np
import pytest

from robot.kernel.lib import ffi, lib


class RunC:
    """xorshift64* and sample() from llama2.c's run.c, float32 throughout, sums in order."""

    def __init__(self, seed):
        self.state = seed

    def coin(self):
        s = self.state
        s ^= s >> 12
        s ^= (s << 25) & 0xFFFFFFFFFFFFFFFF
        s ^= s >> 27
        self.state = s
        return np.float32(((s * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF) >> 32 >> 8) / np.float32(16777216.0)

    def sample(self, logits, temperature, topp):
        x = np.array(logits, dtype=np.float32)
        if temperature == 0.0:
            return int(np.argmax(x))              # first of equal maxima, as run.c's strict >
        x = x / np.float32(temperature)
        # expf rounded from double: glibc's expf is within 0.502 ulp of the same value
        e = np.exp(x.astype(np.float64) - np.float64(x.max())).astype(np.float32)
        total = np.cumsum(e, dtype=np.float32)[-1]   # in order, in float32
        p = e / total
        coin = self.coin()
        if topp <= 0 or topp >= 1:
            cdf = np.cumsum(p, dtype=np.float32)
            hit = np.nonzero(coin < cdf)[0]
            return int(hit[0]) if len(hit) else len(p) - 1
        cutoff = (np.float32(1) - np.float32(topp)) / np.float32(len(p) - 1)
        idx = np.nonzero(p >= cutoff)[0]
        order = idx[np.argsort(-p[idx], kind="stable")]
        cum = np.cumsum(p[order], dtype=np.float32)
        over = np.nonzero(cum > np.float32(topp))[0]
        last = int(over[0]) if len(over) else len(order) - 1
        r = coin * cum[last]
        hit = np.nonzero(r < cum[:last + 1])[0]
        return int(order[hit[0]]) if len(hit) else int(order[last])


def lm_like(rng, n, spread, strong):
    """A broad bulk and a few strong candidates, like a language model's logits."""
    x = rng.normal(0.0, 1.0, n).astype(np.float32) * np.float32(spread)
    top = rng.choice(n, strong, replace=False)
    x[top] += np.float32(spread) * rng.uniform(1.5, 4.0, strong).astype(np.float32)
    return x


@pytest.mark.parametrize("n", [32000, 512, 33])
@pytest.mark.parametrize("temperature,topp", [(0.0, 0.9), (1.0, 0.9), (0.8, 0.95), (1.2, 0.5), (1.0, 1.0), (1.0, 0.0)])
def test_c_sampler_equals_run_c(n, temperature, topp):
    rng = np.random.default_rng(n * 7 + int(temperature * 10) + int(topp * 100))
    seed = 1234 + n
    smp = ffi.new("sb_sampler **")
    err = ffi.new("sb_error *")
    assert lib.sb_sampler_new(n, temperature, topp, seed, smp, err) == 0
    smp = ffi.gc(smp[0], lib.sb_sampler_free)
    ref = RunC(seed)
    picked = set()
    for t in range(60):
        x = lm_like(rng, n, spread=0.5 + (t % 6), strong=1 + t % 20)
        if t % 5 == 4:
            x[rng.choice(n, 4, replace=False)] = x.max()   # ties at the top
        want = ref.sample(x, temperature, topp)
        buf = ffi.new("float[]", n)
        ffi.memmove(buf, x.tobytes(), 4 * n)
        got = lib.sb_sample(smp, buf)
        assert got == want, f"step {t}: C picked {got}, run.c {want}"
        picked.add(got)
    assert lib.sb_sampler_state(smp) == ref.state    # one coin per sampled token, none for greedy
    if temperature > 0:
        assert len(picked) > 5                       # the draws really were random


def test_nan_logits_give_a_token_not_a_crash():
    n = 1000
    smp = ffi.new("sb_sampler **")
    assert lib.sb_sampler_new(n, 1.0, 0.9, 7, smp, ffi.NULL) == 0
    smp = ffi.gc(smp[0], lib.sb_sampler_free)
    buf = ffi.new("float[]", [float("nan")] * n)
    assert 0 <= lib.sb_sample(smp, buf) < n
