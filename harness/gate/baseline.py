"""The gate's inputs on disk: which run a path means, and promoting runs to be the baseline.

Shared by the `gate` and `baseline` commands (a command never imports another command).
A baseline may hold several runs of the same benchmark: the gate then estimates between-run
noise from them instead of leaning on the factor alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from harness.results import rundir
from harness.results.rundir import RESULTS
from harness.results.store import read_results, write_results

META = "baseline.json"


class BaselineError(ValueError):
    """A run cannot be used as (or read as) a baseline; the message names it and the fix."""


def latest_run(out_dir: Path) -> Path | None:
    """The newest run directory in a directory of runs, or None."""
    found = rundir.latest(Path(out_dir))
    return found.path if found else None


def resolve_run(path: Path) -> Path:
    """A run directory or parquet file as given; a directory of runs becomes its latest run."""
    try:
        return rundir.resolve(Path(path))
    except FileNotFoundError as e:
        raise BaselineError(str(e)) from None


def promote(sources: Sequence[Path], target: Path) -> str:
    """Make one run, or several runs of the same benchmark, the baseline at `target/`.

    One consolidated run is copied byte for byte; several runs (or one with parts not yet
    folded in) are merged into one results.parquet. Returns a line saying what was done;
    raises BaselineError when a source has no measured rows."""
    sources = [Path(s) for s in sources]
    if not sources:
        raise BaselineError("no run to promote: give a run directory or results.parquet")
    frames = []
    for source in sources:
        df = read_results(source)  # also checks the schema version
        if df.empty or not (df["status"] == "ok").any():
            raise BaselineError(f"{source} has no measured rows; run the benchmark again before promoting it")
        frames.append(df)
    target.mkdir(parents=True, exist_ok=True)
    whole = sources[0] / RESULTS if sources[0].is_dir() else sources[0]
    unconsolidated = sources[0].is_dir() and bool(rundir.RunDir(sources[0]).part_files())
    if len(sources) == 1 and whole.exists() and not unconsolidated:
        # A byte copy: the baseline is exactly the file the run wrote.
        rundir.atomic_write_bytes(target / RESULTS, whole.read_bytes())
        df = frames[0]
    else:
        import pandas as pd

        df = pd.concat(frames, ignore_index=True)
        write_results(df, target / RESULTS)
    runs = sorted(df["run_id"].dropna().unique().tolist())
    meta = {"source": [str(s) for s in sources] if len(sources) > 1 else str(sources[0]), "runs": runs,
            "rows": len(df), "promoted_at": datetime.now(UTC).isoformat(timespec="seconds")}
    rundir.write_json(target / META, meta)
    return f"baseline: {target / RESULTS} ← {', '.join(map(str, sources))} ({len(df)} rows, runs {', '.join(runs)})"
