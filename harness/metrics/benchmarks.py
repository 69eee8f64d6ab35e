"""Benchmark-level scores as the benchmarks publish them, from per-sample scores.

Each entry is a pure function `fn(per_sample) -> list[dict]`. `per_sample` is a DataFrame with
columns sample_id, category, score, output, answers (list) and metric, one row per scored
sample (an optional `cluster` column, e.g. the image, makes intervals resample whole
clusters). Each returned dict has `name`, `value` and `n`, and where it applies `ci_low`,
`ci_high` (95 %, harness.core.intervals) and `unit`. Rows whose score is NaN (no answer was
scored) are left out of every figure and of n.

- `mmstar`: the average over MMStar's categories (each category's accuracy weighs the same;
  with the published set's 250 questions per category this is also the plain accuracy, as
  the paper and VLMEvalKit report it), and each category's accuracy. lmms-eval's "average"
  instead averages its 18 l2 categories, which the layout does not keep.
- `ocrbench`: the authors' total (Yuliang-Liu/MultimodalOCR OCRBench/example.py): points,
  one per right answer, out of 1,000 on the full set; "Text Recognition" (the six recognition
  types, out of 300) and a subtotal per question type (the category).
- `pope`: accuracy, precision, recall, F1 and yes-ratio as RUCAIBox/POPE evaluate.py computes
  them, "yes" the positive class, the answer read by POPE's rule (harness.metrics.yes_no
  pope_label) whatever metric the suite scored with, the label by POPE's rule too (pope_gold: only
  the exact string "no" is a no-label, as evaluate.py reads it; the `pope` metric uses the same). A ratio with a zero denominator is NaN
  (the reference divides by zero there), except F1, which is 0 without a true positive.
- `vqa_by_answer_type`: VQA accuracy overall (mean over questions, as vqaEval.py's
  "overall") and per answer type (the category), as its "perAnswerType".
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from harness.core.intervals import macro_interval, mean_interval, wilson
from harness.core.registry import Registry
from harness.metrics.yes_no import pope_gold, pope_label

BenchmarkScore = Callable[[pd.DataFrame], list[dict]]
BENCHMARKS: Registry[BenchmarkScore] = Registry("benchmark score")

OCRBENCH_RECOGNITION = ("Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
                        "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition")


def _scored(per_sample: pd.DataFrame) -> pd.DataFrame:
    missing = {"category", "score"} - set(per_sample.columns)
    if missing:
        raise ValueError(f"per-sample scores need columns {', '.join(sorted(missing))}")
    return per_sample[per_sample["score"].notna()]


def _clusters(df: pd.DataFrame) -> list | None:
    return list(df["cluster"]) if "cluster" in df.columns else None


def _percent(name: str, df: pd.DataFrame) -> dict:
    iv = mean_interval(df["score"].to_numpy(float), clusters=_clusters(df))
    return {"name": name, "value": 100 * iv.mean, "n": iv.n, "ci_low": 100 * iv.low, "ci_high": 100 * iv.high,
            "unit": "%"}


@BENCHMARKS.register("mmstar")
def mmstar(per_sample: pd.DataFrame) -> list[dict]:
    """MMStar: the macro average over categories, then each category's accuracy (%)."""
    df = _scored(per_sample)
    iv = macro_interval(df["score"].to_numpy(float), list(df["category"]))
    rows = [{"name": "average", "value": 100 * iv.mean, "n": iv.n, "ci_low": 100 * iv.low, "ci_high": 100 * iv.high,
             "unit": "%"}]
    rows += [_percent(f"category/{c}", g) for c, g in df.groupby("category", sort=True)]
    return rows


def _points(name: str, df: pd.DataFrame) -> dict:
    n = len(df)
    total = float(df["score"].sum())
    row = {"name": name, "value": total, "n": n, "unit": "points"}
    s = df["score"].to_numpy(float)
    if n and np.all((s == 0) | (s == 1)):
        iv = mean_interval(s, clusters=_clusters(df))
        row |= {"ci_low": n * iv.low, "ci_high": n * iv.high}
    return row


@BENCHMARKS.register("ocrbench")
def ocrbench(per_sample: pd.DataFrame) -> list[dict]:
    """OCRBench: total points (out of 1,000 on the full set), Text Recognition, and per type."""
    df = _scored(per_sample)
    rows = [_points("total", df), _points("Text Recognition", df[df["category"].isin(OCRBENCH_RECOGNITION)])]
    rows += [_points(f"type/{c}", g) for c, g in df.groupby("category", sort=True)]
    return rows


def _ratio(name: str, hits: int, n: int) -> dict:
    if n == 0:
        return {"name": name, "value": math.nan, "n": 0, "unit": "%"}
    low, high = wilson(hits, n)
    return {"name": name, "value": 100 * hits / n, "n": n, "ci_low": 100 * low, "ci_high": 100 * high, "unit": "%"}


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2 * tp / (2 * tp + fp + fn)


@BENCHMARKS.register("pope")
def pope(per_sample: pd.DataFrame) -> list[dict]:
    """POPE: accuracy, precision, recall, F1 and yes-ratio (%), "yes" the positive class."""
    df = _scored(per_sample)
    pred = np.array([pope_label(str(o)) == "yes" for o in df["output"]], dtype=bool)
    # The label by the reference's rule (pope_gold: only the exact string "no" is a no-label), the
    # same rule the `pope` metric applies, so the figure and the per-sample scores agree.
    gold = np.array([pope_gold(list(a)[0]) == "yes" if len(a) else True for a in df["answers"]], dtype=bool)
    tp, fp = int(np.sum(pred & gold)), int(np.sum(pred & ~gold))
    tn, fn = int(np.sum(~pred & ~gold)), int(np.sum(~pred & gold))
    n = len(df)
    f1 = {"name": "f1", "value": math.nan, "n": n, "unit": "%"}
    # F1 = 2TP / (2TP + FP + FN): 0 with no true positive (as lmms-eval; the original script
    # divides 0 by 0 there), NaN with no positive at all.
    if tp + fp + fn:
        f1["value"] = 100 * float(_f1(np.array(tp), np.array(fp), np.array(fn)))
        if n >= 5:
            rng = np.random.default_rng(0)
            pick = rng.integers(0, n, size=(2000, n))
            p, g = pred[pick], gold[pick]
            boot = _f1((p & g).sum(1), (p & ~g).sum(1), (~p & g).sum(1))
            f1 |= {"ci_low": 100 * float(np.nanquantile(boot, 0.025)), "ci_high": 100 * float(np.nanquantile(boot, 0.975))}
    return [
        _ratio("accuracy", tp + tn, n), _ratio("precision", tp, tp + fp), _ratio("recall", tp, tp + fn), f1,
        _ratio("yes_ratio", tp + fp, n),
    ]


@BENCHMARKS.register("vqa_by_answer_type")
def vqa_by_answer_type(per_sample: pd.DataFrame) -> list[dict]:
    """VQA accuracy overall and per answer type (%), as vqaEval.py's overall and perAnswerType."""
    df = _scored(per_sample)
    return [_percent("overall", df)] + [_percent(f"answer_type/{c}", g) for c, g in df.groupby("category", sort=True)]
