"""One results set from many: runs, shards of a run, machines of a CI matrix or a fleet.

A pure step over rows read by harness/results/store.py (every schema version migrated, files from
pandas, DuckDB or polars included). A row is one measurement, named by its run and its key
(model × suite × suite hash × sample × repetition):

- **Duplicates**: the same run and key read twice (a file given twice, a run and a copy of it,
  parts beside their consolidated file). Identical ones are kept once.
- **Conflicts**: the same run and key with different results (status, output, score, timings,
  machine). Both cannot be the truth; the merge keeps one (a measured row over a failed one,
  then the newer) and names every conflict, so nobody averages a corrupted copy in silently.
- **Re-measured**: one key measured in several runs (an overlap of shards, a re-run CI job).
  Both are measurements; accuracy averages a sample's repetitions, speed is shown per machine.

Rows for a model or suite that could not be planned ("*") repeat in every shard; they are kept
once per model, suite and error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.core.schema import KEY
from harness.results.rundir import ACCURACY, PARTS, RESCORE, RESULTS, RunDir
from harness.results.store import FileInfo, read_results_info

IDENTITY = ("run_id", *KEY)
# What a conflicting duplicate may differ in; recorded_at alone differing is a re-write of one result.
COMPARED = ("status", "error", "output", "score", "generated_tokens", "ttft_s", "decode_tps", "wall_s", "machine_id")


@dataclass(frozen=True)
class Conflict:
    run_id: str
    key: tuple  # KEY's values
    columns: tuple[str, ...]  # where the copies differ
    kept: str  # which copy the merge kept, and why

    def describe(self) -> str:
        model, suite, _h, sample, repeat = self.key
        return (f"conflict: run {self.run_id}, {model} × {suite} × sample {sample} (repeat {repeat}): copies differ in "
                f"{', '.join(self.columns)}; kept {self.kept}")


@dataclass(frozen=True)
class Merged:
    rows: pd.DataFrame
    files: tuple[FileInfo, ...]
    read: int  # rows read, before duplicates were dropped
    duplicates: int  # identical copies dropped
    conflicts: tuple[Conflict, ...]
    remeasured: int  # keys measured in more than one run, all kept
    runs: tuple[str, ...]
    machines: tuple[str, ...]

    def summary(self) -> dict:
        """What merge.json records."""
        return {
            "files": [{"path": f.path, "rows": f.rows, "schema_versions": list(f.schema_versions), "sealed": f.sealed,
                       "written_by": f.written_by} for f in self.files],
            "rows_read": self.read, "rows": len(self.rows), "identical_duplicates_dropped": self.duplicates,
            "conflicts": [c.describe() for c in self.conflicts], "keys_measured_in_several_runs": self.remeasured,
            "runs": list(self.runs), "machines": list(self.machines),
            "unsealed": [f.path for f in self.files if not f.sealed],
        }


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    try:
        return bool(a == b)
    except ValueError:  # arrays
        return list(a) == list(b)


def merge_rows(df: pd.DataFrame, files: Sequence[FileInfo] = ()) -> Merged:
    """Drop identical duplicates, resolve and name conflicting ones, keep re-measurements."""
    read = len(df)
    planned = df[df["sample_id"] != "*"]
    problems = df[df["sample_id"] == "*"].drop_duplicates(subset=["model", "suite", "error"], keep="last")
    conflicts: list[Conflict] = []
    duplicates = 0
    keep: list[int] = []
    ident = planned[list(IDENTITY)].astype(str).agg("\0".join, axis=1) if not planned.empty else pd.Series(dtype=str)
    dup_mask = ident.duplicated(keep=False)
    keep.extend(planned.index[~dup_mask])
    compared = [c for c in COMPARED if c in planned]
    for _, group in planned[dup_mask].groupby(ident[dup_mask], sort=True):
        rows = list(group.itertuples())
        first = rows[0]
        differ = [c for c in compared if not all(_same(getattr(first, c), getattr(r, c)) for r in rows[1:])]
        if not differ:
            duplicates += len(rows) - 1
            keep.append(first.Index)
            continue
        # A measured copy over a failed one, then the newest: a re-run that fixed an error wins.
        best = max(rows, key=lambda r: (r.status == "ok", pd.Timestamp(r.recorded_at) if r.recorded_at is not None
                                        and not pd.isna(r.recorded_at) else pd.Timestamp.min.tz_localize("UTC")))
        keep.append(best.Index)
        duplicates += len(rows) - 1
        why = "the measured one" if best.status == "ok" and any(r.status != "ok" for r in rows) else "the newest"
        conflicts.append(Conflict(str(first.run_id), tuple(getattr(first, k) for k in KEY), tuple(differ),
                                  f"{why} (recorded {best.recorded_at})"))
    out = pd.concat([planned.loc[sorted(keep)], problems]).reset_index(drop=True)
    measured = out[out["sample_id"] != "*"]
    runs_per_key = measured.groupby(list(KEY), dropna=False)["run_id"].nunique() if not measured.empty else pd.Series()
    machine = (out["machine_id"].where(out["machine_id"].notna(), out.get("env_host"))
               if "machine_id" in out else pd.Series(dtype=object))
    return Merged(out, tuple(files), read, duplicates, tuple(conflicts), int((runs_per_key > 1).sum()),
                  tuple(sorted(out["run_id"].dropna().astype(str).unique())),
                  tuple(sorted(machine.dropna().astype(str).unique())))


def expand(paths: Sequence[Path]) -> list[Path]:
    """Run directories and files as given; any other folder (a directory of runs, downloaded CI
    artifacts) stands for every run directory and loose results file under it."""
    out: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir() or RunDir(path).exists():
            out.append(path)
            continue
        # A rescore's results re-score a run's rows: merged with the run they would read as conflicts.
        found = sorted({p.parent for p in path.rglob(RESULTS) if RESCORE not in p.relative_to(path).parts} | {p.parent.parent for p in path.rglob(f"{PARTS}/part-*")}
                       | {p for p in path.rglob("*.parquet") if p.name not in (RESULTS, ACCURACY)
                          and not RunDir(p.parent).exists() and PARTS not in p.parts})
        if not found:
            raise FileNotFoundError(f"no results under {path}: give run directories, results.parquet files, or a "
                                    "folder holding them")
        out.extend(found)
    return out


def merge(paths: Sequence[Path], damaged: str = "raise") -> Merged:
    """Read runs, run directories of shards, or results files (any tool's), and merge their rows."""
    df, files = read_results_info(*expand(paths), damaged=damaged, dedupe=False)
    return merge_rows(df, files)
