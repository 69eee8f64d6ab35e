"""Summary statistics shared by the report, the gate and the speed tables.

Pure functions of arrays; seeded where random, so a report rendered twice is identical.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Two-sided 95 % Student t quantiles for small n (df = n - 1); normal beyond.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t95(df: int) -> float:
    if df <= 0:
        return math.nan
    keys = [k for k in _T95 if k <= df]
    return _T95[max(keys)] if df <= 120 else 1.960


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); nan for n < 2
    median: float
    ci_low: float  # 95 % interval of the mean (Student t)
    ci_high: float
    cv: float  # std / mean: a run whose cv is high is noisy

    @property
    def noisy(self) -> bool:
        return not math.isnan(self.cv) and self.cv > NOISY_CV


NOISY_CV = 0.10


def describe(values: Sequence[float] | np.ndarray) -> Summary:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    n = len(v)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else math.nan
    half = t95(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    cv = std / mean if n > 1 and mean else math.nan
    return Summary(n, mean, std, float(np.median(v)), mean - half, mean + half, cv)


def paired_bootstrap(before: Sequence[float] | np.ndarray, after: Sequence[float] | np.ndarray, *,
                     level: float = 0.95, resamples: int = 4000, seed: int = 0) -> tuple[float, float, float, float]:
    """Mean paired difference (after − before) over the same samples, its percentile bootstrap
    interval, and the one-sided p-value that the true difference is not below zero.

    Resampling pairs keeps each sample's difficulty out of the noise, so a drop on the same
    samples is seen at sizes where two unpaired accuracies would overlap.
    Returns (delta, low, high, p_drop); nan for no pairs.
    """
    x = np.asarray(before, dtype=float)
    y = np.asarray(after, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired_bootstrap needs equal lengths, got {len(x)} and {len(y)}")
    keep = ~(np.isnan(x) | np.isnan(y))
    d = y[keep] - x[keep]
    if len(d) == 0:
        return (math.nan, math.nan, math.nan, math.nan)
    delta = float(d.mean())
    if np.all(d == d[0]):
        return (delta, delta, delta, 0.0 if delta < 0 else 1.0)
    rng = np.random.default_rng(seed)
    # Chunked so a 100,000-sample suite does not allocate resamples × n indices at once.
    means = np.empty(resamples)
    step = max(1, 2_000_000 // len(d))
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        means[start:stop] = d[rng.integers(0, len(d), size=(stop - start, len(d)))].mean(axis=1)
    alpha = (1 - level) / 2
    p_drop = float((np.sum(means >= 0) + 1) / (resamples + 1))
    return delta, float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)), p_drop


def bootstrap_medians(values: Sequence[float] | np.ndarray, *, resamples: int = 4000, seed: int = 0) -> np.ndarray:
    """Medians of `resamples` percentile-bootstrap resamples of the values (nan dropped); empty
    for no values. The median, not the mean: a load spike that slows a few samples of a run must
    not carry a verdict."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return np.asarray([], dtype=float)
    if np.all(v == v[0]):
        return np.full(resamples, v[0])
    rng = np.random.default_rng(seed)
    # Chunked so a 100,000-sample suite does not allocate resamples × n indices at once.
    out = np.empty(resamples)
    step = max(1, 2_000_000 // len(v))
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        out[start:stop] = np.median(v[rng.integers(0, len(v), size=(stop - start, len(v)))], axis=1)
    return out


@dataclass(frozen=True)
class Paired:
    """A ratio of two things measured side by side in the same blocks (rounds), and how sure it is.

    `ratio` is the geometric mean over blocks of a / b; [`low`, `high`] its two-sided interval at
    `level` (Student t on the per-block log ratios, n − 1 degrees of freedom); `p` the two-sided
    p-value of no difference. nan interval and p with fewer than two blocks: one block cannot
    tell a difference from the run-to-run variation it does not see.
    """

    ratio: float
    low: float
    high: float
    n: int
    p: float
    level: float
    log_mean: float = math.nan  # mean per-block log ratio, and its standard error
    log_se: float = math.nan

    def p_above(self, threshold: float) -> float:
        """One-sided p-value that the true ratio is at most `threshold` (small: it is above)."""
        from scipy import stats as st

        if self.n < 2 or math.isnan(self.log_se):
            return math.nan
        gap = self.log_mean - math.log(threshold)
        if self.log_se == 0:
            return 0.0 if gap > 0 else 1.0
        return float(st.t.sf(gap / self.log_se, self.n - 1))

    @property
    def decided(self) -> bool:
        """The interval excludes no difference (ratio 1)."""
        return self.n >= 2 and not math.isnan(self.low) and (self.low > 1 or self.high < 1)


def ratio_interval(log_ratios: Sequence[float] | np.ndarray, *, level: float = 0.95) -> Paired:
    """The ratio behind per-block log ratios (one per round), with a two-sided Student-t interval
    at `level` over the blocks; nan entries are dropped."""
    from scipy import stats as st

    d = np.asarray(log_ratios, dtype=float)
    d = d[~np.isnan(d)]
    n = len(d)
    if n == 0:
        return Paired(math.nan, math.nan, math.nan, 0, math.nan, level)
    mean = float(d.mean())
    if n < 2:
        return Paired(math.exp(mean), math.nan, math.nan, n, math.nan, level, mean)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    if se == 0:
        return Paired(math.exp(mean), math.exp(mean), math.exp(mean), n, 0.0 if mean else 1.0, level, mean, 0.0)
    half = float(st.t.ppf((1 + level) / 2, n - 1)) * se
    p = float(2 * st.t.sf(abs(mean) / se, n - 1))
    return Paired(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n, p, level, mean, se)


def paired_ratio(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                 level: float = 0.95) -> Paired:
    """a against b, block by block: one figure of each side per block (pairs with a missing or
    non-positive value are dropped); see `ratio_interval`."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired_ratio needs equal lengths, got {len(x)} and {len(y)}")
    keep = (x > 0) & (y > 0)  # nan compares False: dropped too
    return ratio_interval(np.log(x[keep] / y[keep]), level=level)


def round_log_ratios(a: pd.Series, b: pd.Series) -> np.ndarray:
    """One log ratio a / b per round: the median, over the units (samples) both sides measured in
    that round, of log(a_unit / b_unit).

    `a` and `b` are indexed by (round, unit): the first index level names the round (any
    hashable, e.g. a (run_id, round) pair), the rest the unit. Pairing sample by sample takes
    each sample's own cost (prompt length, answer length) out of the round's figure, and the
    median keeps a burst of load on one request from carrying it."""
    joined = pd.concat({"a": a, "b": b}, axis=1, join="inner")
    joined = joined[(joined["a"] > 0) & (joined["b"] > 0)]
    if joined.empty:
        return np.asarray([], dtype=float)
    logs = np.log(joined["a"].astype(float) / joined["b"].astype(float))
    return logs.groupby(level=0, sort=True).median().to_numpy()


def compare_rounds(a: pd.Series, b: pd.Series, *, level: float = 0.95) -> Paired:
    """The one comparison rule of the report's speed verdicts and the gate's interleaved timings:
    a against b over rounds, each round measured close in time on both sides, so drift between
    rounds falls on both and cancels, and the rounds — not the requests inside them, which share
    a round's load — are the replicates. The report asks at 95 % whether two models differ; the
    gate asks for a one-sided bound against its factor (harness/gate/compare.py)."""
    return ratio_interval(round_log_ratios(a, b), level=level)


def mcnemar_exact(worse: int, better: int) -> float:
    """One-sided exact McNemar test for paired 0/1 scores: the probability of at least `worse`
    right→wrong flips among the `worse + better` discordant pairs if a flip is as likely either
    way (binomial, p = 1/2). Concordant pairs carry no information about a change, so only the
    discordant ones count: 3 flips and none back is p = 1/8, whatever the number of samples.
    1.0 without discordant pairs."""
    n = int(worse) + int(better)
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, k) for k in range(int(worse), n + 1)) / 2**n)


def min_discordant(alpha: float) -> int:
    """The fewest discordant pairs at which an exact paired test can reach `alpha` at all (every
    pair changing the same way gives p = 2^-k): 5 at alpha = 0.05."""
    return max(1, math.ceil(math.log(alpha) / math.log(0.5) - 1e-12)) if 0 < alpha < 1 else 1


# Up to this many changed pairs every sign assignment is enumerated; beyond, a seeded sample.
_EXACT_FLIPS = 16


def sign_flip_p(diffs: Sequence[float] | np.ndarray, *, resamples: int = 20000, seed: int = 0) -> float:
    """One-sided paired permutation (sign-flip) test for graded paired scores: the probability,
    with each pair's difference (after − before) equally likely to have either sign, that the
    mean difference is at most the one observed; small p says a real fall. Pairs that did not
    change carry no sign and are left out. Exact for up to 16 changed pairs, a seeded Monte
    Carlo (p = (hits + 1) / (resamples + 1)) beyond; 1.0 without changed pairs. On 0/1 scores
    it equals `mcnemar_exact`."""
    d = np.asarray(diffs, dtype=float)
    d = d[~np.isnan(d)]
    d = d[d != 0]
    k = len(d)
    if k == 0:
        return 1.0
    observed = float(d.sum())
    tol = 1e-12 * max(1.0, float(np.abs(d).sum()))
    if k <= _EXACT_FLIPS:
        signs = 1 - 2 * ((np.arange(2**k)[:, None] >> np.arange(k)) & 1)
        sums = signs @ np.abs(d)
        return float(np.mean(sums <= observed + tol))
    rng = np.random.default_rng(seed)
    hits = 0
    step = max(1, 2_000_000 // k)
    for start in range(0, resamples, step):
        m = min(step, resamples - start)
        sums = (rng.choice((-1.0, 1.0), size=(m, k)) * np.abs(d)).sum(axis=1)
        hits += int(np.sum(sums <= observed + tol))
    return float((hits + 1) / (resamples + 1))
