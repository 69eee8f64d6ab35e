"""The regression gate: compare two result sets per model × suite × metric.

Timings: the run, not the sample, is the unit of replication. Load on a shared machine slows a
whole run, or a stretch of its samples, at once: the samples of one run are not independent
replicates, and a test that treats them so (Mann–Whitney over samples, as this gate once did)
failed identical code in 10 to 12 of 20 comparisons on a busy machine. So:

1. Each run is reduced to one value per sample (the median over its repetitions), and each side
   to one value per sample: the best over its runs (least time, highest rate). Load only ever
   slows a run, so the best of several runs is the one it touched least; this is timeit's
   advice for timings on a machine shared with other work. asv takes the median instead;
   `consensus="median"` (`--runs-combine median`) does that.
2. Both sides measured the same samples, so the change is a *paired* ratio per sample
   (current / baseline for times, baseline / current for rates: above 1 is worse), which takes
   each sample's own cost out of the comparison. The estimate is the median ratio over the
   samples, so a burst of load on a few samples cannot carry it.
3. A timing regresses only when the one-sided lower bound (1 − alpha) of that median ratio, by
   a bootstrap over the samples, exceeds the factor: the factor is the allowance for whatever
   load the runs still carry, so a shift smaller than the factor never fails the gate, and one
   larger must be clear. p is the bootstrap probability that the ratio is at most the factor.
   All timing tests of one gate are one family, Holm-adjusted: twenty-odd tests at 5 % each
   would fail identical code most of the time (asv, similarly, asks p < 0.002 per benchmark).

One run a side cannot tell a burst of load over a whole suite from a regression; on a busy
development machine it raised false alarms in 6 of 20 identical comparisons (0 of 20 when
quieter). The
design that works on shared runners is asv continuous's: measure baseline and candidate in the
same job, interleaved (A B B A A B per model), several rounds, so that each side has runs the
load missed: `vlm-harness gate --interleave REV_A REV_B` (harness/gate/interleave.py), 1 and 0 false
alarms in two sets of 20 with 3 rounds. asv's step detection finds changes in a long commit history; a pull-request
gate has two revisions, so it compares them directly. benchmarks/gate_rates.py measures these
rates from real runs (README, "The report and the gate").

Accuracy regresses when an exact paired test over the samples both sets measured says the drop
is real: scores do not drift with machine load, so samples are the right replicates there. Paired
0/1 scores take the exact McNemar test (one-sided binomial on the discordant pairs: 3 flips of 100
is p = 0.125, 5 flips and none back p = 0.031); graded scores a paired sign-flip permutation test.
A bootstrap was too quick on a few flips (p = 0.047 for 3 of 100; p = 0 for a one-sample suite).
Fewer paired samples than an exact test needs to reach alpha at all (5 at 0.05) say
`insufficient`, as does an unchanged verdict whose samples could not see a 10-point fall. A
sample that measured in the baseline and errors now is a regression too. Sets that measured
different things (suite hash, schema, machine) are not compared at all: exit 2 says which and
how to fix it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from harness.core.stats import bootstrap_medians, compare_rounds
from harness.judge.throughput import latency_rows

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
    ratio: float = math.nan  # timings: median paired ratio, above 1 is worse
    runs_baseline: int = 0  # runs each side held for this comparison (timings)
    runs_current: int = 0


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


def _per_sample(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """runs × samples: each run's median over its repetitions; non-positive values are not timings."""
    v = df[["run_id", "sample_id", column]].copy()
    v["run_id"] = v["run_id"].fillna("")
    v[column] = pd.to_numeric(v[column], errors="coerce").astype(float)
    v = v[v[column] > 0]
    if v.empty:
        return pd.DataFrame()
    return v.groupby(["run_id", "sample_id"])[column].median().unstack("sample_id")


@dataclass(frozen=True)
class Timing:
    """One timing of one model × suite, before the verdict (which needs every test's p)."""

    baseline: float  # median over the common samples of each side's per-sample value
    current: float
    change: float  # relative, signed so negative is worse
    ratio: float  # median paired ratio, above 1 is worse
    p_worse: float  # bootstrap probability that the ratio is at most the factor (before Holm)
    p_better: float  # ... that the ratio is at least 1 / factor
    how: str  # what the test could use, for the note
    n_samples: int
    runs_baseline: int
    runs_current: int
    problem: str = ""  # why there is no test: no values, no common sample, too few samples


CONSENSUS = ("best", "median")  # how a side's runs are combined per sample


def _run_order(df: pd.DataFrame) -> list[str]:
    """Run ids in the order they were measured (first row written)."""
    if "recorded_at" not in df or "run_id" not in df:
        return sorted(df["run_id"].fillna("").unique()) if "run_id" in df else []
    first = df.assign(run_id=df["run_id"].fillna("")).groupby("run_id")["recorded_at"].min()
    return list(first.sort_values().index)


