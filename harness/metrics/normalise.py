r"""Answer normalisation of the official VQA evaluation, which the text-matching metrics share.

Reference: GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py, VQAEval's
processPunctuation and processDigitArticle (the same rules as lmms-eval's
tasks/_task_utils/vqa_eval_metric.py EvalAIAnswerProcessor and VLMEvalKit's
vlmeval/dataset/utils/vqa_eval.py process_answer). In order:

1. Newlines and tabs become spaces; the ends are stripped.
2. Each of  ; / [ ] " { } ( ) = + \ _ - > < @ ` , ? !  is deleted when it touches a space
   anywhere in the answer or the answer holds a digit-comma-digit ("1,000"), else it becomes
   a space. Nothing else is punctuation: apostrophes, colons, `$ % & # *`, curly quotes and
   all non-ASCII marks stay as they are.
3. A period not followed by a digit is deleted (the script's look-behind for a preceding digit
   is written `(?!<=\d)`, which never fires, so "3." is "3"), at most 32 of them: the script
   passes re.UNICODE (32) where re.sub takes its count.
4. Lower case; split on whitespace; the number words zero to ten (and "none") become digits;
   the articles a, an, the go; a word the contraction table knows gets its apostrophe back
   ("dont" is "don't"; "its" and "mans" stay as they are).

lmms-eval's VQAv2 task differs from the script only in its digit-comma-digit test, which also
accepts repeated commas ("1,,000"); we follow the script there.

Variants, each a named metric option elsewhere:
- "vlmevalkit": step 3 keeps a period that follows a digit ("3." stays), VLMEvalKit's
  vlmeval/smp/misc.py process_punctuation.
- "evalai": lmms-eval's TextVQA (and MMF's EvalAIAnswerProcessor.__call__) first lower-cases,
  deletes every "," and "?", and splits "'s" off its word ("man's" is "man 's"); its
  digit-comma-digit test also accepts repeated commas.
"""

from __future__ import annotations

import re

NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'

# The script's contraction table as "written>restored" pairs. Its keys with a capital I never
# fire (words are looked up after lower-casing) and its identity entries change nothing, so
# neither is listed; "somebody'd>somebodyd" is the table's own (reversed) entry, kept.
_CONTRACTIONS_TEXT = """
    aint>ain't arent>aren't cant>can't couldve>could've couldnt>couldn't couldn'tve>couldn't've
    couldnt've>couldn't've didnt>didn't doesnt>doesn't dont>don't hadnt>hadn't hadnt've>hadn't've
    hadn'tve>hadn't've hasnt>hasn't havent>haven't hed>he'd hed've>he'd've he'dve>he'd've hes>he's
    howd>how'd howll>how'll hows>how's isnt>isn't itd>it'd itd've>it'd've it'dve>it'd've itll>it'll
    maam>ma'am mightnt>mightn't mightnt've>mightn't've mightn'tve>mightn't've mightve>might've
    mustnt>mustn't mustve>must've neednt>needn't notve>not've oclock>o'clock oughtnt>oughtn't
    ow's'at>'ow's'at 'ows'at>'ow's'at 'ow'sat>'ow's'at shant>shan't shed've>she'd've
    she'dve>she'd've shouldve>should've shouldnt>shouldn't shouldnt've>shouldn't've
    shouldn'tve>shouldn't've somebody'd>somebodyd somebodyd've>somebody'd've
    somebody'dve>somebody'd've somebodyll>somebody'll somebodys>somebody's someoned>someone'd
    someoned've>someone'd've someone'dve>someone'd've someonell>someone'll someones>someone's
    somethingd>something'd somethingd've>something'd've something'dve>something'd've
    somethingll>something'll thats>that's thered>there'd thered've>there'd've there'dve>there'd've
    therere>there're theres>there's theyd>they'd theyd've>they'd've they'dve>they'd've
    theyll>they'll theyre>they're theyve>they've twas>'twas wasnt>wasn't wed've>we'd've
    we'dve>we'd've weve>we've werent>weren't whatll>what'll whatre>what're whats>what's
    whatve>what've whens>when's whered>where'd wheres>where's whereve>where've whod>who'd
    whod've>who'd've who'dve>who'd've wholl>who'll whos>who's whove>who've whyll>why'll whyre>why're
    whys>why's wont>won't wouldve>would've wouldnt>wouldn't wouldnt've>wouldn't've
    wouldn'tve>wouldn't've yall>y'all yall'll>y'all'll y'allll>y'all'll yall'd've>y'all'd've
    y'alld've>y'all'd've y'all'dve>y'all'd've youd>you'd youd've>you'd've you'dve>you'd've
    youll>you'll youre>you're youve>you've
"""
CONTRACTIONS = dict(pair.split(">") for pair in _CONTRACTIONS_TEXT.split())

_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_DIGIT_COMMAS_DIGIT = re.compile(r"\d,+\d")
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_NOT_AFTER_DIGIT = re.compile(r"(?<!\d)\.(?!\d)")
_PERIOD_LIMIT = 32
VARIANTS = ("official", "vlmevalkit", "evalai")


def punctuation(text: str, variant: str = "official") -> str:
    """Steps 2 and 3: punctuation deleted or spaced, periods stripped."""
    joined = (_DIGIT_COMMAS_DIGIT if variant == "evalai" else _DIGIT_COMMA_DIGIT).search(text) is not None
    table = {}
    for p in PUNCTUATION:
        if p in text:
            table[ord(p)] = "" if joined or f"{p} " in text or f" {p}" in text else " "
    out = text.translate(table)
    period = _PERIOD_NOT_AFTER_DIGIT if variant == "vlmevalkit" else _PERIOD
    return period.sub("", out, count=_PERIOD_LIMIT)


def digits_articles(text: str) -> str:
    """Step 4: lower case, number words as digits, no articles, contractions restored."""
    words = (NUMBER_WORDS.get(w, w) for w in text.lower().split())
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalise(text: str, variant: str = "official") -> str:
    """An answer as the VQA evaluation compares it (see the module docstring)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown normalisation variant {variant!r}; known: {', '.join(VARIANTS)}")
    if variant == "evalai":
        text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return digits_articles(punctuation(text, variant))
