"""Runs side by side: the latest run against the one before it (deltas and significance, by
the gate's own tests) and a summary of every stored run, oldest first.

Accuracy per run comes from `accuracy_table`, grouped by model × suite × suite_hash, and is
combined over suites by `kinds.kind_summary`: two suites whose sample ids happen to be equal are
never averaged together.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.gate.compare import GateResult, compare, incomparable
from harness.judge.accuracy import accuracy_table
from harness.judge.throughput import latency_rows
from harness.report.kinds import kind_summary, suite_kinds
from harness.report.tables import ok_rows


def run_order(df: pd.DataFrame) -> list[str]:
    """Run ids by when their first row was recorded (ids sort by time too, as a fallback)."""
    if "run_id" not in df or df["run_id"].nunique() == 0:
        return []
    if "recorded_at" in df and df["recorded_at"].notna().any():
        first = df.groupby("run_id")["recorded_at"].min().sort_values(kind="stable")
        return list(first.index)
    return sorted(df["run_id"].dropna().unique())


def history(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run × model: when, where, median timings, and overall accuracy (mean of its
    per-suite means) with its 95 % interval, in %."""
    order = run_order(df)
    ok = ok_rows(df)
    kinds = suite_kinds(df)
    rows = []
    for run in order:
        r = ok[ok["run_id"] == run]
        if r.empty:
            continue
        scores = accuracy_table(df[df["run_id"] == run])
        if "statistic" in scores:  # published benchmark figures are in their own units
            scores = scores[scores["statistic"].fillna("score") == "score"]
        overall = kind_summary(scores, kinds)
        overall = overall[overall["kind"] == "overall"].set_index("model")
        for model, g in r.groupby("model"):
            a = overall.loc[model] if model in overall.index else None
            timed = latency_rows(g)  # an accuracy-mode pass has no per-request latency
            when = g["recorded_at"].min() if "recorded_at" in g else None
            rows.append({
                "run_id": run, "when": when.strftime("%Y-%m-%d %H:%M") if pd.notna(when) else "",
                "host": ", ".join(sorted(map(str, g["env_host"].dropna().unique()))) if "env_host" in g else "",
                "model": model, "n": int(len(g)),
                "decode_tps": float(timed["decode_tps"].median()) if timed["decode_tps"].notna().any() else math.nan,
                "ttft_ms": float(timed["ttft_s"].median()) * 1e3 if timed["ttft_s"].notna().any() else math.nan,
                "accuracy": math.nan if a is None else 100 * float(a["mean"]),
                "acc_lo": math.nan if a is None else 100 * float(a["ci_low"]),
                "acc_hi": math.nan if a is None else 100 * float(a["ci_high"]),
                "acc_n": 0 if a is None else int(a["n"]),
            })
    return pd.DataFrame(rows)


def latest_vs_previous(df: pd.DataFrame) -> tuple[str, str, GateResult, list[str]] | None:
    """(previous run, latest run, comparison, warnings) when there are two runs or more.

    The report compares even across machines, which a gate refuses; it says so instead."""
    order = run_order(df)
    if len(order) < 2:
        return None
    prev, last = order[-2], order[-1]
    b, c = df[df["run_id"] == prev], df[df["run_id"] == last]
    warnings = [p for p in incomparable(b, c) if p.startswith("environment differs")]
    return prev, last, compare(b, c, check_environment=False), warnings
