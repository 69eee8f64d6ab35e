"""Charts for the report, drawn with matplotlib and inlined as base64 PNG data URIs.

PNG rather than SVG: model names become pixels, so no text from a result file reaches the
page's markup through a chart, and the size stays bounded however many rows there are.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.report.tables import GIB, accuracy, measured  # noqa: E402

# Box plots need the distribution, not every point: a fixed-size sample per model keeps a
# 100,000-row report fast and its quartiles within a fraction of a percent.
MAX_POINTS = 5000
_MPL = tuple(int(x) for x in re.findall(r"\d+", matplotlib.__version__)[:2])


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    caption: str
    uri: str  # data:image/png;base64,...


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    m = measured(df)
    return m[m["status"] == "ok"]


def decode_vs_memory(df: pd.DataFrame) -> Chart | None:
    ok = _ok(df).dropna(subset=["decode_tps", "peak_mlx_bytes"])
    if ok.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4))
    small = ok["peak_mlx_bytes"].max() < GIB
    unit, scale = ("MiB", 2**20) if small else ("GiB", GIB)
    for model, g in ok.groupby("model"):
        x = g["peak_mlx_bytes"].max() / scale
        y, s = g["decode_tps"].mean(), g["decode_tps"].std(ddof=1)
        ax.errorbar([x], [y], yerr=[0 if np.isnan(s) else s], fmt="o", capsize=4, label=str(model)[:40])
    ax.set_xlabel(f"peak MLX memory ({unit}, max over samples)")
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.set_ylabel("decode (tok/s, mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return Chart("chart-decode-memory", "Decode rate vs peak memory",
                 "Up and to the left is better: faster decode in less memory.", _png(fig))


def accuracy_per_suite(df: pd.DataFrame) -> Chart | None:
    ok = _ok(df).dropna(subset=["score"])
    if ok.empty:
        return None
    models = sorted(ok["model"].unique())
    suites = sorted(ok["suite"].unique())
    # A grid, not grouped bars: nine models on eleven suites make bars too thin to read.
    grid = np.full((len(models), len(suites)), np.nan)
    labels = [["" for _ in suites] for _ in models]
    for i, model in enumerate(models):
        for j, suite in enumerate(suites):
            a = accuracy(ok[(ok["model"] == model) & (ok["suite"] == suite)])
            if a["n"]:
                grid[i, j] = a["mean"]
                labels[i][j] = f"{a['mean']:.0f}\n[{a['lo']:.0f}–{a['hi']:.0f}]"
    fig, ax = plt.subplots(figsize=(max(6.4, 0.85 * len(suites) + 2.5), max(2.2, 0.36 * len(models) + 1.4)))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    for i in range(len(models)):
        for j in range(len(suites)):
            if labels[i][j]:
                ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=7,
                        color="black" if 25 < grid[i, j] < 85 else "white")
    ax.set_xticks(np.arange(len(suites)), suites, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(models)), [str(m)[:40] for m in models], fontsize=8)
    fig.colorbar(im, ax=ax, label="accuracy (%)", fraction=0.03)
    return Chart("chart-accuracy", "Accuracy per suite", "Each cell: mean per-sample score (%) and its 95 % "
                 "bootstrap interval over samples; blank where the model has no scored sample.", _png(fig))


def latency(df: pd.DataFrame) -> Chart | None:
    ok = _ok(df).dropna(subset=["ttft_s"])
    if ok.empty:
        return None
    models = sorted(ok["model"].unique())
    data = []
    for m in models:
        v = ok.loc[ok["model"] == m, "ttft_s"].to_numpy() * 1e3
        if len(v) > MAX_POINTS:
            v = np.random.default_rng(0).choice(v, MAX_POINTS, replace=False)
        data.append(v)
    fig, ax = plt.subplots(figsize=(6.4, 0.5 * len(models) + 1.6))
    # matplotlib 3.10 renamed vert=False to orientation="horizontal" and deprecated the old name.
    horizontal = {"orientation": "horizontal"} if _MPL >= (3, 10) else {"vert": False}
    ax.boxplot(data, showfliers=True, flierprops={"markersize": 2}, **horizontal)
    ax.set_yticks(np.arange(1, len(models) + 1), [str(m)[:40] for m in models], fontsize=8)
    ax.set_xlabel("time to first token (ms)")
    ax.set_xscale("log")
    ax.grid(axis="x", alpha=0.3)
    return Chart("chart-latency", "Latency distribution", "Time to first token per sample and repetition: box "
                 "is the middle half, whiskers 1.5 × IQR, dots beyond.", _png(fig))


_SIZE = re.compile(r"^(size|aspect)-(.+)$")


def _size_key(cat: str) -> tuple:
    """Sizes first, smallest to largest, then aspect ratios; anything else after, by name."""
    m = _SIZE.match(cat)
    kind, rest = (m.group(1), m.group(2)) if m else ("", cat)
    num = re.match(r"\d+", rest)
    return ({"size": 0, "aspect": 1}.get(kind, 2), int(num.group()) if num else 0, rest)


def accuracy_by_image(df: pd.DataFrame) -> Chart | None:
    ok = _ok(df).dropna(subset=["score"])
    ok = ok[ok["category"].notna()]
    if ok.empty:
        return None
    sized = ok[ok["category"].astype(str).str.match(_SIZE)]
    by_size = not sized.empty
    src = sized if by_size else ok
    cats = sorted(src["category"].astype(str).unique(), key=_size_key)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.6 * len(cats)), 4))
    for model, g in src.groupby("model"):
        ys, lo, hi = [], [], []
        for c in cats:
            a = accuracy(g[g["category"] == c])
            ys.append(a["mean"])
            lo.append(max(0.0, a["mean"] - a["lo"]) if a["n"] else np.nan)
            hi.append(max(0.0, a["hi"] - a["mean"]) if a["n"] else np.nan)
        ax.errorbar(np.arange(len(cats)), ys, yerr=[lo, hi], marker="o", capsize=3, label=str(model)[:40])
    ax.set_xticks(np.arange(len(cats)), cats, rotation=30, ha="right")
    ax.set_ylabel("accuracy (%), 95 % interval")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if by_size:
        return Chart("chart-image-size", "Accuracy by image size and aspect ratio",
                     "From the size-* and aspect-* categories of the size-sweep suites.", _png(fig))
    return Chart("chart-image-size", "Accuracy by category",
                 "These results have no size-* or aspect-* categories (the size-sweep suites); accuracy by "
                 "question category instead.", _png(fig))


def history(runs: pd.DataFrame) -> Chart | None:
    """Median decode rate and accuracy per model across runs, oldest first."""
    if runs.empty or runs["run_id"].nunique() < 2:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    order = list(dict.fromkeys(runs["run_id"]))
    for model, g in runs.groupby("model"):
        x = [order.index(r) for r in g["run_id"]]
        a1.plot(x, g["decode_tps"], marker="o", label=str(model)[:40])
        a2.plot(x, g["accuracy"], marker="o", label=str(model)[:40])
    for ax, label in ((a1, "decode (tok/s, median)"), (a2, "accuracy (%)")):
        ax.set_xticks(range(len(order)), [r[-12:] for r in order], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    a1.legend(fontsize=7)
    return Chart("chart-history", "History across runs", "One point per stored run, oldest first.", _png(fig))


def all_charts(df: pd.DataFrame) -> list[Chart]:
    out = [decode_vs_memory(df), accuracy_per_suite(df), latency(df), accuracy_by_image(df)]
    return [c for c in out if c is not None]
