from __future__ import annotations

from harness.core.records import Sample
from harness.metrics import metric
from harness.metrics.normalise import normalise


@metric("keyword_recall", version=2,
        reference="none: the harness's own rule (keywords as whole words after the VQA normalisation)")
def keyword_recall(output: str, sample: Sample) -> float:
    """Fraction of the sample's keywords that appear as words in the normalised output."""
    words = set(normalise(output).split())
    keys = [normalise(k) for k in sample.keywords] or [normalise(a) for a in sample.answers]
    if not keys:
        return 0.0
    return sum(all(w in words for w in k.split()) for k in keys) / len(keys)
