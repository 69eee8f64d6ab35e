"""Uncertainty of an accuracy: intervals that fit the scores, and the power figures a suite
needs to detect a drop. Pure functions; seeded where random, so a report rendered twice is
identical.

- 0/1 scores, independent: Wilson score interval (Wilson 1927; Brown, Cai & DasGupta 2001
  recommend it over the Wald and percentile-bootstrap intervals, which collapse to [p, p] at
  p = 0 or 1). Clopper–Pearson (1934), the exact and conservative one, on request.
- Graded scores (VQA accuracy, ANLS, keyword recall), independent: percentile bootstrap of
  the mean (Efron & Tibshirani 1993, ch. 13).
- Questions that share an image are not independent: the cluster (the image) is resampled
  whole (cluster bootstrap; Field & Welsh 2007). `clustered_standard_error` gives the
  cluster-robust CLT standard error that lmms-eval reports for a task's `cluster_key`
  (lmms_eval/api/metrics.py clustered_stderr; Miller 2024, "Adding Error Bars to Evals",
  eq. 4).
- Fewer than MIN_SAMPLES samples (or clusters, where they are resampled) say nothing useful:
  the interval's bounds are NaN and its method is "too few", which the report prints as "too
  few samples to tell". The mean is still given.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

MIN_SAMPLES = 5
RESAMPLES = 2000
METHODS = ("auto", "wilson", "clopper-pearson", "bootstrap", "cluster-bootstrap", "cluster-se")


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float  # NaN where there are too few samples to tell
    high: float
    n: int  # scores
    n_clusters: int  # distinct clusters (n where no clusters were given)
    method: str  # "wilson", "clopper-pearson", "bootstrap", "cluster-bootstrap", "cluster-se", "too few"
    level: float = 0.95

    @property
    def too_few(self) -> bool:
        return math.isnan(self.low) or math.isnan(self.high)


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - (1 - level) / 2))


def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion: the p whose score test at `level` does
    not reject, (p̂ + z²/2n ± z·sqrt(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n)."""
    if n <= 0:
        return (math.nan, math.nan)
    z = _z(level)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def clopper_pearson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson exact interval: beta quantiles, 0 and 1 at the ends."""
    from scipy.stats import beta

    if n <= 0:
        return (math.nan, math.nan)
    a = (1 - level) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(a, successes, n - successes + 1))
    high = 1.0 if successes == n else float(beta.ppf(1 - a, successes + 1, n - successes))
    return (low, high)


def bootstrap(scores: np.ndarray, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 2_000_000 // len(scores))  # bounded memory for large suites
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        means[start:stop] = scores[rng.integers(0, len(scores), size=(stop - start, len(scores)))].mean(axis=1)
    a = (1 - level) / 2
    return (float(np.quantile(means, a)), float(np.quantile(means, 1 - a)))


def _cluster_sums(scores: np.ndarray, clusters: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    codes: dict[Hashable, int] = {}
    idx = np.fromiter((codes.setdefault(c, len(codes)) for c in clusters), dtype=np.int64, count=len(scores))
    return np.bincount(idx, weights=scores), np.bincount(idx).astype(float)


def cluster_bootstrap(scores: np.ndarray, clusters: Sequence[Hashable], level: float = 0.95,
                      resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean when whole clusters are resampled with replacement (each
    resample's mean is its scores' total over its sample count)."""
    sums, sizes = _cluster_sums(scores, clusters)
    rng = np.random.default_rng(seed)
    g = len(sums)
    means = np.empty(resamples)
    step = max(1, 2_000_000 // g)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        pick = rng.integers(0, g, size=(stop - start, g))
        means[start:stop] = sums[pick].sum(axis=1) / sizes[pick].sum(axis=1)
    a = (1 - level) / 2
    return (float(np.quantile(means, a)), float(np.quantile(means, 1 - a)))


def clustered_standard_error(scores: Sequence[float] | np.ndarray, clusters: Sequence[Hashable]) -> float:
    """Cluster-robust standard error of the mean (Miller 2024 eq. 4, as lmms-eval's
    clustered_stderr): sqrt(s²/n + (1/n²) Σ_c Σ_{i≠j in c} (x_i - x̄)(x_j - x̄)), s² with ddof 1.
    NaN for fewer than two scores."""
    x = np.asarray(scores, dtype=float)
    n = len(x)
    if n != len(clusters):
        raise ValueError(f"clustered_standard_error needs one cluster per score, got {n} scores and {len(clusters)} clusters")
    if n < 2:
        return math.nan
    d = x - x.mean()
    sums, _ = _cluster_sums(d, clusters)
    sq, _ = _cluster_sums(d * d, clusters)
    cross = float((sums * sums - sq).sum()) / (n * n)
    return math.sqrt(max(0.0, float(d @ d) / (n - 1) / n + cross))


def mean_interval(scores: Sequence[float] | np.ndarray, clusters: Sequence[Hashable] | None = None,
                  level: float = 0.95, method: str = "auto", seed: int = 0) -> Interval:
    """The mean score with an interval that fits the data.

    `method="auto"`: cluster bootstrap when some cluster holds more than one score; else Wilson
    when every score is 0 or 1; else the percentile bootstrap. NaN scores are dropped (with
    their clusters). Fewer than MIN_SAMPLES scores, or fewer than MIN_SAMPLES clusters for the
    cluster methods, give NaN bounds and method "too few".
    """
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; known: {', '.join(METHODS)}")
    x = np.asarray(scores, dtype=float)
    keep = ~np.isnan(x)
    if clusters is not None:
        if len(clusters) != len(x):
            raise ValueError(f"mean_interval needs one cluster per score, got {len(x)} scores and {len(clusters)} clusters")
        clusters = [c for c, k in zip(clusters, keep, strict=True) if k]
    x = x[keep]
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    n_clusters = len(set(clusters)) if clusters is not None else n
    if method == "auto":
        if clusters is not None and n_clusters < n:
            method = "cluster-bootstrap"
        elif np.all((x == 0) | (x == 1)):
            method = "wilson"
        else:
            method = "bootstrap"
    if method.startswith("cluster") and clusters is None:
        clusters, n_clusters = list(range(n)), n
    units = n_clusters if method.startswith("cluster") else n
    if units < MIN_SAMPLES:
        return Interval(mean, math.nan, math.nan, n, n_clusters, "too few", level)
    if method in ("wilson", "clopper-pearson"):
        if not np.all((x == 0) | (x == 1)):
            raise ValueError(f"method {method!r} needs 0/1 scores; use 'bootstrap' for graded scores")
        low, high = (wilson if method == "wilson" else clopper_pearson)(int(x.sum()), n, level)
    elif method == "bootstrap":
        low, high = bootstrap(x, level, seed=seed)
    elif method == "cluster-bootstrap":
        low, high = cluster_bootstrap(x, clusters, level, seed=seed)
    else:
        half = _z(level) * clustered_standard_error(x, clusters)
        low, high = max(0.0, mean - half), min(1.0, mean + half)
    return Interval(mean, low, high, n, n_clusters, method, level)


def _n_two_proportions(p1: float, p2: float, alpha: float, power: float) -> float:
    from scipy.stats import norm

    za, zb = float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))
    pbar = (p1 + p2) / 2
    top = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return top * top / ((p1 - p2) ** 2)


