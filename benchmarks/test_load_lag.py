"""The load generator's own scheduling lag (`nox -s perf`): open-loop requests at 200/s to a local
server that answers at once; how late the client sends them (median, mean, p99, max), per step.
Every finished request goes through the run's journal (harness.serving.journal) as in a real run,
so its writes are part of what is measured. The target: a median under 1 ms at 200 requests/s."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness.core.records import Sample
from harness.serving.loadgen import Target
from harness.serving.metrics import summarise
from harness.serving.requests import LoadRequest, chat_body
from harness.serving.rows import read_rows
from harness.serving.sweep import LoadRun, Plan, run_load

# The scripted local server the serving tests use.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import scripted_server  # noqa: E402

RATES = (50.0, 200.0, 400.0)
REQUESTS = 400


@pytest.fixture(scope="module")
def server():
    with scripted_server() as url:
        yield url


def test_scheduling_lag(benchmark, server, tmp_path):
    s = Sample("t", "s", (), "hi", ("yes",), "object", "exact_match", 4)
    reqs = [LoadRequest(s, "h", 4, json.dumps(chat_body(s, "instant", 4, "url")).encode())]
    run = LoadRun("lag", tmp_path, Target(server, "instant", timeout_s=10), "url")

    def sweep():
        run.rows.clear()
        run_load(run, Plan(rates=RATES, arrivals="poisson", seed=1, requests=REQUESTS, warmup=10), reqs)

    benchmark.pedantic(sweep, rounds=1, iterations=1)
    summary = summarise(read_rows(run.path))
    for _, r in summary.iterrows():
        line = (f"rate {r['target_rate']:g}/s: lag mean {r['lag_mean_ms']:.3f} ms, p50 {r['lag_p50_ms']:.3f} ms, p99 {r['lag_p99_ms']:.3f} ms, "
                f"max {r['lag_max_ms']:.3f} ms, {r['completed']}/{r['sent']} ok, late={r['client_late']}")
        print(line)
        benchmark.extra_info[f"rate_{r['target_rate']:g}"] = line
    at200 = summary[summary["target_rate"] == 200.0].iloc[0]
    assert at200["completed"] == REQUESTS
    assert at200["lag_p50_ms"] < 1.0
