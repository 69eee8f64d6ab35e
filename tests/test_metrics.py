from __future__ import annotations

import pytest

from harness.metrics import METRICS, score
from harness.metrics.normalise import normalise
from harness.records import Sample


def sample(answers, metric="exact_match", keywords=()):
    return Sample("s", "id", (), "q", tuple(answers), "c", metric, 8, tuple(keywords))


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Red.", "red"),
        ("The cat", "cat"),
        ("  A Square!  ", "square"),
        ("Three", "3"),
        ("twelve coins", "12 coins"),
        ("1,000", "1000"),
        ("3.5", "3.5"),
        ("Gray color", "grey colour"),
        ("yes, it is.", "yes it is"),
    ],
)
def test_normalise(raw, expected):
    assert normalise(raw) == expected


def test_exact_match_accepts_any_listed_answer_after_normalisation():
    s = sample(["cat", "tabby cat"])
    assert score("The Cat.", s) == 1.0
    assert score("tabby cat", s) == 1.0
    assert score("a dog", s) == 0.0
    # Exact, not contains: a sentence that mentions the answer does not count.
    assert score("it is a cat on a mat", s) == 0.0


def test_exact_match_number_words_become_digits():
    assert score("Five", sample(["5"])) == 1.0
    assert score("6", sample(["5"])) == 0.0


def test_keyword_recall_is_the_fraction_of_keywords_present():
    s = sample(["a tabby cat"], metric="keyword_recall", keywords=["cat", "tabby", "whiskers", "eyes"])
    assert score("A tabby cat with green eyes.", s) == pytest.approx(0.75)
    assert score("nothing relevant", s) == 0.0


def test_metric_specs_declare_direction():
    for name in METRICS.names():
        spec = METRICS.get(name)
        assert spec.higher_is_better is True
        assert spec.aggregation == "mean"
