from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from harness.commands import command


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers separated by commas, e.g. 1,2,4") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers separated by commas, e.g. 1,2,4,8") from None


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", required=True, help="the server, e.g. http://127.0.0.1:8080/v1")
    p.add_argument("--model", "-m", required=True, help="model name the server knows (mlx_vlm.server: its path)")
    p.add_argument("--suite", "-s", action="append", required=True, help="suite whose samples become requests (repeatable)")
    load = p.add_mutually_exclusive_group(required=True)
    load.add_argument("--concurrency", type=_ints, help="closed loop: requests kept in flight, one step each (1,2,4,8)")
    load.add_argument("--rate", type=_floats, help="open loop: requests per second, one step each (1,2,4)")
    p.add_argument("--arrivals", choices=("poisson", "constant"), default="poisson", help="open loop arrivals (default poisson)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Poisson arrivals (step i uses seed + i)")
    p.add_argument("--duration", type=float, help="seconds each step sends requests")
    p.add_argument("--requests", type=int, help="requests each step sends (with --duration: whichever ends first)")
    p.add_argument("--warmup", type=int, default=1, help="untimed requests before the first step (default 1)")
    p.add_argument("--max-tokens", type=int, help="override every sample's generation limit")
    p.add_argument("--limit", type=int, help="use only the first N samples of each suite")
    p.add_argument("--slo", default="", help="goodput SLOs, e.g. ttft=500ms,tpot=50ms,e2el=2s")
    p.add_argument("--percentiles", type=_floats, default=(50.0, 90.0, 95.0, 99.0), help="default 50,90,95,99")
    p.add_argument("--chunk-rule", choices=("content", "choices"), default="content",
                   help="token chunks: with text (default) or any with a choice (vLLM's exact rule)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds one request may take; a duration step ends at most this long after its window")
    p.add_argument("--max-inflight", type=int, default=256, help="bound on requests in flight (default 256)")
    p.add_argument("--images", choices=("data-uri", "url"), default="data-uri",
                   help="images as PNG data URIs (default) or by URL / local path")
    p.add_argument("--api-key-env", default="", help="environment variable holding a bearer token, if the server needs one")
    p.add_argument("--out", help="directory of load runs (default: reports/load)")
    p.add_argument("--run-id", help="name of this run's directory (default: a timestamp)")
    p.add_argument("--no-progress", action="store_true", help="no per-step lines")


@command("load", "sweep concurrency or request rate against an OpenAI-compatible server; latency, throughput, goodput, accuracy", configure)
def load(args: argparse.Namespace) -> int:
    from harness.core.paths import reports_dir
    from harness.serving.loadgen import Target
    from harness.serving.metrics import SloError, parse_slo
    from harness.serving.report import load_label, publish, saturation_text, terminal
    from harness.serving.requests import build_requests
    from harness.serving.rows import read_rows
    from harness.serving.sweep import LoadRun, Plan, run_load

    try:
        slo = parse_slo(args.slo)
    except SloError as e:
        print(f"vlm-harness load: error: {e}", file=sys.stderr)
        return 2
    if not args.base_url.startswith(("http://", "https://")):
        print(f"vlm-harness load: error: --base-url {args.base_url!r} must look like http://host:port/v1", file=sys.stderr)
        return 2
    plan = Plan(concurrency=args.concurrency or (), rates=args.rate or (), arrivals=args.arrivals, seed=args.seed,
                requests=args.requests, duration_s=args.duration, warmup=args.warmup)
    try:
        steps = plan.steps()
    except ValueError as e:
        print(f"vlm-harness load: error: {e}", file=sys.stderr)
        return 2
    from harness.serving.http import unreachable

    why = unreachable(args.base_url)
    if why:
        print(f"vlm-harness load: error: cannot reach the server at {args.base_url} ({why}); "
              "is it running, and is --base-url right?", file=sys.stderr)
        return 2
    requests, notes = build_requests(args.suite, args.model, max_tokens=args.max_tokens, images_as=args.images,
                                     limit=args.limit)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if not requests:
        print("vlm-harness load: error: the suites gave no single-turn sample to send", file=sys.stderr)
        return 2
    headers: tuple[tuple[str, str], ...] = ()
    if args.api_key_env and os.environ.get(args.api_key_env):
        headers = (("Authorization", f"Bearer {os.environ[args.api_key_env]}"),)
    target = Target(args.base_url, args.model, headers, args.timeout, args.max_inflight)
    run_id = args.run_id or time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.out) if args.out else reports_dir() / "load"
    run_dir = run_dir / run_id
    from harness.measure.environment import collect

    run = LoadRun(run_id, run_dir, target, args.images, environment=collect())
    print(f"load {run_id}: {len(requests)} request bodies, {len(steps)} step(s) → {run_dir}", file=sys.stderr)
    interrupted = False
    try:
        run_load(run, plan, requests, progress=None if args.no_progress else (lambda s: print(s, file=sys.stderr)))
    except KeyboardInterrupt:
        interrupted = True
        print(f"vlm-harness load: interrupted; {len(run.rows)} request rows kept in {run.path}", file=sys.stderr)
    if not run.rows:
        return 130 if interrupted else 1
    rows = read_rows(run.path)
    cmd = "vlm-harness " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["load"] else ""
    report = run_dir / "report.html"
    summary = publish(rows, report, title=f"Serving under load {run_id}", percentiles=args.percentiles, slo=slo,
                      chunk_rule=args.chunk_rule, sources=[str(run.path)], command=cmd)
    if not summary.empty:
        print(terminal(summary, args.percentiles))
        print(saturation_text(summary))
    print(f"rows:    {run.path}")
    print(f"report:  {report}")
    print(f"in the main report: vlm-harness report RUN_DIR --load {shlex.quote(str(run_dir.parent))}")
    for _, r in summary.iterrows() if not summary.empty else ():
        if r.get("max_tokens_note"):
            print(f"note: {r['max_tokens_note']} in {r['max_tokens_ignored']} of {r['sent']} request(s) "
                  f"at {load_label(r)}", file=sys.stderr)
    if interrupted:
        return 130
    # An empty answer is a broken server (chat template, dropped image), not a load effect like a
    # timeout at saturation: any of them fails the command, as no successful request at all does.
    empty = rows[(rows["status"] == "empty") & (rows["step"] >= 0)]
    if len(empty):
        print(f"vlm-harness load: {len(empty)} request(s) got an empty answer ({empty['error'].iloc[0]}); exit 1",
              file=sys.stderr)
        return 1
    return 0 if (rows["status"] == "ok").any() else 1