def timing_over_rounds(m: Metric, b: pd.DataFrame, c: pd.DataFrame, pb: pd.DataFrame, pc: pd.DataFrame,
                       factor: float, alpha: float) -> Timing:
    """Interleaved runs, paired round by round (the k-th run of each side measured next to each
    other), by the report's rule (harness.core.stats.compare_rounds): within a round, the median
    over the samples both runs measured of their ratio; the rounds are the replicates, and drift
    between rounds falls on both sides of a pair and cancels.

    A regression is a change that is real and large: the paired test over the rounds says it is
    worse at all (one-sided Student t, Holm-adjusted with the gate's other tests) and its
    estimated ratio exceeds the factor. Asking instead for the ratio's lower bound to clear the
    factor caught a planted 20 % slowdown in only 11 of 22 interleaved comparisons at factor 1.1
    (5 rounds, 4 degrees of freedom); this rule caught 21 of 22 with no false alarm in 22
    identical ones (benchmarks/gate_rates.py, README)."""
    common = pb.columns.intersection(pc.columns)
    ob = [r for r in _run_order(b) if r in pb.index]
    oc = [r for r in _run_order(c) if r in pc.index]
    k = min(len(ob), len(oc))

    def by_round(p: pd.DataFrame, order: list[str]) -> pd.Series:
        part = p.loc[order[:k], common]
        part.index = range(k)
        return part.stack()

    sb, sc = by_round(pb, ob), by_round(pc, oc)
    # Oriented so that a ratio above 1 is worse; the interval's lower end is a one-sided bound.
    level = 1 - 2 * alpha
    p = compare_rounds(sb, sc, level=level) if m.higher_is_better else compare_rounds(sc, sb, level=level)
    ratio = p.ratio
    change = (1 / ratio - 1) if m.higher_is_better else (1 - ratio)
    base = (float(sb.groupby(level=0).median().median()), float(sc.groupby(level=0).median().median()), change, ratio)
    if p.n < 2:
        return Timing(*base, math.nan, math.nan, "", len(common), len(ob), len(oc),
                      "fewer than 2 rounds measured on both sides: add rounds")
    worse_p = p.p_above(1.0)  # worse at all; judge() also asks the ratio to exceed the factor
    above = p.p_above(1.0)
    how = (f"{p.n} interleaved rounds paired; {100 * level:g} % interval of the ratio "
           f"{p.low:.2f}×–{p.high:.2f}× (per round, the median ratio over {len(common)} samples)")
    return Timing(*base, worse_p, 1 - above if not math.isnan(above) else math.nan, how, len(common), len(ob), len(oc))


def compare_timing(m: Metric, b: pd.DataFrame, c: pd.DataFrame, factor: float, alpha: float,
                   consensus: str = "best", paired_runs: bool = False) -> Timing:
    """The paired-ratio test of one timing; `b` and `c` are ok rows with run_id, sample_id, value.

    `paired_runs`: the sides' runs were measured interleaved (gate --interleave), so the k-th
    runs of each side form a round and the rounds are compared (timing_over_rounds)."""
    pb, pc = _per_sample(b, m.column), _per_sample(c, m.column)
    kb, kc = len(pb), len(pc)
    nan = math.nan
    if pb.empty or pc.empty:
        return Timing(nan, nan, nan, nan, nan, nan, "", 0, kb, kc, "no values on one side")
    if paired_runs and kb == kc >= 2 and len(pb.columns.intersection(pc.columns)):
        return timing_over_rounds(m, b, c, pb, pc, factor, alpha)
    # Each side's value of a sample is its best over the side's runs (least time, highest rate):
    # load only ever slows a run down, so the best of several runs is the one it touched least.
    if consensus == "median":
        cb, cc = pb.median(axis=0), pc.median(axis=0)
    elif m.higher_is_better:
        cb, cc = pb.max(axis=0), pc.max(axis=0)
    else:
        cb, cc = pb.min(axis=0), pc.min(axis=0)
    common = cb.dropna().index.intersection(cc.dropna().index)
    if len(common) == 0:
        return Timing(float(cb.median()), float(cc.median()), nan, nan, nan, nan, "", 0, kb, kc,
                      "no sample measured in both sets")
    sign = -1.0 if m.higher_is_better else 1.0  # log ratio oriented so that positive is worse
    worse = sign * np.log(cc[common].to_numpy() / cb[common].to_numpy())
    ratio = math.exp(float(np.median(worse)))
    change = (1 / ratio - 1) if m.higher_is_better else (1 - ratio)
    base = (float(cb[common].median()), float(cc[common].median()), change, ratio)
    n = len(common)
    if n < 3:
        return Timing(*base, nan, nan, "", n, kb, kc, "fewer than 3 samples measured in both cannot be significant; "
                      "use more samples")
    # The ratio must exceed the factor with confidence, not merely on its face: the factor is the
    # allowance for whatever load the best of the runs still carries.
    limit = math.log(factor)
    medians = bootstrap_medians(worse)
    lo, hi = math.exp(float(np.quantile(medians, alpha))), math.exp(float(np.quantile(medians, 1 - alpha)))
    runs = "one run a side" if kb == kc == 1 else f"{consensus} of {kb} vs {kc} runs"
    how = f"{runs}; {100 * (1 - alpha):g} % bootstrap interval of the median ratio {lo:.2f}×–{hi:.2f}× over {n} samples"
    return Timing(*base, float((np.sum(medians <= limit) + 1) / (len(medians) + 1)),
                  float((np.sum(medians >= -limit) + 1) / (len(medians) + 1)), how, n, kb, kc)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error ≤ alpha over all the tests); nan stays nan."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        out[i] = running
    return out


