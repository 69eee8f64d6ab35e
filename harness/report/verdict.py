"""The summary: for each question a user asks of a comparison, the winner or a tie, with the
margin and its uncertainty.

Rules (the page prints them):
- Speed (decode, first token): a run measures in counterbalanced rounds (harness/run/planning.py),
  and each model has one figure per round, the mean of its requests in it. The leader (best mean
  of round means) is compared with every other model round by round: the ratio of their round
  means — within each round the median over the samples both measured of their ratio, so each
  sample's own cost drops out — with a 95 % Student-t interval over the rounds
  (harness.core.stats.compare_rounds, the gate's rule too). Drift between rounds falls on both and cancels. The leader wins only when
  that interval excludes no difference against every other model; the others tie with it.
  In lockstep (the default: a round's models loaded together, their samples alternated) each
  sample's two answers were taken moments apart, so a round's median ratio carries little of the
  machine's drift; the rounds stay the replicates all the same, because each round is a fresh
  pair of worker processes and a process's own speed (where its memory landed, which core) is
  shared by all its samples: pairing samples across rounds as if independent named false
  winners (a 6 % first-token "win" between identical models over 64 pairs).
  Requests inside one round share that round's load, so they are not replicates: their spread
  is shown apart, as how much one request varies.
- One round (one model, or --rounds 1): the run-to-run variation is unknown. The verdict is
  marked provisional and falls back to the request-level 95 % intervals (overlap ties).
- Memory: the peak (max over requests) per model and round; peaks within 1 % of each other tie,
  since a peak has no sampling spread worth the name, and with rounds the leader must be lower
  in the paired comparison too.
- Accuracy (natural, synthetic, per GB): the 95 % intervals of `kinds.kind_summary`; overlap is a
  tie. Random-weight fixtures and the reference canary never win an accuracy question: a fixture
  measures speed only, the canary checks the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from harness.core.stats import Paired, compare_rounds, paired_ratio
from harness.report.tables import FIXTURE, MODEL, REFERENCE, ROLE_LABEL, SpeedStats, fmt, pct

MEMORY_TIE = 0.01


@dataclass(frozen=True)
class Verdict:
    key: str
    question: str
    outcome: str  # winner | tie | none
    winners: tuple[str, ...]  # the winner, or every model in the tie
    headline: str  # the winner, the tied models ("A, B"), or why there is no answer
    margin: str
    uncertainty: str
    excluded: str = ""  # who was left out of an accuracy question and why
    provisional: str = ""  # why the answer may not survive another run (one round)


@dataclass(frozen=True)
class Entry:
    model: str
    value: float
    low: float  # interval; nan when unknown
    high: float
    text: str  # value as shown, interval included


def _pick(key: str, question: str, entries: Sequence[Entry], higher: bool, unit: str, rule: str,
          excluded: str = "", rel_tie: float | None = None) -> Verdict:
    entries = [e for e in entries if not math.isnan(e.value)]
    if not entries:
        return Verdict(key, question, "none", (), "no answer: no model measured this", "–", rule, excluded)
    ranked = sorted(entries, key=lambda e: -e.value if higher else e.value)
    lead = ranked[0]
    if len(ranked) == 1:
        return Verdict(key, question, "winner", (lead.model,), f"{lead.model} (the only model measured)",
                       "–", f"{lead.text}. {rule}", excluded)

    def ties(e: Entry) -> bool:
        if rel_tie is not None:
            return abs(e.value - lead.value) <= rel_tie * max(abs(lead.value), abs(e.value))
        if any(math.isnan(x) for x in (lead.low, lead.high, e.low, e.high)):
            return True  # no interval: too few samples to tell them apart
        return e.low <= lead.high and lead.low <= e.high

    tied = [e for e in ranked[1:] if ties(e)]
    second = ranked[1]
    diff = abs(lead.value - second.value)
    rel = f" ({100 * diff / abs(second.value):.0f} %)" if second.value else ""
    unknown = rel_tie is None and any(math.isnan(x) for e in (lead, *tied) for x in (e.low, e.high))
    why = "too few samples to tell them apart" if unknown else "inside the spread"
    margin = (f"{lead.model} leads {second.model} by {fmt(diff)} {unit}{rel}" if not tied else
              f"{lead.model} is ahead of {second.model} by {fmt(diff)} {unit}{rel}, {why}")
    # The figures of the models the verdict names: a model between them in the ranking that lost
    # its comparison is not one of them.
    shown = [lead, *tied] if tied else ranked[:2]
    unc = "; ".join(e.text if e.text.startswith(f"{e.model}: ") else f"{e.model}: {e.text}" for e in shown[:4])
    if tied:
        names = (lead.model, *(e.model for e in tied))
        head = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        return Verdict(key, question, "tie", names, head, margin, f"{unc}. {rule}", excluded)
    return Verdict(key, question, "winner", (lead.model,), lead.model, margin, f"{unc}. {rule}", excluded)


def _ci_entry(model: str, s: object, unit: str, rounds: int = 0) -> Entry:
    n = f"{s.n} rounds" if rounds >= 2 else f"n={s.n}"
    text = (f"{model}: {fmt(s.mean)} [{fmt(s.ci_low)}–{fmt(s.ci_high)}] {unit}, {n}" if not math.isnan(s.ci_low)
            else f"{model}: {fmt(s.mean)} {unit}, {n} (too few samples to tell)")
    return Entry(model, s.mean, s.ci_low, s.ci_high, text)


SPEED_RULE = ("Paired over rounds: the leader's round means against each other model's in the same rounds, 95 % "
              "Student-t interval of the ratio; a winner only when it excludes no difference, else a tie.")
LOCKSTEP_RULE = ("Paired over rounds, in lockstep (both models answered each sample moments apart): per round the "
                 "median over samples of the leader's ratio to each other model, 95 % Student-t interval over the "
                 "rounds; a winner only when it excludes no difference, else a tie.")
ONE_ROUND_RULE = ("Provisional: one round — run-to-run variation unknown. Intervals are within one run (95 % "
                  "Student-t over requests); overlapping intervals tie.")
PROVISIONAL = "provisional: one round — run-to-run variation unknown"
LEVEL = 0.95


def _aligned(a: pd.Series, b: pd.Series) -> tuple[list[float], list[float]]:
    common = a.index.intersection(b.index)
    return a[common].astype(float).tolist(), b[common].astype(float).tolist()


def _paired_pick(key: str, question: str, speed: Sequence[SpeedStats], attr: str, rounds_attr: str,
                 samples_attr: str, higher: bool, unit: str) -> Verdict:
    """A speed question decided on paired rounds; with one round, provisional on requests."""
    have = [s for s in speed if getattr(s, attr).n]
    entries = [_ci_entry(s.model, getattr(s, attr), unit, len(getattr(s, rounds_attr))) for s in have]
    if not have:
        return Verdict(key, question, "none", (), "no answer: no model measured this", "–", SPEED_RULE)
    ranked = sorted(have, key=lambda s: -getattr(s, attr).mean if higher else getattr(s, attr).mean)
    lead = ranked[0]
    lead_rounds = getattr(lead, rounds_attr)
    if len(ranked) == 1:
        one = len(lead_rounds) < 2
        return Verdict(key, question, "winner", (lead.model,), f"{lead.model} (the only model measured)",
                       "–", f"{entries[0].text}. {ONE_ROUND_RULE if one else SPEED_RULE}",
                       provisional=PROVISIONAL if one else "")
    pairs: dict[str, Paired] = {}
    for other in ranked[1:]:
        a, b = getattr(lead, samples_attr), getattr(other, samples_attr)
        # Oriented so that above 1 means the leader is better.
        pairs[other.model] = compare_rounds(a, b, level=LEVEL) if higher else compare_rounds(b, a, level=LEVEL)
    if any(p.n < 2 for p in pairs.values()) or len(lead_rounds) < 2:
        v = _pick(key, question, entries, higher, unit, ONE_ROUND_RULE)
        return Verdict(v.key, v.question, v.outcome, v.winners, v.headline, v.margin, v.uncertainty, v.excluded,
                       PROVISIONAL)
    tied = [o for o in ranked[1:] if not pairs[o.model].decided]
    # The margin shown is against the model the verdict ties with (a better mean that lost its
    # comparison does not make a tie), else against the runner-up.
    second = tied[0] if tied else ranked[1]
    p2 = pairs[second.model]
    word = "faster" if key != "memory" else "lower"
    paired_on = f"{p2.n} rounds in lockstep" if lead.lockstep and second.lockstep else f"{p2.n} rounds"
    rule = LOCKSTEP_RULE if lead.lockstep and second.lockstep else SPEED_RULE
    margin = (f"{lead.model} {word} than {second.model} by {100 * (p2.ratio - 1):.0f} % paired over {paired_on} "
              f"(95 % interval {100 * (p2.low - 1):+.0f} to {100 * (p2.high - 1):+.0f} %)")
    if tied:
        margin += "; the interval includes no difference"
    by_model = {e.model: e for e in entries}
    shown = [lead, *tied] if tied else ranked[:2]  # as in _pick: the models the verdict names
    unc = "; ".join(by_model[s.model].text for s in shown[:4])
    if tied:
        names = (lead.model, *(o.model for o in tied))
        head = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        return Verdict(key, question, "tie", names, head, margin, f"{unc}. {rule}")
    return Verdict(key, question, "winner", (lead.model,), lead.model, margin, f"{unc}. {rule}")
ACC_RULE = ("Intervals: 95 %, mean of per-suite means; overlapping intervals tie. "
            "Random-weight fixtures and the reference canary are not contenders.")


def _excluded(acc_kind: pd.DataFrame, roles: dict[str, str]) -> str:
    """Who could not win, and the best they scored, so a reader sees what was set aside."""
    out = []
    for role in (REFERENCE, FIXTURE):
        part = acc_kind[[roles.get(m, MODEL) == role for m in acc_kind["model"]]] if not acc_kind.empty else acc_kind
        if part.empty:
            continue
        top = part.loc[part["mean"].astype(float).idxmax()]
        if len(part) == 1:
            out.append(f"{top['model']} ({ROLE_LABEL[role]}, {pct(top['mean'])} %)")
        else:
            kind = "random-weight fixtures" if role == FIXTURE else "reference models"
            out.append(f"{len(part)} {kind} (best: {top['model']}, {pct(top['mean'])} %)")
    return ("Not contenders: " + "; ".join(out) + ".") if out else ""


def verdicts(speed: Sequence[SpeedStats], kinds: pd.DataFrame, roles: dict[str, str],
             mem_unit: tuple[str, float]) -> list[Verdict]:
    """One verdict per question, in the order the page shows them."""
    unit, scale = mem_unit
    out = [
        _paired_pick("decode", "Fastest decode", speed, "decode", "decode_rounds", "decode_samples", True, "tok/s"),
        _paired_pick("ttft", "Fastest first token", speed, "ttft_ms", "ttft_rounds", "ttft_samples", False, "ms"),
        _memory(speed, unit, scale),
    ]
    for kind, question in (("natural", "Most accurate on natural images"),
                           ("synthetic", "Most accurate on synthetic images")):
        part = kinds[kinds["kind"] == kind] if not kinds.empty else kinds
        contenders = [Entry(r.model, 100 * r.mean, 100 * r.ci_low, 100 * r.ci_high,
                            f"{pct(r.mean)} [{pct(r.ci_low)}–{pct(r.ci_high)}] %, n={r.n}" if not math.isnan(r.ci_low)
                            else f"{pct(r.mean)} %, n={r.n} (too few samples to tell)")
                      for r in part.itertuples(index=False) if roles.get(r.model, MODEL) == MODEL]
        v = _pick(kind, question, contenders, True, "pp", ACC_RULE, _excluded(part, roles))
        if not contenders and not part.empty:
            v = Verdict(kind, question, "none", (), "no answer: only random-weight fixtures or the reference "
                        "canary were scored", "–", ACC_RULE, v.excluded)
        out.append(v)
    overall = kinds[kinds["kind"] == "overall"] if not kinds.empty else kinds
    peak = {s.model: s.peak_bytes / GB_ for s in speed}
    per_gb = []
    for r in overall.itertuples(index=False):
        gb = peak.get(r.model, math.nan)
        if roles.get(r.model, MODEL) != MODEL or not gb or math.isnan(gb):
            continue
        spread = (f" [{fmt(100 * r.ci_low / gb)}–{fmt(100 * r.ci_high / gb)}]" if not math.isnan(r.ci_low)
                  else " (too few samples to tell)")
        per_gb.append(Entry(r.model, 100 * r.mean / gb, 100 * r.ci_low / gb, 100 * r.ci_high / gb,
                            f"{fmt(100 * r.mean / gb)}{spread} pp/GB ({pct(r.mean)} % in {fmt(gb)} GB)"))
    v = _pick("per_gb", "Best accuracy per GB", per_gb, True, "pp/GB",
              "Overall accuracy (points) per GB of peak MLX memory; overlapping intervals tie. "
              "Fixtures and the canary are not contenders.", _excluded(overall, roles))
    if not per_gb and not overall.empty:
        v = Verdict("per_gb", "Best accuracy per GB", "none", (), "no answer: only random-weight fixtures or the "
                    "reference canary were scored", "–", v.uncertainty, v.excluded)
    out.append(v)
    return out


GB_ = 1e9


def _memory(speed: Sequence[SpeedStats], unit: str, scale: float) -> Verdict:
    rule = f"Peak MLX memory, max over requests; peaks within {100 * MEMORY_TIE:.0f} % tie."
    v = _pick("memory", "Least memory",
              [Entry(s.model, s.peak_bytes / scale, math.nan, math.nan, f"{fmt(s.peak_bytes / scale)} {unit} peak")
               for s in speed], False, unit, rule, rel_tie=MEMORY_TIE)
    if v.outcome != "winner" or len(speed) < 2:
        return v
    lead = next(s for s in speed if s.model == v.winners[0])
    # With rounds, the leader must also be lower round by round: a peak that only one round
    # reached (another process's pressure, a different share of samples) does not decide it.
    tied = []
    for other in speed:
        if other is lead:
            continue
        a, b = _aligned(other.peak_rounds, lead.peak_rounds)
        p = paired_ratio(a, b, level=LEVEL)
        if p.n >= 2 and not p.decided:
            tied.append(other.model)
    if not tied:
        return v
    names = (lead.model, *tied)
    return Verdict("memory", "Least memory", "tie", names, ", ".join(names[:4]), v.margin + ", not in every round",
                   v.uncertainty + " With rounds, the leader must be lower in the paired comparison over rounds.")


def pipeline_checks(kinds: pd.DataFrame, roles: dict[str, str]) -> list[str]:
    """What the reference canary scored: a pipeline check, not a ranking."""
    out = []
    if kinds.empty:
        return out
    for r in kinds[kinds["kind"] == "overall"].itertuples(index=False):
        if roles.get(r.model) == REFERENCE:
            spread = ("too few samples to tell its interval" if math.isnan(r.ci_low) else
                      f"95 % interval {pct(r.ci_low)}–{pct(r.ci_high)} %")
            out.append(f"{r.model} scored {pct(r.mean)} % ({spread}) over {r.n_suites} "
                       f"suite(s), n={r.n}: a check that images, prompts and scoring reach a model intact "
                       "(compare it with earlier runs), not a contender.")
    return out
