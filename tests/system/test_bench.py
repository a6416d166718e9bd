"""`storybot bench` runs every variant side by side and reports ratios and peak RSS
(figures only: no test fails on speed)."""
import json
import statistics

import pytest

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


def test_bench_repeats_and_keeps_every_repetition(tmp_path, tiny):
    """-r N: N samples per variant, mean and standard deviation of each figure and of
    the ratios, every repetition kept (structure only: no figure is judged)."""
    r = run_cli("bench", "--model", tiny[0], "-n", 4, "-r", 3, "--variants", "naive-f32,fast-q8", "--json",
                "--dir", tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["repetitions"] == 3
    for name, v in rep["variants"].items():
        assert len(v["runs"]) == 3 and all(run["tok_per_s"] > 0 for run in v["runs"]), name
        assert v["tok_per_s"] == pytest.approx(statistics.mean(run["tok_per_s"] for run in v["runs"]))
        assert v["tok_per_s_stdev"] == pytest.approx(statistics.stdev(run["tok_per_s"] for run in v["runs"]))
        assert len(v["speedups_vs_naive_f32"]) == 3 and v["speedup_vs_naive_f32_stdev"] >= 0
    assert rep["variants"]["naive-f32"]["speedups_vs_naive_f32"] == [1.0, 1.0, 1.0]


def test_bench_table_shows_the_spread(tmp_path, tiny):
    r = run_cli("bench", "--model", tiny[0], "-n", 4, "-r", 2, "--variants", "naive-f32,fast-f32", "--dir", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "±" in r.stdout and "2 repetitions" in r.stdout, r.stdout


def test_bench_refuses_zero_repetitions(tmp_path, tiny):
    r = run_cli("bench", "--model", tiny[0], "-r", 0, "--dir", tmp_path)
    assert r.returncode == 2 and "repetitions" in r.stderr and "Traceback" not in r.stderr, r.stderr
