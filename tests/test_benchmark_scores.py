from __future__ import annotations

import math

import pandas as pd
import pytest
import reference_scorers as ref

from harness.core.intervals import wilson
from harness.metrics.benchmarks import BENCHMARKS, OCRBENCH_RECOGNITION


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame([{"sample_id": str(i), "metric": "m", "output": "", "answers": [], **r} for i, r in enumerate(rows)])


def by_name(rows: list[dict]) -> dict[str, dict]:
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names))
    for r in rows:
        assert {"name", "value", "n"} <= set(r)
    return {r["name"]: r for r in rows}


def test_registry_lists_the_benchmarks():
    assert {"mmstar", "ocrbench", "pope", "vqa_by_answer_type"} <= set(BENCHMARKS.names())


def test_mmstar_is_the_macro_average_over_categories():
    # 10 of 10 right in one category, 1 of 2 in another: macro 75 %, micro 91.7 %.
    rows = [{"category": "math", "score": 1.0}] * 10 + [{"category": "logical reasoning", "score": s} for s in (1.0, 0.0)]
    got = by_name(BENCHMARKS.get("mmstar")(frame(rows)))
    assert got["average"]["value"] == pytest.approx(75.0)
    assert got["average"]["n"] == 12 and got["average"]["unit"] == "%"
    assert got["average"]["ci_low"] < 75.0 < got["average"]["ci_high"]
    assert got["category/math"]["value"] == 100.0 and got["category/math"]["n"] == 10
    # All right in a category: a Wilson interval, not [100, 100].
    assert got["category/math"]["ci_low"] == pytest.approx(100 * wilson(10, 10)[0])
    assert got["category/logical reasoning"]["value"] == 50.0
    assert math.isnan(got["category/logical reasoning"]["ci_low"])  # two samples: too few to tell


def test_mmstar_leaves_unscored_rows_out():
    rows = [{"category": "math", "score": 1.0}] * 6 + [{"category": "math", "score": math.nan}]
    got = by_name(BENCHMARKS.get("mmstar")(frame(rows)))
    assert got["average"]["n"] == 6 and got["average"]["value"] == 100.0


def test_ocrbench_total_and_subtotals_in_points():
    types = list(OCRBENCH_RECOGNITION) + ["Scene Text-centric VQA", "Key Information Extraction"]
    rows = []
    for i, t in enumerate(types):
        rows += [{"category": t, "score": 1.0}] * (i + 1) + [{"category": t, "score": 0.0}] * 2
    got = by_name(BENCHMARKS.get("ocrbench")(frame(rows)))
    assert got["total"]["value"] == sum(range(1, len(types) + 1)) and got["total"]["unit"] == "points"
    assert got["total"]["n"] == len(rows)
    assert got["Text Recognition"]["value"] == sum(range(1, 7))
    assert got["type/Scene Text-centric VQA"]["value"] == 7 and got["type/Scene Text-centric VQA"]["n"] == 9
    assert got["total"]["ci_low"] < got["total"]["value"] < got["total"]["ci_high"]


def test_pope_figures_match_the_authors_script():
    outputs = ["Yes", "No", "Yes, there is.", "No.", "There is not a dog.", "yes", "I think so", "No, never", "Yes"]
    golds = ["yes", "no", "no", "yes", "no", "yes", "no", "no", "yes"]
    df = frame([{"category": "random", "score": 0.0, "output": o, "answers": [g]} for o, g in zip(outputs, golds, strict=True)])
    got = by_name(BENCHMARKS.get("pope")(df))
    pred = [ref.pope_label(o) == "yes" for o in outputs]
    gold = [g == "yes" for g in golds]
    tp = sum(p and g for p, g in zip(pred, gold, strict=True))
    fp = sum(p and not g for p, g in zip(pred, gold, strict=True))
    tn = sum(not p and not g for p, g in zip(pred, gold, strict=True))
    fn = sum(not p and g for p, g in zip(pred, gold, strict=True))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert got["accuracy"]["value"] == pytest.approx(100 * (tp + tn) / 9)
    assert got["precision"]["value"] == pytest.approx(100 * precision)
    assert got["recall"]["value"] == pytest.approx(100 * recall)
    assert got["f1"]["value"] == pytest.approx(100 * 2 * precision * recall / (precision + recall))
    assert got["yes_ratio"]["value"] == pytest.approx(100 * sum(pred) / 9)  # of the answers, not the labels
    assert got["f1"]["ci_low"] <= got["f1"]["value"] <= got["f1"]["ci_high"]


