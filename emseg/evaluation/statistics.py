"""Intervals for per-slice scores that respect the correlation between neighbouring sections.

Serial sections 50 nm apart look alike, so the scores of neighbouring slices are not
independent draws: a bootstrap that resampled single slices would call a difference
certain that one good stretch of the stack made. The slices are therefore cut into
contiguous blocks of `block` slices (in slice order), each block is averaged, and
`scipy.stats.bootstrap` (BCa, seeded) resamples the block means: a non-overlapping
block bootstrap. Comparisons are paired: both runs scored the same slices, so the
interval is the one of the mean per-block difference
([`paired_difference`][emseg.evaluation.statistics.paired_difference], which `emseg compare` uses).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from emseg.config.defaults import BLOCK_SLICES, CONFIDENCE
from emseg.errors import EmsegError

#: resamples of an interval unless told otherwise
RESAMPLES = 9999
#: the bootstrap's seed: the same table always gets the same interval
SEED = 0
#: scores where lower is better; every other score is better higher
LOWER_IS_BETTER = ("pixel_error", "pixel_error_plain", "pixel_error_at_val_threshold")


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval, at `confidence`, from `blocks` block means."""

    mean: float
    low: float
    high: float
    confidence: float
    blocks: int

    def excludes(self, value: float) -> bool:
        """Whether `value` lies outside the interval."""
        return value < self.low or value > self.high


def block_means(values: Sequence[float], slice_ids: Sequence[int], block: int = BLOCK_SLICES) -> np.ndarray:
    """The means of `values` over consecutive runs of `block` slices, taken in slice order (a short last block kept).

    Raises:
        EmsegError: `values` and `slice_ids` differ in length, or are empty.
    """
    if len(values) != len(slice_ids):
        raise EmsegError(f"{len(values)} values for {len(slice_ids)} slices")
    if not len(values):
        raise EmsegError("no slices to average")
    ordered = np.asarray(values, np.float64)[np.argsort(np.asarray(slice_ids), kind="stable")]
    return np.array([chunk.mean() for chunk in np.array_split(ordered, -(-len(ordered) // block))])


def mean_interval(
    values: Sequence[float],
    slice_ids: Sequence[int],
    block: int = BLOCK_SLICES,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """The mean of per-slice `values` and its block-bootstrap (BCa) interval.

    Args:
        values: One score per slice.
        slice_ids: The slices' numbers, which decide the blocks.
        block: Contiguous slices averaged into one block.
        confidence: The confidence level.
        resamples: Bootstrap resamples.
        seed: The bootstrap's seed: the same table always gets the same interval.

    Returns:
        The mean over the slices and its interval; the interval is the mean itself when the
        block means do not vary, and percentiles where BCa is undefined.
    """
    means = block_means(values, slice_ids, block)
    centre = float(np.mean(values))
    if len(means) < 2 or np.ptp(means) <= 1e-12 * max(1.0, abs(centre)):  # nothing to resample: the interval is the point
        return Interval(centre, centre, centre, confidence, len(means))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (means,), np.mean, confidence_level=confidence, n_resamples=resamples, method="BCa", rng=np.random.default_rng(seed)
        )
    low, high = result.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):  # BCa undefined (e.g. two blocks): fall back to percentiles
        low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(centre, float(low), float(high), confidence, len(means))


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    slice_ids: Sequence[int],
    block: int = BLOCK_SLICES,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """The mean of `b - a` over the same slices, with its block-bootstrap interval.

    The other arguments are those of [`mean_interval`][emseg.evaluation.statistics.mean_interval].

    Raises:
        EmsegError: `a` and `b` differ in length.
    """
    if len(a) != len(b):
        raise EmsegError(f"paired scores need the same slices: {len(a)} against {len(b)}")
    difference = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    return mean_interval(difference, slice_ids, block, confidence, resamples, seed)


def verdict(metric: str, difference: Interval) -> str:
    """`better`, `worse` (B against A) or `not distinguishable` (the interval of B - A holds zero).

    Whether higher or lower is better depends on `metric` (`LOWER_IS_BETTER`: the pixel errors).
    """
    if not difference.excludes(0.0):
        return "not distinguishable"
    higher = difference.low > 0
    return "better" if higher != (metric in LOWER_IS_BETTER) else "worse"
