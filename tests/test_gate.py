"""The gate on planted changes. The rows come from a real run of a fixture model; a change is
planted by scaling its timing columns or flipping its scores, which is what a regression in
the measured code would do to the same rows. Load is planted the way a shared machine applies
it: to a whole run, or to a stretch of its samples."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.core.schema import SCHEMA
from harness.gate.compare import compare, to_json, to_markdown
from harness.results.store import read_results
from harness.run.tester import VLMTester


@pytest.fixture(scope="module")
def real(fixtures_root, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("gate-runs")
    tester = VLMTester(out, limit=4, repeats=2, progress=False)
    tester.run(["fixture-qwen2_5_vl"], ["synthetic-shapes"])
    df = read_results(tester.run_dir)
    assert (df["status"] == "ok").sum() == 8
    return df


def widen(df: pd.DataFrame, copies: int) -> pd.DataFrame:
    """More repetitions of the same samples, so noise is the planted noise, not too few values."""
    parts = []
    for k in range(copies):
        d = df.copy()
        d["repeat"] = d["repeat"] + k * 100
        parts.append(d)
    return pd.concat(parts, ignore_index=True)


def jitter(df: pd.DataFrame, sigma: float, seed: int, slow: float = 1.0) -> pd.DataFrame:
    """Multiplicative log-normal noise on every timing, and a slowdown factor on top."""
    rng = np.random.default_rng(seed)
    d = df.copy()
    n = len(d)
    for col, worse in (("ttft_s", slow), ("decode_tps", 1 / slow), ("prefill_tps", 1 / slow)):
        d[col] = d[col] * worse * np.exp(rng.normal(0, sigma, n))
    return d


def verdicts(result, metric: str) -> set[str]:
    return {f.verdict for f in result.findings if f.metric == metric}


def test_identical_sets_pass(real):
    r = compare(real, real)
    assert r.exit_code == 0 and not r.regressions, to_markdown(r)


def test_a_20_percent_slowdown_with_low_noise_fails(real):
    base = jitter(widen(real, 4), 0.02, seed=1)
    cur = jitter(widen(real, 4), 0.02, seed=2, slow=1.2)
    r = compare(base, cur, factor=1.1)
    assert r.exit_code == 1
    assert verdicts(r, "ttft_s") == {"regression"} and verdicts(r, "decode_tps") == {"regression"}
    assert verdicts(r, "score") == {"insufficient"}  # four samples can never show an accuracy change
    md = to_markdown(r)
    assert "regression" in md.splitlines()[0] and "| decode_tps |" in md
    doc = json.loads(to_json(r))
    assert doc["exit_code"] == 1 and any(f["verdict"] == "regression" for f in doc["findings"])


def test_a_20_percent_swing_within_heavy_noise_passes(real):
    flat = widen(real, 4).assign(ttft_s=0.05, decode_tps=100.0, prefill_tps=1000.0)  # the noise is all planted
    base = jitter(flat, 0.6, seed=3)
    cur = jitter(flat, 0.6, seed=4, slow=1.2)
    r = compare(base, cur, factor=1.1)
    assert r.exit_code == 0, to_markdown(r)
    swung = [f for f in r.findings if f.metric == "ttft_s"]
    assert swung and all(f.p_value >= 0.05 for f in swung)


def test_a_slowdown_below_the_factor_passes_even_when_significant(real):
    base = jitter(widen(real, 4), 0.01, seed=5)
    cur = jitter(widen(real, 4), 0.01, seed=6, slow=1.05)
    assert compare(base, cur, factor=1.1).exit_code == 0
    assert compare(base, cur, factor=1.02).exit_code == 1


def test_an_accuracy_drop_on_the_same_samples_fails(real):
    base, cur = more_samples(widen(real, 4), 2), more_samples(widen(real, 4), 2)
    base["score"] = 1.0  # every sample right in the baseline...
    cur["score"] = 1.0
    ids = sorted(cur["sample_id"].unique())
    cur.loc[cur["sample_id"].isin(ids[:6]), "score"] = 0.0  # ...six of eight wrong now
    r = compare(base, cur)
    assert r.exit_code == 1
    (acc,) = [f for f in r.findings if f.metric == "score"]
    assert acc.verdict == "regression" and acc.change == pytest.approx(-0.75)
    assert acc.p_value == pytest.approx(0.5**6) and "exact McNemar" in acc.note
    assert verdicts(r, "ttft_s") == {"unchanged"}  # the timings did not move


def test_a_changed_suite_hash_cannot_be_compared(real, tmp_path, capsys):
    cur = real.copy()
    cur["suite_hash"] = "f" * 64
    r = compare(real, cur)
    assert r.exit_code == 2 and not r.findings
    assert "suite 'synthetic-shapes' changed" in r.problems[0] and "baseline update" in r.problems[0]
    # and through the command, with both reports written
    for name, d in (("base", real), ("cur", cur)):
        (tmp_path / name).mkdir()
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pandas(d, schema=SCHEMA, preserve_index=False), tmp_path / name / "results.parquet")
    code = main(["gate", "--baseline", str(tmp_path / "base"), "--current", str(tmp_path / "cur"),
                 "--markdown", str(tmp_path / "gate.md"), "--json", str(tmp_path / "gate.json")])
    assert code == 2
    assert "suite 'synthetic-shapes' changed" in capsys.readouterr().err
    assert json.loads((tmp_path / "gate.json").read_text())["status"] == "cannot compare"
    assert "Could not compare" in (tmp_path / "gate.md").read_text()


def test_other_hardware_cannot_be_compared_unless_asked(real):
    cur = real.copy()
    cur["env_cpu"] = "Apple M3 Max"
    r = compare(real, cur)
    assert r.exit_code == 2 and "environment differs: cpu" in r.problems[0]
    assert compare(real, cur, check_environment=False).exit_code == 0


def test_samples_that_now_error_are_a_regression(real):
    cur = real.copy()
    first = cur["sample_id"] == cur["sample_id"].iloc[0]
    cur.loc[first, "status"] = "error"
    cur.loc[first, "error"] = "worker killed by SIGKILL"
    r = compare(real, cur)
    assert r.exit_code == 1 and "errors" in {f.metric for f in r.regressions}


def test_baseline_update_promotes_a_run_and_the_gate_reads_it(real, tmp_path, capsys):
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(real, schema=SCHEMA, preserve_index=False), run / "results.parquet")
    (run / "run.json").write_text("{}")
    assert main(["baseline", "update", str(run), "--to", str(tmp_path / "baseline")]) == 0
    assert json.loads((tmp_path / "baseline" / "baseline.json").read_text())["rows"] == len(real)
    # a directory of runs means its latest run
    assert main(["gate", "--baseline", str(tmp_path / "baseline"), "--current", str(tmp_path / "runs")]) == 0
    assert main(["gate", "--baseline", str(tmp_path / "nothing"), "--current", str(run)]) == 2
    assert "no baseline at" in capsys.readouterr().err
    # --promote: the first run becomes the baseline, a passing run replaces it
    assert main(["gate", "--baseline", str(tmp_path / "first"), "--current", str(run), "--promote"]) == 0
    assert (tmp_path / "first" / "results.parquet").exists()
    assert main(["gate", "--baseline", str(tmp_path / "first"), "--current", str(run), "--promote"]) == 0


def test_the_paired_bootstrap_behind_the_accuracy_verdict():
    from harness.core.stats import paired_bootstrap

    before = np.ones(30)
    after = before.copy()
    after[:10] = 0
    delta, lo, hi, p = paired_bootstrap(before, after)
    assert delta == pytest.approx(-1 / 3) and hi < 0 and p < 0.01
    assert paired_bootstrap(before, before)[3] == 1.0  # no change is no evidence of a drop
    with pytest.raises(ValueError, match="equal lengths"):
        paired_bootstrap(before, after[:5])


def more_samples(df: pd.DataFrame, copies: int) -> pd.DataFrame:
    """The same rows under new sample ids, so a run has enough samples for its median to mean something."""
    parts = []
    for k in range(copies):
        d = df.copy()
        d["sample_id"] = d["sample_id"] + f"-{k}"
        parts.append(d)
    return pd.concat(parts, ignore_index=True)


def as_run(df: pd.DataFrame, run_id: str, load: float = 1.0) -> pd.DataFrame:
    """A copy measured as another run, with the whole run slowed by `load` (timings only)."""
    d = df.copy()
    d["run_id"] = run_id
    d["ttft_s"] = d["ttft_s"] * load
    d["decode_tps"] = d["decode_tps"] / load
    d["prefill_tps"] = d["prefill_tps"] / load
    return d


def test_one_run_a_side_never_flags_a_whole_run_shift_below_the_factor(real):
    base = more_samples(real, 3)
    r = compare(base, as_run(base, "other", load=1.09), factor=1.1)
    assert r.exit_code == 0 and verdicts(r, "ttft_s") == {"unchanged"}, to_markdown(r)
    (f,) = [f for f in r.findings if f.metric == "ttft_s"]
    assert f.ratio == pytest.approx(1.09) and f.change == pytest.approx(-0.09)
    # the same shift past the factor, with confidence, is a regression
    r = compare(base, as_run(base, "other", load=1.3), factor=1.1)
    assert r.exit_code == 1 and verdicts(r, "ttft_s") == {"regression"}
    assert "one run a side" in [f for f in r.regressions if f.metric == "ttft_s"][0].note


def test_a_load_spike_on_a_few_samples_of_one_run_does_not_fail_it(real):
    """What made identical runs fail: a stretch of samples slowed 2.5× by another process."""
    # the noise is all planted, so the verdicts below do not hang on how busy this machine was
    flat = (more_samples(real, 3).assign(ttft_s=0.05, decode_tps=100.0, prefill_tps=1000.0)  # 12 samples
            .sort_values(["sample_id", "repeat"], ignore_index=True))  # the seeded noise lands on the same rows every run
    base = jitter(flat, 0.03, seed=7)
    cur = jitter(as_run(flat, "other"), 0.03, seed=8)
    hit = cur["sample_id"].isin(sorted(cur["sample_id"].unique())[:4])
    cur.loc[hit, "ttft_s"] *= 2.5
    cur.loc[hit, "decode_tps"] /= 2.5
    r = compare(base, cur)
    assert r.exit_code == 0, to_markdown(r)
    # the old rule (one-sided Mann–Whitney over samples as independent replicates) called this a regression
    from scipy.stats import mannwhitneyu

    p_old = mannwhitneyu(cur["ttft_s"].dropna(), base["ttft_s"].dropna(), alternative="greater").pvalue
    assert p_old < 0.05


def runs(df: pd.DataFrame, prefix: str, k: int, seed: int, sigma: float = 0.04, slow: float = 1.0) -> pd.DataFrame:
    """k runs of the same samples, each shifted as a whole by log-normal load, plus sample noise."""
    rng = np.random.default_rng(seed)
    return pd.concat([jitter(as_run(df, f"{prefix}{i}", load=slow * float(np.exp(rng.normal(0, sigma)))), 0.02,
                             seed=seed * 100 + i) for i in range(k)], ignore_index=True)


def test_several_runs_a_side_take_the_run_the_load_missed(real):
    base = more_samples(real, 2)
    # runs slowed 1.8× as a whole: one of three in the baseline, two of three now
    a = pd.concat([jitter(as_run(base, f"a{i}", load=1.8 if i == 0 else 1.0), 0.02, seed=10 + i) for i in range(3)])
    b = pd.concat([jitter(as_run(base, f"b{i}", load=1.8 if i != 2 else 1.0), 0.02, seed=20 + i) for i in range(3)])
    same = compare(a, b)
    assert same.exit_code == 0, to_markdown(same)
    assert compare(a, b, consensus="median").exit_code == 1  # the median of the runs keeps the load
    slower = compare(a, as_run(b, "b", load=1.3).assign(run_id=b["run_id"].to_numpy()))
    assert slower.exit_code == 1, to_markdown(slower)
    (f,) = [f for f in slower.regressions if f.metric == "ttft_s"]
    assert f.runs_baseline == 3 and f.runs_current == 3 and "best of 3 vs 3 runs" in f.note
    assert f.ratio == pytest.approx(1.3, rel=0.05)
    doc = json.loads(to_json(slower))
    assert {"ratio", "runs_baseline", "runs_current"} <= set(doc["findings"][0])
    with pytest.raises(ValueError, match="runs-combine"):
        compare(a, b, consensus="mean")


def test_holm_adjustment():
    from harness.gate.compare import holm

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm([float("nan"), 0.5])[0]) and holm([float("nan"), 0.5])[1] == 0.5


@pytest.mark.parametrize("content", [b"", b"model,suite\nx,y\n", b"this is not parquet\n", None])
def test_unreadable_gate_inputs_are_one_line_and_exit_2(real, tmp_path, capsys, content):
    good = tmp_path / "good"
    good.mkdir()
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(real, schema=SCHEMA, preserve_index=False), good / "results.parquet")
    bad = tmp_path / "bad.parquet"
    if content is not None:
        bad.write_bytes(content)
    for base, cur in ((bad, good), (good, bad)):
        assert main(["gate", "--baseline", str(base), "--current", str(cur)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(bad) in err[0] and "Traceback" not in err[0], err
    assert main(["gate", "--baseline", str(good), "--current", str(good), "--factor", "0.5"]) == 2


def test_a_baseline_of_several_runs(real, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = more_samples(real, 2)
    dirs = []
    for i, d in enumerate([runs(base, "r", 3, seed=4)[lambda x, i=i: x["run_id"] == f"r{i}"] for i in range(3)]):
        (tmp_path / f"r{i}").mkdir()
        pq.write_table(pa.Table.from_pandas(d, schema=SCHEMA, preserve_index=False), tmp_path / f"r{i}" / "results.parquet")
        dirs.append(str(tmp_path / f"r{i}"))
    assert main(["baseline", "update", *dirs, "--to", str(tmp_path / "baseline")]) == 0
    meta = json.loads((tmp_path / "baseline" / "baseline.json").read_text())
    assert meta["runs"] == ["r0", "r1", "r2"]
    assert read_results(tmp_path / "baseline")["run_id"].nunique() == 3
    assert oct((tmp_path / "baseline" / "results.parquet").stat().st_mode & 0o777) == "0o644"
    assert main(["gate", "--baseline", str(tmp_path / "baseline"), "--current", dirs[0],
                 "--json", str(tmp_path / "g.json")]) == 0
    doc = json.loads((tmp_path / "g.json").read_text())
    assert {f["runs_baseline"] for f in doc["findings"] if f["metric"] == "ttft_s"} == {3}
    assert main(["baseline", "update", str(tmp_path / "missing"), "--to", str(tmp_path / "b2")]) == 2


def test_no_command_imports_another_command_or_a_private_helper():
    import re
    from pathlib import Path

    import harness.commands

    for path in Path(harness.commands.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"from harness\.commands\.\w+ import|import harness\.commands\.", text), path
        assert not re.search(r"from harness\.[\w.]+ import [^\n]*\b_[a-z]", text), path


def test_interleave_measures_two_revisions_in_this_job(fixtures_root, tmp_path, capsys):
    import shutil
    import subprocess

    from harness.core.paths import PACKAGE_PARENT

    if shutil.which("git") is None or subprocess.run(["git", "-C", str(PACKAGE_PARENT), "rev-parse", "HEAD"],
                                                     capture_output=True).returncode != 0:
        pytest.skip("needs a git checkout of the harness")
    # A revision against itself must pass; --factor 1.5 gives three samples a side room for a runner
    # oversubscribed twice over (at 1.1 such a runner failed this once). The factor's own rule is
    # tested on planted shifts above; this test is about the interleaving.
    code = main(["gate", "--interleave", "HEAD", "HEAD", "--rounds", "2", "-m", "fixture-qwen2_5_vl",
                 "-s", "synthetic-shapes", "--limit", "3", "--factor", "1.5", "--out", str(tmp_path / "il"),
                 "--json", str(tmp_path / "g.json")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert [line.split(",")[0] for line in err.splitlines() if line.startswith("interleave:")] == \
        ["interleave: round 1/2"] * 2 + ["interleave: round 2/2"] * 2
    assert "revision A" in err.splitlines()[0] and "revision B" in [x for x in err.splitlines() if "round 2/2" in x][0]
    doc = json.loads((tmp_path / "g.json").read_text())
    assert len(doc["baseline_runs"]) == 2 and len(doc["current_runs"]) == 2
    assert {f["runs_baseline"] for f in doc["findings"] if f["metric"] == "ttft_s"} == {2}
    assert not (tmp_path / "il" / "checkouts").exists()  # the worktrees are removed
    assert main(["gate", "--interleave", "HEAD", "no-such-revision", "--out", str(tmp_path / "il2")]) == 2


def test_bootstrap_medians_is_seeded_and_bounded_in_memory():
    from harness.core.stats import bootstrap_medians

    v = np.random.default_rng(0).normal(0, 1, 50_000)
    a, b = bootstrap_medians(v, resamples=200), bootstrap_medians(v, resamples=200)
    assert np.array_equal(a, b) and len(a) == 200
    assert abs(float(np.median(a))) < 0.02  # the median of a centred normal
    assert len(bootstrap_medians([])) == 0 and set(bootstrap_medians([2.0, 2.0], resamples=5)) == {2.0}


def test_an_accuracy_comparison_too_small_to_see_a_fall_says_so_with_the_samples_needed():
    from harness.gate.compare import compare

    def rows(run, scores):
        return pd.DataFrame([{"run_id": run, "model": "m", "suite": "s", "suite_hash": "h", "sample_id": f"q{i}",
                              "repeat": 0, "status": "ok", "score": v, "metric": "exact_match", "schema_version": 2,
                              "ttft_s": 0.1, "decode_tps": 100.0, "prefill_tps": 1000.0, "peak_mlx_bytes": 1}
                             for i, v in enumerate(scores)])

    small = compare(rows("a", [1, 1, 0, 1, 1, 0, 1, 1]), rows("b", [1, 1, 0, 1, 0, 0, 1, 1]))
    acc = next(f for f in small.findings if f.metric == "score")
    assert acc.verdict == "insufficient" and "are needed to see 10 pp" in acc.note
    big = compare(rows("a", [1, 0] * 400), rows("b", [1, 0] * 400))
    assert next(f for f in big.findings if f.metric == "score").verdict == "unchanged"


def score_rows(run: str, scores, metric: str = "exact_match") -> pd.DataFrame:
    return pd.DataFrame([{"run_id": run, "model": "m", "suite": "s", "suite_hash": "h", "sample_id": f"q{i}",
                          "repeat": 0, "status": "ok", "score": v, "metric": metric, "schema_version": 2,
                          "ttft_s": 0.1, "decode_tps": 100.0, "prefill_tps": 1000.0, "peak_mlx_bytes": 1}
                         for i, v in enumerate(scores)])


def accuracy_finding(before, after, metric: str = "exact_match"):
    r = compare(score_rows("a", before, metric), score_rows("b", after, metric))
    return r, next(f for f in r.findings if f.metric == "score")


@pytest.mark.parametrize("flips, p, regression", [(3, 0.125, False), (4, 0.0625, False), (5, 0.03125, True)])
def test_a_few_flips_of_paired_0_1_scores_take_the_exact_mcnemar_test(flips, p, regression):
    # 100 samples right before (90) and after, but for `flips` right→wrong: the exact one-sided
    # McNemar p is 0.5 ** flips; the paired bootstrap gave 0.047 for 3 flips and called it a regression.
    before = [1.0] * 90 + [0.0] * 10
    after = [0.0] * flips + [1.0] * (90 - flips) + [0.0] * 10
    r, acc = accuracy_finding(before, after)
    assert acc.p_value == pytest.approx(p) and (acc.verdict == "regression") == regression, acc.note
    assert r.exit_code == (1 if regression else 0)
    assert f"{flips} right→wrong, 0 wrong→right" in acc.note


def test_a_one_sample_suite_whose_answer_flips_is_insufficient_not_a_regression():
    r, acc = accuracy_finding([1.0], [0.0])
    assert acc.verdict == "insufficient" and r.exit_code == 0
    assert "cannot show a change" in acc.note and "at least 5 are needed" in acc.note
    _, four = accuracy_finding([1.0] * 4, [0.0] * 4)  # all four flipping is p = 0.0625: still no verdict
    assert four.verdict == "insufficient"


def test_graded_scores_take_a_paired_permutation_test_with_a_floor_on_changed_pairs():
    # ANLS-like graded scores: three samples lose 0.4, the rest are unchanged. A bootstrap over the
    # pairs calls this significant (p ≈ 0.03); the exact sign-flip test gives 1/8.
    before = [0.9] * 100
    after = [0.5] * 3 + [0.9] * 97
    r, acc = accuracy_finding(before, after, metric="anls")
    assert acc.verdict != "regression" and acc.p_value == pytest.approx(0.125), acc.note
    assert "sign-flip" in acc.note
    _, many = accuracy_finding(before, [0.5] * 8 + [0.9] * 92, metric="anls")
    assert many.verdict == "regression" and many.p_value == pytest.approx(0.5**8)


def test_exact_paired_tests_match_their_definitions():
    from math import comb

    from harness.core.stats import mcnemar_exact, min_discordant, sign_flip_p

    assert mcnemar_exact(3, 0) == 0.125 and mcnemar_exact(4, 0) == 0.0625
    assert mcnemar_exact(7, 2) == pytest.approx(sum(comb(9, k) for k in range(7, 10)) / 2**9)
    assert mcnemar_exact(0, 0) == 1.0 and min_discordant(0.05) == 5 and min_discordant(0.01) == 7
    # on 0/1 differences the sign-flip test is McNemar's; beyond 16 pairs a seeded sample close to it
    assert sign_flip_p([-1.0] * 7 + [1.0] * 2 + [0.0] * 50) == pytest.approx(mcnemar_exact(7, 2))
    assert sign_flip_p([-1.0] * 20 + [1.0] * 8) == pytest.approx(mcnemar_exact(20, 8), abs=0.005)
