"""Agreement of each metric with the public scorer it names, on thousands of seeded random and
adversarial cases, against the plain re-implementations in tests/reference_scorers.py.

Every metric must agree on at least 99.5 % of its cases; the documented differences are tested
separately (tests/test_metrics.py) and kept out of these generators on purpose.
"""

from __future__ import annotations

import random

import pytest
import reference_scorers as ref

from harness.core.records import Sample
from harness.metrics import METRICS

N = 3000
REQUIRED = 0.995

# Pieces that exercise every rule the references have: unicode, punctuation inside and around
# words, articles, number words, contractions with and without apostrophes (straight and
# curly), percent, signs, decimals, scientific notation, separators and whitespace.
PIECES = [
    "the", "a", "an", "The", "A", "An", "two", "Two", "2", "ten", "Ten", "10", "eleven", "twelve", "none", "zero",
    "0", "one", "dont", "don't", "don\u2019t", "its", "it's", "man's", "mans", "isnt", "oclock", "Im", "ive", "yall",
    "somebody'd", "yes", "no", "No", "not", "Yes", "red", "Grey", "gray", "colour", "color", "caf\u00e9", "cafe\u0301",
    "na\u00efve", "snake_case", "t-shirt", "1,000", "1,,000", "3.", "3.5", ".5", "a.m.", "p.m.", "$5", "45%", "45 %",
    "-3", "+4", "\u22122", "\u2026", "\u00abx\u00bb", "2:30", "&", "#1", "*", "e.g.", "U.S.A.", "x,y", "a / b", "(b)",
    "[c]", "{d}", "x=y", "1+1", "\\", "@home", "`q`", "?", "!", ";", '"q"', "<b>", "Mr.", "...", "6.0e+00", "1e3",
    "\u00df", "\u0130", "\uff21\uff22", "\u3000", "\u00a0", "\u4e2d\u6587", "\u0661\u0662", "1_000", "nan", "inf",
]
SEPARATORS = [" ", " ", " ", "", ", ", ". ", "-", "  ", "\n", "\t", " / ", "?", "!"]


def phrase(rng: random.Random, k_max: int = 4) -> str:
    k = rng.choice([0, 1, 1, 1, 2, 2, 3, k_max])
    out = ""
    for i in range(k):
        out += (rng.choice(SEPARATORS) if i else "") + rng.choice(PIECES)
    if rng.random() < 0.2:
        out = rng.choice(["", " ", "  ", "\n"]) + out + rng.choice([".", "!", "?", " ", "", ".."])
    return out


def long_text(rng: random.Random) -> str:
    # Over 32 periods and several hundred characters: the references' period cap and speed.
    return " ".join(rng.choice(PIECES) + rng.choice([".", "", " ."]) for _ in range(rng.randint(40, 120)))


def perturb(rng: random.Random, text: str) -> str:
    moves = [
        lambda t: t.upper(), lambda t: t.lower(), lambda t: t + ".", lambda t: "The " + t, lambda t: "a " + t,
        lambda t: t.replace("'", ""), lambda t: t.replace("'", "\u2019"), lambda t: t.replace("2", "two"),
        lambda t: t.replace("two", "2"), lambda t: " " + t + " ", lambda t: t.replace(" ", "  "),
        lambda t: t + ",", lambda t: t.replace("-", " "), lambda t: t + "%", lambda t: t.replace(".", ""),
        lambda t: t.replace(",", ""), lambda t: t.replace("?", ""), lambda t: t.replace("'s", " 's"),
        lambda t: t + "3.", lambda t: t.replace(" ", ","), lambda t: t,
    ]
    for _ in range(rng.randint(1, 2)):
        text = rng.choice(moves)(text)
    return text


def sample(answers, metric: str, category: str = "c", choices=()) -> Sample:
    return Sample("s", "id", (), "q", tuple(answers), category, metric, 8, (), tuple(choices))


def agreement(cases, ours, theirs) -> tuple[float, list]:
    differ = []
    for case in cases:
        a, b = ours(*case), theirs(*case)
        if abs(float(a) - float(b)) > 1e-9:
            differ.append((case, a, b))
    return 1 - len(differ) / len(cases), differ


def _check(name: str, cases, ours, theirs) -> None:
    rate, differ = agreement(cases, ours, theirs)
    print(f"\n{name}: agreement {rate:.2%} on {len(cases)} cases")
    assert rate >= REQUIRED, f"{name}: {rate:.2%} agreement; first differences: {differ[:5]}"


