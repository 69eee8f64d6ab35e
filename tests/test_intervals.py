from __future__ import annotations

import math

import numpy as np
import pytest

from harness.core.intervals import (
    MIN_SAMPLES,
    Interval,
    clopper_pearson,
    clustered_standard_error,
    detectable_drop,
    mean_interval,
    samples_needed,
    wilson,
)

Z95 = 1.959963984540054


def test_all_ones_and_all_zeros_get_wilson_intervals_not_certainty():
    ones = mean_interval([1.0] * 8)
    assert ones.method == "wilson" and ones.mean == 1.0
    assert ones.low == pytest.approx(0.676, abs=5e-4) and ones.high == 1.0
    zeros = mean_interval([0.0] * 8)
    assert zeros.low == 0.0 and zeros.high == pytest.approx(0.324, abs=5e-4)


def test_wilson_against_hand_values():
    # By hand: p = 1, n = 8: (1 + z²/16 ± z·sqrt(z²/256)) / (1 + z²/8); the lower bound is n/(n+z²).
    assert wilson(8, 8)[0] == pytest.approx(8 / (8 + Z95**2))
    assert wilson(0, 8)[1] == pytest.approx(Z95**2 / (8 + Z95**2))
    # p = 0.5, n = 10: 0.5 ± z·sqrt(0.025 + z²/400) / (1 + z²/10)
    half = Z95 * math.sqrt(0.025 + Z95**2 / 400) / (1 + Z95**2 / 10)
    low, high = wilson(5, 10)
    assert (low, high) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert low == pytest.approx(0.2366, abs=1e-4)


def test_clopper_pearson_against_closed_forms():
    # With no successes the upper bound solves (1 - p)^n = alpha/2; with all, p^n = alpha/2.
    assert clopper_pearson(0, 8) == (0.0, pytest.approx(1 - 0.025 ** (1 / 8)))
    assert clopper_pearson(8, 8) == (pytest.approx(0.025 ** (1 / 8)), 1.0)
    got = mean_interval([1] * 8, method="clopper-pearson")
    assert got.method == "clopper-pearson" and got.low == pytest.approx(0.6306, abs=1e-4)
    # Exact is wider than Wilson.
    assert clopper_pearson(3, 10)[0] < wilson(3, 10)[0] and clopper_pearson(3, 10)[1] > wilson(3, 10)[1]


