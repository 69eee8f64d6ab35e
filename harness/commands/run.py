from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.commands import command, int_in, positive_float
from harness.run.planning import DEFAULT_ROUNDS, ROUND_SAMPLES


def configure(r: argparse.ArgumentParser) -> None:
    r.add_argument("--model", "-m", action="append", help="model name, checkpoint directory or hub id (repeatable; default: every offline fixture)")
    r.add_argument("--suite", "-s", action="append", help="suite name or .toml path (repeatable; default: every offline suite)")
    r.add_argument("--out", help="directory of runs (default: reports/runs)")
    r.add_argument("--run-id", help="name of this run's directory (default: a timestamp)")
    r.add_argument("--resume", action="store_true", help="continue the interrupted run (the newest unfinished one of the same models and suites, or --run-id), skipping finished samples")
    r.add_argument("--repeats", type=int_in(1, 1000), default=1, help="measure each sample N times (default 1)")
    r.add_argument("--rounds", type=int_in(1, 100),
                   help="measure speed in N counterbalanced rounds: each round runs every model once, in a fresh "
                        f"worker, in an order rotated each round, on its share of the samples (default {DEFAULT_ROUNDS} with "
                        "two or more models, 1 with one); verdicts pair the models' round means")
    r.add_argument("--round-samples", type=int_in(0, 10000), default=ROUND_SAMPLES,
                   help=f"with rounds, each round measures at least N samples a model: a smaller run measures each "
                        f"sample in several rounds, up to every round, since a round's paired figure is a median over "
                        f"its samples (default {ROUND_SAMPLES}; 0 splits the samples between the rounds)")
    r.add_argument("--no-lockstep", dest="lockstep", action="store_false",
                   help="measure each model's share of a round as one block, one model loaded at a time (the "
                        "default holds a round's models loaded together and alternates their samples, when they "
                        "fit in memory together; verdicts then pair samples)")
    r.add_argument("--warmup", type=int_in(0, 100), default=1, help="untimed generations per model before measuring (default 1)")
    r.add_argument("--limit", type=int_in(1), help="use only the first N samples of each suite")
    r.add_argument("--max-tokens", type=int_in(1, 32768), help="override every suite's generation limit")
    r.add_argument("--load-cache", choices=("cold", "warm", "both"),
                   help="time the load with the checkpoint's pages dropped from the page cache first (cold, the "
                        "default), as found (warm), or both (load_s cold, load_warm_s warm)")
    r.add_argument("--timeout", type=positive_float, default=600.0, help="seconds one sample may take before its worker is stopped (default 600)")
    r.add_argument("--fixtures", help="directory of fixture checkpoints (default: ~/.cache/vlm-harness/fixtures)")
    r.add_argument("--report", help="where to write the HTML report (default: <run>/report.html)")
    r.add_argument("--no-progress", action="store_true", help="no progress output")
    r.add_argument("--adapter", help="run every model through this adapter (e.g. openai) instead of its own")
    r.add_argument("--base-url", default="", help="with --adapter openai: the server, e.g. http://127.0.0.1:8080/v1")
    r.add_argument("--mode", choices=("latency", "accuracy"), default="latency",
                   help="latency (default): one request at a time, every request timed; accuracy: answers at the "
                        "machine's throughput (batched, or concurrent requests), timed as a whole pass")
    r.add_argument("--batch-size", type=int_in(1, 4096),
                   help="--mode accuracy: samples per batch (default: what the free memory holds, at most 64)")
    r.add_argument("--concurrency", type=int_in(1, 1024), default=4,
                   help="--mode accuracy with a server (adapter openai): requests in flight (default 4)")
    r.add_argument("--verify", type=int_in(0), default=0,
                   help="--mode accuracy: also generate this many batched samples per model one at a time and "
                        "report the answers that differ (default 0)")
    r.add_argument("--workers", type=int_in(1, 256),
                   help="--mode accuracy: worker processes answering one model's samples at once (default: one per "
                        "core on MLX's CPU backend, which computes on one thread; one on a GPU)")
    r.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the response cache (temperature-0 answers kept by everything that "
                        "determines them; see README)")
    r.add_argument("--shard", metavar="K/N",
                   help="measure only part K of N of the plan (a stable hash of model × suite × sample picks it): run "
                        "K = 1..N on N machines, then `vlm-harness merge` the runs")
    r.add_argument("--ray", metavar="ADDRESS",
                   help="send (model × shard) tasks to the nodes of this Ray cluster that offer the 'vlm_harness' "
                        "resource, one at a time per node; rows come back into this run directory as they finish "
                        "(pip install 'vlm-harness[ray]')")
    r.add_argument("--reuse-prefix", action="store_true",
                   help="reuse the KV prefix (image included) across consecutive questions on one image (off: clean per-sample numbers)")


