"""The summary: for each question a user asks of a comparison, the winner or a tie, with the
margin and its uncertainty.

Rules (the page prints them):
- Speed (decode, first token): each model's mean over its requests with a 95 % Student-t
  interval of the mean (harness.core.stats.describe). The leader wins only when its interval does not
  overlap any other model's; every model whose interval overlaps the leader's ties with it.
  Non-overlap of two 95 % intervals is a conservative test (stricter than p < 0.05).
- Memory: the peak (max over requests) per model; peaks within 1 % of each other tie, since a
  peak has no sampling spread worth the name.
- Accuracy (natural, synthetic, per GB): the 95 % intervals of `kinds.kind_summary`; overlap is a
  tie. Random-weight fixtures and the reference canary never win an accuracy question: a fixture
  measures speed only, the canary checks the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

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
    unc = "; ".join(f"{e.model}: {e.text}" for e in ranked[: max(2, len(tied) + 1)][:4])
    if tied:
        names = (lead.model, *(e.model for e in tied))
        head = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        return Verdict(key, question, "tie", names, head, margin, f"{unc}. {rule}", excluded)
    return Verdict(key, question, "winner", (lead.model,), lead.model, margin, f"{unc}. {rule}", excluded)


def _ci_entry(model: str, s: object, unit: str) -> Entry:
    text = (f"{fmt(s.mean)} [{fmt(s.ci_low)}–{fmt(s.ci_high)}] {unit}, n={s.n}" if not math.isnan(s.ci_low)
            else f"{fmt(s.mean)} {unit}, n={s.n} (too few samples to tell)")
    return Entry(model, s.mean, s.ci_low, s.ci_high, text)


SPEED_RULE = "Intervals: 95 % Student-t interval of the mean over requests; overlapping intervals tie."
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
        _pick("decode", "Fastest decode", [_ci_entry(s.model, s.decode, "tok/s") for s in speed if s.decode.n],
              True, "tok/s", SPEED_RULE),
        _pick("ttft", "Fastest first token", [_ci_entry(s.model, s.ttft_ms, "ms") for s in speed if s.ttft_ms.n],
              False, "ms", SPEED_RULE),
        _pick("memory", "Least memory",
              [Entry(s.model, s.peak_bytes / scale, math.nan, math.nan, f"{fmt(s.peak_bytes / scale)} {unit} peak")
               for s in speed], False, unit,
              f"Peak MLX memory, max over requests; peaks within {100 * MEMORY_TIE:.0f} % tie.", rel_tie=MEMORY_TIE),
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
