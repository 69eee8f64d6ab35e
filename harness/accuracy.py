"""Accuracy with its uncertainty: one row per model × suite and per model × suite × category,
with a seeded percentile-bootstrap 95 % interval of the mean score.

A pure function of result rows, so the tester (accuracy.parquet beside results.parquet), the
report and a user's notebook all compute the same numbers from any merged set of runs.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.stats import bootstrap_ci

ALL = "*"  # the category of a whole-suite row
FILENAME = "accuracy.parquet"

# name, type, unit / meaning
COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("model", pa.string(), "model name as the user gave it"),
    ("suite", pa.string(), "suite name"),
    ("suite_hash", pa.string(), "suite content hash: rows of different hashes are never pooled"),
    ("category", pa.string(), "question category, or '*' for the whole suite"),
    ("metric", pa.string(), "metric name ('+'-joined when a suite mixes metrics)"),
    ("higher_is_better", pa.bool_(), "direction of the metric; null when mixed or unknown"),
    ("n", pa.int64(), "scored samples (repetitions of a sample are averaged first)"),
    ("mean", pa.float64(), "mean score, 0..1; null when n is 0"),
    ("ci_low", pa.float64(), "lower end of the 95 % percentile-bootstrap interval of the mean"),
    ("ci_high", pa.float64(), "upper end of that interval"),
    ("n_error", pa.int64(), "rows that failed (status error, or ok but unscored): not in n"),
    ("n_unsupported", pa.int64(), "rows the model could not take (status unsupported): not in n"),
]
SCHEMA = pa.schema([pa.field(n, t) for n, t, _ in COLUMNS])
NAMES = [n for n, _, _ in COLUMNS]

_GROUP = ["model", "suite", "suite_hash"]


def _direction(metric_names: list[str]) -> bool | None:
    from harness.metrics import METRICS

    if not metric_names or any(m not in METRICS for m in metric_names):
        return None
    dirs = {METRICS.get(m).higher_is_better for m in metric_names}
    return dirs.pop() if len(dirs) == 1 else None


def _summarise(key: dict, scores: pd.Series, metrics: list[str], n_error: int, n_unsupported: int,
               *, level: float, resamples: int, seed: int) -> dict:
    vals = scores.to_numpy(dtype=float)
    low, high = bootstrap_ci(vals, level=level, resamples=resamples, seed=seed)
    names = sorted({m for m in metrics if isinstance(m, str) and m})
    return {
        **key, "metric": "+".join(names), "higher_is_better": _direction(names), "n": len(vals),
        "mean": float(vals.mean()) if len(vals) else math.nan, "ci_low": low, "ci_high": high,
        "n_error": n_error, "n_unsupported": n_unsupported,
    }


def accuracy_table(df: pd.DataFrame, *, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean score with a bootstrap interval per model × suite (category '*') and per category.

    Only ok rows with a score count; a sample repeated R times counts once, at its mean, since
    repetitions of one question are not independent evidence. Error and unsupported rows are
    counted apart. Rows that belong to no model or no suite (a bad suite file, an unknown
    model) are left out: they have no accuracy to report.
    """
    if df.empty:
        return pd.DataFrame({n: pd.Series(dtype=SCHEMA.field(n).type.to_pandas_dtype()) for n in NAMES})
    d = df[df["model"].notna() & (df["model"] != ALL) & df["suite"].notna() & (df["suite"] != ALL)].copy()
    d["suite_hash"] = d["suite_hash"].fillna("")
    d["category"] = d["category"].fillna("")
    d["metric"] = d["metric"].fillna("")
    scored = (d["status"] == "ok") & d["score"].notna()
    d["_error"] = (d["status"] == "error") | ((d["status"] == "ok") & d["score"].isna())
    d["_unsupported"] = d["status"] == "unsupported"
    per_sample = (
        d[scored].groupby([*_GROUP, "category", "sample_id"], sort=False, dropna=False)
        .agg(score=("score", "mean"), metric=("metric", "first")).reset_index()
    )
    by_group = {k: g for k, g in per_sample.groupby(_GROUP, sort=False)}
    empty = per_sample.iloc[0:0]
    out = []
    for key, rows in d.groupby(_GROUP, sort=True):
        base = dict(zip(_GROUP, key, strict=True))
        samples = by_group.get(key, empty)
        opts = {"level": level, "resamples": resamples, "seed": seed}
        out.append(_summarise({**base, "category": ALL}, samples["score"], list(rows["metric"]),
                              int(rows["_error"].sum()), int(rows["_unsupported"].sum()), **opts))
        for cat, crow in rows.groupby("category", sort=True):
            cs = samples[samples["category"] == cat]
            out.append(_summarise({**base, "category": cat}, cs["score"], list(crow["metric"]),
                                  int(crow["_error"].sum()), int(crow["_unsupported"].sum()), **opts))
    table = pd.DataFrame(out, columns=NAMES)
    return pa.Table.from_pandas(table, schema=SCHEMA, preserve_index=False).to_pandas()


def write_accuracy(run_dir: Path | str, df: pd.DataFrame) -> Path:
    """Write accuracy_table(df) as accuracy.parquet in the run directory, atomically."""
    path = Path(run_dir) / FILENAME
    table = pa.Table.from_pandas(accuracy_table(df), schema=SCHEMA, preserve_index=False)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path
