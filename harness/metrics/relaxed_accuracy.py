from __future__ import annotations

import re

from harness.metrics import metric
from harness.metrics.normalise import NUMBER_WORDS
from harness.records import Sample

TOLERANCE = 0.05

# A whole answer that is one number, with an optional currency sign before it and a percent
# sign or unit words after it: "$1,234.5 million", "45%", "-3.2", "12 kg".
_NUMBER = re.compile(
    r"[$€£¥₹]?\s*(?P<num>[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+\u2212]?\.\d+)"
    r"\s*(?:%|percent|[a-z$€£¥ ]{1,24})?"
)


def parse_number(text: str) -> float | None:
    """The number a short answer states, or None if it is not just a number (and unit)."""
    t = text.strip().lower().rstrip(".").strip()
    t = NUMBER_WORDS.get(t, t)
    m = _NUMBER.fullmatch(t)
    if m is None:
        return None
    return float(m.group("num").replace(",", "").replace("\u2212", "-"))


def relaxed_match(output: str, answer: str, tolerance: float = TOLERANCE) -> bool:
    """ChartQA's relaxed accuracy (Masry et al. 2022, after Methani et al. 2020): a numeric answer
    is right within 5 % of the gold value, anything else must match exactly (case aside)."""
    gold, got = parse_number(answer), parse_number(output)
    if gold is not None and got is not None:
        if gold == 0:
            return got == 0
        return abs(got - gold) / abs(gold) <= tolerance
    return output.strip().lower().rstrip(".").strip() == answer.strip().lower().rstrip(".").strip()


@metric("relaxed_accuracy")
def relaxed_accuracy(output: str, sample: Sample) -> float:
    """ChartQA relaxed accuracy: numbers within 5 % of the answer, other answers exactly."""
    return float(any(relaxed_match(output, a) for a in sample.answers))
