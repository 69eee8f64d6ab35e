from __future__ import annotations

from harness.core.records import Sample
from harness.metrics import metric

TOLERANCE = 0.05
REFERENCE = ("google-research/pix2struct pix2struct/metrics.py relaxed_correctness (= lmms-eval "
             "tasks/chartqa/utils.py relaxed_correctness), max over the answers")


def parse_number(text: str) -> float | None:
    """The value ChartQA's rule reads: Python's float() of the text, a trailing "%" meaning /100;
    None where float() refuses. Nothing else is a number: no units, currency, thousands
    separators or number words; float() itself accepts surrounding whitespace, a sign,
    scientific notation ("6.0e+00"), "inf"/"nan" and digit-group underscores."""
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_match(output: str, answer: str, tolerance: float = TOLERANCE) -> bool:
    """ChartQA's relaxed correctness (Masry et al. 2022, sec. 5.1, after Methani et al. 2020):
    when both read as numbers and the answer's is non-zero, right within 5 % of it (relative
    change <= 0.05); otherwise a case-insensitive exact match of the strings as given (no
    stripping: a gold 0 compares as text, so "0.0" is not "0")."""
    got, gold = parse_number(output), parse_number(answer)
    if got is not None and gold:
        return abs(got - gold) / abs(gold) <= tolerance
    return output.lower() == answer.lower()


@metric("relaxed_accuracy", version=2, reference=REFERENCE)
def relaxed_accuracy(output: str, sample: Sample) -> float:
    """ChartQA relaxed accuracy as pix2struct: numbers within 5 % (a "%" is /100), else exact."""
    return float(any(relaxed_match(output, a) for a in sample.answers))


@metric("relaxed_accuracy_stripped", version=1,
        reference="open-compass/VLMEvalKit vlmeval/dataset/utils/vqa_eval.py process_line (relaxed_accuracy: "
                  "prediction stripped)")
def relaxed_accuracy_stripped(output: str, sample: Sample) -> float:
    """Relaxed accuracy on the output with its surrounding whitespace stripped, as VLMEvalKit."""
    return float(any(relaxed_match(output.strip(), a) for a in sample.answers))