@command("run", "benchmark models on suites; write parquet and an HTML report", configure)
def run(args: argparse.Namespace) -> int:
    from harness.models import default_models
    from harness.report import markdown_path, render
    from harness.results.rundir import RunDir, now
    from harness.run.shards import Shard, ShardError
    from harness.run.tester import VLMTester
    from harness.suites import default_suites

    try:
        shard = Shard.parse(args.shard) if args.shard else None
    except ShardError as e:
        print(f"vlm-harness run: error: {e}", file=sys.stderr)
        return 2
    if args.load_cache:  # read by the adapter in each worker process, which inherits it
        os.environ["VLM_HARNESS_LOAD_CACHE"] = args.load_cache
    report = Path(args.report) if args.report else None
    tester = VLMTester(
        args.out, run_id=args.run_id, resume=args.resume, repeats=args.repeats, warmup=args.warmup,
        limit=args.limit, max_tokens=args.max_tokens, timeout_s=args.timeout, progress=not args.no_progress,
        fixtures_root=Path(args.fixtures) if args.fixtures else None, reuse_prefix=args.reuse_prefix,
        adapter=args.adapter, base_url=args.base_url, rounds=args.rounds,
        round_samples=args.round_samples, lockstep=args.lockstep, mode=args.mode, batch_size=args.batch_size,
        concurrency=args.concurrency, verify=args.verify, workers=args.workers, cache=not args.no_cache, shard=shard, ray=args.ray,
        report=report,
    )
    if args.ray and shard:
        print("vlm-harness run: error: --ray splits the plan over the cluster's nodes itself; leave out --shard",
              file=sys.stderr)
        return 2
    models = args.model or default_models()
    suites = args.suite or default_suites()
    tester.select_run(models, suites)
    part = f", shard {shard}" if shard else ""
    print(f"run {tester.run_id}: {len(models)} model(s) × {len(suites)} suite(s){part} → {tester.run_dir}", file=sys.stderr)
    tester.report = report = report or tester.run_dir / "report.html"
    df = tester.run(models, suites)
    render(df, report, title=f"VLM benchmark {tester.run_id}", sources=[str(tester.run_dir / "results.parquet")])
    RunDir(tester.run_dir).update_plan(reported_at=now())
    counts = df["status"].value_counts().to_dict()
    print(f"results: {tester.run_dir / 'results.parquet'}")
    print(f"report:  {report}")
    print(f"summary: {markdown_path(report)}  (Markdown, for a pull request)")
    print("rows:    " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    from harness.adapters.openai import ignored_max_tokens

    for line in ignored_max_tokens(df):
        print(f"note:    {line}")
    if args.mode == "accuracy" or (df["answer_check"] == "differs").any():
        from harness.judge.throughput import summary_lines

        print("\n".join(summary_lines(df)))
    if args.reuse_prefix:
        from harness.run.speed import reuse_summary

        print(reuse_summary(df))
    if tester.incomplete:
        print(f"unfinished: {len(tester.incomplete)} fleet task(s) ended early; continue with the same command "
              "and --resume", file=sys.stderr)
        return 1
    # A malformed input (bad suite or model file, unknown name) is exit 2, after the rest ran.
    bad_input = bool(((df["sample_id"] == "*") & (df["status"] == "error")).any())
    return 2 if bad_input else 0 if counts.get("ok", 0) else 1
