from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import command


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", metavar="RUN_OR_FILE",
                   help="run directories (shards, machines), results files (also pandas, DuckDB or polars copies), "
                        "or folders holding them (e.g. downloaded CI artifacts)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="where the merged set goes: results.parquet, accuracy.parquet, merge.json, report.html")
    p.add_argument("--title", default="VLM benchmark (merged)")
    p.add_argument("--skip-damaged", action="store_true",
                   help="warn about an unreadable file and merge the rest (default: stop and name it)")


@command("merge", "merge runs, shards and machines into one results set with accuracy and a report", configure)
def run(args: argparse.Namespace) -> int:
    from harness.judge.accuracy import write_accuracy
    from harness.report import render
    from harness.results.merging import merge
    from harness.results.rundir import RunDir, now, write_json
    from harness.results.store import write_results

    out = RunDir(Path(args.output))
    sources = [Path(p) for p in args.results]
    if out.path.resolve() in {p.resolve() for p in sources}:
        print(f"vlm-harness merge: error: -o {out.path} is also an input; give a new directory", file=sys.stderr)
        return 2
    merged = merge(sources, damaged="skip" if args.skip_damaged else "raise")
    if merged.rows.empty:
        print(f"vlm-harness merge: error: no rows in {', '.join(map(str, sources))}", file=sys.stderr)
        return 2
    out.path.mkdir(parents=True, exist_ok=True)
    write_results(merged.rows, out.results)
    write_accuracy(out.path, merged.rows)  # over the union: every shard's samples in one interval
    write_json(out.path / "merge.json", merged.summary())
    out.write_plan({"run_id": out.run_id, "command": "merge", "sources": [str(p) for p in sources],
                    "runs": list(merged.runs), "started_at": now(), "finished_at": now()})
    report = render(merged.rows, out.path / "report.html", title=args.title, sources=[str(p) for p in sources],
                    run_dir=out.path, unsealed=[f.path for f in merged.files if not f.sealed])
    for c in merged.conflicts:
        print(f"vlm-harness merge: {c.describe()}", file=sys.stderr)
    unsealed = [f.path for f in merged.files if not f.sealed]
    if unsealed:
        print(f"vlm-harness merge: unsealed (no content digest to check): {', '.join(unsealed)}", file=sys.stderr)
    print(f"merged: {len(merged.rows)} rows from {len(merged.files)} file(s), {len(merged.runs)} run(s), "
          f"{len(merged.machines)} machine(s); {merged.duplicates} duplicate(s) dropped, "
          f"{len(merged.conflicts)} conflict(s), {merged.remeasured} key(s) measured in several runs")
    print(f"results: {out.results}")
    print(f"report:  {report}")
    return 1 if merged.conflicts else 0
