"""The report in a real headless Chromium: it renders without console errors, the table and
charts are there, the failure filter works, model text cannot run script, and a screenshot is
kept (under pytest's tmp dir) for a human to look at."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from harness.report import render
from harness.store import read_results
from harness.tester import VLMTester

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Chromium not installed (apt-get install chromium; .ci/run does it)")

EVIL = ('</script><script>document.title="pwned"</script>'
        '<img src=x onerror="document.body.dataset.pwned=1">')


def chromium(url: str, tmp: Path, *extra: str) -> tuple[str, list[str]]:
    """The DOM after load, and the console messages that were errors."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0", *extra, url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    console = [line for line in p.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if "Uncaught" in line or "ERROR:CONSOLE" in line or ":ERROR:" in line]
    return p.stdout, errors


@pytest.fixture(scope="module")
def report(fixtures_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser-runs")
    tester = VLMTester(out, limit=3, progress=False)
    tester.run(["fixture-qwen2_5_vl", "fixture-smolvlm-4bit"], ["synthetic-shapes", "natural"])
    df = read_results(tester.run_dir)
    assert (df["status"] == "ok").sum() == 12
    df.loc[df.index[0], "output"] = EVIL  # what a hostile model could answer
    return render(df, out / "report.html", title="browser test")


def test_the_console_check_can_fail(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>null.boom;</script></body></html>")
    _, errors = chromium(bad.as_uri(), tmp_path, "--dump-dom")
    assert errors and "Uncaught TypeError" in errors[0]


def test_renders_without_console_errors_and_shows_table_charts_gallery(report, tmp_path):
    dom, errors = chromium(report.as_uri(), tmp_path, "--dump-dom")
    assert errors == []
    assert 'data-ready="1"' in dom  # the script ran to the end
    assert len(re.findall(r'<tr data-model="', dom)) == 2
    assert len(re.findall(r'<figure id="chart-[^"]+"><img src="data:image/png;base64,', dom)) >= 4
    table = re.search(r'<table id="gallery"[^>]*>', dom).group(0)
    assert 'data-filter="all"' in table and 'data-shown="12"' in table
    assert "pwned" not in dom.split("<body")[1].split(">")[0] and "<title>browser test</title>" in dom
    assert "document.title=" in dom  # the hostile answer is on the page, as text


def test_the_failure_filter(report, tmp_path):
    dom, errors = chromium(report.as_uri() + "#failures", tmp_path, "--dump-dom")
    assert errors == []
    table = re.search(r'<table id="gallery"[^>]*>', dom).group(0)
    matching = int(re.search(r'data-matching="(\d+)"', table).group(1))
    body = dom.split('<tbody id="gallery-body">')[1].split("</tbody>")[0]
    shown = body.count('<tr class="fail">')
    assert 'data-filter="failures"' in table and 0 < matching <= 12
    assert shown == min(matching, 50) and '<tr class="pass">' not in body
    passes = 12 - matching  # random weights fail nearly everything; whatever passed is filtered out
    all_dom, _ = chromium(report.as_uri(), tmp_path, "--dump-dom")
    assert all_dom.count('<tr class="pass">') == passes


def test_screenshot_shows_the_page(report, tmp_path):
    shot = tmp_path / "report.png"
    _, errors = chromium(report.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1400,2000")
    assert errors == [] and shot.exists()
    im = Image.open(shot).convert("RGB")
    assert im.size == (1400, 2000)
    colours = im.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200  # text, shading and charts, not a blank page
    # matplotlib's first series colour (tab:blue) appears only in the charts
    blue = sum(n for n, (r, g, b) in colours if abs(r - 31) < 12 and abs(g - 119) < 12 and abs(b - 180) < 12)
    assert blue > 200
    print(f"screenshot: {shot}")
