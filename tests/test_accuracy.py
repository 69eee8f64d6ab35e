from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.core.intervals import wilson
from harness.judge.accuracy import NAMES, accuracy_table, write_accuracy


def rows(model, suite, scores, *, category="colour", status="ok", suite_hash="h1", metric="exact_match", repeat=0, start=0):
    return [
        {"model": model, "suite": suite, "suite_hash": suite_hash, "sample_id": f"{start + i:03d}", "category": category,
         "status": status, "score": s, "metric": metric, "repeat": repeat}
        for i, s in enumerate(scores)
    ]


def one(t, **key):
    sel = t
    for k, v in key.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_per_suite_and_per_category_rows_with_intervals_that_fit_the_data():
    colour = [1, 0, 1, 1, 0, 1, 1, 1]
    count = [0, 0, 1, 0]
    df = pd.DataFrame(rows("m1", "shapes", colour) + rows("m1", "shapes", count, category="count", start=100)
                      + rows("m2", "shapes", [1, 1, 1, 1]))
    t = accuracy_table(df)
    assert list(t.columns) == NAMES
    whole = one(t, model="m1", suite="shapes", category="*")
    assert whole["n"] == 12 and whole["mean"] == pytest.approx(7 / 12)
    # 0/1 scores, one image each: a Wilson score interval.
    assert whole["interval"] == "wilson"
    assert (whole["ci_low"], whole["ci_high"]) == pytest.approx(wilson(7, 12))
    assert whole["ci_low"] < whole["mean"] < whole["ci_high"]
    assert whole["metric"] == "exact_match" and whole["higher_is_better"] == True  # noqa: E712
    c = one(t, model="m1", suite="shapes", category="count")
    assert c["n"] == 4 and c["mean"] == 0.25
    # Four samples: too few to tell, said as such rather than as a certain-looking interval.
    assert c["interval"] == "too few" and math.isnan(c["ci_low"]) and math.isnan(c["ci_high"])
    perfect = one(t, model="m2", suite="shapes", category="*")
    assert perfect["mean"] == 1.0 and perfect["interval"] == "too few"
    # Seeded: the same rows give the same table.
    pd.testing.assert_frame_equal(t, accuracy_table(df))


def test_interval_narrows_with_more_samples():
    rng = np.random.default_rng(1)
    small = rows("m", "s", list(rng.integers(0, 2, 20).astype(float)))
    large = rows("m", "s", list(rng.integers(0, 2, 400).astype(float)), suite_hash="h2")
    t = accuracy_table(pd.DataFrame(small + large))
    w = {r.suite_hash: r.ci_high - r.ci_low for r in t[t.category == "*"].itertuples()}
    assert w["h2"] < w["h1"] / 2


def test_errors_and_unsupported_are_counted_apart_not_scored():
    df = pd.DataFrame(
        rows("m", "s", [1, 1])
        + rows("m", "s", [None, None, None], status="error", start=10)
        + rows("m", "s", [None], status="unsupported", start=20)
        + rows("m", "s", [None], status="ok", start=30)  # a measurement whose scoring failed
        + [{"model": "*", "suite": "broken", "suite_hash": "", "sample_id": "*", "status": "error", "repeat": 0},
           {"model": "ghost", "suite": "*", "suite_hash": "", "sample_id": "*", "status": "error", "repeat": 0}]
    )
    t = accuracy_table(df)
    assert set(t["model"]) == {"m"}  # a bad suite file or unknown model has no accuracy
    whole = one(t, category="*")
    assert (whole["n"], whole["mean"], whole["n_error"], whole["n_unsupported"]) == (2, 1.0, 4, 1)


def test_a_model_with_only_errors_still_has_a_row():
    t = accuracy_table(pd.DataFrame(rows("m", "s", [None, None], status="error")))
    whole = one(t, category="*")
    assert whole["n"] == 0 and math.isnan(whole["mean"]) and math.isnan(whole["ci_low"]) and whole["n_error"] == 2


def test_repetitions_of_a_sample_count_once_at_their_mean():
    df = pd.DataFrame(rows("m", "s", [1, 0, 1]) + rows("m", "s", [1, 0, 0], repeat=1))
    whole = one(accuracy_table(df), category="*")
    assert whole["n"] == 3
    assert whole["mean"] == pytest.approx((1 + 0 + 0.5) / 3)


def test_changed_suites_and_mixed_metrics_are_not_pooled_silently():
    df = pd.DataFrame(
        rows("m", "s", [1, 1], suite_hash="old") + rows("m", "s", [0, 0], suite_hash="new")
        + rows("m", "n", [1, 0]) + rows("m", "n", [0.5], category="caption", metric="keyword_recall", start=9)
    )
    t = accuracy_table(df)
    assert len(t[(t.suite == "s") & (t.category == "*")]) == 2
    mixed = one(t, suite="n", category="*")
    assert mixed["metric"] == "exact_match+keyword_recall"
    assert one(t, suite="n", category="caption")["metric"] == "keyword_recall"


def test_empty_results_give_an_empty_table_with_the_columns():
    t = accuracy_table(pd.DataFrame())
    assert t.empty and list(t.columns) == NAMES


def test_write_accuracy_writes_parquet_in_the_run_directory(tmp_path):
    path = write_accuracy(tmp_path, pd.DataFrame(rows("m", "s", [1, 0, 1])))
    assert path == tmp_path / "accuracy.parquet"
    back = pd.read_parquet(path)
    assert list(back.columns) == NAMES and back.loc[back.category == "*", "n"].item() == 3
    assert not list(tmp_path.glob("*.tmp*"))


def test_a_suite_where_every_sample_scores_one_shows_a_wilson_interval_not_certainty():
    t = accuracy_table(pd.DataFrame(rows("m", "s", [1.0] * 8)))
    whole = one(t, category="*")
    assert whole["mean"] == 1.0 and whole["interval"] == "wilson"
    assert whole["ci_low"] == pytest.approx(0.6756, abs=1e-3) and whole["ci_high"] == 1.0
    zero = one(accuracy_table(pd.DataFrame(rows("m", "s", [0.0] * 8))), category="*")
    assert zero["ci_low"] == 0.0 and zero["ci_high"] == pytest.approx(0.3244, abs=1e-3)
    assert whole["detectable_drop"] > 0.3  # eight samples cannot see a small fall


def test_questions_sharing_an_image_are_resampled_together():
    shared = [{**r, "images": [f"img{i // 4}.png"]} for i, r in enumerate(rows("m", "s", [1, 0, 1, 1] * 6))]
    whole = one(accuracy_table(pd.DataFrame(shared)), category="*")
    assert whole["interval"] == "cluster-bootstrap" and whole["n_clusters"] == 6 and whole["n"] == 24


def test_a_suite_asks_for_its_published_benchmark_figures():
    df = pd.DataFrame([{**r, "benchmark": "mmstar", "metric": "multiple_choice"}
                       for cat, scores in (("coarse perception", [1, 1, 0, 1, 1, 0]), ("math", [0, 0, 1, 0, 0, 0]))
                       for r in rows("m", "mmstar", scores, category=cat, start=100 if cat == "math" else 0)])
    t = accuracy_table(df)
    bench = t[t["category"] == "@mmstar"]
    assert not bench.empty and (bench["unit"] == "%").any()
    avg = bench.iloc[0]
    assert avg["mean"] == pytest.approx(100 * (4 / 6 + 1 / 6) / 2)
