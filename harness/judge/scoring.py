"""Scoring: a pure function of a stored row (as lm-eval's `process_results` after generation,
and lmms-eval's `from_log`).

A row carries everything a metric reads (output, answers, keywords, choices, metric name), so
the same function scores a row the moment it is measured and any stored run later
(`vlm-harness rescore`): fixing a metric never means running a model again.

Rows written before keywords and choices were stored (results schema v1) lack them; when the
suite that produced them still has the same hash, `fill_from_suites` takes them from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from harness import metrics
from harness.core.records import Sample


def sample_of(row: Mapping[str, Any]) -> Sample:
    """The parts of a Sample a metric reads, rebuilt from a results row. The list fields go
    through the Sample's one rule (harness.core.records.text_items): a bare string is one answer,
    a None in a list is a ValueError, never the answer "None"."""
    return Sample(
        suite=str(row.get("suite") or ""), id=str(row.get("sample_id") or ""), images=row.get("images"),
        prompt=str(row.get("prompt") or ""), answers=row.get("answers"),
        category=str(row.get("category") or ""), metric=str(row.get("metric") or ""),
        max_tokens=int(row.get("max_tokens") or 0), keywords=row.get("keywords"),
        choices=row.get("choices"), turns=row.get("turns"),
    )


def metric_version(name: str) -> int | None:
    if name not in metrics.METRICS:
        return None
    return int(getattr(metrics.METRICS.get(name), "version", 1))


def score_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """{score, metric_version} for an ok row, or {score: None, error: why} when scoring fails.

    Rows that are not ok, or have no metric, are not scored (an empty dict)."""
    if row.get("status") != "ok" or not row.get("metric"):
        return {}
    try:
        sample = sample_of(row)
    except ValueError as e:  # the row's own answers are malformed: an error on the row, the run goes on
        return {"score": None, "metric_version": metric_version(str(row["metric"])), "error": f"scoring failed: {e}"}
    try:
        value = metrics.score(str(row.get("output") or ""), sample)
    except Exception as e:  # a metric bug must never lose the measurement
        return {"score": None, "metric_version": metric_version(sample.metric),
                "error": f"scoring failed: {type(e).__name__}: {e}"}
    return {"score": float(value), "metric_version": metric_version(sample.metric)}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def needs_suite(row: Mapping[str, Any]) -> bool:
    """A row whose metric reads a field the row does not carry: written before keywords and
    choices were stored (null there; an empty list means the sample had none)."""
    metric = row.get("metric")
    return ((metric == "keyword_recall" and _missing(row.get("keywords")))
            or (str(metric).startswith("multiple_choice") and _missing(row.get("choices"))))


def fill_from_suites(df: pd.DataFrame, warn: Any = None) -> pd.DataFrame:
    """Take keywords and choices missing from old rows from the current suite of the same hash."""
    from harness.suites import SuiteError, load_suite

    missing = df[[needs_suite(r) for r in df.to_dict("records")]] if not df.empty else df
    if missing.empty:
        return df
    df = df.copy()
    for (suite, suite_hash), rows in missing.groupby(["suite", "suite_hash"]):
        try:
            current = load_suite(suite)
        except SuiteError as e:
            if warn:
                warn(f"{suite}: {e}")
            continue
        if current.hash != suite_hash:
            if warn:
                warn(f"{suite}: the rows lack keywords/choices and the suite has changed since "
                     f"(hash {suite_hash[:12]} then, {current.hash[:12]} now); those rows keep their old scores")
            continue
        by_id = {s.id: s for s in current.samples}
        for idx in rows.index:
            s = by_id.get(df.at[idx, "sample_id"])
            if s is not None:
                df.at[idx, "keywords"] = list(s.keywords) or None
                df.at[idx, "choices"] = list(s.choices) or None
    return df


def rescore(df: pd.DataFrame, warn: Any = None) -> pd.DataFrame:
    """Every ok row scored again with the metrics of this harness; other rows unchanged."""
    df = fill_from_suites(df, warn)
    out = df.copy()
    scores, versions, errors = [], [], []
    for row in df.to_dict("records"):
        if row.get("status") != "ok" or needs_suite(row):
            scores.append(row.get("score"))
            versions.append(row.get("metric_version"))
            errors.append(row.get("error"))
            continue
        s = score_row(row)
        scores.append(s.get("score"))
        versions.append(s.get("metric_version"))
        errors.append(s.get("error", "" if str(row.get("error") or "").startswith("scoring failed") else row.get("error")))
    out["score"] = pd.array(scores, dtype="Float64").astype(float)
    out["metric_version"] = pd.array(versions, dtype="Int32")
    out["error"] = errors
    return out
