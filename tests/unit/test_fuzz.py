"""Replays the committed fuzz corpus (tests/fuzz/corpus/) through the libFuzzer
harnesses under AddressSanitizer and UndefinedBehaviorSanitizer: the seeds in every
model format and the inputs that once tripped UBSan (misaligned scales, NaN and
subnormal weights, vocab_size INT32_MIN; issue 14, item 7). The harness is built with
libFuzzer where clang has it, else with tests/fuzz/driver.c as its main(); without
sanitizers at all it still catches crashes. The campaign itself is `make fuzz`
(docs/fuzzing.md)."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "_kernel"))
import buildvars  # noqa: E402

FUZZ = os.path.join(ROOT, "tests", "fuzz")
SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


def compilers():
    clang = shutil.which("clang-16") or shutil.which("clang")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if clang:
        yield clang, ["-fsanitize=fuzzer"] + SAN, []
        yield clang, SAN, ["driver.c"]
    if cc:
        yield cc, SAN, ["driver.c"]
        yield cc, [], ["driver.c"]


def build(tmp_path, harness):
    exe = str(tmp_path / harness)
    srcs = [os.path.join(FUZZ, f) for f in (harness + ".c", "memfile.c")]
    for cc, flags, extra in compilers():
        cmd = [cc, "-g", "-O1", "-std=c11", *flags, "-I", os.path.join(ROOT, "_kernel"), "-o", exe,
               *srcs, *[os.path.join(FUZZ, f) for f in extra], *buildvars.sources(), "-lm"]
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            return exe, " ".join([os.path.basename(cc), *flags])
    pytest.skip("no C compiler could build the fuzz harness")


@pytest.mark.parametrize("harness", ["fuzz_model", "fuzz_tokenizer"])
def test_corpus_replays_clean(tmp_path, harness):
    exe, how = build(tmp_path, harness)
    corpus = os.path.join(FUZZ, "corpus", harness.split("_", 1)[1])
    files = sorted(os.path.join(corpus, f) for f in os.listdir(corpus))
    assert len(files) >= 5
    env = dict(os.environ, UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1", ASAN_OPTIONS="abort_on_error=0")
    r = subprocess.run([exe, *files], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, f"{how}: {r.stderr[-3000:]}"
    assert "runtime error" not in r.stderr, f"{how}: {r.stderr[-3000:]}"


def test_ubsan_regressions_are_in_the_corpus():
    names = os.listdir(os.path.join(FUZZ, "corpus", "model"))
    for case in ("misaligned-scales", "nan-norm", "subnormal-scale", "vocab-int-min"):
        assert any(case in n for n in names), case