def samples_needed(p: float, drop: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Samples per run for a two-sided two-proportion z-test at `alpha` to detect an accuracy
    falling from p to p - drop with probability `power` (equal sizes, no continuity correction;
    Fleiss, Levin & Paik 2003, "Statistical Methods for Rates and Proportions", eq. 4.14):
    n = [z_{1-α/2} sqrt(2 p̄ q̄) + z_{1-β} sqrt(p1 q1 + p2 q2)]² / (p1 - p2)², p̄ the mean of the
    two. p = 0.8, drop = 0.1 needs 294."""
    if not 0 < drop <= p <= 1:
        raise ValueError(f"samples_needed needs 0 < drop <= p <= 1, got p={p}, drop={drop}")
    return math.ceil(_n_two_proportions(p, p - drop, alpha, power) - 1e-9)


def detectable_drop(p: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest fall in accuracy from p that n samples per run detect (the inverse of
    samples_needed, solved numerically); NaN where even a fall to 0 is out of reach or p = 0."""
    from scipy.optimize import brentq

    if n <= 0 or not 0 < p <= 1:
        return math.nan
    f = lambda d: _n_two_proportions(p, p - d, alpha, power) - n  # noqa: E731
    if f(p) > 0:
        return math.nan
    lo = 1e-9
    if f(lo) <= 0:
        return lo
    # Nudged up past the root's tolerance, so samples_needed(p, drop) <= n holds.
    return min(p, float(brentq(f, lo, p, xtol=1e-12)) + 1e-9)


def macro_interval(scores: Sequence[float] | np.ndarray, strata: Sequence[Hashable], level: float = 0.95,
                   resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """The unweighted mean of the per-stratum means (a benchmark's macro average over its
    categories), with a stratified percentile bootstrap: each resample draws every stratum's
    scores from that stratum, so each category keeps its size. NaN scores are dropped; fewer
    than MIN_SAMPLES scores in all give "too few". `n_clusters` holds the number of strata."""
    x = np.asarray(scores, dtype=float)
    if len(strata) != len(x):
        raise ValueError(f"macro_interval needs one stratum per score, got {len(x)} scores and {len(strata)} strata")
    keep = ~np.isnan(x)
    groups: dict[Hashable, list[float]] = {}
    for v, s, k in zip(x, strata, keep, strict=True):
        if k:
            groups.setdefault(s, []).append(float(v))
    n = int(keep.sum())
    if not groups:
        return Interval(math.nan, math.nan, math.nan, 0, 0, "too few", level)
    arrays = [np.asarray(g) for g in groups.values()]
    mean = float(np.mean([a.mean() for a in arrays]))
    if n < MIN_SAMPLES:
        return Interval(mean, math.nan, math.nan, n, len(arrays), "too few", level)
    rng = np.random.default_rng(seed)
    means = np.zeros(resamples)
    for a in arrays:
        means += a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(axis=1)
    means /= len(arrays)
    q = (1 - level) / 2
    return Interval(mean, float(np.quantile(means, q)), float(np.quantile(means, 1 - q)), n, len(arrays),
                    "stratified-bootstrap", level)
