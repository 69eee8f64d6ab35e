"""Bar and line charts drawn with matplotlib: "which is largest" (a label) and "what is the
value of X" (a number). Values are multiples of 5 on a grid every 10, so a careful reader
can get them exactly; ChartQA's relaxed accuracy allows 5 %."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from harness.suites import SOURCES, RawSample, SuiteDef, SuiteError, check_params
from harness.suites._common import save_png, seeded_samples

GENERATOR_VERSION = 1
CHARTS = ("bar", "line")
QUESTIONS = ("largest", "value")
LABELS = {
    "bar": ("apples", "pears", "plums", "grapes", "lemons", "cherries", "melons", "figs"),
    "line": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug"),
}
MONTHS = {"Jan": "January", "Feb": "February", "Mar": "March", "Apr": "April", "May": "May", "Jun": "June",
          "Jul": "July", "Aug": "August"}
DPI = 100

PARAMS = {
    "width": (448, (160, 4096)),
    "height": (336, (120, 4096)),
    "charts": (list(CHARTS), CHARTS),
    "questions": (list(QUESTIONS), QUESTIONS),
    "min_items": (4, (2, 8)),
    "max_items": (6, (2, 8)),
    "value_metric": ("relaxed_accuracy", None),  # checked against the metric registry
}


def data(chart: str, rng, lo: int, hi: int) -> tuple[list[str], list[int]]:
    n = int(rng.integers(lo, hi + 1))
    labels = list(LABELS[chart][:n]) if chart == "line" else [str(x) for x in rng.choice(LABELS[chart], size=n, replace=False)]
    # Distinct values: "which is largest" must have one answer.
    values = [int(v) * 5 for v in rng.choice(range(1, 20), size=n, replace=False)]
    return labels, values


def render(chart: str, labels: list[str], values: list[int], width: int, height: int) -> Image.Image:
    import matplotlib
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # matplotlib's own defaults, not the user's matplotlibrc, so every machine draws the same;
    # a fixed hash salt and no metadata keep the bytes identical run to run.
    with matplotlib.style.context("default"), matplotlib.rc_context({"svg.hashsalt": "vlm-harness", "font.family": "DejaVu Sans"}):
        fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        if chart == "bar":
            ax.bar(labels, values, color="#4c72b0")
        else:
            ax.plot(labels, values, marker="o", color="#c44e52")
        ax.set_ylim(0, 100)
        ax.set_yticks(range(0, 101, 10))
        ax.grid(axis="y", linewidth=0.5, alpha=0.6)
        ax.set_axisbelow(True)
        ax.set_title("Sales" if chart == "bar" else "Visitors per month")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")


@SOURCES.register("charts")
def generate(defn: SuiteDef, workdir: Path) -> list[RawSample]:
    from harness.metrics import METRICS

    p = check_params(defn, {k: v for k, v in PARAMS.items() if k != "value_metric"} | {"value_metric": ("relaxed_accuracy", tuple(METRICS))})
    if p["min_items"] > p["max_items"]:
        raise SuiteError(f"{defn.path}: param 'min_items' ({p['min_items']}) is above 'max_items' ({p['max_items']})")
    combos = [(c, q) for c in p["charts"] for q in p["questions"]]
    out = []
    for i, rng in seeded_samples(defn, GENERATOR_VERSION):
        chart, question = combos[i % len(combos)]
        labels, values = data(chart, rng, p["min_items"], p["max_items"])
        path = workdir / f"{i:05d}.png"
        if not path.exists():
            save_png(render(chart, labels, values, p["width"], p["height"]), path)
        if question == "largest":
            noun = "bar" if chart == "bar" else "month"
            q = f"Which {noun} has the largest value?"
            top = labels[values.index(max(values))]
            answers, metric = (top, MONTHS[top]) if top in MONTHS and MONTHS[top] != top else (top,), "exact_match"
        else:
            k = int(rng.integers(len(labels)))
            q = f"What is the value of {labels[k]}?" if chart == "bar" else f"What is the value in {MONTHS[labels[k]]}?"
            answers, metric = (str(values[k]),), p["value_metric"]
        out.append(RawSample(id=f"{i:05d}-{chart}-{question}", images=(path,), question=q, answers=answers,
                             category=f"{chart}-{question}", metric=metric))
    return out
