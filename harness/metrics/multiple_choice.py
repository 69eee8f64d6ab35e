from __future__ import annotations

import re

from harness.metrics import metric
from harness.metrics.normalise import normalise
from harness.records import Sample

DEFAULT_LETTERS = "ABCDEFGH"  # when a sample does not list its choices; "I" would be a pronoun

_BRACKETED = r"[(\[]\s*([A-Za-z])\s*[)\]]"
# "Answer: B", "the answer is (b)", "correct option is B", "choice B"
_STATED = re.compile(
    r"\b(?:answer|option|choice)(?:\s+is)?\s*[:=]?\s*(?:option\s+|choice\s+)?[(\[]?\s*([A-Za-z])(?![A-Za-z])\s*[)\]]?(.*)",
    re.IGNORECASE | re.DOTALL,
)
_LEADING = re.compile(rf"^\s*(?:{_BRACKETED}|([A-Z])\s*[.):]|([A-Z])$)")


def _letter(c: str, letters: str, rest: str = "", lower_ok: bool = False) -> str | None:
    up = c.upper()
    if up not in letters:
        return None
    # A lower-case "a" or "b" running on into words is prose ("the answer is a cat"), not a letter.
    if c.islower() and not lower_ok and re.match(r"\s*[A-Za-z]", rest):
        return None
    return up


def extract_choice(output: str, choices: tuple[str, ...] = ()) -> str | None:
    """The option letter an answer picks, or None when it picks none or several.

    Tried in order: the whole answer is a letter ("B", "(b)", "B."); a stated answer ("Answer: B",
    "the answer is b"); a letter that opens the answer ("B) a cat"); a bracketed letter; the text
    of exactly one choice; exactly one capital letter standing alone.
    """
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(choices)] if choices else DEFAULT_LETTERS
    text = output.strip()
    m = re.fullmatch(rf"(?:{_BRACKETED}|([A-Za-z]))\s*[.:)]?", text)
    if m:
        return _letter(m.group(1) or m.group(2), letters, lower_ok=True)
    for m in _STATED.finditer(text):
        got = _letter(m.group(1), letters, m.group(2))
        if got:
            return got
    m = _LEADING.match(text)
    if m:
        got = _letter(next(g for g in m.groups() if g), letters, lower_ok=True)
        if got:
            return got
    found = {c.upper() for c in re.findall(_BRACKETED, text) if c.upper() in letters}
    if len(found) == 1:
        return found.pop()
    if choices:
        said = normalise(text)
        named = [i for i, c in enumerate(choices) if normalise(c) and normalise(c) == said]
        if not named:
            padded = f" {said} "
            named = [i for i, c in enumerate(choices) if normalise(c) and f" {normalise(c)} " in padded]
        if len(named) == 1:
            return letters[named[0]]
    # A capital "A" followed by a lower-case word is the article, not option A ("A or B" is not).
    alone = {c for c in re.findall(r"(?<![A-Za-z'])([A-Z])(?![A-Za-z'])(?!\s+(?!or\b|and\b)[a-z])", text) if c in letters}
    alone |= {c for c in re.findall(r"(?<![A-Za-z'])([B-Z])(?![A-Za-z'])", text) if c in letters}
    return alone.pop() if len(alone) == 1 else None


def _gold_letter(answer: str, choices: tuple[str, ...]) -> str:
    a = answer.strip()
    if len(a) == 1 or not choices:
        return a.upper()
    # Some datasets store the correct option's text rather than its letter.
    for i, c in enumerate(choices):
        if normalise(c) == normalise(a):
            return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[i]
    return a.upper()


@metric("multiple_choice")
def multiple_choice(output: str, sample: Sample) -> float:
    """1 if the option letter extracted from the output is the answer's; no clear letter is 0."""
    got = extract_choice(output, sample.choices)
    return float(got is not None and any(got == _gold_letter(a, sample.choices) for a in sample.answers))
