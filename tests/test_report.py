from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pandas as pd
import pytest

from harness.report import _fmt, render
from harness.store import ResultsStore, read_results
from harness.tester import VLMTester


@pytest.fixture(scope="module")
def results(fixtures_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-runs")
    tester = VLMTester(out, limit=3, progress=False)
    tester.run(["fixture-qwen2_5_vl", "fixture-llava_next-4bit"], ["synthetic-shapes", "natural"])
    return tester.run_dir / "results.parquet"


def cells(page: str) -> dict[tuple[str, str], str]:
    out = {}
    for model, row in re.findall(r'<tr data-model="([^"]+)">(.*?)</tr>', page, re.S):
        for col, text in re.findall(r'<td data-col="([^"]+)"[^>]*>(.*?)</td>', row, re.S):
            out[(html.unescape(model), col)] = html.unescape(text)
    return out


def test_every_number_in_the_table_is_recomputable_from_the_parquet(results, tmp_path):
    page = render(read_results(results), tmp_path / "r.html").read_text()
    got = cells(page)
    df = pd.read_parquet(results)  # plain pandas, not the harness's reader
    for model, g in df[df["status"] == "ok"].groupby("model"):
        def mean_std(col, scale=1.0, g=g):
            v = g[col] * scale
            return f"{_fmt(v.mean())} ± {_fmt(v.std(), 2)}"

        assert got[(model, "decode_tps")] == mean_std("decode_tps")
        assert got[(model, "prefill_tps")] == mean_std("prefill_tps")
        assert got[(model, "ttft_ms")] == mean_std("ttft_s", 1e3)
        assert got[(model, "size_mb")] == _fmt(g["model_size_bytes"].iloc[0] / 1e6)
        assert got[(model, "load_s")] == _fmt(g["load_s"].iloc[0])
        assert got[(model, "peak_mlx_gb")] == f"{_fmt(g['peak_mlx_bytes'].max() / 1e6)} MB"
        nat = g[g["suite_kind"] == "natural"]["score"]
        assert got[(model, "acc_natural")] == f"{100 * nat.mean():.1f} (n={len(nat)})"
    assert len(got) == 2 * 9


def test_the_report_says_what_fixtures_measure_and_where(results, tmp_path):
    page = render(read_results(results), tmp_path / "r.html").read_text()
    assert 'id="random-banner"' in page and "never a model's quality" in page
    assert 'id="cpu-banner"' in page
    for key in ("cpu", "mlx", "mlx_vlm", "python", "device"):
        assert f"<dt>{key}</dt>" in page
    assert "<script" not in page and "http" not in page.split("<body>")[0]  # self-contained


def test_model_text_and_errors_are_escaped(tmp_path):
    store = ResultsStore(tmp_path / "run")
    evil = "<script>alert(1)</script>"
    store.append([{
        "run_id": "r", "model": evil, "suite": "s", "suite_hash": "h", "sample_id": "x", "repeat": 0,
        "status": "error", "error": evil, "output": evil, "recorded_at": datetime.now(UTC),
    }])
    page = render(store.read(), tmp_path / "r.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
