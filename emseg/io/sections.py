"""A slice with its neighbouring sections: the input of a model that reads context across sections (2.5-D).

Serial sections lie 50 nm apart in ISBI 2012; a membrane that is faint in one section is
often clear in the next. A model of `context` k reads a slice together with the k sections
on each side, as `2k + 1` input channels, the slice in the middle. At the ends of a stack the
end section stands in for the missing ones, so a lone 2-D image is its own neighbours (what
such a model scores on a lone slice is measured apart: docs/results/cross-validation.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def section_count(context: int) -> int:
    """The sections a model of `context` reads: the slice and `context` on each side (its input channels)."""
    return 2 * context + 1


def neighbour_offsets(context: int) -> list[int]:
    """The offsets of a slice's neighbouring sections, nearest first on each side: -k..-1, 1..k."""
    return [d for d in range(-context, context + 1) if d]


def neighbour_indices(index: int, count: int, context: int) -> list[int]:
    """The stack indices of slice `index` and its `context` sections on each side, in order; clamped to the stack's ends."""
    if not 0 <= index < count:
        raise IndexError(f"slice {index} of a stack of {count}")
    return [min(max(index + d, 0), count - 1) for d in range(-context, context + 1)]


def with_neighbours(stack: Sequence[np.ndarray] | np.ndarray, index: int, context: int) -> np.ndarray:
    """Slice `index` of `stack` as a model of `context` reads it: (H, W) for 0, else (2 * context + 1, H, W)."""
    if context == 0:
        return np.asarray(stack[index])
    return np.stack([np.asarray(stack[i]) for i in neighbour_indices(index, len(stack), context)])


def centre(image: np.ndarray) -> np.ndarray:
    """The slice itself of a model's input: the middle of a slice with its sections, or the slice (H, W) as it is."""
    return image[image.shape[0] // 2] if image.ndim == 3 else image


def lone_slices(count: int, context: int) -> bool:
    """Whether a stack of `count` slices gives a model of `context` no real neighbour at all (a single 2-D image)."""
    return context > 0 and count == 1
