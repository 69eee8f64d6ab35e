from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import command


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", help="results.parquet files or run directories")
    p.add_argument("-o", "--output", default="reports/report.html")
    p.add_argument("--title", default="VLM benchmark")


@command("report", "render an HTML report from result files or run directories", configure)
def run(args: argparse.Namespace) -> int:
    from harness.report import render
    from harness.store import read_results

    df = read_results(*map(Path, args.results))
    out = Path(args.output)
    render(df, out, title=args.title, sources=[str(p) for p in args.results])
    print(f"report: {out}")
    return 0
