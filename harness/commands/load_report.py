from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import command


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers separated by commas, e.g. 50,90,99") from None


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="load run directories or load.parquet files (rows pool per step)")
    p.add_argument("-o", "--output", default="reports/load/report.html", help="HTML file; the Markdown table goes beside it")
    p.add_argument("--title", default="Serving under load")
    p.add_argument("--slo", default="", help="goodput SLOs, e.g. ttft=500ms,tpot=50ms")
    p.add_argument("--percentiles", type=_floats, default=(50.0, 90.0, 95.0, 99.0))
    p.add_argument("--chunk-rule", choices=("content", "choices"), default="content")


@command("load-report", "render the load report again from load runs, several runs pooled per step", configure)
def run(args: argparse.Namespace) -> int:
    from harness.serving.metrics import SloError, parse_slo
    from harness.serving.report import publish, terminal
    from harness.serving.rows import LoadSchemaMismatch, read_rows

    try:
        slo = parse_slo(args.slo)
        rows = read_rows(*map(Path, args.runs))
    except (SloError, LoadSchemaMismatch) as e:
        print(f"vlm-harness load-report: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.output)
    summary = publish(rows, out, title=args.title, percentiles=args.percentiles, slo=slo, chunk_rule=args.chunk_rule,
                      sources=[str(p) for p in args.runs])
    if not summary.empty:
        print(terminal(summary, args.percentiles))
    print(f"report: {out}")
    return 0
