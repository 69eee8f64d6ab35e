"""Option-letter extraction for multiple-choice benchmarks (MMStar, MMBench, ...).

Default (`multiple_choice`): lmms-eval's current rule, lmms_eval/tasks/_task_utils/mcq_extract.py
extract_mcq_answer, as lmms_eval/tasks/mmstar/utils.py exact_match calls it (letters A-D unless
the sample lists its choices). Every letter is a candidate in each form it appears in, ranked:
the answer opens with it (10), ends with it (9), it follows an answer phrase (7), "(X)" (6),
"X." (5), "X:" (4), "X)" (3), "X " (2); the last occurrence wins within a rank; a bare capital
anywhere is the fallback when nothing else is found. Only capital letters count. So "A is
correct" is A, and "C is correct, not D." is C (the opening letter outranks the closing one).

Option `multiple_choice_can_infer`: VLMEvalKit's exact-matching prefetch,
vlmeval/utils/matching_util.py can_infer (can_infer_option, then can_infer_text), with its
VERBOSE environment switch off; a refusal maps to "Z", which is never right.
"""

from __future__ import annotations

import re

from harness.core.records import Sample
from harness.metrics import metric

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MMSTAR_LETTERS = "ABCD"

_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
    "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
    "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select",
    "i pick", "my answer is", "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは",
)
# Where a letter appears, and how much that form says it is the answer.
_FORMS = (("({})", 6), ("{}.", 5), ("{}:", 4), ("{})", 3), ("{} ", 2))
_EDGE_MARKS = ",.!?;:'\""


def letters_for(choices: tuple[str, ...]) -> str:
    return LETTERS[: len(choices)] if choices else MMSTAR_LETTERS


def extract_choice(output: str, choices: tuple[str, ...] = ()) -> str | None:
    """The option letter lmms-eval's extract_mcq_answer reads from an answer, or None."""
    letters = letters_for(choices)
    if not output.strip():
        return None
    text = output.strip()
    for mark in _EDGE_MARKS:  # one pass per mark, in this order, as the reference strips
        text = text.strip(mark)
    text = f" {text} "
    found: list[tuple[int, int, str]] = []  # (rank, position, letter)
    for form, rank in _FORMS:
        for c in letters:
            at = text.rfind(form.format(c))
            if at >= 0:
                found.append((rank, at, c))
    # Positions in the lower-cased text index the original, as in the reference (they differ
    # only where lower-casing changes a string's length).
    lowered = text.lower()
    for phrase in _PHRASES:
        at = lowered.find(phrase)
        if at >= 0:
            for c in letters:
                pos = text.find(c, at + len(phrase))
                if pos >= 0:
                    found.append((7, pos, c))
    core = text.strip()
    for c in letters:
        if core.startswith(c) and (len(core) == 1 or not core[1].isalpha()):
            found.append((10, 0, c))
        if core.endswith(c) and (len(core) == 1 or not core[-2].isalpha()):
            found.append((9, len(text) - 1, c))
    if not found:
        found = [(0, text.rfind(c), c) for c in letters if c in text]
    return max(found, key=lambda f: (f[0], f[1]))[2] if found else None


_REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
             "I'm sorry, but without the image provided", "Cannot determine the answer")
_SPACED = str.maketrans({c: " " for c in ".()[],:;!*#{}"})
_STATED = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


def _letter_stage(output: str, choices: dict[str, str]) -> str | None:
    if any(r in output for r in _REFUSALS):
        return "Z"
    words = output.translate(_SPACED).split()
    present = [c for c in choices if c in words]
    if len(present) == 1 and words.index(present[0]) > len(words) - 5:
        return present[0]
    if not present and "Z" in words:
        return "Z"
    m = _STATED.search(output)
    if m and m.group(1).upper() in choices:
        return m.group(1).upper()
    return None


def can_infer(output: str, choices: dict[str, str]) -> str | None:
    """VLMEvalKit's can_infer: a letter standing alone among the last five words, exactly one
    of the options' letters present; else "answer is X"; else exactly one option's text
    contained in a short answer. "Z" for a refusal; None where it infers nothing."""
    # An API failure skips the letter stage only; the option texts are still tried.
    if "Failed to obtain answer via API" not in output:
        got = _letter_stage(output, choices)
        if got:
            return got
    low = output.lower()
    if len(low) > 2 * sum(len(t) for t in choices.values()):
        return None
    named = [c for c, t in choices.items() if t.lower() in low]
    return named[0] if len(named) == 1 else None


def gold_letter(answer: str, choices: tuple[str, ...]) -> str:
    """The gold letter: the answer itself, upper-cased (as the references compare it); a gold
    stored as an option's text (outside MMStar) is that option's letter."""
    a = answer.strip()
    if len(a) > 1 and choices:
        for i, c in enumerate(choices):
            if c.strip().lower() == a.lower():
                return LETTERS[i]
    return a.upper()


@metric("multiple_choice", version=2,
        reference="EvolvingLMMs-Lab/lmms-eval lmms_eval/tasks/_task_utils/mcq_extract.py extract_mcq_answer "
                  "(tasks/mmstar/utils.py exact_match)")
def multiple_choice(output: str, sample: Sample) -> float:
    """Multiple choice as lmms-eval's MMStar: the ranked option letter of the output is the answer's."""
    got = extract_choice(output, sample.choices)
    return float(got is not None and any(got == gold_letter(a, sample.choices) for a in sample.answers))


@metric("multiple_choice_can_infer", version=1,
        reference="open-compass/VLMEvalKit vlmeval/utils/matching_util.py can_infer (exact matching, no judge model)")
def multiple_choice_can_infer(output: str, sample: Sample) -> float:
    """Multiple choice as VLMEvalKit's exact matching (can_infer): 1 if the inferred letter is the answer's."""
    letters = letters_for(sample.choices)
    options = {c: (sample.choices[i] if i < len(sample.choices) else "") for i, c in enumerate(letters)}
    got = can_infer(output, options)
    return float(got is not None and any(got == gold_letter(a, sample.choices) for a in sample.answers))
