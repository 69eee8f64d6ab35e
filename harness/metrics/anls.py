from __future__ import annotations

from harness.metrics import metric
from harness.records import Sample

THRESHOLD = 0.5


def levenshtein(a: str, b: str) -> int:
    """Edit distance: insertions, deletions and substitutions each cost 1."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def anls_of(output: str, answers: list[str] | tuple[str, ...], threshold: float = THRESHOLD) -> float:
    """max over answers of 1 - NL(answer, output), or 0 where NL >= threshold (Biten et al.
    2019, eq. 1). NL is the edit distance over the longer string's length; both sides are
    lower-cased with whitespace collapsed, as the ST-VQA / DocVQA evaluation does."""
    got = " ".join(output.strip().lower().split())
    best = 0.0
    for a in answers:
        gt = " ".join(a.strip().lower().split())
        longest = max(len(gt), len(got))
        nl = levenshtein(gt, got) / longest if longest else 0.0
        best = max(best, 1.0 - nl if nl < threshold else 0.0)
    return best


@metric("anls")
def anls(output: str, sample: Sample) -> float:
    """ANLS (DocVQA, ST-VQA): normalised Levenshtein similarity, 0 below the 0.5 threshold."""
    return anls_of(output, sample.answers)
