"""Counterbalanced rounds, and verdicts decided on paired rounds (report and gate alike)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from harness.core.stats import describe, paired_ratio
from harness.gate.compare import compare
from harness.report.tables import speed_table
from harness.report.verdict import PROVISIONAL, verdicts
from harness.run.planning import DEFAULT_ROUNDS, ROUND_SAMPLES, Settings, make_plan, turns
from harness.suites import load_suite


def test_paired_ratio_is_a_paired_t_test_on_log_ratios():
    a = np.array([105.0, 140.0, 81.0, 118.0, 99.0])
    b = np.array([100.0, 128.0, 80.0, 110.0, 97.0])
    p = paired_ratio(a, b)
    ref = st.ttest_rel(np.log(a), np.log(b))
    assert p.n == 5 and p.p == pytest.approx(ref.pvalue)
    d = np.log(a / b)
    half = st.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert (p.low, p.ratio, p.high) == pytest.approx((math.exp(d.mean() - half), math.exp(d.mean()),
                                                      math.exp(d.mean() + half)))
    assert p.decided  # every round a is ahead: the interval excludes 1
    one = paired_ratio([2.0], [1.0])
    assert one.n == 1 and math.isnan(one.low) and not one.decided


def test_rounds_deal_the_samples_and_rotate_the_order():
    models = ["fixture-qwen2_5_vl", "fixture-smolvlm", "fixture-llava_next"]
    plan = make_plan(models, ["synthetic-shapes"], Settings(limit=8, rounds=4, round_samples=0),
                     load_suite=load_suite)
    assert plan.rounds == 4 and plan.rounds_per_sample == 1
    steps = plan.schedule()
    assert len(steps) == 12  # every model once per round
    orders = [[s.model.name for s in steps if s.round == r] for r in range(4)]
    assert orders[0] == models and orders[1] == models[1:] + models[:1] and orders[2] == models[2:] + models[:2]
    assert all([s.position for s in steps if s.round == r] == [0, 1, 2] for r in range(4))
    # Each round holds an equal share of the samples, the same share for every model.
    for r in range(4):
        shares = {tuple(t.sample.id for t in s.tasks) for s in steps if s.round == r}
        assert len(shares) == 1 and len(next(iter(shares))) == 2
    assert make_plan(models[:1], ["synthetic-shapes"], Settings(limit=8), load_suite=load_suite).rounds == 1
    assert make_plan(models, ["synthetic-shapes"], Settings(limit=8, rounds=2), load_suite=load_suite).rounds == 2


@pytest.mark.parametrize(("suites", "limit", "repeats", "visits"), [
    (["synthetic-shapes", "synthetic-counting"], 8, 1, 5),  # 16 samples: 2-3 a round split; 5 visits, 13-14 a round
    (["synthetic-shapes"], 8, 1, 6),  # 8: at most every round (8 a round)
    (["synthetic-shapes"], 8, 2, 5),  # repetitions count: 16 a pass, as above
    (["synthetic-shapes", "synthetic-counting"], 24, 1, 2),  # 48: 8 a round split, 16 in 2 visits
    (["synthetic-shapes", "synthetic-counting", "synthetic-spatial"], 24, 1, 1),  # 72: 12 a round split
])
def test_a_small_run_measures_each_sample_in_several_rounds(suites, limit, repeats, visits):
    """A round's paired figure is a median over its samples: a run whose split would leave a round
    fewer than ROUND_SAMPLES a model measures each sample again in the rounds after its own, each
    time in another round, with the visit in `repeat`; a large run is split as before."""
    from collections import Counter

    models = ["fixture-qwen2_5_vl", "fixture-smolvlm"]
    plan = make_plan(models, suites, Settings(limit=limit, repeats=repeats), load_suite=load_suite)
    assert plan.rounds == DEFAULT_ROUNDS == 6 and plan.rounds_per_sample == visits
    for _, tasks in plan.models:
        rounds_of: dict[tuple, set[int]] = {}
        for t in tasks:
            rounds_of.setdefault((t.suite.name, t.sample.id), set()).add(t.round)
        assert all(len(r) == visits for r in rounds_of.values())  # a different round each visit
        per_round = Counter(t.round for t in tasks)
        assert len(per_round) == 6 and max(per_round.values()) - min(per_round.values()) <= repeats  # dealt evenly
        assert min(per_round.values()) >= ROUND_SAMPLES or visits == plan.rounds
        assert sorted(Counter((t.suite.name, t.sample.id, t.repeat) for t in tasks).values()) == [1] * len(tasks)
    # the same sample, visit and repetition in the same round for every model: the verdicts pair them
    keyed = [{(t.suite.name, t.sample.id, t.repeat): t.round for t in tasks} for _, tasks in plan.models]
    assert keyed[0] == keyed[1]
    assert make_plan(models[:1], suites, Settings(limit=limit), load_suite=load_suite).rounds_per_sample == 1
    assert make_plan(models, suites, Settings(limit=limit, mode="accuracy"), load_suite=load_suite).rounds_per_sample == 1


def test_a_run_measures_each_round_in_a_fresh_worker_in_rotated_order(fixtures_root, tmp_path):
    from harness.run.tester import VLMTester

    # Two samples: each is measured in every round (a round holds both), as a small run does.
    tester = VLMTester(tmp_path, limit=2, progress=False, warmup=0)
    df = tester.run(["fixture-qwen2_5_vl", "fixture-smolvlm"], ["synthetic-shapes"])
    assert (df["status"] == "ok").all() and sorted(df["round"].unique()) == list(range(6))
    assert (df.groupby(["model", "sample_id"])["round"].nunique() == 6).all()
    first_in_round = df.sort_values("recorded_at").groupby("round")["model"].first()
    assert first_in_round.tolist() == ["fixture-qwen2_5_vl", "fixture-smolvlm"] * 3  # A B, B A, ...
    positions = df.groupby(["round", "model"])["round_position"].first().unstack()
    assert positions["fixture-qwen2_5_vl"].tolist() == [0, 1] * 3
    assert positions["fixture-smolvlm"].tolist() == [1, 0] * 3
    # A fresh worker per model and round: each one loaded the model (a load time of its own).
    loads = df.groupby(["model", "round"])["load_s"].nunique()
    assert (loads == 1).all() and len(loads) == 12
    # Lockstep: inside a round the models answer sample by sample, turn about (A B, B A).
    assert df["lockstep"].all()
    for _, g in df.sort_values("recorded_at").groupby("round"):
        order = g["model"].tolist()
        assert order[0] != order[1] and order[1] == order[2] and order[2] != order[3]  # A B B A
        assert g["round_position"].tolist() == [0, 1, 0, 1]
        assert set(g.iloc[:2]["sample_id"]) == {g.iloc[0]["sample_id"]}  # the same sample, moments apart


def test_turns_alternate_the_order_every_other_turn():
    assert turns([2, 2]) == [(0, 0), (1, 1), (1, 0), (0, 1)]
    # A model without a k-th task sits that turn out; places count those who take part.
    assert turns([3, 1, 2]) == [(0, 0), (1, 1), (2, 2), (2, 0), (0, 1), (0, 0)]
    assert turns([]) == [] and turns([0, 0]) == []


@pytest.mark.parametrize("why", ["--no-lockstep", "too big to hold together"])
def test_without_lockstep_each_model_measures_its_round_as_one_block(fixtures_root, tmp_path, why, monkeypatch,
                                                                     capsys):
    from harness.run import tester as tester_module

    if why == "too big to hold together":  # as if each worker process took a petabyte
        monkeypatch.setattr(tester_module, "WORKER_BYTES", 2**50)
    tester = tester_module.VLMTester(tmp_path, limit=4, progress=False, warmup=0, rounds=2, round_samples=0,
                                     lockstep=why != "--no-lockstep")
    df = tester.run(["fixture-qwen2_5_vl", "fixture-smolvlm"], ["synthetic-shapes"])
    assert (df["status"] == "ok").all() and not df["lockstep"].any()
    assert df.sort_values("recorded_at")["model"].tolist() == (["fixture-qwen2_5_vl"] * 2 + ["fixture-smolvlm"] * 2
                                                               + ["fixture-smolvlm"] * 2 + ["fixture-qwen2_5_vl"] * 2)
    said = capsys.readouterr().err.count("lockstep off: the models do not fit in memory together")
    assert said == (1 if why == "too big to hold together" else 0)  # said once, not per round


def _rows(rates: dict[str, list[list[float]]], *, run: str = "r", peak: float = 2e9) -> pd.DataFrame:
    """rates[model][round] -> that round's per-request decode rates."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for model, rounds in rates.items():
        for r, values in enumerate(rounds):
            for i, v in enumerate(values):
                out.append({"run_id": run, "model": model, "suite": "s", "suite_hash": "h", "sample_id": f"{r}-{i}",
                            "repeat": 0, "round": r, "status": "ok", "decode_tps": v, "ttft_s": 100.0 / v,
                            "peak_mlx_bytes": peak, "recorded_at": t0 + timedelta(seconds=r * 100 + i)})
    return pd.DataFrame(out)


