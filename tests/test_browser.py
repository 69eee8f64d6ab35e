"""The report in a real headless Chromium, driven over the DevTools protocol: at 1440 px and at a
390 px phone viewport the page is no wider than the screen, the summary names a winner or a tie
per question, headers sort, the gallery's filters and deep links work, nothing logs an error and
model text cannot run script. Full-page screenshots are kept under pytest's tmp dir, and copied to
$VLM_HARNESS_ARTIFACTS when it is set, for a human to look at.

Chromium's --window-size cannot go below 500 px, so the phone width is set with
Emulation.setDeviceMetricsOverride, as DevTools' device mode does.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.report import render
from harness.results.store import read_results
from harness.run.tester import VLMTester

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Chromium not installed (apt-get install chromium; .ci/run does it)")

EVIL = ('</script><script>document.title="pwned"</script>'
        '<img src=x onerror="document.body.dataset.pwned=1">')
WIDTHS = (1440, 390)


class Page:
    """One Chromium tab over the DevTools protocol (websockets' sync client; no other dependency)."""

    def __init__(self, profile: Path):
        from websockets.sync.client import connect

        profile.mkdir(parents=True, exist_ok=True)
        port_file = profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=30).__enter__()
        self.next_id = 0
        self.errors: list[str] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def _event(self, msg: dict) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(p["exceptionDetails"])[:400])
        elif method == "Runtime.consoleAPICalled" and p.get("type") == "error":
            self.errors.append(json.dumps(p.get("args"))[:400])
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error" and "favicon" not in p["entry"].get("url", ""):
            self.errors.append(p["entry"]["text"][:400])

    def call(self, method: str, wait_event: str | None = None, **params) -> dict:
        self.next_id += 1
        me = self.next_id
        self.ws.send(json.dumps({"id": me, "method": method, "params": params}))
        result, seen = None, wait_event is None
        deadline = time.monotonic() + 90
        while result is None or not seen:
            msg = json.loads(self.ws.recv(timeout=max(1.0, deadline - time.monotonic())))
            if msg.get("id") == me:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result = msg["result"]
            else:
                self._event(msg)
                seen = seen or msg.get("method") == wait_event
        return result

    def open(self, url: str, width: int, height: int = 900) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=width < 600)
        # A blank page first: a link that differs only in its #fragment would otherwise be a
        # same-document navigation, which fires no load event.
        self.call("Page.navigate", "Page.loadEventFired", url="about:blank")
        self.call("Page.navigate", "Page.loadEventFired", url=url)
        self.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def eval(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """The whole page, top to bottom, at the emulated width."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - closing what may never have opened
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    p = Page(tmp_path_factory.mktemp("chromium-profile"))
    yield p
    p.close()


def keep(shot: Path) -> None:
    """Copy a screenshot to $VLM_HARNESS_ARTIFACTS (CI uploads it) when that is set."""
    dest = os.environ.get("VLM_HARNESS_ARTIFACTS")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(dest) / shot.name)
    print(f"screenshot: {shot}")


@pytest.fixture(scope="module")
def run(fixtures_root, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("browser-runs")
    tester = VLMTester(out, limit=3, progress=False, round_samples=0)  # split: one row a sample
    tester.run(["fixture-qwen2_5_vl", "fixture-smolvlm-4bit"], ["synthetic-shapes", "natural"])
    df = read_results(tester.run_dir)
    assert (df["status"] == "ok").sum() == 12
    df.loc[df.index[0], "output"] = EVIL  # what a hostile model could answer
    return tester.run_dir, df


@pytest.fixture(scope="module")
def load_runs(tmp_path_factory) -> Path:
    """A concurrency sweep against the scripted server, with its own report, as `vlm-harness load` leaves it."""
    import json as _json

    from servers import scripted_server

    from harness.core.records import Sample
    from harness.serving.loadgen import Target
    from harness.serving.report import publish
    from harness.serving.requests import LoadRequest, chat_body
    from harness.serving.rows import read_rows
    from harness.serving.sweep import LoadRun, Plan, run_load

    loads = tmp_path_factory.mktemp("load")
    image = str(Path(__file__).resolve().parent.parent / "datasets/natural/images/chelsea.png")
    s = Sample("t", "s0", (image,), "What animal is this?", ("cat",), "object", "exact_match", 8)
    reqs = [LoadRequest(s, "h", 8, _json.dumps(chat_body(s, "planted", 8, "url")).encode())]
    with scripted_server() as url:
        lr = LoadRun("sweep-browser", loads / "sweep-browser", Target(url, "planted", timeout_s=10.0), "url")
        run_load(lr, Plan(concurrency=(1, 2), requests=4, warmup=1), reqs)
    publish(read_rows(lr.path), lr.run_dir / "report.html", title="load", percentiles=(50, 90), slo={},
            chunk_rule="content", sources=[str(lr.path)])
    return loads


@pytest.fixture(scope="module")
def report(run, load_runs) -> Path:
    run_dir, df = run
    return render(df, run_dir / "report.html", title="browser test", sources=[str(run_dir / "results.parquet")],
                  load_runs=[load_runs])


def planted_rows() -> pd.DataFrame:
    """Rows with known answers: two real-weight models whose decode intervals overlap, one that
    is clearly more accurate, and a random-weight fixture with the top accuracy point estimate."""
    rng = np.random.default_rng(0)
    rows = []
    spec = {  # model: (random weights, decode mean, accuracy on natural)
        "model-a": (False, 100.0, 0.85), "model-b": (False, 101.0, 0.25), "fixture-top": (True, 300.0, 1.0),
    }
    for model, (rw, decode, acc) in spec.items():
        for suite, kind in (("natural", "natural"), ("synthetic-shapes", "synthetic")):
            for i in range(40):
                rows.append({
                    "run_id": "planted", "model": model, "random_weights": rw, "suite": suite, "suite_kind": kind,
                    "suite_hash": f"h-{suite}", "sample_id": f"{i:03d}", "category": f"size-{16 * 2 ** (i % 3)}",
                    "repeat": 0, "status": "ok", "metric": "exact_match", "prompt": f"question {i}",
                    "output": "yes", "answers": ["yes"], "score": float(rng.random() < acc),
                    "decode_tps": decode + rng.normal(0, 8), "ttft_s": 0.05 + rng.normal(0, 0.004),
                    "prefill_tps": 900.0, "wall_s": 0.2, "peak_mlx_bytes": 2_000_000_000 + 1e6 * i,
                    "model_size_bytes": 1_500_000_000, "load_s": 1.0, "backend": "cpu",
                    "recorded_at": pd.Timestamp("2026-01-01", tz="UTC"),
                })
    return pd.DataFrame(rows)


PROBE = """(() => {
  const q = (s) => document.querySelector(s);
  const verdicts = [...document.querySelectorAll('#summary .verdict')].map(v => ({
    key: v.dataset.question, outcome: v.dataset.verdict, who: v.querySelector('.who').textContent}));
  return {vw: window.innerWidth, sw: document.documentElement.scrollWidth, ready: document.body.dataset.ready,
          pwned: document.body.dataset.pwned || null, title: document.title, verdicts,
          imgs: document.querySelectorAll('img:not([alt])').length,
          th: document.querySelectorAll('thead th').length, thScoped: document.querySelectorAll('thead th[scope]').length,
          svgs: document.querySelectorAll('figure svg[role=img] title').length,
          serving: document.querySelectorAll('#serving-table tbody tr').length,
          servingLink: q('#serving-table a') ? q('#serving-table a').href : null,
          servingNav: !!q('nav.toc a[href="#serving"]')};
})()"""


@pytest.mark.parametrize("width", WIDTHS)
def test_page_fits_the_screen_and_names_a_verdict_per_question(report, page, tmp_path, width):
    page.errors.clear()
    page.open(report.as_uri(), width)
    got = page.eval(PROBE)
    assert page.errors == []
    assert got["ready"] == "1"
    # On a phone a page wider than the screen also widens the layout viewport: check both.
    assert got["sw"] <= width and got["vw"] == width, f"page is {got['sw']} px wide in a {width} px screen"
    keys = [v["key"] for v in got["verdicts"]]
    assert keys == ["decode", "ttft", "memory", "natural", "synthetic", "per_gb"]
    for v in got["verdicts"]:
        assert v["outcome"] in ("winner", "tie", "none") and v["who"].strip()
        if v["key"] in ("natural", "synthetic", "per_gb"):  # fixtures only: nobody may win on accuracy
            assert v["outcome"] == "none" and "random-weight" in v["who"]
        else:
            assert v["outcome"] in ("winner", "tie")
    assert got["pwned"] is None and got["title"] == "browser test"
    assert got["imgs"] == 0 and got["th"] == got["thScoped"] and got["svgs"] >= 3
    assert got["serving"] == 1 and got["servingLink"].endswith("/sweep-browser/report.html") and got["servingNav"]
    shot = page.screenshot(tmp_path / f"report-{width}.png")
    im = Image.open(shot).convert("RGB")
    assert im.size[0] == width and im.size[1] > 1500
    colours = im.getcolors(maxcolors=1 << 22)
    assert colours is not None and len(colours) > 200  # text, shading, charts, thumbnails: not a blank page
    keep(shot)


def test_the_summary_names_the_planted_winner_and_tie(page, tmp_path):
    out = render(planted_rows(), tmp_path / "report.html", title="planted")
    page.errors.clear()
    page.open(out.as_uri(), 1440)
    got = {v["key"]: v for v in page.eval(PROBE)["verdicts"]}
    assert page.errors == []
    # decode: the fixture is fastest and may win speed (that is what it measures)...
    assert got["decode"]["outcome"] == "winner" and got["decode"]["who"] == "fixture-top"
    # ...but its perfect accuracy never wins: model-a does, clearly ahead of model-b
    assert got["natural"]["outcome"] == "winner" and got["natural"]["who"] == "model-a"
    shot = page.screenshot(tmp_path / "planted-1440.png")
    keep(shot)
    # without the fixture, model-a and model-b decode within each other's spread: a tie
    two = planted_rows().query("model != 'fixture-top'")
    out = render(two, tmp_path / "two.html", title="planted tie")
    page.open(out.as_uri(), 1440)
    got = {v["key"]: v for v in page.eval(PROBE)["verdicts"]}
    assert got["decode"]["outcome"] == "tie" and set(got["decode"]["who"].split(", ")) == {"model-a", "model-b"}


SORT = """(() => {
  const t = document.getElementById('speed-table');
  const col = [...t.tHead.rows[0].cells].findIndex(th => th.dataset.key === 'decode_tps');
  const values = () => [...t.tBodies[0].rows].map(r => parseFloat(r.cells[col].dataset.v));
  const button = t.tHead.rows[0].cells[col].querySelector('button');
  button.click(); const first = values(); const aria1 = t.tHead.rows[0].cells[col].getAttribute('aria-sort');
  button.click(); const second = values(); const aria2 = t.tHead.rows[0].cells[col].getAttribute('aria-sort');
  const name = t.tHead.rows[0].cells[0].querySelector('button'); name.click();
  const names = [...t.tBodies[0].rows].map(r => r.dataset.model);
  return {first, second, aria1, aria2, names};
})()"""


def test_headers_sort_the_tables(report, page):
    page.open(report.as_uri(), 1440)
    got = page.eval(SORT)
    assert len(got["first"]) == 2
    assert got["first"] == sorted(got["first"], reverse=True) and got["aria1"] == "descending"
    assert got["second"] == sorted(got["second"]) and got["aria2"] == "ascending"
    assert got["names"] == sorted(got["names"])


FILTER = """((model, status, query) => {
  const g = document.getElementById('gallery');
  const set = (id, v) => { const e = document.getElementById(id); e.value = v;
    e.dispatchEvent(new Event(id === 'g-search' ? 'input' : 'change')); return +g.dataset.matching; };
  const out = {all: +g.dataset.matching};
  out.model = set('g-model', model);
  out.modelFailures = set('g-status', status);
  out.hash = location.hash;
  set('g-model', ''); set('g-status', '');
  out.search = set('g-search', query);
  out.cards = g.querySelectorAll('article.sample').length;
  out.imgs = g.querySelectorAll('img.thumb').length;
  document.querySelector('#gallery button').click();
  out.dialog = document.getElementById('viewer').open;
  return out;
})"""


def test_gallery_filters_search_and_enlarge(report, run, page):
    _, df = run
    page.open(report.as_uri(), 390)
    got = page.eval(FILTER + '("fixture-qwen2_5_vl", "failures", "what shape")')
    rows = df[df["sample_id"] != "*"]
    mine = rows[rows["model"] == "fixture-qwen2_5_vl"]
    failed = mine[(mine["status"] == "error") | ((mine["status"] == "ok") & ~(mine["score"] >= 1))]
    assert got["all"] == len(rows) and got["model"] == len(mine) and got["modelFailures"] == len(failed)
    assert "model=fixture-qwen2_5_vl" in got["hash"] and "status=failures" in got["hash"]
    asked = rows["prompt"].str.lower().str.contains("what shape") | rows["output"].fillna("").str.lower().str.contains(
        "what shape")
    assert got["search"] == int(asked.sum()) > 0 and got["cards"] == min(got["search"], 40)
    assert got["imgs"] >= got["cards"] and got["dialog"] is True


def test_deep_links_filter_and_scroll(report, run, page):
    _, df = run
    rows = df[df["sample_id"] != "*"]
    page.open(report.as_uri() + "#failures", 1440)
    got = page.eval("({m: +document.getElementById('gallery').dataset.matching, f: document.getElementById('gallery')"
                    ".dataset.filter, y: window.scrollY, s: document.getElementById('g-status').value})")
    failed = rows[(rows["status"] == "error") | ((rows["status"] == "ok") & ~(rows["score"] >= 1))]
    assert got == {"m": len(failed), "f": "failures", "y": got["y"], "s": "failures"} and got["y"] > 500
    page.open(report.as_uri() + "#model=fixture-smolvlm-4bit&suite=natural", 1440)
    got = page.eval("+document.getElementById('gallery').dataset.matching")
    assert got == len(rows[(rows["model"] == "fixture-smolvlm-4bit") & (rows["suite"] == "natural")]) > 0
