from __future__ import annotations

from harness.metrics import metric
from harness.metrics.normalise import normalise
from harness.records import Sample


def first_yes_no(text: str) -> str | None:
    """The first word of the text that is "yes" or "no" ("Yes, there is" is yes); None if neither."""
    for word in normalise(text).split():
        if word in ("yes", "no"):
            return word
    return None


@metric("yes_no")
def yes_no(output: str, sample: Sample) -> float:
    """1 if the first yes/no word of the output is the answer; an output with neither scores 0."""
    got = first_yes_no(output)
    return float(got is not None and any(got == normalise(a) for a in sample.answers))
