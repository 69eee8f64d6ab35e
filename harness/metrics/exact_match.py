from __future__ import annotations

from harness.core.records import Sample
from harness.metrics import metric
from harness.metrics.normalise import normalise


@metric("exact_match", version=2,
        reference="VQA-normalised exact match: GT-Vision-Lab/VQA vqaEval.py processPunctuation + processDigitArticle, "
                  "compared as VLMEvalKit vqa_eval.py process_line's default method")
def exact_match(output: str, sample: Sample) -> float:
    """1 if the VQA-normalised output equals any VQA-normalised accepted answer, else 0."""
    # The official VQA normalisation (harness.metrics.normalise) on both sides, then equality
    # with any answer: VLMEvalKit's exact-match method for short-answer sets. It folds only
    # what the VQA script folds (case, articles, zero-ten as digits, listed punctuation).
    got = normalise(output)
    return float(any(got == normalise(a) for a in sample.answers))
