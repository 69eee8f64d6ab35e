from __future__ import annotations

from harness.metrics import metric
from harness.metrics.normalise import normalise
from harness.records import Sample


def vqa_accuracy_of(output: str, annotator_answers: list[str] | tuple[str, ...]) -> float:
    """min(1, #annotators who gave this answer / 3), averaged over the leave-one-out subsets of
    the annotators, as the official VQA evaluation computes it (10 answers: 10 subsets of 9)."""
    got = normalise(output)
    gts = [normalise(a) for a in annotator_answers]
    if not gts:
        return 0.0
    if len(gts) == 1:
        # Leave-one-out of a single answer leaves nobody to agree with; score it as exact match.
        return float(got == gts[0])
    matches = [g == got for g in gts]
    total = sum(matches)
    return sum(min(1.0, (total - m) / 3) for m in matches) / len(gts)


@metric("vqa_accuracy")
def vqa_accuracy(output: str, sample: Sample) -> float:
    """VQA accuracy: min(1, n/3) over the annotators' answers, averaged over subsets of 9."""
    return vqa_accuracy_of(output, sample.answers)
