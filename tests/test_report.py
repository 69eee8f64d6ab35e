from __future__ import annotations

import html
import re
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from harness.report import _fmt, render
from harness.report.gallery import MAX_ROWS
from harness.report.tables import columns
from harness.stats import bootstrap_ci
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
        nat = g[g["suite"] == "natural"]["score"]
        lo, hi = bootstrap_ci(nat.to_numpy())
        assert got[(model, "acc:natural")] == f"{100 * nat.mean():.1f} [{100 * lo:.1f}–{100 * hi:.1f}] (n={len(nat)})"
        peak_gib = g["peak_mlx_bytes"].max() / 2**30
        assert got[(model, "tps_per_gib")] == _fmt(g["decode_tps"].mean() / peak_gib)
    assert len(got) == 2 * len(columns(df))


def test_the_report_says_what_fixtures_measure_and_where(results, tmp_path):
    page = render(read_results(results), tmp_path / "r.html").read_text()
    assert 'id="random-banner"' in page and "never a model's quality" in page
    assert 'id="cpu-banner"' in page
    for key in ("cpu", "mlx", "mlx_vlm", "python", "device"):
        assert f"<dt>{key}</dt>" in page
    # self-contained: nothing fetched from anywhere, scripts and images inline
    assert not re.search(r'<(script|img|link)[^>]+(src|href)="(?!data:)', page)
    assert "http" not in page.split("<body>")[0]
    for section in ('id="charts"', 'id="chart-decode-memory"', 'id="chart-accuracy"', 'id="chart-latency"',
                    'id="chart-image-size"', 'id="gallery"', 'id="gallery-data"'):
        assert section in page


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
    # the gallery's embedded JSON cannot close its script element early
    assert page.count("</script>") == 2 and "\\u003c/script\\u003e" in page


def test_bandwidth_bound_column_and_impossible_rates(results, tmp_path):
    df = read_results(results)
    fast = df["model"] == "fixture-qwen2_5_vl"
    df["decode_bound_tps"] = df["decode_tps"] * 2.0  # 50 % of the bound...
    df.loc[fast, "decode_bound_tps"] = df.loc[fast, "decode_tps"] / 1.25  # ...and an impossible 125 %
    page = render(df, tmp_path / "r.html").read_text()
    got = cells(page)
    assert got[("fixture-llava_next-4bit", "bw_pct")].startswith("50.0")
    assert got[("fixture-qwen2_5_vl", "bw_pct")].startswith("125")
    assert re.search(r'<td data-col="bw_pct" class="impossible" title="impossible: up to 125', page)
    # no bound recorded (an older run, or a machine whose bandwidth is unknown): no column
    for unbound in (df.drop(columns=["decode_bound_tps"]), df.assign(decode_bound_tps=float("nan"))):
        assert 'data-col="bw_pct"' not in render(unbound, tmp_path / "s.html").read_text()


def test_several_runs_get_a_comparison_and_a_history(results, tmp_path):
    a = read_results(results)
    b = a.copy()
    b["run_id"] = "later"
    b["recorded_at"] = b["recorded_at"] + pd.Timedelta(hours=1)
    b["ttft_s"] = b["ttft_s"] * 3  # planted: much slower
    page = render(pd.concat([a, b], ignore_index=True), tmp_path / "r.html").read_text()
    assert 'id="run-comparison"' in page and 'id="history-table"' in page and 'id="chart-history"' in page
    rows = re.findall(r"<tr><td class=\"l\">([^<]+)</td><td class=\"l\">([^<]+)</td><td class=\"l\">ttft_s</td>"
                      r".*?<td class=\"l verdict-(\w+)\"", page)
    assert rows and {v for *_, v in rows} <= {"regression", "unchanged"}
    assert "-200.0 %" in page  # three times the time: 200 % of the baseline lost


def test_100k_rows_render_in_seconds_into_a_bounded_page(results, tmp_path):
    real = read_results(results)
    real = real[real["sample_id"] != "*"]
    copies = -(-100_000 // len(real))
    big = real.iloc[np.tile(np.arange(len(real)), copies)[:100_000]].reset_index(drop=True)
    copy = pd.Series(np.repeat(np.arange(copies), len(real))[:100_000]).astype(str)
    big["sample_id"] = big["sample_id"].astype(str) + "-" + copy
    start = time.perf_counter()
    out = render(big, tmp_path / "big.html")
    seconds = time.perf_counter() - start
    size = out.stat().st_size
    print(f"100k rows: {seconds:.2f} s, {size / 1e6:.2f} MB")
    assert seconds < 30  # measured ~5 s on a shared 2-core box; the bound catches a quadratic slip
    assert size < 5e6
    page = out.read_text()
    assert "100000 sample rows" in page and f"holds the {MAX_ROWS} most telling" in page
