from __future__ import annotations

from harness.core.records import Sample
from harness.metrics import metric
from harness.metrics.normalise import normalise


def first_yes_no(text: str) -> str | None:
    """The first word of the VQA-normalised text that is "yes" or "no"; None if neither."""
    for word in normalise(text).split():
        if word in ("yes", "no"):
            return word
    return None


@metric("yes_no", version=2,
        reference="none: the harness's own rule (first yes/no word after the VQA normalisation); "
                  "POPE's published rule is the `pope` metric")
def yes_no(output: str, sample: Sample) -> float:
    """1 if the first yes/no word of the output is the answer; an output with neither scores 0."""
    got = first_yes_no(output)
    return float(got is not None and any(got == normalise(a) for a in sample.answers))


def pope_label(output: str) -> str:
    """POPE's reading of an answer: its first sentence (up to the first "."), commas removed,
    split on single spaces; "no" if a word is exactly "No", "no" or "not", else "yes"."""
    first = output.split(".")[0].replace(",", "")
    return "no" if any(w in ("No", "no", "not") for w in first.split(" ")) else "yes"


def pope_gold(label: object) -> str:
    """POPE's reading of a ground-truth label, exactly as RUCAIBox/POPE evaluate.py reads it
    (`if label == 'no': 0 else: 1`): only the exact string "no" is a no-label; anything else,
    "No" and " no" included, is a yes-label. The `pope` metric and the `@pope` benchmark figure
    both use this one rule, so the two never disagree on a label."""
    return "no" if label == "no" else "yes"


@metric("pope", version=1, reference="RUCAIBox/POPE evaluate.py (as LLaVA llava/eval/eval_pope.py)")
def pope(output: str, sample: Sample) -> float:
    """POPE's rule: an answer is "no" if its first sentence has the word no/No/not, else "yes";
    the label is read by `pope_gold` (the reference's rule)."""
    return float(any(pope_label(output) == pope_gold(a) for a in sample.answers))
