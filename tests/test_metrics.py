from __future__ import annotations

import itertools

import pytest

from harness.metrics import METRICS, score
from harness.metrics.anls import anls_of, levenshtein
from harness.metrics.multiple_choice import extract_choice
from harness.metrics.normalise import normalise
from harness.metrics.relaxed_accuracy import parse_number, relaxed_match
from harness.metrics.vqa_accuracy import vqa_accuracy_of
from harness.metrics.yes_no import first_yes_no
from harness.records import Sample


def sample(answers, metric="exact_match", keywords=(), choices=(), category="c"):
    return Sample("s", "id", (), "q", tuple(answers), category, metric, 8, tuple(keywords), tuple(choices))


# -- normalisation: the official VQA evaluation's answer processing (vqaEval.py, VQA challenge
# -- "Evaluation" page: lower case, periods except decimal points removed, number words to digits,
# -- articles removed, missing apostrophes in contractions, punctuation to spaces). ---------------
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
        # VQA: "removing periods except if it occurs as decimal"
        ("a.m.", "am"),
        ("10 p.m.", "10 pm"),
        ("3.", "3"),
        # VQA: "converting number words to digits", "removing articles (a, an, the)"
        ("an apple and two pears", "apple and 2 pears"),
        ("none", "0"),
        # VQA: "adding apostrophe if a contraction is missing it": "dont" and "don't" agree
        ("don't", "dont"),
        ("Don\u2019t know", "dont know"),
        # VQA: "replacing all punctuation (except apostrophe and colon) with a space character"
        ("t-shirt", "t shirt"),
        ("red/white", "red white"),
    ],
)
def test_normalise_follows_the_vqa_evaluation(raw, expected):
    assert normalise(raw) == expected


def test_exact_match_accepts_any_listed_answer_after_normalisation():
    s = sample(["cat", "tabby cat"])
    assert score("The Cat.", s) == 1.0
    assert score("tabby cat", s) == 1.0
    assert score("a dog", s) == 0.0
    # Exact, not contains: a sentence that mentions the answer does not count.
    assert score("it is a cat on a mat", s) == 0.0


def test_exact_match_number_words_and_contractions():
    assert score("Five", sample(["5"])) == 1.0
    assert score("6", sample(["5"])) == 0.0
    assert score("I don't know", sample(["i dont know"])) == 1.0


def test_keyword_recall_is_the_fraction_of_keywords_present():
    s = sample(["a tabby cat"], metric="keyword_recall", keywords=["cat", "tabby", "whiskers", "eyes"])
    assert score("A tabby cat with green eyes.", s) == pytest.approx(0.75)
    assert score("nothing relevant", s) == 0.0


# -- VQA accuracy: Acc(ans) = min(1, #humans that said ans / 3), "averaged over all 10 choose 9
# -- sets of human annotators" (VQA challenge evaluation page; vqaEval.py computes it as the mean
# -- over leaving out each of the 10 answers).
def _ten(answer, k, other="other"):
    return [answer] * k + [f"{other}{i}" for i in range(10 - k)]


