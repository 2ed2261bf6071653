"""emseg.io.sections: a slice with its neighbouring sections, clamped at the stack's ends."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.io.sections import centre, lone_slices, neighbour_indices, with_neighbours


@pytest.mark.parametrize(
    ("index", "count", "context", "expected"),
    [(3, 10, 1, [2, 3, 4]), (0, 10, 1, [0, 0, 1]), (9, 10, 2, [7, 8, 9, 9, 9]), (0, 1, 2, [0, 0, 0, 0, 0]), (4, 5, 0, [4])],
)
def test_neighbours_are_clamped_to_the_stack(index: int, count: int, context: int, expected: list[int]) -> None:
    assert neighbour_indices(index, count, context) == expected


def test_a_slice_with_its_sections_keeps_it_in_the_middle() -> None:
    stack = np.arange(4)[:, None, None] * np.ones((4, 3, 5), np.uint8)
    around = with_neighbours(stack, 1, 1)
    assert around.shape == (3, 3, 5) and [int(s[0, 0]) for s in around] == [0, 1, 2]
    np.testing.assert_array_equal(centre(around), stack[1])
    plain = stack[2]
    assert with_neighbours(stack, 2, 0).shape == (3, 5) and centre(plain) is plain
    assert lone_slices(1, 1) and not lone_slices(2, 1) and not lone_slices(1, 0)
    with pytest.raises(IndexError):
        neighbour_indices(4, 4, 1)
