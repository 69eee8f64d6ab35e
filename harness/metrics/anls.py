from __future__ import annotations

from harness.core.records import Sample
from harness.metrics import metric

THRESHOLD = 0.5
REFERENCE = ("EvolvingLMMs-Lab/lmms-eval lmms_eval/api/metrics.py anls (= VLMEvalKit vlmeval/dataset/utils/"
             "vqa_eval.py anls_compute + hit_calculate; the DocVQA RRC script's rule)")


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


def _squash(text: str) -> str:
    return " ".join(text.strip().lower().split())


def anls_of(output: str, answers: list[str] | tuple[str, ...], threshold: float = THRESHOLD,
            normalised_length: bool = False) -> float:
    """ANLS of one question (Biten et al. 2019, eq. 1) as the references compute it.

    Both sides are lower-cased with whitespace collapsed; NL = edit distance / the longer
    length; the question scores s = 1 - min NL over the answers, and 0 where s < threshold, so
    NL of exactly 0.5 keeps 0.5. The references take the longer length of the strings *before*
    normalisation (their `len(answer.upper())`), so surrounding or repeated spaces dilute the
    distance; `normalised_length=True` divides by the normalised lengths instead (option
    `anls_normalised_length`, off by default). An empty pair (length 0) has NL 0.

    The edit distance is at least the difference of the two lengths, so where that difference
    alone gives 1 - NL below the threshold the answer cannot score and its distance is not
    computed (a 100,000-character output against a 100-character answer took 3.5 s). The
    bound is compared in the same floating-point expression as the score, so the scores are
    the references' to the last bit.
    """
    if not answers:
        return 0.0
    got = _squash(output)
    nls = []
    for a in answers:
        gt = _squash(a)
        length = max(len(gt), len(got)) if normalised_length else max(len(a.upper()), len(output.upper()))
        if not length:
            nls.append(0.0)
            continue
        floor = abs(len(gt) - len(got)) / length  # NL can be no lower than this
        nls.append(floor if 1.0 - floor < threshold else levenshtein(gt, got) / length)
    s = 1.0 - min(nls)
    return 0.0 if s < threshold else s


@metric("anls", version=2, reference=REFERENCE)
def anls(output: str, sample: Sample) -> float:
    """ANLS (DocVQA, ST-VQA) as lmms-eval and VLMEvalKit: 1 - NL, 0 where that is below 0.5."""
    return anls_of(output, sample.answers)


@metric("anls_normalised_length", version=1,
        reference="anls with NL divided by the normalised strings' lengths (pix2struct metrics.py anls_metric's "
                  "denominator; the references use the raw lengths)")
def anls_normalised_length(output: str, sample: Sample) -> float:
    """ANLS with the edit distance divided by the longer *normalised* length, else as `anls`."""
    return anls_of(output, sample.answers, normalised_length=True)
