"""The gate's inputs on disk: which run a path means, and promoting runs to be the baseline.

Shared by the `gate` and `baseline` commands (a command never imports another command).
A baseline may hold several runs of the same benchmark: the gate then estimates between-run
noise from them instead of leaning on the factor alone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness.schema import NAMES, SCHEMA
from harness.store import PARTS, RESULTS, read_results

PLAN = "run.json"  # written by every run into its directory; marks a directory as a run
META = "baseline.json"


class BaselineError(ValueError):
    """A run cannot be used as (or read as) a baseline; the message names it and the fix."""


def latest_run(out_dir: Path) -> Path | None:
    """The newest run directory in a directory of runs (run ids sort by time), or None."""
    runs = sorted(p for p in Path(out_dir).glob("*") if (p / PLAN).exists())
    return runs[-1] if runs else None


def resolve_run(path: Path) -> Path:
    """A run directory or parquet file as given; a directory of runs becomes its latest run."""
    path = Path(path)
    if not path.exists():
        raise BaselineError(f"no results at {path}: give a run directory or a results.parquet file")
    if path.is_dir() and not (path / RESULTS).exists() and not (path / PARTS).exists():
        latest = latest_run(path)
        if latest is None:
            raise BaselineError(f"no results at {path}: give a run directory or a results.parquet file")
        return latest
    return path


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write parquet so that a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
    try:
        with os.fdopen(fd, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the baseline is shared like its neighbours
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    unconsolidated = sources[0].is_dir() and any((sources[0] / PARTS).glob("part-*.parquet"))
    if len(sources) == 1 and whole.exists() and not unconsolidated:
        # A byte copy: the baseline is exactly the file the run wrote.
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".tmp-", suffix=".parquet")
        os.close(fd)
        shutil.copyfile(whole, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target / RESULTS)
        df = frames[0]
    else:
        import pandas as pd

        df = pd.concat(frames, ignore_index=True)
        write_table_atomic(pa.Table.from_pandas(df.reindex(columns=NAMES), schema=SCHEMA, preserve_index=False),
                           target / RESULTS)
    runs = sorted(df["run_id"].dropna().unique().tolist())
    meta = {"source": [str(s) for s in sources] if len(sources) > 1 else str(sources[0]), "runs": runs,
            "rows": len(df), "promoted_at": datetime.now(UTC).isoformat(timespec="seconds")}
    (target / META).write_text(json.dumps(meta, indent=2) + "\n")
    return f"baseline: {target / RESULTS} ← {', '.join(map(str, sources))} ({len(df)} rows, runs {', '.join(runs)})"