@pytest.mark.parametrize("k, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_vqa_accuracy_worked_values_for_k_of_10_annotators(k, expected):
    assert vqa_accuracy_of("two", _ten("2", k)) == pytest.approx(expected)


def test_vqa_accuracy_matches_a_brute_force_over_the_subsets_of_nine():
    answers = ["red", "red", "dark red", "red", "maroon", "dark red", "burgundy", "red", "dark red", "wine"]
    for pred in ("red", "dark red", "maroon", "blue"):
        subsets = list(itertools.combinations(range(10), 9))
        expected = sum(min(1, sum(answers[i] == pred for i in s) / 3) for s in subsets) / len(subsets)
        assert vqa_accuracy_of(pred, answers) == pytest.approx(expected)


def test_vqa_accuracy_normalises_both_sides_and_is_registered():
    s = sample(["2"] * 2 + ["3"] * 8, metric="vqa_accuracy")
    assert score("Two.", s) == pytest.approx(0.6)
    assert score("three", s) == 1.0
    # One reference answer: leave-one-out has nobody left, so it is exact match.
    assert vqa_accuracy_of("A dog", ["dog"]) == 1.0


# -- ANLS, Biten et al. 2019 ("Scene Text Visual Question Answering", eq. 1): s = 1 - NL(a, o) if
# -- NL < 0.5 else 0, NL the Levenshtein distance over the longer length, max over the answers;
# -- the ST-VQA / DocVQA evaluation lower-cases and collapses whitespace first.
def test_levenshtein_textbook_examples():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("flaw", "lawn") == 2


@pytest.mark.parametrize(
    "pred, answers, expected",
    [
        ("corona", ["corona"], 1.0),
        ("CORONA ", ["corona"], 1.0),  # case and surrounding space do not count
        ("corono", ["corona"], 1 - 1 / 6),  # one OCR slip: a small penalty, not a zero
        ("kitten", ["sitting"], 1 - 3 / 7),  # NL = 3/7 < 0.5
        ("abxy", ["abcd"], 0.0),  # NL = 0.5 is at the threshold: 0 (NL >= tau)
        ("abcxy", ["abcde"], 0.6),  # NL = 2/5 < 0.5: kept
        ("2 june 1970", ["june 2, 1970", "2 june 1970"], 1.0),  # max over the answers
        ("blue", ["red"], 0.0),  # a wrong answer scores nothing, however short
        ("", ["abc"], 0.0),
    ],
)
def test_anls_worked_examples(pred, answers, expected):
    assert anls_of(pred, answers) == pytest.approx(expected)


def test_anls_is_registered_and_uses_every_answer():
    s = sample(["Dr. Smith", "Smith"], metric="anls")
    assert score("smith", s) == 1.0
    assert score("Smyth", s) == pytest.approx(0.8)


# -- ChartQA relaxed accuracy (Masry et al. 2022, sec. 5, after Methani et al. 2020): numeric
# -- answers are right within 5 % of the gold value; other answers need an exact match.
@pytest.mark.parametrize(
    "pred, gold, ok",
    [
        ("100", "100", True),
        ("104", "100", True),
        ("105", "100", True),  # exactly 5 %
        ("106", "100", False),
        ("95", "100", True),
        ("94.9", "100", False),
        ("0.52", "0.5", True),  # 4 %
        ("0.53", "0.5", False),  # 6 %
        ("-10.4", "-10", True),  # relative to |gold|
        ("0", "0", True),
        ("0.01", "0", False),  # no relative tolerance around zero
        ("2018", "2017", True),  # as published: years are numbers too, within 0.05 %
        ("Yes", "yes", True),  # non-numeric: exact (case aside)
        ("Yes.", "yes", True),
        ("Germany", "France", False),
        ("Germany ", "germany", True),
        # Forms a model writes a number in: percent sign, thousands commas, currency, units.
        ("45%", "45", True),
        ("1,234", "1234", True),
        ("$1,250", "1200", True),
        ("12 million", "12", True),
        ("twelve", "12", True),
        ("12 and 13", "12", False),
    ],
)
def test_relaxed_accuracy_worked_examples(pred, gold, ok):
    assert relaxed_match(pred, gold) is ok


def test_parse_number_and_registered_metric():
    assert parse_number("−3.5") == -3.5
    assert parse_number("about 3") is None
    s = sample(["23.5"], metric="relaxed_accuracy")
    assert score("24", s) == 1.0
    assert score("25", s) == 0.0


# -- Multiple choice (MMStar, MMBench): the option letter a free answer picks, as lmms-eval and
# -- VLMEvalKit extract it; an answer that picks none or several scores 0.
@pytest.mark.parametrize(
    "text, letter",
    [
        ("B", "B"),
        ("b", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("B)", "B"),
        ("Answer: B", "B"),
        ("the answer is b", "B"),
        ("The answer is (C) because the cat is black.", "C"),
        ("The correct option is D.", "D"),
        ("B. a cat", "B"),
        ("I think it is B", "B"),
        ("A cat is on the mat, so B", "B"),  # the article "A" is not option A
        ("A", "A"),
        ("I cannot tell", None),
        ("A or B", None),  # two letters: no answer
        ("the answer is a cat", None),  # "a" running into words is prose
        ("", None),
    ],
)
def test_multiple_choice_letter_extraction(text, letter):
    assert extract_choice(text) == letter


def test_multiple_choice_uses_the_choices_when_given():
    choices = ("dog", "cat", "bird", "fish")
    assert extract_choice("cat", choices) == "B"
    assert extract_choice("It is a cat.", choices) == "B"
    assert extract_choice("E", choices) is None  # only A-D exist
    s = sample(["B"], metric="multiple_choice", choices=choices)
    assert score("(b)", s) == 1.0
    assert score("The answer is A.", s) == 0.0
    assert score("no idea", s) == 0.0
    # A gold answer stored as the option's text is its letter.
    assert score("B", sample(["cat"], metric="multiple_choice", choices=choices)) == 1.0


# -- Yes/no (POPE, MME): the first yes/no word of the answer.
@pytest.mark.parametrize(
    "text, word",
    [("Yes", "yes"), ("No.", "no"), ("yes, there is a dog", "yes"), ("There is no dog; yes.", "no"),
     ("Yesterday", None), ("I can't tell", None)],
)
def test_first_yes_no(text, word):
    assert first_yes_no(text) == word


def test_yes_no_scores_against_the_answer():
    s = sample(["yes"], metric="yes_no")
    assert score("Yes, it is red.", s) == 1.0
    assert score("No", s) == 0.0
    assert score("maybe", s) == 0.0


# -- OCRBench: right when any accepted answer appears in the output (case-insensitive; formulas
# -- compared with spaces removed and case kept).
def test_contains_follows_ocrbench():
    s = sample(["Coca Cola"], metric="contains", category="Scene Text-centric VQA")
    assert score("The sign says COCA  cola.", s) == 1.0
    assert score("Pepsi", s) == 0.0
    f = sample(["\\frac{a}{b}"], metric="contains", category="Handwritten Mathematical Expression Recognition")
    assert score("\\frac { a } { b }", f) == 1.0
    assert score("\\frac{A}{B}", f) == 0.0


def test_every_metric_declares_direction_and_aggregation():
    expected = {"anls", "contains", "exact_match", "keyword_recall", "multiple_choice", "relaxed_accuracy",
                "vqa_accuracy", "yes_no"}
    assert expected <= set(METRICS.names())
    for name in METRICS.names():
        spec = METRICS.get(name)
        assert spec.higher_is_better is True
        assert spec.aggregation == "mean"
        assert spec.description