def test_pope_undefined_ratios_are_nan():
    df = frame([{"category": "c", "score": 1.0, "output": "No", "answers": ["no"]}] * 6)
    got = by_name(BENCHMARKS.get("pope")(df))
    assert got["accuracy"]["value"] == 100.0
    assert math.isnan(got["precision"]["value"]) and math.isnan(got["recall"]["value"])
    assert math.isnan(got["f1"]["value"]) and got["yes_ratio"]["value"] == 0.0


def test_vqa_by_answer_type():
    rows = ([{"category": "yes/no", "score": 1.0}] * 4 + [{"category": "number", "score": s} for s in (0.3, 0.6, 0.0, 1.0, 0.9)]
            + [{"category": "other", "score": 0.0}])
    got = by_name(BENCHMARKS.get("vqa_by_answer_type")(frame(rows)))
    assert got["overall"]["value"] == pytest.approx(100 * (4 + 2.8) / 10) and got["overall"]["n"] == 10
    assert got["answer_type/number"]["value"] == pytest.approx(56.0)
    assert got["answer_type/number"]["ci_low"] < 56.0 < got["answer_type/number"]["ci_high"]
    assert set(got) == {"overall", "answer_type/yes/no", "answer_type/number", "answer_type/other"}


def test_clusters_are_used_when_given():
    rows = [{"category": "a", "score": float(i // 4 % 2), "cluster": i // 4} for i in range(40)]
    got = by_name(BENCHMARKS.get("vqa_by_answer_type")(frame(rows)))
    plain = by_name(BENCHMARKS.get("vqa_by_answer_type")(frame([{k: v for k, v in r.items() if k != "cluster"} for r in rows])))
    width = got["overall"]["ci_high"] - got["overall"]["ci_low"]
    assert width > 1.5 * (plain["overall"]["ci_high"] - plain["overall"]["ci_low"])


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="score"):
        BENCHMARKS.get("mmstar")(pd.DataFrame({"category": ["a"]}))


def test_pope_label_rule_is_the_same_for_the_metric_and_the_figure():
    # POPE's evaluate.py reads only the exact label "no" as a no-label: "No" is a yes-label there,
    # so "No." answers to it are wrong in the per-sample metric and in the benchmark figure alike.
    from harness.core.records import Sample
    from harness.metrics import score

    outputs = ["No.", "No, there is none.", "no"]
    samples = [Sample("t", str(i), (), "q", ("No",), "c", "pope", 8) for i in range(len(outputs))]
    per_sample = [score(o, s) for o, s in zip(outputs, samples, strict=True)]
    ref_gold = [0 if label == "no" else 1 for label in ["No"] * len(outputs)]  # evaluate.py's rule
    ref_pred = [0 if ref.pope_label(o) == "no" else 1 for o in outputs]
    ref_acc = 100 * sum(p == g for p, g in zip(ref_pred, ref_gold, strict=True)) / len(outputs)
    df = frame([{"category": "random", "score": s, "output": o, "answers": ["No"]}
                for o, s in zip(outputs, per_sample, strict=True)])
    got = by_name(BENCHMARKS.get("pope")(df))
    assert ref_acc == 0.0 and per_sample == [0.0, 0.0, 0.0]
    assert got["accuracy"]["value"] == pytest.approx(ref_acc)
    assert got["accuracy"]["value"] == pytest.approx(100 * sum(per_sample) / len(outputs))
