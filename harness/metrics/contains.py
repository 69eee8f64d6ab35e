from __future__ import annotations

from harness.core.records import Sample
from harness.metrics import metric

REFERENCE = "Yuliang-Liu/MultimodalOCR OCRBench/example.py (the authors' scoring loop after generation)"


def is_formula(category: str) -> bool:
    """OCRBench's handwritten formulas (HME100k, type "Handwritten Mathematical Expression
    Recognition") are compared with spaces removed and case kept."""
    c = category.lower()
    return "mathematical expression" in c or "hme100k" in c


def _fold_fullwidth(text: str) -> str:
    # Fullwidth ASCII (U+FF01-U+FF5E) to ASCII and the ideographic space to a space.
    return "".join(chr(ord(ch) - 0xFEE0) if "\uff01" <= ch <= "\uff5e" else " " if ch == "\u3000" else ch
                   for ch in text)


def ocrbench_hit(output: str, answers: tuple[str, ...] | list[str], formula: bool, fullwidth: bool = False) -> bool:
    """The authors' rule: an answer is found inside the output. Formulas: both sides stripped,
    then every space and newline removed (tabs and other whitespace stay), case kept. Others:
    lower-cased, stripped, newlines as spaces, nothing else (repeated spaces stay). An answer
    that is empty after this is found in anything, as in the reference.
    `fullwidth=True` first folds fullwidth ASCII, as lmms-eval's ocrbench task does."""
    if formula:
        got = output.strip().replace("\n", "").replace(" ", "")
        return any(a.strip().replace("\n", "").replace(" ", "") in got for a in answers)
    if fullwidth:
        output, answers = _fold_fullwidth(output), [_fold_fullwidth(a) for a in answers]
    got = output.lower().strip().replace("\n", " ")
    return any(a.lower().strip().replace("\n", " ") in got for a in answers)


@metric("contains", version=2, reference=REFERENCE)
def contains(output: str, sample: Sample) -> float:
    """OCRBench's scorer: 1 if any answer is inside the output (case-insensitive; formulas without spaces)."""
    return float(ocrbench_hit(output, sample.answers, is_formula(sample.category)))


@metric("contains_fullwidth", version=1,
        reference="EvolvingLMMs-Lab/lmms-eval lmms_eval/tasks/ocrbench/utils.py ocrbench_process_results")
def contains_fullwidth(output: str, sample: Sample) -> float:
    """OCRBench as lmms-eval scores it: fullwidth ASCII folded to ASCII first, else as `contains`."""
    return float(ocrbench_hit(output, sample.answers, is_formula(sample.category), fullwidth=True))