def _answers(df: pd.DataFrame) -> dict:
    _cols, _rows_, stats, unit = speed_table(df)
    return {v.key: v for v in verdicts(stats, pd.DataFrame(), {}, unit)}


# Four rounds on a busy machine: the whole machine drifts from round to round, and the model
# measured second in a round runs 10 % faster (its predecessor warmed the caches). Rotation puts
# each twin second twice, but twin-a in the fast rounds.
DRIFT = [0.8, 1.25, 0.8, 1.25]
SECOND = 1.1


def _twins(slowdown: float = 1.0, n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rates: dict[str, list[list[float]]] = {"twin-a": [], "twin-b": []}
    for r, drift in enumerate(DRIFT):
        order = ["twin-a", "twin-b"] if r % 2 == 0 else ["twin-b", "twin-a"]
        for pos, model in enumerate(order):
            base = 100.0 * drift * (SECOND if pos else 1.0) / (slowdown if model == "twin-b" else 1.0)
            rates[model].append(list(base * (1 + rng.normal(0, 0.02, n))))
    return _rows(rates)


def test_identical_twins_tie_though_their_request_intervals_do_not_overlap():
    df = _twins()
    a = describe(df[df["model"] == "twin-a"]["decode_tps"])
    b = describe(df[df["model"] == "twin-b"]["decode_tps"])
    # Over requests the twins look different (4,000 requests each): the request-level intervals
    # do not overlap, which is how one twin used to win.
    assert a.ci_low > b.ci_high
    answers = _answers(df)
    assert answers["decode"].outcome == "tie" and set(answers["decode"].winners) == {"twin-a", "twin-b"}
    assert answers["ttft"].outcome == "tie"
    assert "paired over 4 rounds" in answers["decode"].margin and not answers["decode"].provisional


def test_a_real_difference_survives_the_drift_and_wins():
    answers = _answers(_twins(slowdown=1.25))  # twin-b's decode takes 25 % longer in every round
    assert answers["decode"].outcome == "winner" and answers["decode"].winners == ("twin-a",)
    assert "faster than twin-b by 25 %" in answers["decode"].margin


def test_one_round_is_provisional():
    df = _twins()
    one = df[df["round"] == 0]
    answers = _answers(one)
    assert answers["decode"].provisional == PROVISIONAL
    assert "within one run" in answers["decode"].uncertainty


def _interleaved(factor_b: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two revisions measured turn about over 5 rounds, the machine drifting by up to ±30 % from
    round to round; revision b's decode is `factor_b` times slower."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    sides: dict[str, list[dict]] = {"a": [], "b": []}
    for r in range(5):
        drift = rng.uniform(0.7, 1.3)
        for k, side in enumerate(("a", "b") if r % 2 == 0 else ("b", "a")):
            for i in range(12):
                rate = 100.0 * drift * (1 + 0.1 * i) / (factor_b if side == "b" else 1.0) * (1 + rng.normal(0, 0.01))
                sides[side].append({"run_id": f"{side}{r}", "model": "m", "suite": "s", "suite_hash": "h",
                                    "sample_id": str(i), "repeat": 0, "status": "ok", "decode_tps": rate,
                                    "ttft_s": 10 / rate, "prefill_tps": 10 * rate, "peak_mlx_bytes": 1e9,
                                    "score": 1.0, "metric": "exact_match", "schema_version": 3,
                                    "recorded_at": t0 + timedelta(seconds=100 * r + 50 * k + i)})
    return pd.DataFrame(sides["a"]), pd.DataFrame(sides["b"])


def test_the_gate_pairs_interleaved_rounds_with_the_same_rule():
    for seed in range(5):
        a, b = _interleaved(1.0, seed)
        same = compare(a, b, factor=1.1, paired_runs=True)
        assert same.exit_code == 0, [f.note for f in same.findings]
        a, b = _interleaved(1.25, seed)
        slower = compare(a, b, factor=1.1, paired_runs=True)
        decode = next(f for f in slower.findings if f.metric == "decode_tps")
        assert decode.verdict == "regression" and "interleaved rounds paired" in decode.note


def _lockstep_twins(slowdown: float, seed: int) -> pd.DataFrame:
    """Two models in lockstep over 4 rounds of 16 samples: every sample's pair shares the moment's
    speed, which swings by ±40 % from sample to sample; each round's worker processes run at a
    speed of their own (sd 12 %, as measured here), shared by all their samples; twin-b's decode
    is `slowdown` times slower; each answer alone varies by another 15 %."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for r in range(4):
        process = {"twin-a": np.exp(rng.normal(0, 0.12)), "twin-b": np.exp(rng.normal(0, 0.12))}
        for i in range(16):
            moment = rng.uniform(0.6, 1.4)
            for model in ("twin-a", "twin-b"):
                v = (100.0 * moment * process[model] / (slowdown if model == "twin-b" else 1.0)
                     * np.exp(rng.normal(0, 0.15)))
                out.append({"run_id": "r", "model": model, "suite": "s", "suite_hash": "h", "sample_id": f"{r}-{i}",
                            "repeat": 0, "round": r, "status": "ok", "decode_tps": v, "ttft_s": 1.0 / v,
                            "peak_mlx_bytes": 2e9, "lockstep": True,
                            "recorded_at": t0 + timedelta(seconds=r * 100 + i)})
    return pd.DataFrame(out)


def test_lockstep_verdicts_still_pair_rounds():
    """Pairing samples as if independent would count each process's own speed 16 times over."""
    ties = [_answers(_lockstep_twins(1.0, seed))["decode"] for seed in range(40)]
    assert all("paired over 4 rounds in lockstep" in v.margin for v in ties)
    assert sum(v.outcome == "winner" for v in ties) <= 4  # 5 % expected: 2 in 40
    naive = [compare_pairs_naively(_lockstep_twins(1.0, seed)) for seed in range(40)]
    assert sum(naive) >= 8  # what the sample-pair rule would have crowned
    found = [_answers(_lockstep_twins(1.5, seed))["decode"] for seed in range(20)]
    assert sum(v.outcome == "winner" and v.winners == ("twin-a",) for v in found) >= 15


def compare_pairs_naively(df: pd.DataFrame) -> bool:
    a = df[df["model"] == "twin-a"].set_index("sample_id")["decode_tps"]
    b = df[df["model"] == "twin-b"].set_index("sample_id")["decode_tps"]
    return paired_ratio(a.to_numpy(), b[a.index].to_numpy()).decided


def test_in_lockstep_a_worker_with_no_tasks_left_waits_for_the_others(fixtures_root):
    # Its teardown (closing the model, freeing memory, ending the interpreter) used to run beside
    # the other models' last samples of the round: those ran about 13 % slower, some 2x.
    import time

    from harness.core.workloads import SuiteWorkload
    from harness.models import checkpoint_path, resolve
    from harness.run.protocol import Finished, Ready
    from harness.run.supervisor import Supervisor, _Conversation

    class Kept:
        def __init__(self):
            self.done = []

        def loaded(self, msg): ...

        def started(self, task): ...

        def finished(self, msg):
            self.done.append(msg.task)

        def failed(self, tasks, status, error, traceback=""):
            raise AssertionError(f"{tasks} {status}: {error}")

    spec = resolve("fixture-qwen2_5_vl")
    sample = load_suite("synthetic-shapes", 1).samples[0]
    events = Kept()
    talk = _Conversation(Supervisor(), spec, checkpoint_path(spec), SuiteWorkload(((0, sample),), warmup=0), events,
                         paced=True)
    try:
        assert talk.until(lambda m: isinstance(m, Ready)) is None
        talk.go(0)
        assert talk.until(lambda m: isinstance(m, Finished)) is None and events.done == [0]
        time.sleep(1.0)
        assert talk.proc.is_alive() and not talk.conn.poll(0)  # holding still: no Done, no teardown
        talk.go(None)
        ended = talk.until()
        assert ended is not None and ended.remaining == [] and ended.gave_up is None  # then Done
    finally:
        talk.close()


def test_a_planted_slowdown_adds_work_to_every_decode_interval_and_is_marked(fixtures_root, tmp_path):
    import json

    from harness.run.tester import VLMTester

    files = []
    for name, extra in (("twin-a", ""), ("twin-slow", "planted_slowdown = 1.0\n")):
        (tmp_path / f"{name}.toml").write_text(f'name = "{name}"\nsource = "fixture:qwen2_5_vl"\n{extra}')
        files.append(str(tmp_path / f"{name}.toml"))
    df = VLMTester(tmp_path / "runs", limit=6, progress=False, rounds=1).run(files, ["synthetic-shapes"])
    assert (df["status"] == "ok").all() and df["lockstep"].all()
    marks = {m: {json.loads(p).get("planted_slowdown") for p in g["preprocessing"]} for m, g in df.groupby("model")}
    assert marks == {"twin-a": {None}, "twin-slow": {1.0}}  # marked only where planted
    # Each interval after the first carries a chain (the first one's share rides on the second):
    # the slowed model's intervals, pooled, are longer. Twice the work is planted, so that the
    # sizing's own error (a 25 % plant came out x1.04-1.38 in trials) and a busy machine both
    # stay far from the bound.
    steps = {m: np.median(np.concatenate([np.asarray(x)[1:] for x in g["itl_s"]])) for m, g in df.groupby("model")}
    assert steps["twin-slow"] > 1.3 * steps["twin-a"]


def test_a_tie_shows_the_figures_of_the_models_it_names():
    # c is second by its mean but loses to a in every round; d is lower on average but so erratic
    # that it ties with a. The verdict names a and d, and its figures must be theirs, not c's
    # (the bench's page named three tied models and showed the figures of another).
    rates = {"a": [[100.0] * 4] * 4, "c": [[95.0] * 4, [94.0] * 4, [96.0] * 4, [95.0] * 4],
             "d": [[130.0] * 4, [60.0] * 4, [120.0] * 4, [60.0] * 4]}
    decode = _answers(_rows(rates))["decode"]
    assert decode.outcome == "tie" and decode.winners == ("a", "d")
    assert "d: " in decode.uncertainty and "c: " not in decode.uncertainty
    assert decode.margin.startswith("a faster than d by") and "includes no difference" in decode.margin
