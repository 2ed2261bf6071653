"""emseg.evaluation.statistics: block-bootstrap intervals whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.errors import EmsegError
from emseg.evaluation.statistics import block_means, mean_interval, paired_difference, verdict

SLICES = list(range(30))


def test_block_means_follow_slice_order_and_keep_a_short_last_block() -> None:
    values = [10.0, 0.0, 1.0, 2.0, 3.0]
    np.testing.assert_allclose(block_means(values, [4, 0, 1, 2, 3], block=2), [0.5, 2.5, 10.0])
    with pytest.raises(EmsegError, match="3 values for 2 slices"):
        block_means([1.0, 2.0, 3.0], [0, 1])


def test_identical_runs_are_not_distinguishable() -> None:
    scores = np.random.default_rng(0).uniform(0.95, 0.99, 30)
    difference = paired_difference(scores, scores, SLICES)
    assert (difference.mean, difference.low, difference.high) == (0.0, 0.0, 0.0)
    assert verdict("v_rand", difference) == "not distinguishable"


@pytest.mark.parametrize(("metric", "shift", "expected"), [("v_rand", 0.002, "better"), ("v_rand", -0.002, "worse"), ("pixel_error", -0.002, "better")])
def test_a_shift_with_noise_far_below_it_is_told_apart(metric: str, shift: float, expected: str) -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0.95, 0.99, 30)
    b = a + shift + rng.normal(0, 0.0002, 30)
    difference = paired_difference(a, b, SLICES)
    assert difference.excludes(0.0) and difference.low < shift < difference.high
    assert verdict(metric, difference) == expected


def test_noise_without_a_shift_is_not_distinguishable() -> None:
    rng = np.random.default_rng(2)
    a = rng.uniform(0.95, 0.99, 30)
    difference = paired_difference(a, a + rng.normal(0, 0.005, 30), SLICES)
    assert difference.low < 0 < difference.high and verdict("v_rand", difference) == "not distinguishable"


def test_correlated_slices_widen_the_interval() -> None:
    """The same values, once in runs of 3 alike slices: resampling single slices would be falsely sure."""
    rng = np.random.default_rng(3)
    runs = np.repeat(rng.normal(0, 0.01, 10), 3)
    blocked, single = mean_interval(runs, SLICES, block=3), mean_interval(runs, SLICES, block=1)
    assert blocked.blocks == 10 and single.blocks == 30
    assert blocked.mean == pytest.approx(single.mean)
    assert (blocked.high - blocked.low) > 1.3 * (single.high - single.low)


def test_the_interval_is_seeded() -> None:
    values = np.random.default_rng(4).uniform(0.9, 1.0, 30)
    assert mean_interval(values, SLICES) == mean_interval(values, SLICES)
