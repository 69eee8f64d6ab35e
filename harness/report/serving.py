"""The main report's "Serving under load" section: one line per load sweep found in the load run
directories given (`vlm-harness report --load DIR`), with its peak throughput, saturation point
and failures, linking to the sweep's own report, where the curves and per-step table are.

The figures come from the per-request rows through harness/serving/metrics.py, the same
summary the load report shows, so the two pages cannot disagree.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.serving.metrics import summarise
from harness.serving.report import load_label
from harness.serving.rows import LoadSchemaMismatch, is_load_run, read_rows


@dataclass(frozen=True)
class Sweep:
    run: str  # the load run's id (its directory name)
    when: str  # UTC date and time of its first step
    model: str
    suite: str
    mode: str  # concurrency | rate
    steps: str  # the loads swept, e.g. "1, 2, 4, 8"
    peak_rps: str  # the highest request throughput of any step, with the step
    saturation: str  # the saturation step and its p90 TTFT, or "none in this sweep"
    failed: str  # failed requests of all sent, over every step
    href: str  # the sweep's own report, relative to the main report; "" when it has none
    problem: str = ""  # why the directory could not be read, for a run that could not be


def run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Load run directories: each path is one (it holds load.parquet) or holds several."""
    out: list[Path] = []
    for p in map(Path, paths):
        if is_load_run(p):
            out.append(p)
        elif p.is_dir():
            out += sorted(d for d in p.iterdir() if d.is_dir() and is_load_run(d))
    return out


def _when(rows) -> str:  # noqa: ANN001 - a pandas frame
    start = rows["step_start_unix"].dropna()
    return datetime.fromtimestamp(float(start.min()), UTC).strftime("%Y-%m-%d %H:%M") if len(start) else "–"


def sweeps(paths: Iterable[Path], out: Path) -> list[Sweep]:
    """One Sweep per model × suite × mode of every load run under `paths`, newest run first."""
    found: list[Sweep] = []
    for d in run_dirs(paths):
        report = d / "report.html"
        href = os.path.relpath(report, Path(out).parent) if report.exists() else ""
        try:
            rows = read_rows(d)
        except (OSError, LoadSchemaMismatch, ValueError) as e:
            found.append(Sweep(d.name, "–", "–", "–", "–", "–", "–", "–", "–", href, problem=str(e)))
            continue
        summary = summarise(rows)
        if summary.empty:
            continue
        when = _when(rows)
        for (model, suite, mode), g in summary.groupby(["model", "suite", "mode"], sort=False):
            peak = g.loc[g["request_throughput"].idxmax()] if g["request_throughput"].notna().any() else None
            sat = g[g["saturated"]]
            sent = int(g["completed"].sum() + g["failed"].sum())
            found.append(Sweep(
                run=d.name, when=when, model=Path(str(model)).name, suite=str(suite), mode=str(mode),
                steps=", ".join(f"{v:g}" for v in g["load"]),
                peak_rps="–" if peak is None else f"{peak['request_throughput']:.2f} req/s at {load_label(peak)}",
                saturation=("none in this sweep" if sat.empty else
                            f"{load_label(sat.iloc[0])}, p90 TTFT {_ms(sat.iloc[0]['ttft_p90_ms'])}"),
                failed=f"{int(g['failed'].sum())} of {sent}",
                href=href,
            ))
    return sorted(found, key=lambda s: s.when, reverse=True)


def _ms(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0f} ms"
