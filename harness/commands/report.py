from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import command


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", help="results.parquet files or run directories")
    p.add_argument("-o", "--output", default="reports/report.html")
    p.add_argument("--title", default="VLM benchmark")
    p.add_argument("--load", action="append", default=[], metavar="DIR",
                   help="load run directories of `vlm-harness load`, or a folder of them (e.g. reports/load): "
                        "summarised in a 'Serving under load' section that links each run's report; repeatable")


@command("report", "render an HTML report from result files or run directories", configure)
def run(args: argparse.Namespace) -> int:
    from harness.report import render
    from harness.results.store import read_results_info, unsealed

    # No readable row at all is an error, not an empty report saying "0 result rows".
    df, infos = read_results_info(*map(Path, args.results), require_rows=True)
    out = Path(args.output)
    missing = [d for d in args.load if not Path(d).is_dir()]
    if missing:
        print(f"vlm-harness report: error: --load {missing[0]}: no such directory; give a load run directory "
              "or the folder `vlm-harness load --out` wrote to (default reports/load)", file=sys.stderr)
        return 2
    render(df, out, title=args.title, sources=[str(p) for p in args.results], load_runs=[Path(d) for d in args.load],
           unsealed=unsealed(infos))
    print(f"report: {out}")
    return 0
