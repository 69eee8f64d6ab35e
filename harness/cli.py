"""`vlm-harness`: run | report | fixtures | models | suites."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness import __version__


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.models import default_models
    from harness.report import render
    from harness.tester import DEFAULT_SUITES, VLMTester

    tester = VLMTester(
        args.out, run_id=args.run_id, resume=args.resume, repeats=args.repeats, warmup=args.warmup,
        limit=args.limit, max_tokens=args.max_tokens, timeout_s=args.timeout, progress=not args.no_progress,
        fixtures_root=Path(args.fixtures) if args.fixtures else None,
    )
    models = args.model or default_models()
    suites = args.suite or list(DEFAULT_SUITES)
    print(f"run {tester.run_id}: {len(models)} model(s) × {len(suites)} suite(s) → {tester.run_dir}", file=sys.stderr)
    df = tester.run(models, suites)
    report = Path(args.report) if args.report else tester.run_dir / "report.html"
    render(df, report, title=f"VLM benchmark {tester.run_id}", sources=[str(tester.run_dir / "results.parquet")])
    counts = df["status"].value_counts().to_dict()
    print(f"results: {tester.run_dir / 'results.parquet'}")
    print(f"report:  {report}")
    print("rows:    " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    return 0 if counts.get("ok", 0) else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report import render
    from harness.store import read_results

    df = read_results(*map(Path, args.results))
    out = Path(args.output)
    render(df, out, title=args.title, sources=[str(p) for p in args.results])
    print(f"report: {out}")
    return 0


def _cmd_fixtures(args: argparse.Namespace) -> int:
    from harness.fixtures import FIXTURES
    from harness.fixtures.build import build_all, default_root, is_valid, read_manifest

    root = Path(args.dir) if args.dir else default_root()
    if args.action == "build":
        for path in build_all(root, args.arch or None, seed=args.seed, force=args.force):
            m = read_manifest(path) or {}
            print(f"{path}  {m.get('size_bytes', 0) / 1e6:.2f} MB  sha256 {m.get('content_hash', '')[:16]}")
        return 0
    for arch in FIXTURES.names():
        for suffix in ("", "-4bit"):
            path = root / f"{arch}{suffix}"
            state = "ok" if is_valid(path) else ("stale" if path.exists() else "not built")
            print(f"fixture-{arch}{suffix:6}  {state:9}  {path}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from harness.fixtures.build import default_root, is_valid
    from harness.models import known_models

    for name, spec in known_models().items():
        if spec.is_fixture:
            here = "built" if is_valid(default_root() / spec.source.split(":", 1)[1]) else "built on first use"
        elif Path(spec.source).expanduser().is_dir():
            here = "on disk"
        else:
            here = "needs the hub (or a local copy)"
        print(f"{name:32} {spec.adapter:8} {here:30} {spec.description}")
    return 0


def _cmd_suites(args: argparse.Namespace) -> int:
    from harness.suites import SuiteError, load_suite, suite_files

    status = 0
    for name in suite_files():
        try:
            s = load_suite(name)
            cats = sorted({x.category for x in s.samples})
            print(f"{name:24} {s.kind:10} {len(s.samples):5} samples  {s.hash[:16]}  {', '.join(cats)}")
        except SuiteError as e:
            print(f"{name:24} error: {e}")
            status = 1
    return status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vlm-harness", description="Benchmark vision-language models on MLX.")
    p.add_argument("--version", action="version", version=f"vlm-harness {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="benchmark models on suites; write parquet and an HTML report")
    r.add_argument("--model", "-m", action="append", help="model name, checkpoint directory or hub id (repeatable; default: every offline fixture)")
    r.add_argument("--suite", "-s", action="append", help="suite name or .toml path (repeatable; default: synthetic-shapes and natural)")
    r.add_argument("--out", help="directory of runs (default: reports/runs)")
    r.add_argument("--run-id", help="name of this run's directory (default: a timestamp)")
    r.add_argument("--resume", action="store_true", help="continue the latest run (or --run-id), skipping finished samples")
    r.add_argument("--repeats", type=int, default=1, help="measure each sample N times (default 1)")
    r.add_argument("--warmup", type=int, default=1, help="untimed generations per model before measuring (default 1)")
    r.add_argument("--limit", type=int, help="use only the first N samples of each suite")
    r.add_argument("--max-tokens", type=int, help="override every suite's generation limit")
    r.add_argument("--timeout", type=float, default=600.0, help="seconds one sample may take before its worker is stopped (default 600)")
    r.add_argument("--fixtures", help="directory of fixture checkpoints (default: ~/.cache/vlm-harness/fixtures)")
    r.add_argument("--report", help="where to write the HTML report (default: <run>/report.html)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(fn=_cmd_run)

    rep = sub.add_parser("report", help="render an HTML report from result files or run directories")
    rep.add_argument("results", nargs="+", help="results.parquet files or run directories")
    rep.add_argument("-o", "--output", default="reports/report.html")
    rep.add_argument("--title", default="VLM benchmark")
    rep.set_defaults(fn=_cmd_report)

    f = sub.add_parser("fixtures", help="build or list the offline random-weight checkpoints")
    f.add_argument("action", choices=["build", "list"])
    f.add_argument("dir", nargs="?", help="where they live (default: ~/.cache/vlm-harness/fixtures)")
    f.add_argument("--arch", action="append", help="only this architecture (repeatable)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--force", action="store_true", help="rebuild even when valid")
    f.set_defaults(fn=_cmd_fixtures)

    sub.add_parser("models", help="list known models and whether each is available here").set_defaults(fn=_cmd_models)
    sub.add_parser("suites", help="list suites with their size and hash").set_defaults(fn=_cmd_suites)
    return p


def main(argv: list[str] | None = None) -> int:
    # Quieter logs: transformers warns about every processor call in a benchmark loop.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = build_parser().parse_args(argv)
    from harness.models import ModelError
    from harness.registry import UnknownNameError
    from harness.store import SchemaMismatch
    from harness.suites import SuiteError

    try:
        return args.fn(args)
    except (ModelError, SuiteError, SchemaMismatch, UnknownNameError, FileNotFoundError) as e:
        print(f"vlm-harness: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vlm-harness: interrupted; finished rows are saved, continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
