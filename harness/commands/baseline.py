from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from harness.commands import command


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    u = sub.add_parser("update", help="make a run the baseline the gate compares against")
    u.add_argument("run", nargs="?", help="run directory or results.parquet (default: the latest run in reports/runs)")
    u.add_argument("--to", help="baseline directory (default: reports/baseline)")


@command("baseline", "manage the gate's baseline: `baseline update RUN` promotes a run", configure)
def run(args: argparse.Namespace) -> int:
    from harness.paths import reports_dir
    from harness.rundir import resolve

    source = resolve(Path(args.run) if args.run else reports_dir() / "runs")
    return update(source, Path(args.to) if args.to else reports_dir() / "baseline")


def update(source: Path, target: Path) -> int:
    """Copy a run's results.parquet to `target/` (parts folded in first), with where it came from."""
    import os
    import shutil
    import tempfile

    import pyarrow as pa

    from harness.rundir import PARTS, RESULTS
    from harness.schema import NAMES, SCHEMA
    from harness.store import read_results, write_table

    df = read_results(source)  # also checks the schema version
    if df.empty or not (df["status"] == "ok").any():
        print(f"vlm-harness baseline: {source} has no measured rows; run the benchmark again before promoting it")
        return 2
    whole = source / RESULTS if source.is_dir() else source
    unconsolidated = source.is_dir() and any((source / PARTS).glob("part-*.parquet"))
    target.mkdir(parents=True, exist_ok=True)
    if whole.exists() and not unconsolidated:
        # A byte copy: the baseline is exactly the file the run wrote.
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".tmp-", suffix=".parquet")
        os.close(fd)
        shutil.copyfile(whole, tmp)
        os.replace(tmp, target / RESULTS)
    else:
        table = pa.Table.from_pandas(df.reindex(columns=NAMES), schema=SCHEMA, preserve_index=False)
        write_table(table, target / RESULTS)
    meta = {"source": str(source), "runs": sorted(df["run_id"].dropna().unique().tolist()), "rows": len(df),
            "promoted_at": datetime.now(UTC).isoformat(timespec="seconds")}
    (target / "baseline.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"baseline: {target / RESULTS} ← {source} ({len(df)} rows, runs {', '.join(meta['runs'])})")
    return 0
