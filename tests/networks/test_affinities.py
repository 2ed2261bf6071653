"""emseg.networks.affinities: the affinity target of hand-made labels, its masks, and its behaviour under flips and turns."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.config.layout import CELL_VALUE, UNLABELLED_VALUE
from emseg.config.params import check_offsets
from emseg.errors import EmsegError
from emseg.io.synthetic import synthetic_slice
from emseg.networks.affinities import (
    DEFAULT_OFFSETS,
    affinity_targets,
    boundary_from_affinities,
    cell_instances,
    dihedral_offset,
    untransform,
    variant_plan,
)

# two cells (left: columns 0-1, right: columns 3-4) split by a membrane column
LABEL = np.array([[255, 255, 0, 255, 255]] * 3, np.uint8)


def test_hand_made_label_gives_the_known_affinities_and_masks() -> None:
    target, mask = affinity_targets(LABEL, ((-1, 0), (0, -1), (0, 2)))
    # (-1, 0): the pixel above; same cell everywhere but on the membrane; row 0 has no pixel above
    np.testing.assert_array_equal(target[0], [[1, 1, 1, 1, 1], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0]])
    np.testing.assert_array_equal(mask[0], [[0] * 5, [1] * 5, [1] * 5])
    # (0, -1): the pixel on the left; across the membrane, or out of the slice, 1
    np.testing.assert_array_equal(target[1], [[1, 0, 1, 1, 0]] * 3)
    np.testing.assert_array_equal(mask[1], [[0, 1, 1, 1, 1]] * 3)
    # (0, 2): two to the right; column 0 meets column 2 (membrane), column 1 meets column 3 (the other cell)
    np.testing.assert_array_equal(target[2], [[1, 1, 1, 1, 1]] * 3)
    np.testing.assert_array_equal(mask[2], [[1, 1, 1, 0, 0]] * 3)


def test_cells_are_4_connected_as_the_scorer_counts_them() -> None:
    diagonal = np.array([[255, 0], [0, 255]], np.uint8)  # two cells touching at a corner only
    target, _ = affinity_targets(diagonal, ((-1, 0), (0, -1), (-1, -1)))
    assert target[2, 1, 1] == 1  # the two corners are two cells


@pytest.mark.parametrize(("offsets", "message"), [
    ([[0, -1], [-1, 0]], "the first two offsets must be the nearest neighbours"),
    ([[-1, 0], [0, -1], [0, -1]], "distinct and non-zero"),
])
def test_offsets_are_checked(offsets, message) -> None:
    with pytest.raises(EmsegError, match=message):
        check_offsets(offsets)


def test_a_quarter_turn_moves_an_offset_along_x_to_one_along_y() -> None:
    image = np.zeros((5, 5))
    image[2, 2], image[2, 3] = 1, 2  # a pixel and its right-hand neighbour: offset (0, 1)
    turned = np.rot90(image, 1)
    (y1, x1), (y2, x2) = np.argwhere(turned == 1)[0], np.argwhere(turned == 2)[0]
    assert dihedral_offset((0, 1), 1, False) == (y2 - y1, x2 - x1) == (-1, 0)
    flipped = np.rot90(image[:, ::-1], 3)
    (y1, x1), (y2, x2) = np.argwhere(flipped == 1)[0], np.argwhere(flipped == 2)[0]
    assert dihedral_offset((0, 1), 3, True) == (y2 - y1, x2 - x1)


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_affinities_of_a_turned_label_turned_back_are_the_affinities_of_the_label(k: int, flip: bool) -> None:
    _, label = synthetic_slice(40, 44, 3)
    reference, reference_mask = affinity_targets(label, DEFAULT_OFFSETS)
    variant = np.ascontiguousarray(np.rot90(label[:, ::-1] if flip else label, k))
    back, weight = untransform(affinity_targets(variant, DEFAULT_OFFSETS)[0], DEFAULT_OFFSETS, k, flip)
    known = (weight > 0) & (reference_mask > 0)
    assert known.mean() > 0.7  # all but the pairs that leave this small slice
    np.testing.assert_array_equal(back[known], reference[known])


def test_offsets_not_closed_under_turns_are_refused() -> None:
    with pytest.raises(EmsegError, match="has no channel"):
        variant_plan(((-1, 0), (0, -1), (-3, 0)), 1, False)


def test_the_boundary_map_of_affinities_is_the_mean_of_the_nearest_neighbours() -> None:
    affinities = np.stack([np.full((2, 2), 0.2), np.full((2, 2), 0.6), np.ones((2, 2))])
    np.testing.assert_allclose(boundary_from_affinities(affinities), 0.4)


def test_an_offset_longer_than_the_label_has_no_pairs() -> None:
    """A patch or slice smaller than a long-range offset: that channel is all masked out, the others as usual."""
    target, mask = affinity_targets(LABEL, ((-1, 0), (0, -1), (-9, 0), (0, 27)))
    assert target.shape == mask.shape == (4, *LABEL.shape)
    assert not mask[2:].any() and mask[1].any()


def test_unlabelled_pixels_are_no_cell_and_their_pairs_are_masked_out() -> None:
    label = LABEL.copy()
    label[:, 4] = UNLABELLED_VALUE  # the right cell's last column: nobody labelled it
    # the cells are the CELL_VALUE pixels only: 128 > 0 is no cell
    np.testing.assert_array_equal(cell_instances(label), [[1, 1, 0, 2, 0]] * 3)
    target, mask = affinity_targets(label, ((-1, 0), (0, -1), (0, 2)))
    reference_target, reference_mask = affinity_targets(LABEL, ((-1, 0), (0, -1), (0, 2)))
    # a pair with an unlabelled end counts nowhere: column 4 itself, and its partners
    np.testing.assert_array_equal(mask[0], [[0] * 5, [1, 1, 1, 1, 0], [1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(mask[1], [[0, 1, 1, 1, 0]] * 3)
    np.testing.assert_array_equal(mask[2], [[1, 1, 0, 0, 0]] * 3)  # (0, 2) from column 2 reaches column 4
    # every pair that still counts keeps the fully labelled slice's target
    kept = mask > 0
    np.testing.assert_array_equal(target[kept], reference_target[kept])
    assert (mask <= reference_mask).all()


def test_fully_labelled_cells_are_the_cell_value_pixels() -> None:
    _, label = synthetic_slice(40, 44, 3)
    assert set(np.unique(label)) == {0, CELL_VALUE}
    from scipy import ndimage

    np.testing.assert_array_equal(cell_instances(label), ndimage.label(label > 0)[0])
