from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import command


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    u = sub.add_parser("update", help="make a run (or several runs of the same benchmark) the baseline the gate "
                                      "compares against")
    u.add_argument("run", nargs="*", help="run directories or results.parquet files (default: the latest run in "
                                          "reports/runs); several runs let the gate measure between-run noise")
    u.add_argument("--to", help="baseline directory (default: reports/baseline)")


@command("baseline", "manage the gate's baseline: `baseline update RUN [RUN ...]` promotes runs", configure)
def run(args: argparse.Namespace) -> int:
    from harness.core.paths import reports_dir
    from harness.gate.baseline import BaselineError, promote, resolve_run
    from harness.results.store import SchemaMismatch

    try:
        sources = [resolve_run(Path(r)) for r in args.run] or [resolve_run(reports_dir() / "runs")]
        print(promote(sources, Path(args.to) if args.to else reports_dir() / "baseline"))
    except (BaselineError, SchemaMismatch, FileNotFoundError) as e:
        print(f"vlm-harness baseline: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a damaged parquet file: pyarrow raises many types
        print(f"vlm-harness baseline: cannot read the run: {type(e).__name__}: {' '.join(str(e).split())[:300]}",
              file=sys.stderr)
        return 2
    return 0
