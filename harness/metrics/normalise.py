"""Answer normalisation shared by the text-matching metrics, after the official VQA evaluation
script (vqaEval.py, VQA challenge): lower case, periods dropped except decimal points, number
words as digits, articles dropped, punctuation as a space.

Where we differ from the script, we differ the same way on both sides of a comparison, so a
match it would find we find too:
- Contractions: the script maps "dont" to "don't"; we drop apostrophes, so "don't" and "dont"
  both become "dont".
- Colons and apostrophes the script keeps; we drop them ("2:30" is "2 30" on both sides).
- Number words up to twelve (the script stops at ten), and British/American spellings.
"""

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
    text = text.lower().strip().replace("\u2019", "'")
    # Thousands separators go ("1,000" is 1000); apostrophes go, which joins contractions.
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = text.replace("'", "")
    # A period not followed by a digit is deleted, as the VQA script does ("a.m." is "am",
    # "3." is "3"); a decimal point stays.
    text = re.sub(r"\.(?!\d)", "", text)
    text = _PUNCT.sub(" ", text)
    words = [NUMBER_WORDS.get(w, SPELLINGS.get(w, w)) for w in text.split() if w not in ARTICLES]
    return " ".join(words)
