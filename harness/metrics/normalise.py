"""Answer normalisation shared by the text-matching metrics (after the VQA evaluation script:
lower case, punctuation and articles dropped, number words as digits)."""

from __future__ import annotations

import re

NUMBER_WORDS = {
    "zero": "0", "none": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11",
    "twelve": "12",
}
ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"(?!(?<=\d)\.(?=\d))[^\w\s]")
# British and American spellings answer the same question.
SPELLINGS = {"color": "colour", "gray": "grey", "colors": "colours"}


def normalise(text: str) -> str:
    text = text.lower().strip()
    # Keep decimal points and thousands separators inside numbers, drop other punctuation.
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)
    text = _PUNCT.sub(" ", text)
    words = [NUMBER_WORDS.get(w, SPELLINGS.get(w, w)) for w in text.split() if w not in ARTICLES]
    return " ".join(words)
