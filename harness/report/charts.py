"""Charts for the report, drawn as inline SVG by hand.

Vector, so they are sharp at any zoom; every mark carries a <title> tooltip with its number; the
page's colours (and dark mode) reach them through CSS variables. Every piece of text from a
result file goes through `esc` before it reaches the markup. Colours are Okabe & Ito's
colour-blind-safe set, with a marker shape per model as a second cue; the accuracy grid uses a
single-hue ramp (lightness alone carries the value), never red against green.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from markupsafe import Markup

from harness.judge.accuracy import ALL
from harness.report.tables import SpeedStats, fmt, label, natural_key, pct

# Okabe, M. & Ito, K. (2008) "Color Universal Design"; black is the page's text colour, so it
# stays visible in dark mode.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "var(--fg)", "#F0E442", "#999999")
SHAPES = ("circle", "square", "triangle", "diamond")
# Box plots need the distribution, not every point: outliers beyond this many per model are thinned.
MAX_OUTLIERS = 40


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    caption: str
    alt: str  # what the chart shows, for a screen reader
    svg: Markup


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def short(s: str, n: int = 34) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def colours(models: Sequence[str]) -> dict[str, tuple[str, str]]:
    """model -> (colour, marker shape), stable across every chart of a report."""
    return {m: (PALETTE[i % len(PALETTE)], SHAPES[(i // len(PALETTE) + i) % len(SHAPES)])
            for i, m in enumerate(sorted(models))}


def tick(v: float) -> str:
    return format(v, ",.6g")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1 if math.isfinite(lo) else 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    out = []
    v = start
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _svg(w: int, h: int, cid: str, title: str, desc: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        f'aria-labelledby="{cid}-t {cid}-d" class="chart"><title id="{cid}-t">{esc(title)}</title>'
        f'<desc id="{cid}-d">{esc(desc)}</desc>' + "".join(body) + "</svg>")


def _marker(shape: str, x: float, y: float, colour: str, tip: str, r: float = 5) -> str:
    t = f"<title>{esc(tip)}</title>"
    if shape == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r}" height="{2 * r}" fill="{colour}" class="mk">{t}</rect>'
    if shape == "triangle":
        pts = f"{x:.1f},{y - r - 1:.1f} {x - r - 1:.1f},{y + r:.1f} {x + r + 1:.1f},{y + r:.1f}"
        return f'<polygon points="{pts}" fill="{colour}" class="mk">{t}</polygon>'
    if shape == "diamond":
        pts = f"{x:.1f},{y - r - 1:.1f} {x + r + 1:.1f},{y:.1f} {x:.1f},{y + r + 1:.1f} {x - r - 1:.1f},{y:.1f}"
        return f'<polygon points="{pts}" fill="{colour}" class="mk">{t}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{colour}" class="mk">{t}</circle>'


class _Axes:
    """A linear (or log) mapping of data onto a plot box, with gridlines and tick labels."""

    def __init__(self, x0: float, y0: float, w: float, h: float, xr: tuple[float, float], yr: tuple[float, float],
                 xlog: bool = False):
        self.x0, self.y0, self.w, self.h, self.xlog = x0, y0, w, h, xlog
        self.xt = self._log_ticks(*xr) if xlog else nice_ticks(*xr)
        self.yt = nice_ticks(*yr)
        self.xr = (xr[0], xr[1]) if xlog else (min(self.xt[0], xr[0]), max(self.xt[-1], xr[1]))
        self.yr = (min(self.yt[0], yr[0]), max(self.yt[-1], yr[1]))

    @staticmethod
    def _log_ticks(lo: float, hi: float) -> list[float]:
        return [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]

    def x(self, v: float) -> float:
        a, b = self.xr
        if self.xlog:
            a, b, v = math.log10(a), math.log10(b), math.log10(max(v, 1e-12))
        return self.x0 + (v - a) / ((b - a) or 1) * self.w

    def y(self, v: float) -> float:
        a, b = self.yr
        return self.y0 + self.h - (v - a) / ((b - a) or 1) * self.h

    def draw(self, xlabel: str, ylabel: str, xticks: bool = True, yticks: bool = True) -> list[str]:
        out = [f'<rect x="{self.x0}" y="{self.y0}" width="{self.w}" height="{self.h}" class="plot"/>']
        for t in self.yt if yticks else []:
            if self.yr[0] <= t <= self.yr[1]:
                y = self.y(t)
                out.append(f'<line x1="{self.x0}" x2="{self.x0 + self.w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                           f'<text x="{self.x0 - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{tick(t)}</text>')
        if xticks:
            for t in self.xt:
                if self.xr[0] <= t * (1 + 1e-9) and t <= self.xr[1] * (1 + 1e-9):
                    x = self.x(t)
                    out.append(f'<line y1="{self.y0}" y2="{self.y0 + self.h}" x1="{x:.1f}" x2="{x:.1f}" class="grid"/>'
                               f'<text x="{x:.1f}" y="{self.y0 + self.h + 16}" text-anchor="middle" class="tick">{tick(t)}</text>')
        out.append(f'<text x="{self.x0 + self.w / 2}" y="{self.y0 + self.h + 34}" text-anchor="middle" class="axis">{esc(xlabel)}</text>')
        out.append(f'<text transform="translate({self.x0 - 48},{self.y0 + self.h / 2}) rotate(-90)" '
                   f'text-anchor="middle" class="axis">{esc(ylabel)}</text>')
        return out


def _legend(items: Sequence[tuple[str, str, str]], x0: float, y0: float, width: float) -> tuple[list[str], float]:
    """Legend rows below a plot: (text, colour, shape) each; returns the marks and the height used."""
    out, x, y = [], x0, y0
    for text, colour, shape in items:
        w = 22 + 6.6 * len(text)
        if x + w > x0 + width and x > x0:
            x, y = x0, y + 18
        out.append(_marker(shape, x + 6, y, colour, text, 4.5))
        out.append(f'<text x="{x + 15}" y="{y + 4}" class="leg">{esc(text)}</text>')
        x += w + 12
    return out, y - y0 + 18


def decode_vs_memory(speed: Sequence[SpeedStats], unit: tuple[str, float]) -> Chart | None:
    pts = [s for s in speed if s.decode.n and not math.isnan(s.peak_bytes)]
    if not pts:
        return None
    name, scale = unit
    col = colours([s.model for s in speed])
    xs = [s.peak_bytes / scale for s in pts]
    lows = [s.decode.ci_low if not math.isnan(s.decode.ci_low) else s.decode.mean for s in pts]
    highs = [s.decode.ci_high if not math.isnan(s.decode.ci_high) else s.decode.mean for s in pts]
    W, H = 800, 420
    pad = (max(xs) - min(xs)) * 0.08 or max(xs) * 0.1 or 1
    ax = _Axes(70, 16, 440, 330, (max(0.0, min(xs) - pad), max(xs) + pad), (0.0, max(highs) * 1.05 or 1))
    body = ax.draw(f"peak MLX memory ({name})", "decode (tok/s), mean and 95 % interval")
    labels = []
    for s, x, lo, hi in zip(pts, xs, lows, highs, strict=True):
        c, shape = col[s.model]
        X, Y = ax.x(x), ax.y(s.decode.mean)
        tip = (f"{label(s.model, s.role)}: decode {fmt(s.decode.mean)} tok/s [{fmt(s.decode.ci_low)}–"
               f"{fmt(s.decode.ci_high)}], peak {fmt(x)} {name}, n={s.decode.n}")
        body.append(f'<line x1="{X:.1f}" x2="{X:.1f}" y1="{ax.y(lo):.1f}" y2="{ax.y(hi):.1f}" stroke="{c}" '
                    f'stroke-width="2"><title>{esc(tip)}</title></line>')
        body.append(_marker(shape, X, Y, c, tip))
        labels.append([Y, X, s])
    # Labels to the right of the plot, in the order of their points, joined by leader lines:
    # points that sit close together keep readable labels.
    labels.sort(key=lambda t: t[0])
    ly = 16.0
    slots = []
    for Y, _X, _s in labels:
        ly = max(ly + 15, Y) if slots else max(16.0, Y)
        slots.append(ly)
    overflow = slots[-1] - (16 + 330) if slots else 0
    if overflow > 0:
        slots = [v - overflow for v in slots]
        for i in range(len(slots) - 2, -1, -1):
            slots[i] = min(slots[i], slots[i + 1] - 15)
    for (Y, X, s), sy in zip(labels, slots, strict=True):
        c, shape = col[s.model]
        body.append(f'<line x1="{X + 6:.1f}" y1="{Y:.1f}" x2="518" y2="{sy:.1f}" class="leader"/>')
        body.append(_marker(shape, 524, sy, c, s.model, 3.5))
        body.append(f'<text x="531" y="{sy + 4:.1f}" class="lbl">{esc(short(label(s.model, s.role), 44))}'
                    f'<title>{esc(label(s.model, s.role))}</title></text>')
    alt = ("Decode rate against peak memory, one point per model: " +
           "; ".join(f"{s.model} {fmt(s.decode.mean)} tok/s at {fmt(s.peak_bytes / scale)} {name}" for s in pts[:12]))
    return Chart("chart-decode-memory", "Decode rate vs peak memory",
                 f"Up and to the left is better: faster decode in less memory. Bars: 95 % interval of the mean "
                 f"decode rate over requests. Memory in {name} (decimal).", alt, _svg(W, H, "c1", "Decode rate vs peak memory", alt, body))


def _ramp(v: float) -> str:
    """0..1 onto a single-hue blue ramp (ColorBrewer Blues, light to dark)."""
    stops = [(247, 251, 255), (198, 219, 239), (107, 174, 214), (33, 113, 181), (8, 48, 107)]
    v = min(1.0, max(0.0, v)) * (len(stops) - 1)
    i = min(int(v), len(stops) - 2)
    f = v - i
    r, g, b = (round(a + (b_ - a) * f) for a, b_ in zip(stops[i], stops[i + 1], strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def accuracy_grid(acc: pd.DataFrame, roles: dict[str, str]) -> Chart | None:
    whole = acc[(acc["category"] == ALL) & (acc["n"] > 0)] if not acc.empty else acc
    if whole.empty:
        return None
    models = sorted(whole["model"].unique())
    suites = sorted(whole["suite"].unique(), key=natural_key)
    cw, ch, left, top = 62, 30, 290, 96
    W, H = left + cw * len(suites) + 70, top + ch * len(models) + 40  # room for the last slanted suite name
    body = []
    for j, s in enumerate(suites):
        x = left + j * cw + cw / 2
        body.append(f'<text transform="translate({x:.0f},{top - 8}) rotate(-40)" class="tick">{esc(short(s, 20))}'
                    f'<title>{esc(s)}</title></text>')
    cells = {(r.model, r.suite): r for r in whole.itertuples(index=False)}
    for i, m in enumerate(models):
        y = top + i * ch
        body.append(f'<text x="{left - 8}" y="{y + ch / 2 + 4}" text-anchor="end" class="lbl">'
                    f'{esc(short(label(m, roles.get(m, "model")), 44))}<title>{esc(label(m, roles.get(m, "model")))}</title></text>')
        for j, s in enumerate(suites):
            r = cells.get((m, s))
            x = left + j * cw
            if r is None:
                body.append(f'<rect x="{x + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" class="na">'
                            f'<title>{esc(m)} · {esc(s)}: not scored</title></rect>')
                continue
            fill = _ramp(r.mean)
            ink = "#ffffff" if r.mean > 0.55 else "#1d2330"
            tip = f"{m} · {s}: {pct(r.mean)} % [{pct(r.ci_low)}–{pct(r.ci_high)}], n={r.n}"
            body.append(f'<g><title>{esc(tip)}</title><rect x="{x + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" '
                        f'fill="{fill}"/><text x="{x + cw / 2}" y="{y + 13}" text-anchor="middle" fill="{ink}" '
                        f'class="cellv">{100 * r.mean:.0f}</text><text x="{x + cw / 2}" y="{y + 25}" '
                        f'text-anchor="middle" fill="{ink}" class="cells">'
                        + ("n/a" if math.isnan(r.ci_low) else f"{100 * r.ci_low:.0f}–{100 * r.ci_high:.0f}")
                        + "</text></g>")
    # the scale
    y = top + ch * len(models) + 14
    for k in range(11):
        body.append(f'<rect x="{left + k * 24}" y="{y}" width="24" height="10" fill="{_ramp(k / 10)}"/>')
    body.append(f'<text x="{left - 8}" y="{y + 9}" text-anchor="end" class="tick">accuracy 0 %</text>'
                f'<text x="{left + 11 * 24 + 6}" y="{y + 9}" class="tick">100 %</text>')
    alt = f"Accuracy of {len(models)} models on {len(suites)} suites, as a grid of percentages with 95 % intervals."
    return Chart("chart-accuracy", "Accuracy per suite",
                 "Each cell: mean per-sample score (%) and, below it, its 95 % interval; darker is more accurate; "
                 "grey where the model has no scored sample. From accuracy.parquet's whole-suite rows.",
                 alt, _svg(W, H, "c2", "Accuracy per suite", alt, body))


def latency(df: pd.DataFrame, roles: dict[str, str]) -> Chart | None:
    ok = df.dropna(subset=["ttft_s"])
    if ok.empty:
        return None
    models = sorted(ok["model"].unique())
    col = colours(models)
    groups = {m: g.to_numpy(dtype=float) * 1e3 for m, g in ok.groupby("model")["ttft_s"]}
    lo, hi = min(v.min() for v in groups.values()), max(v.max() for v in groups.values())
    log = lo > 0 and hi / lo > 20
    left, rowh = 290, 26
    W, H = 760, 30 + rowh * len(models) + 46
    ax = _Axes(left, 10, 440, rowh * len(models), (lo * 0.9 if log else 0.0, hi * 1.05), (0, 1), xlog=log)
    body = ax.draw("time to first token (ms" + (", log scale)" if log else ")"), "", yticks=False)
    for i, m in enumerate(models):
        v = groups[m]
        q1, q2, q3 = np.percentile(v, [25, 50, 75])
        iqr = q3 - q1
        inside = v[(v >= q1 - 1.5 * iqr) & (v <= q3 + 1.5 * iqr)]
        wl, wh = (inside.min(), inside.max()) if len(inside) else (q1, q3)
        y = 10 + i * rowh + rowh / 2
        c, _ = col[m]
        tip = (f"{label(m, roles.get(m, 'model'))}: median {fmt(q2)} ms, quartiles {fmt(q1)}–{fmt(q3)} ms, "
               f"whiskers {fmt(wl)}–{fmt(wh)} ms, n={len(v)}")
        body.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" class="lbl">'
                    f'{esc(short(label(m, roles.get(m, "model")), 44))}<title>{esc(tip)}</title></text>')
        body.append(f'<g><title>{esc(tip)}</title>'
                    f'<line x1="{ax.x(wl):.1f}" x2="{ax.x(wh):.1f}" y1="{y}" y2="{y}" stroke="{c}" stroke-width="1.5"/>'
                    f'<rect x="{ax.x(q1):.1f}" y="{y - 8}" width="{max(1.5, ax.x(q3) - ax.x(q1)):.1f}" height="16" '
                    f'fill="{c}" fill-opacity="0.35" stroke="{c}"/>'
                    f'<line x1="{ax.x(q2):.1f}" x2="{ax.x(q2):.1f}" y1="{y - 8}" y2="{y + 8}" stroke="{c}" stroke-width="2.5"/></g>')
        out = v[(v < wl) | (v > wh)]
        if len(out) > MAX_OUTLIERS:
            out = np.sort(out)[np.linspace(0, len(out) - 1, MAX_OUTLIERS).astype(int)]
        for o in out:
            body.append(f'<circle cx="{ax.x(o):.1f}" cy="{y}" r="2" fill="{c}"><title>{fmt(o)} ms</title></circle>')
    alt = "Time to first token per model as box plots: " + "; ".join(
        f"{m} median {fmt(float(np.median(groups[m])))} ms" for m in models[:12])
    return Chart("chart-latency", "Latency distribution",
                 "Time to first token per request: box is the middle half, thick line the median, whiskers 1.5 × IQR, "
                 "dots beyond.", alt, _svg(W, H, "c3", "Latency distribution", alt, body))


def _lines(cid: str, title: str, cats: list[str], series: list[tuple[str, str, str, list[tuple[float, float, float]]]],
           ylabel: str, yr: tuple[float, float], xlabel: str) -> Markup:
    """Lines over categories with interval whiskers; series: (name, colour, shape, [(y, lo, hi)])."""
    W = max(640, 90 + 64 * len(cats))
    pw = W - 110
    ax = _Axes(80, 16, pw, 250, (0, 1), yr)
    body = ax.draw(xlabel, ylabel, xticks=False)
    step = pw / max(1, len(cats))
    for j, c in enumerate(cats):
        body.append(f'<text x="{80 + step * (j + 0.5):.1f}" y="{16 + 250 + 16}" text-anchor="middle" class="tick">'
                    f'{esc(short(c, 14))}</text>')
    k = len(series)
    for si, (name, colour, shape, pts) in enumerate(series):
        off = (si - (k - 1) / 2) * min(6.0, step * 0.5 / max(1, k))
        path = []
        for j, (y, lo, hi) in enumerate(pts):
            if math.isnan(y):
                continue
            X = 80 + step * (j + 0.5) + off
            tip = f"{name} · {cats[j]}: {fmt(y)}" + ("" if math.isnan(lo) else f" [{fmt(lo)}–{fmt(hi)}]")
            if not math.isnan(lo):
                body.append(f'<line x1="{X:.1f}" x2="{X:.1f}" y1="{ax.y(lo):.1f}" y2="{ax.y(hi):.1f}" stroke="{colour}" '
                            f'stroke-width="1.5"><title>{esc(tip)}</title></line>')
            path.append(f"{X:.1f},{ax.y(y):.1f}")
            body.append(_marker(shape, X, ax.y(y), colour, tip, 4))
        if len(path) > 1:
            body.insert(len(body) - len(path), f'<polyline points="{" ".join(path)}" fill="none" stroke="{colour}" '
                                               'stroke-width="1.5" stroke-opacity="0.7"/>')
    leg, lh = _legend([(n, c, s) for n, c, s, _ in series], 80, 16 + 250 + 52, pw)
    body += leg
    return _svg(W, 16 + 250 + 52 + int(lh) + 6, cid, title, title, body)


def accuracy_by_image(acc: pd.DataFrame, roles: dict[str, str]) -> Chart | None:
    if acc.empty:
        return None
    cat = acc[(acc["category"] != ALL) & (acc["n"] > 0)]
    sized = cat[cat["category"].astype(str).str.match(r"^(size|aspect)-")]
    if sized.empty:
        return None
    cats = sorted(sized["category"].astype(str).unique(), key=lambda c: (not c.startswith("size"), natural_key(c)))
    models = sorted(sized["model"].unique())
    col = colours(sorted(acc["model"].unique()))
    series = []
    for m in models:
        g = sized[sized["model"] == m]
        by = {r.category: r for r in g.itertuples(index=False)}
        pts = []
        for c in cats:
            r = by.get(c)
            pts.append((math.nan, math.nan, math.nan) if r is None else
                       (100 * r.mean, 100 * r.ci_low, 100 * r.ci_high))
        series.append((short(label(m, roles.get(m, "model")), 40), *col[m], pts))
    alt = f"Accuracy by image size for {len(models)} models over {len(cats)} sizes, with 95 % intervals."
    svg = _lines("c4", "Accuracy by image size", cats, series, "accuracy (%), 95 % interval", (0, 100),
                 "image size category")
    return Chart("chart-image-size", "Accuracy by image size and aspect ratio",
                 "From the size-* and aspect-* categories of the size-sweep suites; bars are 95 % intervals "
                 "(accuracy.parquet). Points of different models are set slightly apart so bars do not hide each other.",
                 alt, svg)


def history(runs: pd.DataFrame, roles: dict[str, str]) -> Chart | None:
    """Median decode rate per model across runs, oldest first."""
    if runs.empty or runs["run_id"].nunique() < 2:
        return None
    order = list(dict.fromkeys(runs["run_id"]))
    models = sorted(runs["model"].unique())
    col = colours(models)
    series = []
    for m in models:
        g = runs[runs["model"] == m].set_index("run_id")
        pts = [(float(g.loc[r, "decode_tps"]), math.nan, math.nan) if r in g.index else (math.nan,) * 3 for r in order]
        series.append((short(label(m, roles.get(m, "model")), 40), *col[m], pts))
    top = float(runs["decode_tps"].max()) if runs["decode_tps"].notna().any() else 1.0
    svg = _lines("c5", "Decode rate across runs", [r[-12:] for r in order], series, "decode (tok/s, median)",
                 (0, top * 1.05), "run, oldest first")
    return Chart("chart-history", "History across runs", "Median decode rate per model, one point per stored run, "
                 "oldest first.", "Median decode rate per model across runs.", svg)
