from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import command


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline", "-b", help="baseline run directory or parquet file (default: reports/baseline)")
    p.add_argument("--current", "-c", help="current run directory, parquet file, or a directory of runs whose "
                                          "latest is taken (default: the latest run in reports/runs)")
    p.add_argument("--factor", type=float, default=1.1, help="a timing must be this many times worse to count (default 1.1)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the tests (default 0.05)")
    p.add_argument("--markdown", help="write a Markdown summary here (for a pull-request comment)")
    p.add_argument("--json", help="write the findings as JSON here")
    p.add_argument("--ignore-environment", action="store_true", help="compare sets measured on different hardware")
    p.add_argument("--promote", action="store_true", help="when the gate passes, or there is no baseline yet, "
                                                          "make the current run the baseline")


@command("gate", "compare a run against a baseline: exit 0 pass, 1 regression, 2 cannot compare", configure)
def run(args: argparse.Namespace) -> int:
    from harness.gate import INCOMPARABLE, compare, to_json, to_markdown
    from harness.paths import reports_dir
    from harness.rundir import resolve
    from harness.store import SchemaMismatch, read_results

    baseline = Path(args.baseline) if args.baseline else reports_dir() / "baseline"
    current = resolve(Path(args.current) if args.current else reports_dir() / "runs")
    if not baseline.exists() and args.promote:
        print(f"gate: no baseline at {baseline} yet; promoting {current}", file=sys.stderr)
        return promote(current, baseline)
    if not baseline.exists():
        print(f"vlm-harness gate: no baseline at {baseline}: promote a run first with "
              "`vlm-harness baseline update reports/runs/<run>` (or pass --baseline)", file=sys.stderr)
        return INCOMPARABLE
    try:
        b, c = read_results(baseline), read_results(current)
    except SchemaMismatch as e:
        print(f"vlm-harness gate: cannot compare: {e}", file=sys.stderr)
        return INCOMPARABLE
    try:
        result = compare(b, c, factor=args.factor, alpha=args.alpha, check_environment=not args.ignore_environment)
    except ValueError as e:
        print(f"vlm-harness gate: error: {e}", file=sys.stderr)
        return INCOMPARABLE
    md = to_markdown(result, baseline=str(baseline), current=str(current))
    for target, text in ((args.markdown, md), (args.json, to_json(result))):
        if target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).write_text(text)
    print(md)
    for p in result.problems:
        print(f"vlm-harness gate: cannot compare: {p}", file=sys.stderr)
    print(f"gate: {result.status} ({len(result.regressions)} regression(s) in {len(result.findings)} comparisons)",
          file=sys.stderr)
    if args.promote and result.exit_code == 0:
        return promote(current, baseline)
    return result.exit_code


def promote(source: Path, target: Path) -> int:
    from harness.commands.baseline import update

    return update(source, target)
