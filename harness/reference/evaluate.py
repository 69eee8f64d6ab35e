"""Score a reference checkpoint through the ordinary harness path (VLMTester, worker process,
mlx_vlm.load, the suite's metric) and summarise accuracy per category with bootstrap CIs."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from harness.stats import bootstrap_ci

HELDOUT_SUITE = "reference-heldout"
TARGETS = {"colour": 0.98, "shape": 0.95, "count": 0.80}


def accuracy_table(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """{category | "all": {n, accuracy, ci_low, ci_high, errors}}; error rows count as wrong,
    since a sample the model could not answer is not a right answer."""
    rows = df[df["sample_id"] != "*"]
    out: dict[str, dict[str, Any]] = {}
    groups = [("all", rows)] + [(str(c), g) for c, g in rows.groupby("category")]
    for name, g in groups:
        scores = g["score"].where(g["status"] == "ok", 0.0).fillna(0.0).to_numpy(dtype=float)
        lo, hi = bootstrap_ci(scores) if len(scores) else (math.nan, math.nan)
        out[name] = {
            "n": int(len(scores)),
            "accuracy": round(float(scores.mean()), 4) if len(scores) else math.nan,
            "ci_low": round(lo, 4), "ci_high": round(hi, 4),
            "errors": int((g["status"] != "ok").sum()),
        }
        if name in TARGETS:
            out[name]["target"] = TARGETS[name]
    return out


def run_suite(checkpoint: Path | str, suite: str = HELDOUT_SUITE, *, limit: int | None = None,
              out_dir: Path | None = None) -> pd.DataFrame:
    from harness.tester import VLMTester

    with tempfile.TemporaryDirectory(prefix="reference-eval-") as tmp:
        tester = VLMTester(out_dir or Path(tmp), limit=limit, progress=False)
        return tester.run([str(checkpoint)], [suite])


def evaluate(checkpoint: Path | str, suite: str = HELDOUT_SUITE, *, limit: int | None = None) -> dict[str, dict[str, Any]]:
    return accuracy_table(run_suite(checkpoint, suite, limit=limit))


def format_table(table: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, r in table.items():
        target = f"  target {r['target']:.0%}" if "target" in r else ""
        lines.append(f"{name:7} {r['accuracy']:6.1%}  95% CI [{r['ci_low']:.1%}, {r['ci_high']:.1%}]  n={r['n']}"
                     f"{'  errors ' + str(r['errors']) if r['errors'] else ''}{target}")
    return "\n".join(lines)
