"""The gate on planted changes. The rows come from a real run of a fixture model; a change is
planted by scaling its timing columns or flipping its scores, which is what a regression in
the measured code would do to the same rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.gate import compare, to_json, to_markdown
from harness.schema import SCHEMA
from harness.store import read_results
from harness.tester import VLMTester


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
    assert verdicts(r, "score") == {"unchanged"}
    md = to_markdown(r)
    assert "regression" in md.splitlines()[0] and "| decode_tps |" in md
    doc = json.loads(to_json(r))
    assert doc["exit_code"] == 1 and any(f["verdict"] == "regression" for f in doc["findings"])


def test_a_20_percent_swing_within_heavy_noise_passes(real):
    base = jitter(widen(real, 4), 0.6, seed=3)
    cur = jitter(widen(real, 4), 0.6, seed=4, slow=1.2)
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
    base, cur = widen(real, 4), widen(real, 4)
    base["score"] = 1.0  # every sample right in the baseline...
    cur["score"] = 1.0
    ids = sorted(cur["sample_id"].unique())
    cur.loc[cur["sample_id"].isin(ids[:3]), "score"] = 0.0  # ...three of four wrong now
    r = compare(base, cur)
    assert r.exit_code == 1
    (acc,) = [f for f in r.findings if f.metric == "score"]
    assert acc.verdict == "regression" and acc.change == pytest.approx(-0.75)
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


def test_the_two_tests_behind_the_gate():
    from harness.stats import mann_whitney_greater, paired_bootstrap

    rng = np.random.default_rng(0)
    base = rng.normal(100, 2, 20)
    assert mann_whitney_greater(base * 1.2, base) < 1e-6  # clearly larger
    assert mann_whitney_greater(base, base * 1.2) > 0.99  # the other direction is not
    assert mann_whitney_greater([1.0, 2.0], [1.5]) > 0.05  # too few values to ever be significant
    before = np.ones(30)
    after = before.copy()
    after[:10] = 0
    delta, lo, hi, p = paired_bootstrap(before, after)
    assert delta == pytest.approx(-1 / 3) and hi < 0 and p < 0.01
    assert paired_bootstrap(before, before)[3] == 1.0  # no change is no evidence of a drop
    with pytest.raises(ValueError, match="equal lengths"):
        paired_bootstrap(before, after[:5])
