"""False-alarm and detection rates of the gate's defaults, from real runs on this machine.

    python benchmarks/gate_rates.py --make 15 --runs /tmp/gate-runs     # measure, then analyse
    python benchmarks/gate_rates.py --runs /tmp/gate-runs               # analyse existing runs

`--make N` runs the same benchmark N times in a row (same commit, same command; random-weight
fixtures, so speed only, plus the trained reference model for accuracy). The runs are then
gated against each other in the three ways the gate is used:

- one run a side: every ordered pair of the first five runs (20 comparisons);
- interleaved, five runs a side: ten consecutive runs split A B, B A, A B, B A, A B (the order in
  which `vlm-harness gate --interleave` runs two revisions), compared round by round as the gate
  compares interleaved runs (`paired_runs`), both directions (2 × (N − 9) comparisons);
- a baseline of three runs against the run after them (N − 3 comparisons).

`--real-interleave K` also runs `vlm-harness gate --interleave HEAD HEAD` for real K times (5
rounds, the same models and suites) and gates each pair of sides the same way.

A false alarm is exit code 1 between identical runs. Detection is measured on PLANTED changes,
made to a copy of the current side: every timing 20 % worse (ttft × 1.2, rates ÷ 1.2), and,
separately, half of the reference model's right answers on synthetic-shapes scored wrong.
Comparisons in the second and third ways share runs, so they are not independent trials.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.gate.compare import compare  # noqa: E402
from harness.results.store import read_results  # noqa: E402

MODELS = ("fixture-qwen2_5_vl", "fixture-smolvlm", "reference-shapes")
SUITES = ("synthetic-shapes", "synthetic-counting")
ACCURACY = ("reference-shapes", "synthetic-shapes")  # the model × suite whose answers are right


def make_runs(out: Path, n: int, limit: int, models: tuple[str, ...] = MODELS,
              suites: tuple[str, ...] = SUITES) -> None:
    start = len([p for p in out.iterdir() if p.name.startswith("identical-")]) if out.exists() else 0
    for i in range(start, start + n):
        cmd = [sys.executable, "-m", "harness.cli", "run", "--out", str(out), "--run-id", f"identical-{i:02d}",
               "--limit", str(limit), "--no-progress", "--no-cache", *(a for m in models for a in ("-m", m)),
               *(a for s in suites for a in ("-s", s))]
        print(f"run {i + 1}/{n}", file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})


def planted_slowdown(df: pd.DataFrame, factor: float = 1.2) -> pd.DataFrame:
    d = df.copy()
    d["ttft_s"] = d["ttft_s"] * factor
    d["decode_tps"] = d["decode_tps"] / factor
    d["prefill_tps"] = d["prefill_tps"] / factor
    return d


def planted_accuracy_drop(df: pd.DataFrame) -> pd.DataFrame:
    d = df.copy()
    at = (d["model"] == ACCURACY[0]) & (d["suite"] == ACCURACY[1]) & (d["score"] > 0)
    right = sorted(d.loc[at, "sample_id"].unique())
    d.loc[at & d["sample_id"].isin(right[::2]), "score"] = 0.0
    return d


def trial(base: pd.DataFrame, cur: pd.DataFrame, factor: float, paired_runs: bool = False) -> dict[str, object]:
    same = compare(base, cur, factor=factor, paired_runs=paired_runs)
    slow = compare(base, planted_slowdown(cur), factor=factor, paired_runs=paired_runs)
    acc = compare(base, planted_accuracy_drop(cur), factor=factor, paired_runs=paired_runs)
    return {
        "false_alarm": same.exit_code == 1,
        "alarms": [f"{f.model} {f.suite} {f.metric} {f.note}" for f in same.regressions],
        "slowdown_caught": slow.exit_code == 1,
        "accuracy_caught": any(f.metric == "score" for f in acc.regressions),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="/tmp/gate-runs", help="directory of identical runs")
    ap.add_argument("--make", type=int, default=0, help="first run the benchmark this many times")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--factor", type=float, default=1.1)
    ap.add_argument("--json", help="write every trial here")
    ap.add_argument("--real-interleave", type=int, default=0, help="also measure HEAD against HEAD, interleaved, K times")
    ap.add_argument("-m", "--model", action="append", help=f"models to run (default {', '.join(MODELS)})")
    ap.add_argument("-s", "--suite", action="append", help=f"suites to run (default {', '.join(SUITES)})")
    args = ap.parse_args()
    out = Path(args.runs)
    models, suites = tuple(args.model or MODELS), tuple(args.suite or SUITES)
    if args.make:
        make_runs(out, args.make, args.limit, models, suites)
    dirs = sorted(p for p in out.iterdir() if (p / "results.parquet").exists())
    runs = [read_results(p) for p in dirs]
    if len(runs) < 10:
        print(f"need at least 10 runs in {out}, found {len(runs)}: use --make 20", file=sys.stderr)
        return 2

    def cat(idx: list[int]) -> pd.DataFrame:
        return pd.concat([runs[i] for i in idx], ignore_index=True)

    designs: dict[str, list[dict[str, object]]] = {"one run a side (5 runs, ordered pairs)": [
        trial(runs[i], runs[j], args.factor) for i, j in itertools.permutations(range(5), 2)]}
    inter = []
    for t in range(len(runs) - 9):
        a, b = [t, t + 3, t + 4, t + 7, t + 8], [t + 1, t + 2, t + 5, t + 6, t + 9]
        inter += [trial(cat(a), cat(b), args.factor, True), trial(cat(b), cat(a), args.factor, True)]
    designs["interleaved, 5 runs a side, paired by round"] = inter
    designs["baseline of 3 runs vs the next run"] = [
        trial(cat([t, t + 1, t + 2]), runs[t + 3], args.factor) for t in range(len(runs) - 3)]

    if args.real_interleave:
        from harness.gate.interleave import measure_interleaved

        real = []
        for k in range(args.real_interleave):
            print(f"interleaved HEAD vs HEAD {k + 1}/{args.real_interleave}", file=sys.stderr)
            a, b = measure_interleaved("HEAD", "HEAD", out=out.parent / f"{out.name}-interleave-{k:02d}", rounds=5,
                                       models=models, suites=suites, limit=args.limit,
                                       repo=Path(__file__).resolve().parent)
            real.append(trial(read_results(*a), read_results(*b), args.factor, True))
        designs["real --interleave HEAD HEAD, 5 rounds"] = real

    print(f"{len(runs)} identical runs in {out} ({', '.join(models)} on {', '.join(suites)}, "
          f"--limit {args.limit}); factor {args.factor:g}, alpha 0.05\n")
    print("| design | comparisons | false alarms | planted 20 % slowdown caught | planted accuracy drop caught |")
    print("|---|---:|---:|---:|---:|")
    for name, trials in designs.items():
        n = len(trials)
        fa = sum(bool(t["false_alarm"]) for t in trials)
        slow = sum(bool(t["slowdown_caught"]) for t in trials)
        acc = sum(bool(t["accuracy_caught"]) for t in trials)
        print(f"| {name} | {n} | {fa} / {n} | {slow} / {n} | {acc} / {n} |")
    for name, trials in designs.items():
        for t in trials:
            for alarm in t["alarms"]:
                print(f"false alarm ({name}): {alarm}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": [p.name for p in dirs], "designs": designs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
