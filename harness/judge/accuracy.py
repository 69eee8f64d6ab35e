"""Accuracy with its uncertainty, computed in one place: one row per model × suite × suite hash
and per category, with a seeded 95 % interval of the aggregated score.

The run (accuracy.parquet beside results.parquet), `rescore`, the report, its history, the gate
and the reference model's evaluation all call this module, so they agree by construction and
rows of two suites (or two versions of one suite) are never pooled. Each metric's direction
(`higher_is_better`) and aggregation come from the metric registry.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from harness.core import schema as results_schema
from harness.core.intervals import detectable_drop, mean_interval

# How a metric's per-sample scores become one figure (MetricSpec.aggregation).
AGGREGATIONS = {"mean": np.mean, "median": np.median}
ERRORS = ("exclude", "zero")

ALL = "*"  # the category of a whole-suite row
FILENAME = "accuracy.parquet"

# name, type, unit / meaning; the key columns mean what they mean in the results schema
COLUMNS: list[tuple[str, pa.DataType, str]] = [
    *((name, results_schema.SCHEMA.field(name).type, results_schema.DESCRIPTIONS[name])
      for name in ("model", "suite", "suite_hash")),
    ("category", pa.string(), "question category, '*' for the whole suite, '@<benchmark>' for published figures"),
    ("metric", pa.string(), "metric name ('+'-joined when a suite mixes metrics)"),
    ("higher_is_better", pa.bool_(), "direction of the metric; null when mixed or unknown"),
    ("n", pa.int64(), "scored samples (repetitions of a sample are averaged first)"),
    ("aggregation", pa.string(), "how per-sample scores were combined (the metric's aggregation: mean, median)"),
    ("mean", pa.float64(), "the aggregated score, 0..1; null when n is 0"),
    ("ci_low", pa.float64(), "lower end of the 95 % interval (method in `interval`); null: too few samples to tell"),
    ("ci_high", pa.float64(), "upper end of that interval"),
    ("interval", pa.string(), "wilson (0/1 scores), bootstrap (graded), cluster-bootstrap (questions sharing an "
                              "image resampled together) or 'too few' (fewer than 5 samples or images)"),
    ("n_clusters", pa.int64(), "distinct images behind the n samples: the independent units"),
    ("detectable_drop", pa.float64(), "the smallest fall from this score that a run of the same size detects "
                                      "(two-sided 5 %, power 80 %; 0/1 scores only)"),
    ("statistic", pa.string(), "'score' for the metric's aggregate; otherwise a published benchmark-level figure "
                               "(category '@<benchmark>') such as 'average' or 'total'"),
    ("unit", pa.string(), "fraction (0..1), % or points"),
    ("n_error", pa.int64(), "rows that failed (status error, or ok but unscored): not in n"),
    ("n_unsupported", pa.int64(), "rows the model could not take (status unsupported): not in n"),
    ("errors", pa.string(), "exclude: failed rows left out of n; zero: counted as score 0"),
]
SCHEMA = pa.schema([pa.field(n, t) for n, t, _ in COLUMNS])
NAMES = [n for n, _, _ in COLUMNS]

_GROUP = ["model", "suite", "suite_hash"]


def _specs(metric_names: list[str]) -> list:
    from harness.metrics import METRICS

    return [METRICS.get(m) for m in metric_names if m in METRICS]


def direction(metric_names: list[str]) -> bool | None:
    """Whether a higher score is better for these metrics; None when unknown or mixed."""
    specs = _specs(metric_names)
    if not metric_names or len(specs) != len(metric_names):
        return None
    dirs = {s.higher_is_better for s in specs}
    return dirs.pop() if len(dirs) == 1 else None


def aggregation(metric_names: list[str]) -> str:
    """The metrics' declared aggregation; a suite mixing aggregations falls back to the mean."""
    aggs = {s.aggregation for s in _specs(metric_names)}
    agg = aggs.pop() if len(aggs) == 1 else "mean"
    if agg not in AGGREGATIONS:
        raise ValueError(f"metric aggregation {agg!r} is not one of {', '.join(AGGREGATIONS)}")
    return agg


def _summarise(key: dict, samples: pd.DataFrame, metrics: list[str], n_error: int, n_unsupported: int,
               *, level: float, resamples: int, seed: int, errors: str) -> dict:
    vals = samples["score"].to_numpy(dtype=float)
    names = sorted({m for m in metrics if isinstance(m, str) and m})
    agg = aggregation(names)
    if agg == "mean":
        # harness.core.intervals: Wilson for 0/1 scores, bootstrap for graded ones, clustered by image
        # when several questions share one (as lmms-eval's cluster_key).
        iv = mean_interval(vals, clusters=list(samples["cluster"]), level=level, seed=seed)
        low, high, method, n_clusters = iv.low, iv.high, iv.method, iv.n_clusters
    else:
        low, high = _bootstrap_stat(vals, AGGREGATIONS[agg], level, resamples, seed)
        method, n_clusters = "bootstrap", samples["cluster"].nunique()
    value = float(AGGREGATIONS[agg](vals)) if len(vals) else math.nan
    binary = len(vals) > 0 and bool(np.all((vals == 0) | (vals == 1)))
    return {
        **key, "metric": "+".join(names), "higher_is_better": direction(names), "n": len(vals),
        "aggregation": agg, "mean": value, "ci_low": low, "ci_high": high, "interval": method,
        "n_clusters": int(n_clusters), "detectable_drop": detectable_drop(value, len(vals)) if binary else math.nan,
        "statistic": "score", "unit": "fraction", "n_error": n_error, "n_unsupported": n_unsupported,
        "errors": errors,
    }


