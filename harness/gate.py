"""The regression gate: compare two result sets per model × suite × metric.

A timing regresses only when it is both worse than `factor` (like asv's 1.1) and significant
(one-sided Mann–Whitney U over the per-sample and per-repetition values), so a noisy runner
cannot fail a pull request on its own. Accuracy regresses when a paired bootstrap over the
samples both sets measured says the drop is real. Sets that measured different things (suite
hash, schema, machine) are not compared at all: exit 2 says which and how to fix it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.stats import mann_whitney_greater, paired_bootstrap

PASS, REGRESSION, INCOMPARABLE = 0, 1, 2


@dataclass(frozen=True)
class Metric:
    column: str
    label: str
    unit: str
    higher_is_better: bool


TIMINGS = (
    Metric("ttft_s", "time to first token", "s", False),
    Metric("prefill_tps", "prefill", "tok/s", True),
    Metric("decode_tps", "decode", "tok/s", True),
    Metric("peak_mlx_bytes", "peak MLX memory", "B", False),
)

# What makes timings from two sets incomparable: the hardware and the device MLX ran on.
# Software versions (mlx, mlx-vlm, python, harness) are deliberately absent: an upgrade is
# exactly what a gate is for.
HARDWARE = ("backend", "env_machine", "env_cpu", "env_cores")


@dataclass(frozen=True)
class Finding:
    model: str
    suite: str
    metric: str
    unit: str
    baseline: float  # median for timings, mean score (0–1) for accuracy, error count for errors
    current: float
    change: float  # relative (timings) or absolute (accuracy, errors), signed so negative is worse
    p_value: float
    n_baseline: int
    n_current: int
    verdict: str  # regression | improvement | unchanged | insufficient
    note: str = ""


@dataclass(frozen=True)
class GateResult:
    factor: float
    alpha: float
    findings: tuple[Finding, ...] = ()
    problems: tuple[str, ...] = ()  # why the sets could not be compared
    notes: tuple[str, ...] = ()  # what was left out, and software that changed
    baseline_runs: tuple[str, ...] = ()
    current_runs: tuple[str, ...] = ()

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "regression"]

    @property
    def exit_code(self) -> int:
        if self.problems:
            return INCOMPARABLE
        return REGRESSION if self.regressions else PASS

    @property
    def status(self) -> str:
        return {PASS: "pass", REGRESSION: "regression", INCOMPARABLE: "cannot compare"}[self.exit_code]


def _measured(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["sample_id"] != "*"] if "sample_id" in df else df


def _values(df: pd.DataFrame, key: str) -> set[str]:
    return {str(v) for v in df[key].dropna().unique()} if key in df else set()


def _short(h: str) -> str:
    return h[:12]


def incomparable(baseline: pd.DataFrame, current: pd.DataFrame, *, check_environment: bool = True) -> list[str]:
    """Plain reasons the two sets cannot be compared; empty when they can."""
    problems = []
    for name, df in (("baseline", baseline), ("current", current)):
        if df.empty or not (df["status"] == "ok").any():
            problems.append(f"the {name} has no measured rows: re-run the benchmark that produced it")
    if problems:
        return problems
    bv = set(baseline["schema_version"].dropna().astype(int)) if "schema_version" in baseline else set()
    cv = set(current["schema_version"].dropna().astype(int)) if "schema_version" in current else set()
    if bv != cv:
        problems.append(f"results schema differs (baseline v{sorted(bv)}, current v{sorted(cv)}): "
                        "promote a baseline measured with this harness (`vlm-harness baseline update RUN`)")
    for suite in sorted(set(baseline["suite"].dropna()) & set(current["suite"].dropna())):
        bh = sorted(set(baseline.loc[baseline["suite"] == suite, "suite_hash"].dropna()))
        ch = sorted(set(current.loc[current["suite"] == suite, "suite_hash"].dropna()))
        if bh != ch:
            problems.append(
                f"suite '{suite}' changed (hash {', '.join(map(_short, bh))} in the baseline, "
                f"{', '.join(map(_short, ch))} now): its samples differ, so scores and timings are not comparable; "
                "promote a run of the new suite as the baseline (`vlm-harness baseline update RUN`)")
    if check_environment:
        for key in HARDWARE:
            bvals, cvals = _values(baseline, key), _values(current, key)
            if bvals and cvals and bvals != cvals:
                problems.append(
                    f"environment differs: {key.removeprefix('env_')} is {', '.join(sorted(bvals))} in the baseline "
                    f"and {', '.join(sorted(cvals))} now; timings from different machines are not comparable. "
                    "Measure the baseline on this machine, or pass --ignore-environment to compare anyway")
    pairs = set(map(tuple, _measured(baseline)[["model", "suite"]].drop_duplicates().values)) & set(
        map(tuple, _measured(current)[["model", "suite"]].drop_duplicates().values))
    if not pairs and not problems:
        problems.append("no model × suite was measured in both sets: run the baseline's models and suites "
                        f"({', '.join(sorted(set(baseline['model'].dropna())))})")
    return problems


def _timing(m: Metric, b: pd.Series, c: pd.Series, factor: float, alpha: float) -> tuple[float, float, float, float, str, str]:
    """(baseline median, current median, signed relative change, p, verdict, note)."""
    b, c = b.dropna().astype(float).to_numpy(), c.dropna().astype(float).to_numpy()
    if len(b) == 0 or len(c) == 0:
        return math.nan, math.nan, math.nan, math.nan, "insufficient", "no values on one side"
    bm, cm = float(np.median(b)), float(np.median(c))
    if bm <= 0 or cm <= 0:
        return bm, cm, math.nan, math.nan, "insufficient", "non-positive median"
    change = (cm - bm) / bm if m.higher_is_better else (bm - cm) / bm  # negative: worse
    worse_by = bm / cm if m.higher_is_better else cm / bm
    if m.higher_is_better:
        p_worse, p_better = mann_whitney_greater(b, c), mann_whitney_greater(c, b)
    else:
        p_worse, p_better = mann_whitney_greater(c, b), mann_whitney_greater(b, c)
    few = min(len(b), len(c)) < 3
    if worse_by > factor:
        if p_worse < alpha:
            return bm, cm, change, p_worse, "regression", f"{worse_by:.2f}× worse, p={p_worse:.3g}"
        why = ("fewer than 3 values on a side cannot be significant; use more samples or --repeats" if few
               else f"{worse_by:.2f}× worse but not significant (p={p_worse:.3g}): within the noise")
        return bm, cm, change, p_worse, "unchanged", why
    if 1 / worse_by > factor and p_better < alpha:
        return bm, cm, change, p_better, "improvement", f"{1 / worse_by:.2f}× better, p={p_better:.3g}"
    return bm, cm, change, min(p_worse, p_better), "unchanged", ""


def _accuracy(b: pd.DataFrame, c: pd.DataFrame, alpha: float) -> tuple[float, float, float, float, int, str, str]:
    bs = b.groupby("sample_id")["score"].mean()
    cs = c.groupby("sample_id")["score"].mean()
    common = bs.index.intersection(cs.index)
    if len(common) == 0:
        return float(bs.mean()), float(cs.mean()), math.nan, math.nan, 0, "insufficient", "no sample measured in both"
    x, y = bs.loc[common].to_numpy(), cs.loc[common].to_numpy()
    delta, lo, hi, p_drop = paired_bootstrap(x, y)
    _, _, _, p_rise = paired_bootstrap(y, x)
    note = f"Δ {100 * delta:+.1f} pp, 95 % CI [{100 * lo:+.1f}, {100 * hi:+.1f}] over {len(common)} paired samples"
    if delta < 0 and p_drop < alpha:
        verdict, p = "regression", p_drop
    elif delta > 0 and p_rise < alpha:
        verdict, p = "improvement", p_rise
    else:
        verdict, p = "unchanged", min(p_drop, p_rise)
    return float(x.mean()), float(y.mean()), delta, p, len(common), verdict, note


def compare(baseline: pd.DataFrame, current: pd.DataFrame, *, factor: float = 1.1, alpha: float = 0.05,
            check_environment: bool = True) -> GateResult:
    """Compare `current` against `baseline`; the verdict is `GateResult.exit_code`."""
    if factor < 1:
        raise ValueError(f"--factor must be ≥ 1 (1.1 allows 10 % before a change counts), got {factor}")
    if not 0 < alpha < 1:
        raise ValueError(f"--alpha must be between 0 and 1, got {alpha}")
    runs = (tuple(sorted(baseline["run_id"].dropna().unique())) if "run_id" in baseline else (),
            tuple(sorted(current["run_id"].dropna().unique())) if "run_id" in current else ())
    problems = incomparable(baseline, current, check_environment=check_environment)
    if problems:
        return GateResult(factor, alpha, problems=tuple(problems), baseline_runs=runs[0], current_runs=runs[1])
    notes = []
    for key in ("env_mlx", "env_mlx_vlm", "env_python", "harness_git", "env_os"):
        bvals, cvals = _values(baseline, key), _values(current, key)
        if bvals and cvals and bvals != cvals:
            notes.append(f"{key.removeprefix('env_')}: {', '.join(sorted(bvals))} → {', '.join(sorted(cvals))}")
    bm, cm = _measured(baseline), _measured(current)
    bpairs = set(map(tuple, bm[["model", "suite"]].drop_duplicates().values))
    cpairs = set(map(tuple, cm[["model", "suite"]].drop_duplicates().values))
    for model, suite in sorted(bpairs - cpairs):
        notes.append(f"not measured now: {model} on {suite}")
    for model, suite in sorted(cpairs - bpairs):
        notes.append(f"new, no baseline: {model} on {suite}")
    findings = []
    bgroups = dict(tuple(bm.groupby(["model", "suite"])))
    cgroups = dict(tuple(cm.groupby(["model", "suite"])))
    for model, suite in sorted(bpairs & cpairs):
        b, c = bgroups[(model, suite)], cgroups[(model, suite)]
        bok, cok = b[b["status"] == "ok"], c[c["status"] == "ok"]
        for m in TIMINGS:
            bmed, cmed, change, p, verdict, note = _timing(m, bok[m.column], cok[m.column], factor, alpha)
            findings.append(Finding(model, suite, m.column, m.unit, bmed, cmed, change, p,
                                    int(bok[m.column].notna().sum()), int(cok[m.column].notna().sum()), verdict, note))
        base, cur, delta, p, n, verdict, note = _accuracy(bok, cok, alpha)
        findings.append(Finding(model, suite, "score", "", base, cur, delta, p, n, n, verdict, note))
        # A sample that measured in the baseline and errors now is a regression no timing shows.
        ok_before = set(bok["sample_id"])
        broken = c[(c["status"] != "ok") & c["sample_id"].isin(ok_before)]
        if len(broken):
            first = str(broken["error"].dropna().iloc[0])[:200] if broken["error"].notna().any() else ""
            findings.append(Finding(model, suite, "errors", "rows", float((b["status"] != "ok").sum()), float(len(broken)),
                                    -float(len(broken)), 0.0, len(b), len(c), "regression",
                                    f"{len(broken)} sample(s) that measured in the baseline now fail: {first}"))
    return GateResult(factor, alpha, tuple(findings), (), tuple(notes), runs[0], runs[1])


def _num(x: float, unit: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if unit == "B":
        return f"{x / 2**20:,.1f} MiB"
    if unit == "":
        return f"{100 * x:.1f} %"
    return f"{x:,.4g} {unit}"


def _change(f: Finding) -> str:
    if math.isnan(f.change):
        return "–"
    if f.metric == "score":
        return f"{100 * f.change:+.1f} pp"
    if f.metric == "errors":
        return f"{-f.change:+.0f}"
    return f"{100 * f.change:+.1f} %"


def _md(text: object) -> str:
    # Model and suite names come from users: keep them from breaking the table or the page.
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def to_markdown(result: GateResult, *, baseline: str = "baseline", current: str = "current") -> str:
    """A summary for a pull-request comment: verdict first, regressions, then everything."""
    icon = {"pass": "✅", "regression": "❌", "cannot compare": "⚠️"}[result.status]
    lines = [f"## {icon} vlm-harness gate: {result.status}", "",
             f"Baseline `{_md(baseline)}` ({', '.join(result.baseline_runs) or '–'}) vs current `{_md(current)}` "
             f"({', '.join(result.current_runs) or '–'}). A timing regresses when it is more than {result.factor:g}× worse "
             f"**and** one-sided Mann–Whitney p < {result.alpha:g}; accuracy when a paired bootstrap gives p < {result.alpha:g}.", ""]
    if result.problems:
        lines += ["**Could not compare:**", ""] + [f"- {_md(p)}" for p in result.problems] + [""]
        return "\n".join(lines)
    header = ["| model | suite | metric | baseline | current | change | p | verdict |", "|---|---|---|---:|---:|---:|---:|---|"]

    def row(f: Finding) -> str:
        p = "–" if math.isnan(f.p_value) else f"{f.p_value:.3g}"
        return (f"| {_md(f.model)} | {_md(f.suite)} | {f.metric} | {_num(f.baseline, f.unit)} | {_num(f.current, f.unit)} "
                f"| {_change(f)} | {p} | {f.verdict} |")

    flagged = [f for f in result.findings if f.verdict in ("regression", "improvement")]
    if flagged:
        lines += header + [row(f) for f in sorted(flagged, key=lambda f: f.verdict != "regression")] + [""]
    else:
        lines += [f"No significant change in {len(result.findings)} comparisons.", ""]
    for f in result.regressions:
        if f.note:
            lines.append(f"- {_md(f.model)} / {_md(f.suite)} / {f.metric}: {_md(f.note)}")
    if result.notes:
        lines += ["", "Notes: " + "; ".join(_md(n) for n in result.notes)]
    lines += ["", f"<details><summary>All {len(result.findings)} comparisons</summary>", ""] + header
    lines += [row(f) for f in result.findings] + ["", "</details>", ""]
    return "\n".join(lines)


def to_json(result: GateResult) -> str:
    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v

    doc = {
        "status": result.status, "exit_code": result.exit_code, "factor": result.factor, "alpha": result.alpha,
        "problems": list(result.problems), "notes": list(result.notes),
        "baseline_runs": list(result.baseline_runs), "current_runs": list(result.current_runs),
        "findings": [{k: clean(v) for k, v in asdict(f).items()} for f in result.findings],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)
