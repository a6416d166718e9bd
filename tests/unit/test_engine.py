"""The engine against llama2.c's run.c: golden token ids, tokenizer round trips, the
Python API, and the kernel as a plain shared library loaded in cffi ABI mode."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, data_path, run_cli
from robot.kernel.engine import Model, Tokenizer
from robot.errors import StorybotError


def golden_cases():
    with open(data_path("golden_run_c.json")) as f:
        return json.load(f)


GOLDEN = golden_cases()
_models = {}


def _golden_model(case, kernel):
    key = (case["model"], case["tokenizer"], kernel)
    if key not in _models:
        _models[key] = Model(data_path(case["model"]), data_path(case["tokenizer"]), kernel=kernel)
    return _models[key]


@pytest.mark.parametrize("kernel", ["naive", "fast"])
@pytest.mark.parametrize("case", GOLDEN, ids=lambda c: f"{c['model']}-{c['prompt'][:12]!r}-t{c['temperature']}-p{c['topp']}-s{c['seed']}")
def test_golden_run_c(case, kernel):
    m = _golden_model(case, kernel)
    assert m.encode(case["prompt"]) == case["prompt_tokens"]
    gen = m.generate(case["prompt"], steps=case["steps"], temperature=case["temperature"], topp=case["topp"], seed=case["seed"])
    ids = [t.id for t in gen if t.id >= 0]
    assert ids == case["generated_tokens"]


def test_golden_through_cli():
    """The user-facing command prints the same ids run.c sampled."""
    case = next(c for c in GOLDEN if c["model"] == "stories260K.bin" and c["temperature"] == 1.0 and c["topp"] == 0.9)
    r = run_cli("--model", data_path(case["model"]), "-z", data_path(case["tokenizer"]),
                "-i", case["prompt"], "-n", case["steps"], "-t", case["temperature"], "-p", case["topp"],
                "-s", case["seed"], "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    ids = [x["token"] for x in lines if x["event"] == "token" and x["token"] >= 0]
    assert ids == case["generated_tokens"]
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["tokens"] == len(ids) and summary["peak_rss_kb"] > 0
    assert all(x["story"] == 1 for x in lines)
    assert "achieved tok/s" in r.stderr
    text = "".join(x["text"] for x in lines if "text" in x)
    assert len(text) > 50


@pytest.mark.parametrize("text", ["", "a", "Once upon a time", "  two  spaces", "café crème brûlée", "Ünïcödé ñ",
                                  "a dragon 🐉 and a 🦄!", "tab\tand\nnewline", "日本語の物語"])
def test_tokenizer_round_trip_real(text):
    tok = Tokenizer(data_path("tokenizer.bin"), 32000)
    ids = tok.encode(text)
    assert ids[0] == 1
    assert tok.decode(ids) == text


@pytest.mark.parametrize("text", ["", "a", "the little girl said hi", "é", "🐉 flies", "x\ny"])
def test_tokenizer_round_trip_synthetic(tiny, text):
    tok = Tokenizer(tiny[1], 512)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < 512 for i in ids)


def test_tokenizer_eos_and_merges(tiny):
    tok = Tokenizer(tiny[1], 512)
    ids = tok.encode("the", bos=False, eos=True)
    assert ids[-1] == 2
    # " the" exists as one piece in the synthetic vocabulary: the merges must reach it
    assert len(ids) == 2 and tok.piece(ids[0]) == b" the"


def test_emoji_uses_byte_fallback():
    tok = Tokenizer(data_path("tokenizer.bin"), 32000)
    ids = tok.encode("🦄", bos=False)
    pieces = [tok.piece(i) for i in ids]
    assert any(p.startswith(b"<0x") for p in pieces)


def test_generate_api(tiny):
    m = Model(*tiny)
    c = m.config
    assert (c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len) == (48, 128, 2, 6, 3, 512, 64)
    assert c.shared_classifier and c.format == "f32"
    gen = m.generate("the girl", steps=20, temperature=0.8, topp=0.9, seed=3)
    toks = list(gen)
    assert toks and all(hasattr(t, "id") and isinstance(t.text, str) for t in toks)
    assert gen.n_generated == len([t for t in toks if t.id >= 0])
    assert gen.tokens_per_second > 0
    again = [t.id for t in m.generate("the girl", steps=20, temperature=0.8, topp=0.9, seed=3)]
    assert again == [t.id for t in toks]


def test_forward_logits_buffer(tiny):
    np = pytest.importorskip("numpy")
    m = Model(*tiny)
    logits = m.forward(1, 0)
    a = np.frombuffer(logits, dtype=np.float32)
    assert a.shape == (512,) and np.isfinite(a).all()
    with pytest.raises(StorybotError):
        m.forward(512, 0)
    with pytest.raises(StorybotError):
        m.forward(1, 64)


def test_kernels_agree(tiny_unshared):
    np = pytest.importorskip("numpy")
    a, b = Model(*tiny_unshared, kernel="naive"), Model(*tiny_unshared, kernel="fast")
    assert not a.config.shared_classifier
    for pos, tok in enumerate([1, 40, 300, 7, 99]):
        la = np.array(a.forward(tok, pos))
        lb = np.array(b.forward(tok, pos))
        np.testing.assert_allclose(lb, la, rtol=1e-4, atol=1e-5)


def test_kv_f16_close_to_f32(tiny):
    np = pytest.importorskip("numpy")
    a, b = Model(*tiny), Model(*tiny, kv_f16=True)
    for pos, tok in enumerate([1, 40, 300, 7, 99, 12, 13]):
        la, lb = np.array(a.forward(tok, pos)), np.array(b.forward(tok, pos))
    assert np.abs(la - lb).max() < 1e-2 * (np.abs(la).max() + 1)
    assert b.session_bytes < a.session_bytes


def _build_plain_lib(tmp_path):
    out = tmp_path / "libstorybot.so"
    srcs = [os.path.join(ROOT, "_kernel", f) for f in os.listdir(os.path.join(ROOT, "_kernel")) if f.endswith(".c")]
    subprocess.run(["cc", "-O2", "-std=c11", "-fPIC", "-shared", "-o", str(out), *srcs, "-lm"], check=True)
    return out


def test_plain_shared_library_abi_mode(tmp_path, tiny):
    """The board loads a cross-built libstorybot.so with cffi's ABI mode: same header,
    no compiler, no Python inside the library."""
    lib = _build_plain_lib(tmp_path)
    nm = subprocess.run(["nm", "-D", "--undefined-only", str(lib)], capture_output=True, text=True).stdout
    assert "Py" not in nm
    r = run_cli("--model", tiny[0], "-z", tiny[1], "-i", "the girl", "-n", 24, "-s", 9, "--format", "jsonl",
                env={"STORYBOT_LIB": str(lib)})
    assert r.returncode == 0, r.stderr
    r2 = run_cli("--model", tiny[0], "-z", tiny[1], "-i", "the girl", "-n", 24, "-s", 9, "--format", "jsonl")
    ids = lambda out: [json.loads(x).get("token") for x in out.splitlines()][:-1]  # noqa: E731
    assert ids(r.stdout) == ids(r2.stdout) and ids(r.stdout)


def test_text_streams_and_prompt_echo(tiny):
    r = run_cli("--model", tiny[0], "-z", tiny[1], "-i", "the dog", "-n", 30, "-s", 4)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("the dog")
    assert "achieved tok/s" in r.stderr and "achieved" not in r.stdout


def test_module_entry_point_and_console_script():
    r = subprocess.run([sys.executable, "-m", "robot", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "--prompt" in r.stdout and "--topp" in r.stdout


@pytest.mark.parametrize("fmt", ["f32", "q8", "q8q4"])
def test_low_rss_changes_nothing_but_memory(tmp_path, tiny_unshared, fmt):
    np = pytest.importorskip("numpy")
    path = tiny_unshared[0]
    if fmt != "f32":
        path = Model(*tiny_unshared).quantize(str(tmp_path / f"m.{fmt}"), fmt)
    a, b = Model(path, tiny_unshared[1]), Model(path, tiny_unshared[1], low_rss=True)
    for pos, tok in enumerate([1, 40, 300, 7, 99]):
        assert np.array_equal(np.array(a.forward(tok, pos)), np.array(b.forward(tok, pos)))


def test_low_rss_keeps_the_resident_set_small():
    """The mapped weights leave the resident set after each step (the page cache keeps
    them): peak RSS of a story drops by most of the classifier's size."""
    model = data_path("tiny-unshared-32k.bin")  # a 6.1 MB fp32 classifier; of the table only used rows
    tok = data_path("tokenizer.bin")
    peak = {}
    for flag in ([], ["--low-rss"]):
        r = run_cli("--model", model, "-z", tok, "-n", 40, "-s", 3, "--format", "jsonl", *flag)
        assert r.returncode == 0, r.stderr
        peak[bool(flag)] = json.loads(r.stdout.splitlines()[-1])["peak_rss_kb"]
    assert peak[True] < peak[False] - 4 * 1024, peak


def test_fidelity_tool_retells_run_c():
    """tools/fidelity.py (the benchmark of how much of run.c's story a quantised model
    retells): its fp32 control is exact on every case, and q8 keeps part of every
    story set. Figures, not thresholds: they are in docs/formats.md."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "fidelity.py"),
                        "--golden", data_path("golden_run_c.json"), "--formats", "q8", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    for row in rows:
        if row["format"] == "f32":
            assert row["identical_stories"] == row["stories"] and row["shared_tokens"] == row["run_c_tokens"]
        else:
            assert 0 < row["shared_tokens"] < row["run_c_tokens"]
    print("\n".join(f"{r['model']} {r['format']}: {r['shared_tokens']}/{r['run_c_tokens']}" for r in rows))