def _bootstrap_stat(vals: np.ndarray, stat, level: float, resamples: int, seed: int) -> tuple[float, float]:
    if len(vals) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = stat(vals[rng.integers(0, len(vals), size=(resamples, len(vals)))], axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


def measured_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that belong to a model and a suite (not a bad suite file or an unknown model)."""
    if df.empty:
        return df
    d = df[df["model"].notna() & (df["model"] != ALL) & df["suite"].notna() & (df["suite"] != ALL)
           & (df["sample_id"] != ALL)].copy()
    for col in ("suite_hash", "category", "metric"):  # absent from rows built by hand: one group
        d[col] = d[col].fillna("") if col in d else ""
    return d


def per_sample_scores(df: pd.DataFrame, errors: str = "exclude") -> pd.DataFrame:
    """One score per model × suite × suite hash × sample: repetitions of a sample are averaged
    (they are not independent evidence; the samples are). Columns: model, suite, suite_hash,
    category, sample_id, score, metric, cluster (the sample's first image: questions that share
    an image are not independent either).

    errors="exclude" leaves failed rows out; "zero" scores them 0 (a sample the model could not
    answer is not a right answer: the reference model's evaluation counts so)."""
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {ERRORS}, got {errors!r}")
    d = measured_rows(df)
    cols = ["model", "suite", "suite_hash", "category", "sample_id", "score", "metric", "cluster", "output", "answers",
            "benchmark"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    scored = (d["status"] == "ok") & d["score"].notna()
    if errors == "zero":
        failed = (d["status"] == "error") | ((d["status"] == "ok") & d["score"].isna())
        d.loc[failed, "score"] = 0.0
        scored = scored | failed
    d = d[scored]
    for col in ("output", "answers", "benchmark"):
        if col not in d:
            d[col] = None
    images = d["images"] if "images" in d else [None] * len(d)
    d["cluster"] = [str(im[0]) if im is not None and len(im) else sid
                    for im, sid in zip(images, d["sample_id"], strict=True)]
    return (d.groupby([*_GROUP, "category", "sample_id"], sort=False, dropna=False)
            .agg(score=("score", "mean"), metric=("metric", "first"), cluster=("cluster", "first"),
                 output=("output", "first"), answers=("answers", "first"), benchmark=("benchmark", "first"))
            .reset_index()
            [cols])


def accuracy_table(df: pd.DataFrame, *, level: float = 0.95, resamples: int = 2000, seed: int = 0,
                   errors: str = "exclude") -> pd.DataFrame:
    """The aggregated score with a 95 % interval per model × suite × suite hash (category '*')
    and per category, from results rows.

    Only ok rows with a score count (errors="zero": failed rows count as 0); a sample repeated R
    times counts once, at its mean. Error and unsupported rows are counted apart.
    """
    if df.empty:
        return pd.DataFrame({n: pd.Series(dtype=SCHEMA.field(n).type.to_pandas_dtype()) for n in NAMES})
    d = measured_rows(df)
    if d.empty:
        return accuracy_table(pd.DataFrame())
    d["_error"] = (d["status"] == "error") | ((d["status"] == "ok") & d["score"].isna())
    d["_unsupported"] = d["status"] == "unsupported"
    per_sample = per_sample_scores(df, errors)
    by_group = {k: g for k, g in per_sample.groupby(_GROUP, sort=False)}
    empty = per_sample.iloc[0:0]
    opts = {"level": level, "resamples": resamples, "seed": seed, "errors": errors}
    out = []
    for key, rows in d.groupby(_GROUP, sort=True):
        base = dict(zip(_GROUP, key, strict=True))
        samples = by_group.get(key, empty)
        out.append(_summarise({**base, "category": ALL}, samples, list(rows["metric"]),
                              int(rows["_error"].sum()), int(rows["_unsupported"].sum()), **opts))
        for cat, crow in rows.groupby("category", sort=True):
            cs = samples[samples["category"] == cat]
            out.append(_summarise({**base, "category": cat}, cs, list(crow["metric"]),
                                  int(crow["_error"].sum()), int(crow["_unsupported"].sum()), **opts))
        out.extend(_benchmark_rows(base, samples, errors))
    table = pd.DataFrame(out, columns=NAMES)
    return pa.Table.from_pandas(table, schema=SCHEMA, preserve_index=False).to_pandas()


def _benchmark_rows(base: dict, samples: pd.DataFrame, errors: str) -> list[dict]:
    """The published benchmark-level figures a suite asks for (its `benchmark` field), as rows of
    category '@<benchmark>' (harness.metrics.benchmarks)."""
    from harness.metrics.benchmarks import BENCHMARKS

    names = {b for v in samples.get("benchmark", pd.Series(dtype=object)).dropna() for b in str(v).split(",") if b}
    out = []
    for name in sorted(names):
        for fig in BENCHMARKS.get(name)(samples):
            out.append({**base, "category": f"@{name}", "metric": "+".join(sorted(set(samples["metric"]))),
                        "higher_is_better": True, "n": int(fig.get("n", 0)), "aggregation": name,
                        "mean": fig["value"], "ci_low": fig.get("ci_low", math.nan), "ci_high": fig.get("ci_high", math.nan),
                        "interval": "", "n_clusters": None, "detectable_drop": math.nan, "statistic": fig["name"],
                        "unit": fig.get("unit", ""), "n_error": None, "n_unsupported": None, "errors": errors})
    return out


def write_accuracy(run_dir: Path | str, df: pd.DataFrame, filename: str = FILENAME) -> Path:
    """Write accuracy_table(df) in the run directory, atomically."""
    from harness.results.store import write_table

    path = Path(run_dir) / filename
    write_table(pa.Table.from_pandas(accuracy_table(df), schema=SCHEMA, preserve_index=False), path)
    return path