# -- VQA accuracy and exact match ------------------------------------------------------------
def vqa_cases(seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    cases = []
    for i in range(N):
        pool = [phrase(rng) for _ in range(rng.randint(1, 4))]
        answers = [rng.choice(pool) for _ in range(rng.choice([10, 10, 10, rng.randint(2, 10)]))]
        r = rng.random()
        pred = (long_text(rng) if i % 97 == 0 else perturb(rng, rng.choice(pool)) if r < 0.6
                else rng.choice(pool) if r < 0.8 else phrase(rng))
        if i % 10 == 0:  # numbers with a trailing period, where the references' period rules differ
            pool = [rng.choice(["2", "10", "3.5", "1,000", "45%", "two", "7 ft"]) for _ in range(3)]
            answers = [rng.choice(pool) for _ in range(10)]
            pred = rng.choice(pool) + rng.choice([".", ". ", "", "!", "..."])
        if i % 89 == 0:
            answers = [long_text(rng)] * 3 + answers[:7]
            pred = answers[0] + rng.choice(["", " .", ".", "!"])
        cases.append((pred, answers))
    return cases


@pytest.mark.parametrize("name, reference", [
    ("vqa_accuracy", ref.vqa_official_answer),
    ("vqa_accuracy_vlmevalkit", ref.vqa_vlmevalkit_answer),
    ("vqa_accuracy_evalai", ref.vqa_evalai_answer),
])
def test_vqa_accuracy_agrees_with_its_reference(name, reference):
    fn = METRICS.get(name).fn
    _check(name, vqa_cases(1), lambda p, a: fn(p, sample(a, name)), lambda p, a: ref.vqa_score(p, a, reference))


def test_vqa_accuracy_agrees_with_lmms_eval_vqav2_too():
    # lmms-eval's VQAv2 task differs from the script only in accepting repeated commas between
    # digits ("1,,000") as a number; the generator includes such pieces.
    fn = METRICS.get("vqa_accuracy").fn
    _check("vqa_accuracy vs lmms-eval vqav2", vqa_cases(1), lambda p, a: fn(p, sample(a, "vqa_accuracy")),
           lambda p, a: ref.vqa_score(p, a, ref.vqa_lmms_vqav2_answer))


def test_exact_match_agrees_with_vqa_normalised_equality():
    fn = METRICS.get("exact_match").fn
    cases = [(p, a[: 1 + i % 3]) for i, (p, a) in enumerate(vqa_cases(2))]
    _check("exact_match", cases, lambda p, a: fn(p, sample(a, "exact_match")),
           lambda p, a: float(any(ref.vqa_official_answer(p) == ref.vqa_official_answer(x) for x in a)))


# -- ANLS -------------------------------------------------------------------------------------
def edit(rng: random.Random, text: str, k: int) -> str:
    chars = list(text)
    for _ in range(k):
        op = rng.randrange(3)
        at = rng.randrange(len(chars) + 1)
        ch = rng.choice("abcxyz XYZ0.\u00e9\u0130")
        if op == 0 or not chars:
            chars.insert(at, ch)
        elif op == 1:
            chars[min(at, len(chars) - 1)] = ch
        else:
            del chars[min(at, len(chars) - 1)]
    return "".join(chars)


def test_anls_agrees_with_lmms_eval():
    rng = random.Random(3)
    cases = []
    for i in range(N):
        answers = [phrase(rng, 3) for _ in range(rng.randint(1, 3))]
        base = rng.choice(answers)
        if i % 7 == 0:  # exactly half the characters differ: NL = 0.5 on the boundary
            n = rng.randint(1, 6)
            answers, pred = ["ab" * n], "ab" * (n // 2) + "xy" * (n - n // 2) if n % 2 == 0 else "x" * n + "b" * n
        elif i % 211 == 0:
            pred = long_text(rng)[:300]
            answers = [edit(rng, pred, 40)]
        else:
            pred = edit(rng, perturb(rng, base), rng.randint(0, max(1, len(base) // 2)))
        cases.append((pred, answers))
    fn = METRICS.get("anls").fn
    _check("anls", cases, lambda p, a: fn(p, sample(a, "anls")), ref.anls_score)


def test_anls_agrees_with_lmms_eval_when_the_lengths_differ_around_half():
    # ANLS skips the edit distance where the length difference alone rules out 0.5; around that
    # boundary (difference just under, at and over half the longer string, raw spaces included)
    # the scores must stay the reference's.
    rng = random.Random(5)
    cases = []
    for _ in range(N):
        answer = phrase(rng, 3) or "a"
        n = len(" ".join(answer.strip().lower().split()))
        extra = max(0, n + rng.randint(-2, 2))
        filler = "".join(rng.choice("ab x") for _ in range(extra))
        pred = rng.choice([answer + filler, filler + answer, filler, edit(rng, answer, 2) + filler])
        answers = [answer] if rng.random() < 0.7 else [answer, phrase(rng, 2)]
        cases.append((pred, answers) if rng.random() < 0.8 else (answers[0], [pred]))
    fn = METRICS.get("anls").fn
    rate, differ = agreement(cases, lambda p, a: fn(p, sample(a, "anls")), ref.anls_score)
    assert rate == 1.0, f"anls with lengths apart: first differences: {differ[:5]}"


# -- Relaxed accuracy ---------------------------------------------------------------------------
def number_text(rng: random.Random, value: float) -> str:
    forms = [
        lambda v: str(v), lambda v: f"{v:.2f}", lambda v: f"{v:.1f}%", lambda v: f"{v:e}", lambda v: f"{v:.1e}",
        lambda v: f"{v:,.0f}", lambda v: f"${v:.0f}", lambda v: f"{v:.0f} million", lambda v: f" {v:g} ",
        lambda v: f"{v:g}\n", lambda v: f"+{v:g}", lambda v: f"{v:g}%%", lambda v: f"{v:g} %", lambda v: f"{v:g}.",
        lambda v: f"\u2212{abs(v):g}", lambda v: f"{int(v)}_000", lambda v: f"{v:g} is wrong", lambda v: "0",
        lambda v: "0.0", lambda v: "nan", lambda v: "inf", lambda v: "-inf", lambda v: "\u0661\u0662",
        lambda v: f"{v:.0f}", lambda v: f"{v * 100:g}%", lambda v: f"{v / 100:g}",
    ]
    return rng.choice(forms)(value)


def test_relaxed_accuracy_agrees_with_pix2struct():
    rng = random.Random(4)
    cases = []
    for i in range(N):
        if i % 5 == 0:
            gold = [phrase(rng, 2)]
            pred = perturb(rng, gold[0]) if rng.random() < 0.5 else gold[0]
        else:
            v = rng.choice([0.0, 1.0, -3.5, 45.0, 0.05, 1234.5, 2017.0, 1e-7, 6.0]) * rng.choice([1, 1, -1, 10])
            gold = [number_text(rng, v) for _ in range(rng.choice([1, 1, 2]))]
            pred = number_text(rng, v * (1 + rng.choice([0, 0.01, 0.049, 0.05, 0.051, 0.2, -0.05, -0.06])))
        cases.append((pred, gold))
    fn = METRICS.get("relaxed_accuracy").fn
    _check("relaxed_accuracy", cases, lambda p, a: fn(p, sample(a, "relaxed_accuracy")), ref.relaxed_score)
    strip = METRICS.get("relaxed_accuracy_stripped").fn
    _check("relaxed_accuracy_stripped", cases, lambda p, a: strip(p, sample(a, "relaxed_accuracy_stripped")),
           lambda p, a: ref.relaxed_score(p.strip(), a))


# -- Multiple choice ----------------------------------------------------------------------------
TEMPLATES = [
    "{L}", "({L})", "{L}.", "{l}", "Answer: {L}", "The answer is {L}", "the answer is ({L}).", "{L} is correct",
    "Therefore, {L} is correct.", "{L} is correct, not {M}.", "I think it is {L}", "A cat is on the mat, so {L}",
    "{L}) {t}", "{L}: {t}", "The correct option is {L}.", "Option {L}", "{t}", "It is {t}.", "{L} or {M}",
    "My answer is **{L}**", "I choose {L} because {M} is wrong", "정답은 {L}", "答案是{L}", "", "   ", "I cannot tell",
    "Cannot determine the answer", "{M}. {t}\nThe answer is {L}.", "{L}{M}", "Z", "None of them, Z",
    "'{L}'", '"{L}"', ".{L},", "Because {t}, {L}", "{l} {t}", "ANSWER IS {L}", "answer is {l}",
]
OPTION_TEXTS = ["dog", "cat", "a red car", "two", "blue", "the moon", "I", "A", "Berlin", "none of these"]


def mc_cases(seed: int):
    rng = random.Random(seed)
    cases = []
    for _ in range(N):
        letters = "ABCD"
        L, M = rng.choice(letters), rng.choice(letters)
        choices = tuple(rng.sample(OPTION_TEXTS, 4))
        t = rng.choice(choices + ("something else",))
        out = rng.choice(TEMPLATES).format(L=L, M=M, l=L.lower(), t=t)
        if rng.random() < 0.1:
            out = perturb(rng, out)
        cases.append((out, rng.choice(letters), choices))
    return cases


def test_multiple_choice_agrees_with_lmms_eval_mmstar():
    fn = METRICS.get("multiple_choice").fn
    _check("multiple_choice", mc_cases(5), lambda o, g, c: fn(o, sample([g], "multiple_choice")),
           lambda o, g, c: ref.mmstar_score(o, g))


def test_multiple_choice_can_infer_agrees_with_vlmevalkit():
    fn = METRICS.get("multiple_choice_can_infer").fn

    def theirs(o, g, c):
        got = ref.can_infer(o, dict(zip("ABCD", c, strict=True)))
        return float(bool(got) and got == g)

    _check("multiple_choice_can_infer", mc_cases(6),
           lambda o, g, c: fn(o, sample([g], "multiple_choice_can_infer", choices=c)), theirs)


# -- OCRBench -----------------------------------------------------------------------------------
def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in text)


def test_ocrbench_agrees_with_the_authors_scorer():
    rng = random.Random(7)
    cases = []
    for i in range(N):
        formula = i % 4 == 0
        answers = [rng.choice([r"\frac{a}{b}", "x ^ { 2 }", "A B", "\\sqrt { x }", phrase(rng, 2)])
                   if formula else phrase(rng, 3) for _ in range(rng.randint(1, 3))]
        a = rng.choice(answers)
        pred = rng.choice([
            a, perturb(rng, a), f"The text says {a}.", a.replace(" ", "\n"), a.replace(" ", "\t"),
            a.replace(" ", "  "), a.upper(), f"  {a}\n", phrase(rng), a.replace(" ", ""), fullwidth(a),
            f"It reads {fullwidth(a.upper())}",
        ])
        cases.append((pred, answers, "Handwritten Mathematical Expression Recognition" if formula else "Scene Text-centric VQA"))
    fn = METRICS.get("contains").fn
    _check("contains", cases, lambda p, a, c: fn(p, sample(a, "contains", category=c)),
           lambda p, a, c: ref.ocrbench_score(p, a, "HME100k" if "Mathematical" in c else "other"))
    wide = METRICS.get("contains_fullwidth").fn
    _check("contains_fullwidth", cases, lambda p, a, c: wide(p, sample(a, "contains_fullwidth", category=c)),
           lambda p, a, c: ref.ocrbench_lmms_score(p, a, "HME100k" if "Mathematical" in c else "other"))


def test_pope_agrees_with_the_authors_rule():
    rng = random.Random(8)
    words = ["Yes", "yes", "No", "no", "NO", "not", "Not", "there", "is", "a", "dog", "no.", "nothing", "No,", "isn't"]
    cases = []
    for _ in range(N):
        out = "".join(rng.choice(words) + rng.choice([" ", " ", ", ", ". ", "."]) for _ in range(rng.randint(0, 6)))
        cases.append((out, rng.choice(["yes", "no"])))
    fn = METRICS.get("pope").fn
    _check("pope", cases, lambda o, g: fn(o, sample([g], "pope")), lambda o, g: float(ref.pope_label(o) == g))


# -- Documented differences: each is kept out of the generators above and shown here, so that a
# -- change in either direction is seen.
def test_documented_differences_from_the_references():
    # One annotator answer: the references leave it out and score 0 whatever the output.
    assert ref.vqa_score("dog", ["dog"]) == 0.0
    assert METRICS.get("vqa_accuracy").fn("dog", sample(["dog"], "vqa_accuracy")) == 1.0
    # A multiple-choice gold stored as an option's text: the references compare letters only.
    choices = ("dog", "cat", "bird", "fish")
    assert ref.mmstar_score("B", "cat") == 0.0
    assert METRICS.get("multiple_choice").fn("B", sample(["cat"], "multiple_choice", choices=choices)) == 1.0
    # No answers at all: the reference's min() of nothing raises; we score 0.
    with pytest.raises(ValueError):
        ref.anls_score("x", [])
    assert METRICS.get("anls").fn("x", sample([], "anls")) == 0.0
    # VLMEvalKit's period rule and lmms-eval's TextVQA processor are options, not the default.
    assert ref.vqa_official_answer("3.") != ref.vqa_vlmevalkit_answer("3.")
    assert ref.vqa_official_answer("man's") != ref.vqa_evalai_answer("man's")
