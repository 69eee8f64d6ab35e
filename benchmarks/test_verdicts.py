"""Verdicts that survive a second run (`nox -s perf`): false winners between identical twins, and a
planted 25 % slower decode found. Minutes of runs; the counts are printed, and the issue's
targets asserted: at most 1 false winner in 16 twin questions, the planted slowdown found in at
least 19 of 20 trials."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from verdict_trials import planted, twins  # noqa: E402


def _trial(benchmark, capsys, fn, trials: int, where: Path, summary) -> dict:
    result = benchmark.pedantic(fn, args=(trials, where), rounds=1, iterations=1)
    with capsys.disabled():
        print("\n" + "\n".join(result["lines"]))
        print(summary(result))
    return result


@pytest.mark.benchmark(group="verdicts")
def test_twins_rarely_get_a_winner(benchmark, bench_env, capsys):
    result = _trial(benchmark, capsys, twins, 8, bench_env / "twins", lambda r: (
        f"false winners: {r['false_winners']} of {r['questions']} twin questions; the 4-bit fixture lost "
        f"Fastest decode in {r['fixture_lost_decode']} of {r['trials']}"))
    assert result["false_winners"] <= 1
    assert result["fixture_lost_decode"] == result["trials"]


@pytest.mark.benchmark(group="verdicts")
def test_a_planted_slowdown_is_found(benchmark, bench_env, capsys):
    result = _trial(benchmark, capsys, planted, 20, bench_env / "planted", lambda r: (
        f"planted 25 % slower decode: twin-a won Fastest decode in {r['fast_won_decode']} of {r['trials']}; "
        f"twin-slow won a speed question {r['slow_won_a_speed_question']} times"))
    assert result["slow_won_a_speed_question"] == 0
    assert result["fast_won_decode"] >= 19
