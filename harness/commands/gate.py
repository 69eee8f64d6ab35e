from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import command, float_in, int_in


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline", "-b", help="baseline run directory or parquet file (default: reports/baseline)")
    p.add_argument("--current", "-c", help="current run directory, parquet file, or a directory of runs whose "
                                          "latest is taken (default: the latest run in reports/runs)")
    # Any finite number parses (inf or nan never); below 1 is refused by the command in one line,
    # and a huge factor is how a caller gates accuracy alone.
    p.add_argument("--factor", type=float_in(0.0, 1e9), default=1.1,
                   help="a timing must be this many times worse to count, at least 1 (default 1.1)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the tests (default 0.05)")
    p.add_argument("--runs-combine", choices=("best", "median"), default="best",
                   help="with several runs a side, each sample's value is the best of its runs (default: load "
                        "only slows) or their median (asv's choice)")
    p.add_argument("--markdown", help="write a Markdown summary here (for a pull-request comment)")
    p.add_argument("--json", help="write the findings as JSON here")
    p.add_argument("--ignore-environment", action="store_true", help="compare sets measured on different hardware")
    p.add_argument("--promote", action="store_true", help="when the gate passes, or there is no baseline yet, "
                                                          "make the current run the baseline")
    i = p.add_argument_group("measuring two revisions in this job (shared CI runners)")
    i.add_argument("--interleave", nargs=2, metavar=("REV_A", "REV_B"),
                   help="benchmark git revisions REV_A (baseline) and REV_B (candidate) here, alternating their "
                        "runs per model, then gate B against A")
    i.add_argument("--rounds", type=int, default=5,
                   help="runs of each revision per model with --interleave (default 5); the gate pairs them round by "
                        "round, so more rounds narrow its interval (4 degrees of freedom at 5)")
    i.add_argument("--model", "-m", action="append", default=[], help="with --interleave: model (repeatable; "
                                                                        "default: every offline fixture)")
    i.add_argument("--suite", "-s", action="append", default=[], help="with --interleave: suite (repeatable)")
    i.add_argument("--limit", type=int_in(1), help="with --interleave: first N samples of each suite (N ≥ 1)")
    i.add_argument("--out", help="with --interleave: where the runs go (default: reports/interleave)")


def _unfinished(path: Path) -> str | None:
    """Why the run at `path` cannot be gated yet (killed or still running), or None."""
    from harness.results.rundir import RunDir

    if not path.is_dir():
        return None
    run = RunDir(path)
    plan = run.plan()
    if plan and not plan.get("finished_at"):
        return (f"run {path} is not finished (killed, or still running): its rows are a part of the plan; finish it "
                f"with `vlm-harness run --resume --run-id {run.run_id}` and its models and suites, then gate it")
    return None


def _read(path: Path, what: str):
    """The rows of one side, or one line on stderr and None: a damaged, empty, foreign or
    half-written run is bad input, never a traceback and never a pass."""
    from harness.results.store import SchemaMismatch, read_results

    why = _unfinished(path)
    if why:
        print(f"vlm-harness gate: cannot compare: {why}", file=sys.stderr)
        return None
    try:
        return read_results(path, require_rows=True)
    except SchemaMismatch as e:
        print(f"vlm-harness gate: cannot compare: {e}", file=sys.stderr)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError and others for files that are not parquet
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        print(f"vlm-harness gate: cannot read {path}: {reason} (the {what} must be a run directory or a "
              "results.parquet written by vlm-harness)", file=sys.stderr)
    return None


@command("gate", "compare a run against a baseline: exit 0 pass, 1 regression, 2 cannot compare", configure)
def run(args: argparse.Namespace) -> int:
    from harness.core.paths import reports_dir
    from harness.gate.baseline import BaselineError, resolve_run
    from harness.gate.compare import INCOMPARABLE, compare, to_json, to_markdown

    if not args.factor >= 1 or not 0 < args.alpha < 1:  # argparse bounds --factor; kept for the Python API
        print(f"vlm-harness gate: --factor must be ≥ 1 and --alpha between 0 and 1 (got {args.factor:g}, "
              f"{args.alpha:g})", file=sys.stderr)
        return INCOMPARABLE
    if args.interleave:
        from harness.gate.interleave import InterleaveError, measure_interleaved
        from harness.results.store import read_results

        if args.rounds < 2:
            print("vlm-harness gate: --rounds must be at least 2: one run a revision cannot tell load from a "
                  "regression", file=sys.stderr)
            return INCOMPARABLE
        out = Path(args.out) if args.out else reports_dir() / "interleave"
        try:
            a_runs, b_runs = measure_interleaved(*args.interleave, out=out, rounds=args.rounds, models=args.model,
                                                 suites=args.suite, limit=args.limit)
        except InterleaveError as e:
            print(f"vlm-harness gate: {e}", file=sys.stderr)
            return INCOMPARABLE
        b, c = read_results(*a_runs), read_results(*b_runs)
        baseline, current = Path(args.interleave[0]), Path(args.interleave[1])
    else:
        baseline = Path(args.baseline) if args.baseline else reports_dir() / "baseline"
        try:
            current = resolve_run(Path(args.current) if args.current else reports_dir() / "runs")
            if baseline.is_dir():  # a baseline folder, a run, or a folder of runs (its latest)
                baseline = resolve_run(baseline)
        except BaselineError as e:
            print(f"vlm-harness gate: {e}", file=sys.stderr)
            return INCOMPARABLE
        if not baseline.exists() and args.promote:
            print(f"gate: no baseline at {baseline} yet; promoting {current}", file=sys.stderr)
            return _promote(current, baseline)
        if not baseline.exists():
            print(f"vlm-harness gate: no baseline at {baseline}: promote a run first with "
                  "`vlm-harness baseline update reports/runs/<run>` (or pass --baseline)", file=sys.stderr)
            return INCOMPARABLE
        b, c = _read(baseline, "baseline"), _read(current, "current run")
        if b is None or c is None:
            return INCOMPARABLE
    result = compare(b, c, factor=args.factor, alpha=args.alpha, check_environment=not args.ignore_environment,
                     consensus=args.runs_combine, paired_runs=bool(args.interleave))
    md = to_markdown(result, baseline=str(baseline), current=str(current))
    for option, target, text in (("--markdown", args.markdown, md), ("--json", args.json, to_json(result))):
        if target:
            from harness.results.rundir import atomic_write_text

            try:
                atomic_write_text(Path(target), text)
            except OSError as e:  # a read-only filesystem, a directory of that name, a full disk
                print(f"vlm-harness gate: {option}: {e}", file=sys.stderr)
                return INCOMPARABLE
    print(md)
    for p in result.problems:
        print(f"vlm-harness gate: cannot compare: {p}", file=sys.stderr)
    print(f"gate: {result.status} ({len(result.regressions)} regression(s) in {len(result.findings)} comparisons)",
          file=sys.stderr)
    if args.promote and result.exit_code == 0 and not args.interleave:
        return _promote(current, baseline)
    return result.exit_code


def _promote(source: Path, target: Path) -> int:
    from harness.gate.baseline import BaselineError, promote

    try:
        print(promote([source], target))
    except (BaselineError, ValueError, OSError) as e:
        print(f"vlm-harness gate: cannot promote {source}: {e}", file=sys.stderr)
        return 2
    return 0