def judge(t: Timing, factor: float, alpha: float, p_worse: float, p_better: float) -> tuple[float, str, str]:
    """(p, verdict, note) from the family-adjusted p-values."""
    if t.problem:
        return math.nan, "insufficient" if t.n_samples == 0 else "unchanged", t.problem
    if t.ratio > factor and p_worse < alpha:
        return p_worse, "regression", f"{t.ratio:.2f}× worse, p={p_worse:.3g} ({t.how})"
    if 1 / t.ratio > factor and p_better < alpha:
        return p_better, "improvement", f"{1 / t.ratio:.2f}× better, p={p_better:.3g} ({t.how})"
    note = f"{t.ratio:.2f}× worse but within the noise (p={p_worse:.3g}; {t.how})" if t.ratio > factor else ""
    return min(p_worse, p_better), "unchanged", note


# An accuracy comparison whose samples cannot see a fall this large (two-sided 5 %, power 80 %)
# says "insufficient" rather than "unchanged": an unchanged verdict it could not have failed.
MIN_DETECTABLE_DROP = 0.10


def _accuracy(b: pd.DataFrame, c: pd.DataFrame, alpha: float) -> tuple[float, float, float, float, int, str, str]:
    """Paired over the samples both sides scored, per-sample scores from harness.judge.accuracy, the
    direction from the metric registry.

    Exact tests, because a suite's few flips are exactly where a bootstrap is too quick (it gave
    p = 0.047 for 3 right→wrong flips of 100, where the exact answer is 1/8): paired 0/1 scores
    by the exact McNemar test (binomial on the discordant pairs), graded scores by a paired
    sign-flip permutation test. Either needs `min_discordant(alpha)` changed pairs to reach alpha
    at all (5 at 0.05), so fewer samples than that can never show a fall: `insufficient`."""
    from harness.core.intervals import detectable_drop, samples_needed
    from harness.core.stats import mcnemar_exact, min_discordant, sign_flip_p
    from harness.judge.accuracy import direction, per_sample_scores

    bs = per_sample_scores(b).set_index("sample_id")["score"]
    cs = per_sample_scores(c).set_index("sample_id")["score"]
    common = bs.index.intersection(cs.index)
    if len(common) == 0:
        return float(bs.mean()), float(cs.mean()), math.nan, math.nan, 0, "insufficient", "no sample measured in both"
    x, y = bs.loc[common].to_numpy(dtype=float), cs.loc[common].to_numpy(dtype=float)
    higher = direction(sorted({m for m in b["metric"].dropna().unique() if m})) is not False
    n = len(common)
    sign = 1 if higher else -1
    d = sign * (y - x)  # oriented so that negative is worse (a drop, where higher is better)
    delta = float(np.mean(d))
    binary = bool((np.isin(x, (0.0, 1.0)) & np.isin(y, (0.0, 1.0))).all())
    worse_n, better_n = int(np.sum(d < 0)), int(np.sum(d > 0))
    if binary:
        p_drop, p_rise = mcnemar_exact(worse_n, better_n), mcnemar_exact(better_n, worse_n)
        test = "exact McNemar"
        flips = f"{worse_n} right→wrong, {better_n} wrong→right" if higher else \
            f"{worse_n} changed for the worse, {better_n} for the better"
    else:
        p_drop, p_rise = sign_flip_p(d), sign_flip_p(-d)
        test = "paired sign-flip permutation test"
        flips = f"{worse_n} worse, {better_n} better"
    note = f"Δ {100 * sign * delta:+.1f} pp over {n} paired samples ({flips}; {test})"
    floor = min_discordant(alpha)
    if n < floor:
        # Even every sample changing the same way gives p = 2^-n ≥ alpha: no verdict is possible.
        return (float(x.mean()), float(y.mean()), delta, min(p_drop, p_rise), n, "insufficient",
                note + f"; {n} paired sample(s) cannot show a change at p < {alpha:g} even if all of them "
                       f"flip (p = {0.5 ** n:.3g}); at least {floor} are needed")
    if delta < 0 and p_drop < alpha and worse_n + better_n >= floor:
        verdict, p = "regression", p_drop
    elif delta > 0 and p_rise < alpha and worse_n + better_n >= floor:
        verdict, p = "improvement", p_rise
    else:
        verdict, p = "unchanged", min(p_drop, p_rise)
        base = float(x.mean())
        if higher and binary and 0 < base <= 1:
            can_see = detectable_drop(base, n)
            if not can_see <= MIN_DETECTABLE_DROP:
                need = samples_needed(base, min(MIN_DETECTABLE_DROP, base))
                verdict = "insufficient"
                note += (f"; {n} samples detect only a fall of "
                         f"{'more than all of it' if math.isnan(can_see) else f'{100 * can_see:.0f} pp'} "
                         f"(power 80 %); {need} are needed to see {100 * MIN_DETECTABLE_DROP:.0f} pp")
    return float(x.mean()), float(y.mean()), delta, p, n, verdict, note  # delta: + is better


