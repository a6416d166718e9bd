"""Writes the seed corpus of the fuzz harnesses (tests/fuzz/corpus/{model,tokenizer}/):
tiny valid files in every model format, and the inputs that once tripped UBSan (issue
14, item 7), kept as regression cases. The files are committed; run this again only to
change the seeds:  .venv/bin/python tests/fuzz/make_corpus.py"""
import os
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [ROOT, os.path.dirname(HERE)]
from robot.models import modelgen  # noqa: E402
import subprocess  # noqa: E402
import oracle  # noqa: E402

OUT = os.path.join(HERE, "corpus")


def put(kind, name, data):
    os.makedirs(os.path.join(OUT, kind), exist_ok=True)
    with open(os.path.join(OUT, kind, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def models(tmp):
    # the smallest shapes that still have grouped-query heads and a partial row block
    for name, shape, shared in (("tiny", (8, 16, 1, 2, 1, 32, 8), True), ("unshared", (8, 12, 2, 2, 2, 24, 6), False)):
        f32 = os.path.join(tmp, name + ".bin")
        modelgen.write_checkpoint(f32, *shape, shared=shared, seed=3)
        put("model", name + ".f32", read(f32))
        for fmt in ("q8", "q8q4"):   # sb_quantize through build/kbench (make build/kbench)
            subprocess.run([os.path.join(ROOT, "build", "kbench"), "--quantize", f32, os.path.join(tmp, f"{name}.{fmt}"), fmt],
                           check=True, stdout=subprocess.DEVNULL)
            put("model", f"{name}.{fmt}", read(os.path.join(tmp, f"{name}.{fmt}")))
        oracle.write_llama2c_q8(os.path.join(tmp, name + ".l2q8"), oracle.read_checkpoint(f32))
        put("model", name + ".l2q8", read(os.path.join(tmp, name + ".l2q8")))
    # UBSan regressions. llama2.c int8 with tensors of 6 x 9 and 31 x 6 weights: every
    # scale array after the first sits off a 4-byte boundary
    odd = os.path.join(tmp, "odd.bin")
    modelgen.write_checkpoint(odd, 6, 9, 1, 3, 1, 31, 4, seed=4)
    oracle.write_llama2c_q8(os.path.join(tmp, "odd.l2q8"), oracle.read_checkpoint(odd), group_size=3)
    put("model", "ubsan-misaligned-scales.l2q8", read(os.path.join(tmp, "odd.l2q8")))
    # NaN weights: a NaN norm makes every activation NaN, which the int8/int16
    # activation quantiser once converted to int (undefined behaviour)
    q8 = bytearray(read(os.path.join(tmp, "tiny.q8")))
    q8[256:260] = struct.pack("<f", float("nan"))
    put("model", "ubsan-nan-norm.q8", bytes(q8))
    l2 = bytearray(read(os.path.join(tmp, "tiny.l2q8")))
    l2[256:260] = struct.pack("<f", float("nan"))
    put("model", "ubsan-nan-norm.l2q8", bytes(l2))
    # vocab_size INT32_MIN in an fp32 header: negated before it was checked
    put("model", "ubsan-vocab-int-min.f32", struct.pack("<7i", 8, 16, 1, 2, 1, -2**31, 8) + bytes(64))


def tokenizers(tmp):
    tok = os.path.join(tmp, "tok.bin")
    modelgen.write_tokenizer(tok, 400)
    data = read(tok)
    for name, text in (("words", "Once upon a time the girl saw a big dog."), ("utf8", "caf\u00e9 \u4e2d\U0001f600 x"),
                       ("empty", ""), ("spaces", "   the  the   ")):
        put("tokenizer", name, struct.pack("<I", len(data)) + data + text.encode())
    # a vocabulary of tied scores, where "leftmost first" decides every merge
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % i for i in range(256)] + [b" ", b"a", b"b", b"ab", b"ba", b"aba"]
    blob = struct.pack("<i", 3) + b"".join(struct.pack("<fi", 1.0, len(p)) + p for p in pieces)
    put("tokenizer", "ties", struct.pack("<I", len(blob)) + blob + b"abababa ba")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        models(tmp)
        tokenizers(tmp)
    print("corpus written to", OUT)
