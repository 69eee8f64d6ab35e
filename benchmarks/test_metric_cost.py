"""A metric's cost on a runaway output (`nox -s perf`): ANLS of a 100,000-character output
against a 100-character answer. The edit distance is skipped where the lengths alone rule out
the 0.5 threshold; the full table took 3.5-4.6 s per sample. Target: under 10 ms."""

from __future__ import annotations

from harness.metrics.anls import anls_of

ANSWER = "the quick brown fox " * 5


def test_anls_of_a_runaway_output(benchmark):
    got = benchmark(anls_of, "x" * 100_000, [ANSWER])
    assert got == 0.0
    assert benchmark.stats.stats.median < 0.01
