from __future__ import annotations

from harness.metrics import metric
from harness.metrics.normalise import normalise
from harness.records import Sample


@metric("exact_match")
def exact_match(output: str, sample: Sample) -> float:
    """1 if the normalised output equals any normalised accepted answer, else 0."""
    got = normalise(output)
    return float(any(got == normalise(a) for a in sample.answers))
