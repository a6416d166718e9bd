"""`storybot bench` runs every variant side by side and reports ratios and peak RSS
(figures only: no test fails on speed)."""
import json

from conftest import run_cli


def test_bench_shape_json(tmp_path):
    r = run_cli("bench", "--shape", "tiny", "-n", 8, "--json", "--dir", tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    v = rep["variants"]
    assert set(v) == {"naive-f32", "fast-f32", "fast-q8", "fast-q8q4"}
    assert v["naive-f32"]["speedup_vs_naive_f32"] == 1.0
    for r_ in v.values():
        assert r_["tok_per_s"] > 0 and r_["peak_rss_kb"] > 1000 and r_["weight_bytes_per_token"] > 0
    assert v["fast-q8"]["weight_bytes_per_token"] < v["fast-f32"]["weight_bytes_per_token"] / 3
    assert v["fast-q8q4"]["weight_bytes_per_token"] < v["fast-q8"]["weight_bytes_per_token"]


def test_bench_table(tmp_path, tiny):
    r = run_cli("bench", "--model", tiny[0], "-n", 4, "--variants", "naive-f32,fast-f32", "--dir", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "x naive" in r.stdout and "peak RSS" in r.stdout
