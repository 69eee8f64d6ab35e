"""The accuracy mode's figures under `nox -s perf` (benchmarks/accuracy_mode.py has the parts and
runs on its own too; about 15 minutes on a shared 2-core machine: `nox -s perf -- -k overhead`
leaves it out). Printed, not asserted: the targets are read from the output."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy_mode  # noqa: E402


def test_accuracy_mode_figures(bench_env, benchmark, capsys):
    out = bench_env / "accuracy-mode"
    report = {}

    def once() -> None:
        report.update(accuracy_mode.main(["--out", str(out), "--json", str(out / "figures.json")]))

    benchmark.pedantic(once, rounds=1, iterations=1)
    with capsys.disabled():
        print(f"\nfigures: {out / 'figures.json'}")
    assert report["throughput"]["overall"]["compared"] > 0
