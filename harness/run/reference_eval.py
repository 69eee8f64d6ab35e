"""Score a reference checkpoint through the ordinary harness path (VLMTester, worker process,
mlx_vlm.load, the suite's metric) and summarise accuracy per category with bootstrap CIs."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from harness.judge.accuracy import accuracy_table

HELDOUT_SUITE = "reference-heldout"
TARGETS = {"colour": 0.98, "shape": 0.95, "count": 0.80}


def summary(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """{category | "all": {n, accuracy, ci_low, ci_high, errors}} through harness.judge.accuracy, with
    failed rows counted as wrong: a sample the model could not answer is not a right answer."""
    table = accuracy_table(df, errors="zero")
    rows = df[df["sample_id"] != "*"]
    out: dict[str, dict[str, Any]] = {}
    for r in table.itertuples(index=False):
        name = "all" if r.category == "*" else str(r.category)
        failed = rows if name == "all" else rows[rows["category"] == r.category]
        out[name] = {
            "n": int(r.n), "accuracy": round(float(r.mean), 4) if r.n else math.nan,
            "ci_low": round(float(r.ci_low), 4), "ci_high": round(float(r.ci_high), 4),
            "errors": int((failed["status"] != "ok").sum()),
        }
        if name in TARGETS:
            out[name]["target"] = TARGETS[name]
    return out


def run_suite(checkpoint: Path | str, suite: str = HELDOUT_SUITE, *, limit: int | None = None,
              out_dir: Path | None = None) -> pd.DataFrame:
    from harness.run.tester import VLMTester

    with tempfile.TemporaryDirectory(prefix="reference-eval-") as tmp:
        tester = VLMTester(out_dir or Path(tmp), limit=limit, progress=False)
        return tester.run([str(checkpoint)], [suite])


def evaluate(checkpoint: Path | str, suite: str = HELDOUT_SUITE, *, limit: int | None = None) -> dict[str, dict[str, Any]]:
    return summary(run_suite(checkpoint, suite, limit=limit))


def format_table(table: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, r in table.items():
        target = f"  target {r['target']:.0%}" if "target" in r else ""
        lines.append(f"{name:7} {r['accuracy']:6.1%}  95% CI [{r['ci_low']:.1%}, {r['ci_high']:.1%}]  n={r['n']}"
                     f"{'  errors ' + str(r['errors']) if r['errors'] else ''}{target}")
    return "\n".join(lines)
