from __future__ import annotations

import re

from harness.metrics import metric
from harness.records import Sample


@metric("contains")
def contains(output: str, sample: Sample) -> float:
    """OCRBench's rule: 1 if any answer appears in the output, case-insensitive."""
    # OCRBench compares handwritten formulas (HME100k) with every space removed and case kept:
    # LaTeX spacing is arbitrary but its case is meaningful.
    if "mathematical expression" in sample.category.lower():
        out = re.sub(r"\s+", "", output)
        return float(any(re.sub(r"\s+", "", a) in out for a in sample.answers if a.strip()))
    out = " ".join(output.lower().split())
    return float(any(" ".join(a.lower().split()) in out for a in sample.answers if a.strip()))