def compare(baseline: pd.DataFrame, current: pd.DataFrame, *, factor: float = 1.1, alpha: float = 0.05,
            check_environment: bool = True, consensus: str = "best", paired_runs: bool = False) -> GateResult:
    """Compare `current` against `baseline`; the verdict is `GateResult.exit_code`.

    `paired_runs`: both sides were measured interleaved, run k of one beside run k of the other
    (`gate --interleave`): timings are compared round by round (timing_over_rounds)."""
    if factor < 1:
        raise ValueError(f"--factor must be ≥ 1 (1.1 allows 10 % before a change counts), got {factor}")
    if not 0 < alpha < 1:
        raise ValueError(f"--alpha must be between 0 and 1, got {alpha}")
    if consensus not in CONSENSUS:
        raise ValueError(f"--runs-combine must be one of {', '.join(CONSENSUS)}, got {consensus!r}")
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
    findings: list[Finding] = []
    timings: list[tuple[int, Timing]] = []
    bgroups = dict(tuple(bm.groupby(["model", "suite"])))
    cgroups = dict(tuple(cm.groupby(["model", "suite"])))
    for model, suite in sorted(bpairs & cpairs):
        b, c = bgroups[(model, suite)], cgroups[(model, suite)]
        bok, cok = b[b["status"] == "ok"], c[c["status"] == "ok"]
        # Timings of an accuracy-mode pass are no request's latency: only latency rows are timed.
        btimed, ctimed = latency_rows(bok), latency_rows(cok)
        for m in TIMINGS:
            t = compare_timing(m, btimed, ctimed, factor, alpha, consensus, paired_runs)
            timings.append((len(findings), t))
            findings.append(Finding(model, suite, m.column, m.unit, t.baseline, t.current, t.change, math.nan,
                                    int(btimed[m.column].notna().sum()), int(ctimed[m.column].notna().sum()), "unchanged",
                                    "", t.ratio, t.runs_baseline, t.runs_current))
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
    # Every timing test of the gate is one family: sixteen tests at 5 % each would fail identical
    # code most of the time, so their p-values are Holm-adjusted (asv, similarly, asks p < 0.002).
    worse, better = holm([t.p_worse for _, t in timings]), holm([t.p_better for _, t in timings])
    for (k, t), pw, pb in zip(timings, worse, better, strict=True):
        p, verdict, note = judge(t, factor, alpha, pw, pb)
        findings[k] = replace(findings[k], p_value=p, verdict=verdict, note=note)
    return GateResult(factor, alpha, tuple(findings), (), tuple(notes), runs[0], runs[1])


def rule(factor: float, alpha: float) -> str:
    """The gate's decision rule in one sentence, for every page that shows a verdict."""
    return (f"A timing regresses when the {100 * (1 - alpha):g} % lower bound of the median paired ratio over the "
            f"samples (each side's best run per sample) is more than {factor:g}× worse, Holm-adjusted over all "
            f"timings; accuracy when an exact paired test over the samples (McNemar for 0/1 scores, sign-flip "
            f"permutation for graded ones) gives p < {alpha:g}.")


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
             f"({', '.join(result.current_runs) or '–'}). {rule(result.factor, result.alpha)}", ""]
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
