from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.commands import command, int_in, positive_float


def configure(r: argparse.ArgumentParser) -> None:
    r.add_argument("--model", "-m", action="append", required=True, help="model name, checkpoint directory or hub id (repeatable)")
    r.add_argument("-p", "--prompt-lengths", default="64,256", help="prefill tests: prompt lengths in tokens (default 64,256; '' for none)")
    r.add_argument("-n", "--gen-lengths", default="32,128", help="decode tests: tokens generated (default 32,128; '' for none)")
    r.add_argument("--image-sizes", default="224,448", help="image prefill tests: square image sides in pixels (default 224,448; '' for none)")
    r.add_argument("--repeats", "-r", type=int_in(1, 1000), default=5, help="repetitions per test (default 5)")
    r.add_argument("--rounds", type=int_in(1, 100), default=3,
                   help="deal the repetitions into N rounds, each a fresh worker per model in a rotated order; ± is "
                        "then the std of the round means (default 3)")
    r.add_argument("--warmup", type=int_in(0, 100), default=1, help="untimed runs before each test (default 1)")
    r.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0, help="seed of the random prompts and images (default 0)")
    r.add_argument("--out", help="directory of runs (default: reports/runs)")
    r.add_argument("--run-id", help="name of this run's directory (default: a timestamp)")
    r.add_argument("--fixtures", help="directory of fixture checkpoints (default: ~/.cache/vlm-harness/fixtures)")
    r.add_argument("--load-cache", choices=("cold", "warm", "both"),
                   help="time the load with the checkpoint's pages dropped from the page cache first (cold, the "
                        "default), as found (warm), or both (load_s cold, load_warm_s warm)")
    r.add_argument("--timeout", type=positive_float, default=600.0, help="seconds one test may take before its worker is stopped")


@command("speed", "llama-bench-style sweeps: prefill (pp), decode (tg) and image prefill (img) tokens/s", configure)
def speed(args: argparse.Namespace) -> int:
    from harness.measure import bandwidth
    from harness.run.speed import SpeedConfig, format_table, parse_lengths, run_speed, speed_table

    try:
        config = SpeedConfig(
            prompt_lengths=parse_lengths(args.prompt_lengths, "-p/--prompt-lengths"),
            gen_lengths=parse_lengths(args.gen_lengths, "-n/--gen-lengths"),
            image_sizes=parse_lengths(args.image_sizes, "--image-sizes"),
            repeats=args.repeats, warmup=args.warmup, seed=args.seed, rounds=args.rounds,
        )
    except ValueError as e:
        print(f"vlm-harness: error: {e}", file=sys.stderr)
        return 2
    if args.repeats < 1 or args.warmup < 0:
        print("vlm-harness: error: --repeats must be at least 1 and --warmup at least 0", file=sys.stderr)
        return 2
    if not config.tests():
        print("vlm-harness: error: no tests: give at least one of -p, -n, --image-sizes", file=sys.stderr)
        return 2
    if args.load_cache:  # read by the adapter in each worker process, which inherits it
        os.environ["VLM_HARNESS_LOAD_CACHE"] = args.load_cache
    bw = bandwidth.machine_bandwidth()
    print(f"memory bandwidth: {bw.gbps:.1f} GB/s ({bw.source})", file=sys.stderr)
    run_dir, df = run_speed(
        args.model, config, Path(args.out) if args.out else None, run_id=args.run_id,
        fixtures_root=Path(args.fixtures) if args.fixtures else None, timeout_s=args.timeout,
        say=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    table = speed_table(df)
    if not table.empty:
        print(format_table(table))
    errors = df[df["status"] == "error"]
    for e in errors.drop_duplicates(["model", "sample_id", "error"]).itertuples():
        print(f"error: {e.model} {e.sample_id}: {e.error}", file=sys.stderr)
    print(f"results: {run_dir / 'results.parquet'}")
    return 0 if not table.empty and errors.empty else 1
