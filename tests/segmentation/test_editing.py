"""Tests of emseg.segmentation.editing: merging and splitting cells, training labels from checked pixels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from emseg.config.layout import CELL_VALUE, UNLABELLED_VALUE
from emseg.errors import EmsegError
from emseg.segmentation.editing import checked_slices, merge_cells, split_cell, training_labels

FOUR = ndimage.generate_binary_structure(2, 1)


def components(mask: np.ndarray) -> int:
    return ndimage.label(mask, FOUR)[1]


def two_cells_over_a_third() -> np.ndarray:
    return np.array(
        [
            [1, 1, 0, 2, 2],
            [1, 1, 0, 2, 2],
            [0, 0, 0, 0, 0],
            [3, 3, 3, 3, 3],
        ],
        np.uint32,
    )


def test_merge_removes_the_wall_and_keeps_the_one_to_a_third_cell():
    cells = two_cells_over_a_third()
    before = cells.copy()
    merged = merge_cells(cells, 1, 2)
    expected = np.array([[1] * 5, [1] * 5, [0] * 5, [3] * 5], np.uint32)
    np.testing.assert_array_equal(merged, expected)
    assert merged.dtype == np.uint32
    assert components(merged == 1) == 1
    np.testing.assert_array_equal(cells, before)  # the input is not modified


def test_merge_in_a_stack_works_in_plane_only():
    top = two_cells_over_a_third()
    bottom = np.zeros_like(top)
    bottom[:2, :2] = 1  # cell 1 alone: the zeros beside it face cell 2 only across slices
    merged = merge_cells(np.stack([top, bottom]), 2, 1)
    np.testing.assert_array_equal(merged[0], [[2] * 5, [2] * 5, [0] * 5, [3] * 5])
    np.testing.assert_array_equal(merged[1], np.where(bottom == 1, 2, 0))


@pytest.mark.parametrize(
    ("keep", "other", "message"),
    [(1, 1, "with itself"), (0, 2, "not a cell"), (1, 0, "not a cell"), (1, 7, "cell 7 is not in the layer"), (7, 1, "cell 7 is not in the layer")],
)
def test_merge_refuses_bad_ids(keep, other, message):
    with pytest.raises(EmsegError, match=message):
        merge_cells(two_cells_over_a_third(), keep, other)


def three_columns() -> np.ndarray:
    """Cells 1 (columns 0-2), 2 (4-8) and 3 (10-12) between outline columns, 5 rows."""
    cells = np.zeros((5, 13), np.uint32)
    cells[:, 0:3], cells[:, 4:9], cells[:, 10:13] = 1, 2, 3
    return cells


def test_split_cuts_the_cell_and_the_largest_piece_keeps_its_id():
    cells = three_columns()
    before = cells.copy()
    split, new_ids = split_cell(cells, (-3.2, 5.4), (9.0, 5.0))  # vertical through column 5, past the image
    assert new_ids == [4]
    expected = cells.copy()
    expected[:, 5] = 0
    expected[:, 4] = 4  # the 5-pixel piece gets a new id, the 15-pixel one keeps 2
    np.testing.assert_array_equal(split, expected)
    np.testing.assert_array_equal(cells, before)


def test_split_leaves_cells_the_line_only_enters():
    cells = three_columns()
    split, new_ids = split_cell(cells, (2, 1), (2, 11))  # from inside cell 1 across cell 2 into cell 3
    assert new_ids == [4]
    np.testing.assert_array_equal(split[cells != 2], cells[cells != 2])
    np.testing.assert_array_equal(split[2, 4:9], 0)
    assert set(np.unique(split[:2, 4:9])) | set(np.unique(split[3:, 4:9])) == {2, 4}


def test_a_diagonal_cut_separates_the_pieces_under_4_connectivity():
    cells = np.ones((6, 8), np.uint16)
    split, new_ids = split_cell(cells, (0, 0), (5, 5))
    assert len(new_ids) == 1 and split.dtype == np.uint16
    assert components(split != 0) == 2
    assert (split == 1).sum() > (split == new_ids[0]).sum()


def test_split_in_a_stack_works_on_the_named_slice():
    stack = np.stack([np.full((5, 13), 5, np.uint32), three_columns()])
    split, new_ids = split_cell(stack, (0, 6), (4, 6), slice_index=1)
    assert new_ids == [6]  # above the stack's largest id, 5 on the other slice
    np.testing.assert_array_equal(split[0], stack[0])
    np.testing.assert_array_equal(split[1, :, 6], 0)
    assert components(split[1] == 2) == 1 and components(split[1] == 6) == 1


@pytest.mark.parametrize(
    ("cells", "start", "end", "index", "message"),
    [
        (three_columns(), (-5, -5), (-1, 20), None, "crosses no cell"),
        (three_columns(), (0, 3), (4, 3), None, "crosses no cell"),
        (three_columns(), (0, 6), (2, 6), None, "does not cut cell 2 in two"),
        (three_columns(), (0, 6), (4, 6), 1, "single slice"),
        (np.stack([three_columns()] * 2), (0, 6), (4, 6), None, "name the slice"),
        (np.stack([three_columns()] * 2), (0, 6), (4, 6), 2, "slice 2 is out of range"),
    ],
)
def test_split_refuses(cells, start, end, index, message):
    with pytest.raises(EmsegError, match=message):
        split_cell(cells, start, end, slice_index=index)


def test_training_labels_inside_checked_pixels_only():
    cells = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 0, 0], [3, 3, 3, 3]], np.uint32)
    checked = np.ones(cells.shape, bool)
    checked[3] = False
    labels = training_labels(cells, checked)
    c, u = CELL_VALUE, UNLABELLED_VALUE
    np.testing.assert_array_equal(labels, [[c, 0, c, c], [c, 0, c, c], [0, 0, 0, 0], [u, u, u, u]])
    assert labels.dtype == np.uint8
    assert training_labels(cells[None], checked[None]).shape == (1, 4, 4)


def test_training_labels_refuses_mismatch_and_nothing_checked():
    cells = np.ones((2, 4, 4), np.uint32)
    with pytest.raises(EmsegError, match=r"\(2, 4, 3\).*\(2, 4, 4\)"):
        training_labels(cells, np.ones((2, 4, 3), bool))
    with pytest.raises(EmsegError, match="nothing is marked as checked"):
        training_labels(cells, np.zeros(cells.shape, bool))


def test_checked_slices():
    mask = np.zeros((4, 3, 3), bool)
    mask[0, 1, 1] = mask[2] = True
    assert checked_slices(mask) == [0, 2]
    assert checked_slices(mask[0]) == [0]
    assert checked_slices(mask[1]) == []