def test_auto_picks_the_method_that_fits():
    assert mean_interval([1, 0, 1, 1, 0, 1]).method == "wilson"
    assert mean_interval([1, 0.5, 0.3, 1, 0, 0.9]).method == "bootstrap"
    # Two questions per image: the image is the unit that is resampled.
    clustered = mean_interval([1, 1, 0, 0, 1, 1, 0, 0, 1, 0, 1, 1], clusters=[i // 2 for i in range(12)])
    assert clustered.method == "cluster-bootstrap" and clustered.n == 12 and clustered.n_clusters == 6
    # Distinct clusters are no clusters at all.
    assert mean_interval([1, 0, 1, 1, 0, 1], clusters=list("abcdef")).method == "wilson"


def test_clustering_widens_the_interval_when_questions_on_an_image_agree():
    rng = np.random.default_rng(1)
    per_image = rng.random(60) < 0.6
    scores = np.repeat(per_image, 5).astype(float)  # five questions per image, all alike
    images = np.repeat(np.arange(60), 5)
    naive = mean_interval(scores)
    clustered = mean_interval(scores, clusters=list(images))
    assert naive.method == "wilson" and clustered.method == "cluster-bootstrap"
    assert (clustered.high - clustered.low) > 1.8 * (naive.high - naive.low)


def test_clustered_standard_error_matches_the_lmms_eval_formula():
    rng = np.random.default_rng(2)
    x = (rng.random(40) < 0.5).astype(float)
    c = list(rng.integers(0, 12, 40))
    xbar = x.mean()
    var = ((x - xbar) ** 2).sum() / (len(x) - 1) / len(x)
    cross = 0.0
    for k in set(c):
        d = [x[i] - xbar for i in range(len(x)) if c[i] == k]
        cross += sum(d[i] * d[j] for i in range(len(d)) for j in range(len(d)) if i != j)
    assert clustered_standard_error(x, c) == pytest.approx(math.sqrt(var + cross / len(x) ** 2))
    # One cluster per score is the plain standard error.
    assert clustered_standard_error(x, list(range(40))) == pytest.approx(x.std(ddof=1) / math.sqrt(40))
    got = mean_interval(x, clusters=c, method="cluster-se")
    assert got.high - got.mean == pytest.approx(Z95 * clustered_standard_error(x, c))


def test_too_few_samples_to_tell():
    small = mean_interval([1.0] * (MIN_SAMPLES - 1))
    assert small.too_few and small.method == "too few" and small.mean == 1.0
    assert math.isnan(small.low) and math.isnan(small.high)
    assert not mean_interval([1.0] * MIN_SAMPLES).too_few
    # Many questions on too few images: too few clusters.
    assert mean_interval([1, 0] * 10, clusters=[i % 3 for i in range(20)]).too_few
    empty = mean_interval([])
    assert empty.n == 0 and math.isnan(empty.mean) and empty.too_few
    # NaN scores (errors) are not samples.
    assert mean_interval([1, 1, 1, 1, math.nan, math.nan]).too_few


def test_bootstrap_is_seeded_and_covers_the_mean():
    x = [0.2, 0.9, 0.5, 0.7, 1.0, 0.0, 0.4, 0.6]
    a, b = mean_interval(x, seed=3), mean_interval(x, seed=3)
    assert a == b and isinstance(a, Interval)
    assert a.low < np.mean(x) < a.high


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="unknown interval method"):
        mean_interval([1, 0], method="wald")
    with pytest.raises(ValueError, match="0/1 scores"):
        mean_interval([0.5] * 6, method="wilson")
    with pytest.raises(ValueError, match="one cluster per score"):
        mean_interval([1, 0, 1], clusters=[1, 2])


def test_samples_needed_against_the_textbook_value():
    # 80 % vs 70 %, alpha 0.05 two-sided, power 0.8: 294 per group (Fleiss et al. 2003 table,
    # no continuity correction), by hand from eq. 4.14.
    pbar = 0.75
    by_hand = (Z95 * math.sqrt(2 * pbar * (1 - pbar)) + 0.8416212335729143 * math.sqrt(0.8 * 0.2 + 0.7 * 0.3)) ** 2 / 0.01
    assert samples_needed(0.8, 0.1) == math.ceil(by_hand) == 294
    assert samples_needed(0.8, 0.05) > 4 * 294 * 0.9  # half the drop, about four times the samples
    assert samples_needed(0.8, 0.1, power=0.9) > 294
    with pytest.raises(ValueError):
        samples_needed(0.5, 0.6)


def test_detectable_drop_inverts_samples_needed():
    d = detectable_drop(0.8, 294)
    assert d == pytest.approx(0.1, abs=1e-3)
    assert samples_needed(0.8, d) <= 294
    assert detectable_drop(0.8, 100) > d  # fewer samples, only larger drops
    assert math.isnan(detectable_drop(0.5, 5))  # five samples cannot show even a fall to zero


def test_macro_interval_weighs_categories_equally():
    from harness.core.intervals import macro_interval

    scores = [1.0] * 20 + [0.0, 1.0, 0.0, 1.0]
    strata = ["big"] * 20 + ["small"] * 4
    got = macro_interval(scores, strata)
    assert got.mean == pytest.approx(0.75) and got.n == 24 and got.n_clusters == 2
    assert got.method == "stratified-bootstrap" and got.low < 0.75 < got.high
    assert got == macro_interval(scores, strata)  # seeded
    assert macro_interval([1.0, 0.0], ["a", "b"]).too_few
