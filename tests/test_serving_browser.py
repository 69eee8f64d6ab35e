"""The load report in a real headless Chromium: no console errors, the step table and four SVG
charts are there, text from the rows cannot run script, and screenshots at 1440 px and 390 px are
kept (under pytest's tmp dir) for a human to look at."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_serving import run, server  # noqa: F401  (the scripted local server fixture)

from harness.serving.metrics import summarise
from harness.serving.report import render
from harness.serving.rows import read_rows, write_rows
from harness.serving.sweep import Plan

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium not installed (apt-get install chromium)")
EVIL = '</script><script>document.title="pwned"</script><img src=x onerror="document.body.dataset.pwned=1">'


def chromium(url: str, tmp: Path, *extra: str) -> tuple[str, list[str]]:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0", *extra, url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    errors = [ln for ln in p.stderr.splitlines() if "CONSOLE" in ln and ("Uncaught" in ln or "ERROR" in ln)]
    return p.stdout, errors


@pytest.fixture(scope="module")
def report(server, tmp_path_factory) -> Path:  # noqa: F811
    tmp = tmp_path_factory.mktemp("load-report")
    rows = run(tmp, server, "planted", Plan(concurrency=(1, 2, 4), requests=4), timeout=10)
    rows["model"] = EVIL  # what a hostile server configuration could name itself
    rows.loc[rows.index[0], "output"] = EVIL
    write_rows(rows.to_dict("records"), tmp / "load.parquet")
    rows = read_rows(tmp)
    summary = summarise(rows, slo={"ttft": 0.15})
    return render(summary, rows, tmp / "report.html", title="load browser test", percentiles=(50, 90, 95, 99),
                  slo={"ttft": 0.15}, chunk_rule="content", sources=[str(tmp / "load.parquet")])


def test_load_report_renders_table_and_charts_and_runs_no_row_text(report, tmp_path):
    dom, errors = chromium(report.as_uri(), tmp_path, "--dump-dom")
    assert errors == []
    assert len(re.findall(r"<tr><td>concurrency \d", dom)) == 3
    assert len(re.findall(r'<figure id="[^"]+"( class="wide")?><img src="data:image/svg\+xml;base64,', dom)) == 4
    assert "pwned" not in dom.split("<body", 1)[1].split(">", 1)[0]  # no handler ran on <body>
    assert "<title>load browser test</title>" in dom


@pytest.mark.parametrize("width", [1440, 390])
def test_screenshots(report, tmp_path, width):
    shot = tmp_path / f"load-{width}.png"
    _, errors = chromium(report.as_uri(), tmp_path, f"--screenshot={shot}", f"--window-size={width},2400")
    assert errors == [] and shot.exists()
    im = Image.open(shot).convert("L")
    assert im.size == (width, 2400)
    # something is drawn across the page, not a blank or an error page
    assert len(np.unique(np.asarray(im.resize((64, 64))))) > 20
    print(f"screenshot: {shot}")


def _probe(report: Path, tmp: Path, width: int) -> tuple[int, int]:
    """(scrollWidth, clientWidth) of the steps table's box in Chromium at `width` px."""
    probe = tmp / f"probe-{width}.html"
    js = ("<script>window.addEventListener('load',()=>{const d=document.querySelector('.scroll');"
          "document.title='FIT '+d.scrollWidth+' '+d.clientWidth;});</script></body>")
    probe.write_text(report.read_text().replace("</body>", js))
    dom, errors = chromium(probe.as_uri(), tmp, "--dump-dom", f"--window-size={width},2400")
    assert errors == []
    scroll, client = map(int, re.search(r"<title>FIT (\d+) (\d+)</title>", dom).groups())
    return scroll, client


def test_the_steps_table_fits_1440_px_without_sideways_scrolling(report, tmp_path):
    scroll, client = _probe(report, tmp_path, 1440)
    assert scroll <= client, (scroll, client)  # E2EL p99 and every other column in view
    assert "E2EL p99 ms" in report.read_text()


def test_saturated_sweep_chart_spans_from_zero_and_keeps_the_saturation_marker(tmp_path):
    # Past saturation the steps achieve 5.230-5.240 requests/s: the axis must not zoom to that spread.
    from harness.serving.report import latency_figure, throughput_axis

    lo, hi = throughput_axis([2.0, 3.9, 5.230, 5.235, 5.240])
    assert lo == 0.0 and 5.24 * 1.05 < hi < 5.24 * 1.5
    rows = []
    for step, (c, thr) in enumerate([(1, 2.0), (2, 3.9), (4, 5.230), (8, 5.235), (16, 5.240)]):
        for i in range(10):
            t = 0.05 * c + 0.001 * i
            rows.append(dict(run_id="r", step=step, mode="concurrency", target_concurrency=c, target_rate=None,
                             arrivals="", model="m", suite="t", step_start_unix=100.0 * step, step_duration_s=10 / thr,
                             planned_s=0.0, sent_s=0.0, end_s=t + 0.1, status="ok", chunk_times_s=[t, t + 0.1],
                             chunk_has_content=[True, True], output_tokens_usage=2, output_tokens_counted=2,
                             prompt_tokens=5, score=None, max_tokens=8))
    summary = summarise(pd.DataFrame(rows))
    sat = summary.loc[summary["saturated"], "request_throughput"]
    assert len(sat) == 1
    fig = latency_figure(summary, "ttft", "TTFT", (50.0, 90.0, 99.0))
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((0.0, hi))  # not 5.230-5.240
    marker = [ln for ln in ax.get_lines() if ln.get_label() == "saturation point"]
    assert len(marker) == 1 and marker[0].get_xdata()[0] == pytest.approx(sat.iloc[0])
    assert ax.get_ylim()[1] > summary["ttft_p99_ms"].max()  # the top point is not on the frame
