from __future__ import annotations

import math

import pytest

from harness.core.stats import describe


def test_describe_matches_hand_computation():
    s = describe([10.0, 12.0, 14.0])
    assert s.n == 3 and s.mean == 12.0 and s.median == 12.0
    assert s.std == pytest.approx(2.0)
    # 95 % t interval with 2 degrees of freedom: 12 ± 4.303 * 2 / sqrt(3)
    assert s.ci_low == pytest.approx(12 - 4.303 * 2 / math.sqrt(3))
    assert s.cv == pytest.approx(2 / 12)
    assert s.noisy  # cv 0.167 > 0.10


def test_describe_ignores_nan_and_handles_tiny_samples():
    assert describe([]).n == 0 and math.isnan(describe([]).mean)
    one = describe([5.0, float("nan")])
    assert one.n == 1 and one.mean == 5.0 and math.isnan(one.std) and not one.noisy
