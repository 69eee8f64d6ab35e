from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import command


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run directory (or a directory of runs: its latest), any schema version")
    p.add_argument("--report", action="store_true", help="also render report.html from the rescored results")


@command("rescore", "score a stored run again with the current metrics, without loading any model", configure)
def run(args: argparse.Namespace) -> int:
    from harness import metrics
    from harness.judge import scoring
    from harness.judge.accuracy import accuracy_table, write_accuracy
    from harness.results.rundir import RESCORE, RunDir, resolve, write_json
    from harness.results.store import read_results, write_results

    source = resolve(Path(args.run))
    run = RunDir(source if source.is_dir() else source.parent)
    before = read_results(source, damaged="skip", require_rows=True)  # NoResults: one line, exit 2
    after = scoring.rescore(before, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    stamp = RunDir.stamp()
    out = run.path / RESCORE / stamp
    write_results(after, out / "results.parquet")
    write_accuracy(out, after)
    used = sorted({m for m in after.loc[after["status"] == "ok", "metric"].dropna().unique() if m in metrics.METRICS})
    changed = int(((before["score"].fillna(-1) != after["score"].fillna(-1)) & (after["status"] == "ok")).sum())
    write_json(out / "rescore.json", {
        "source": str(source), "rescored_at": stamp, "rows": len(after), "rows_changed": changed,
        "metric_versions": {m: scoring.metric_version(m) for m in used},
        "previous_metric_versions": sorted({int(v) for v in before["metric_version"].dropna()}),
    })
    old, new = accuracy_table(before), accuracy_table(after)
    whole = old[old["category"] == "*"].merge(new[new["category"] == "*"], on=["model", "suite", "suite_hash"],
                                               suffixes=("_old", "_new"))
    print("| model | suite | metric | before | after | n |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for r in whole.itertuples(index=False):
        print(f"| {r.model} | {r.suite} | {r.metric_new} | {100 * r.mean_old:.1f} | {100 * r.mean_new:.1f} | {r.n_new} |")
    print(f"rescored: {changed} of {len(after)} row(s) changed score; metric versions "
          + ", ".join(f"{m} v{scoring.metric_version(m)}" for m in used), file=sys.stderr)
    print(f"results:  {out / 'results.parquet'}")
    print(f"accuracy: {out / 'accuracy.parquet'}")
    if args.report:
        from harness.report import render

        render(after, out / "report.html", title=f"VLM benchmark {run.run_id} (rescored {stamp})",
               sources=[str(out / "results.parquet")])
        print(f"report:   {out / 'report.html'}")
    return 0
