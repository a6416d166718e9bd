"""sb_encode's merge loop (a heap over a linked list, _kernel/tokenizer.c) against
run.c's rule written here as run.c writes it: rescan every pair, merge the best score,
the leftmost on ties. Random texts over random vocabularies with many tied scores,
and a work count that must grow as n log n, not n^2 (no wall-clock anywhere)."""
import os
import random
import struct
import subprocess

import pytest

from conftest import ROOT, data_path
from robot.kernel.engine import Tokenizer


def read_vocab(path):
    with open(path, "rb") as f:
        data = f.read()
    max_len = struct.unpack_from("i", data, 0)[0]
    pieces, scores, pos = [], [], 4
    while pos < len(data):
        score, n = struct.unpack_from("fi", data, pos)
        pieces.append(data[pos + 8:pos + 8 + n].split(b"\0", 1)[0])
        scores.append(score)
        pos += 8 + n
    return max_len, pieces, scores


def reference_encode(vocab, text):
    """run.c's encode (dummy prefix, code points or byte fallback, greedy merges)."""
    max_len, pieces, scores = vocab
    ids = {}
    for i, p in enumerate(pieces):
        ids.setdefault(p, i)
    toks = [1]
    if text:
        if b" " in ids:
            toks.append(ids[b" "])
    i = 0
    while i < len(text):
        k = 1
        while i + k < len(text) and text[i + k] & 0xC0 == 0x80 and k < 4:
            k += 1
        ch = text[i:i + k]
        if ch in ids:
            toks.append(ids[ch])
        else:
            toks += [b + 3 if b + 3 < len(pieces) else 0 for b in ch]
        i += k
    while True:
        best, at, best_id = -1e10, -1, -1
        for j in range(len(toks) - 1):
            merged = pieces[toks[j]] + pieces[toks[j + 1]]
            if len(merged) > max_len:
                continue
            m = ids.get(merged)
            if m is not None and scores[m] > best:
                best, at, best_id = scores[m], j, m
        if at < 0:
            return toks
        toks[at:at + 2] = [best_id]


def write_vocab(path, pieces, scores):
    with open(path, "wb") as f:
        f.write(struct.pack("i", max(len(p) for p in pieces)))
        for p, s in zip(pieces, scores):
            f.write(struct.pack("fi", s, len(p)) + p)


def random_vocab(rng, alphabet):
    """Byte tokens, the letters, then random multi-letter pieces whose scores come
    from a handful of values, so ties (and -0.0 against 0.0) are everywhere."""
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % i for i in range(256)]
    pieces += [bytes([c]) for c in alphabet]
    seen = set(pieces)
    while len(pieces) < 259 + len(alphabet) + 150:
        p = bytes(rng.choice(alphabet) for _ in range(rng.randint(2, 6)))
        if p not in seen or rng.random() < 0.05:   # a few duplicate pieces too
            seen.add(p)
            pieces.append(p)
    ties = [0.0, -0.0, 1.0, 2.5, -3.0, -1e10, float("-inf")]
    scores = [0.0] * len(pieces)
    for i in range(259, len(pieces)):
        scores[i] = rng.choice(ties) if rng.random() < 0.7 else rng.uniform(-5, 5)
    return pieces, scores


@pytest.mark.parametrize("seed", range(6))
def test_merges_match_run_c_rule_on_random_vocabularies(tmp_path, seed):
    rng = random.Random(seed)
    alphabet = b" abcde"
    pieces, scores = random_vocab(rng, alphabet)
    path = tmp_path / "tok.bin"
    write_vocab(path, pieces, scores)
    vocab, tok = read_vocab(path), Tokenizer(path)
    chars = list(alphabet.decode()) + ["x", "\u00e9", "\u4e2d"]   # byte fallback too
    for _ in range(40):
        text = "".join(rng.choice(chars) for _ in range(rng.randint(0, 120))).encode()
        assert tok.encode(text) == reference_encode(vocab, text), text


def test_merges_match_run_c_rule_on_the_real_vocabulary():
    path = data_path("tokenizer.bin")
    stories = data_path("tinystories_val_1000.txt")
    vocab, tok = read_vocab(path), Tokenizer(path)
    with open(stories, "rb") as f:
        text = f.read(40000).decode("utf-8", "ignore").encode()
    rng = random.Random(7)
    for _ in range(25):
        a = rng.randrange(len(text) - 400)
        chunk = text[a:a + rng.randint(1, 400)].decode("utf-8", "ignore").encode()
        assert tok.encode(chunk) == reference_encode(vocab, chunk)


WORK_PROGRAM = r"""
#include "sb_internal.h"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    sb_tokenizer *t; sb_error e;
    if (sb_tokenizer_open(argv[1], 0, &t, &e)) { fprintf(stderr, "%s\n", e.message); return 2; }
    for (int a = 2; a < argc; a++) {
        size_t n = (size_t)atol(argv[a]);
        char *text = malloc(n);
        for (size_t i = 0; i < n; i++) text[i] = "the girl saw a big dog and ran home "[i % 36];
        int *tok = malloc((n + 3) * sizeof *tok), k; long work;
        if (sb_encode_counted(t, text, n, 1, 0, tok, (int)n + 3, &k, &e, &work)) return 3;
        printf("%zu %d %ld\n", n, k, work);
        free(text); free(tok);
    }
    return 0;
}
"""


def test_encode_work_grows_as_n_log_n(tmp_path, tiny):
    """100 KB of text took 6.8 s with the old rescanning loop. Asserted on the count of
    lookups and heap steps the encoder reports, never on time."""
    src = tmp_path / "work.c"
    src.write_text(WORK_PROGRAM)
    exe = tmp_path / "work"
    import sys
    sys.path.insert(0, os.path.join(ROOT, "_kernel"))
    import buildvars
    subprocess.run(["cc", "-O1", "-std=c11", "-I", os.path.join(ROOT, "_kernel"), "-o", str(exe), str(src),
                    *buildvars.sources(), "-lm"], check=True)
    r = subprocess.run([str(exe), tiny[1], "10000", "100000"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (n1, k1, w1), (n2, k2, w2) = [tuple(map(int, line.split())) for line in r.stdout.splitlines()]
    assert k2 < n2 / 2   # the merges did happen
    # n log n: 10x the text costs ~12.5x the work; the old loop cost ~100x
    assert w2 < 16 * w1
    assert w2 < 40 * n2 * 17
