"""Tests of emseg.segmentation.thinning: membrane to cell maps, Fiji's border thinning, instance labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from emseg.errors import EmsegError
from emseg.segmentation.thinning import instance_labels, membrane_to_cell, thin_borders

from fiji_reference import java_watershed


def test_membrane_to_cell():
    p = np.array([[0.0, 0.25, 1.0]], np.float32)
    out = membrane_to_cell(p)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1.0, 0.75, 0.0]])
    with pytest.raises(EmsegError):
        membrane_to_cell(np.array([1, 2], np.uint8))


def test_thick_border_columns_line_goes_to_the_east_pixel():
    # A 2-px membrane (cols 3-4) between cells (cols 0-2 and 5-6): Fiji's flooding
    # (column-wise FIFO, W/N/E/S) puts the 1-px line on col 4 and gives col 3 to the west cell.
    mask = np.ones((3, 7), bool)
    mask[:, 3:5] = False
    np.testing.assert_array_equal(thin_borders(mask), np.array([[1, 1, 1, 1, 0, 2, 2]] * 3))
    np.testing.assert_array_equal(thin_borders(mask.T.copy()), np.array([[1, 1, 1, 1, 0, 2, 2]] * 3).T)


def test_thin_borders_equals_java_on_random_masks():
    rng = np.random.default_rng(2012)
    for _ in range(400):
        h, w = rng.integers(1, 11, size=2)
        mask = rng.random((h, w)) < rng.uniform(0.2, 0.9)
        np.testing.assert_array_equal(thin_borders(mask), java_watershed(np.where(mask, 0, 255)))


def test_thin_borders_equals_java_on_blobby_masks():
    rng = np.random.default_rng(7)
    for _ in range(12):
        noise = ndimage.gaussian_filter(rng.random((30, 37)), 1.5)
        mask = noise > np.quantile(noise, rng.uniform(0.2, 0.6))
        np.testing.assert_array_equal(thin_borders(mask), java_watershed(np.where(mask, 0, 255)))


def test_thin_borders_uniform_masks_are_one_region():
    assert (thin_borders(np.ones((3, 4), bool)) == 1).all()
    assert (thin_borders(np.zeros((3, 4), bool)) == 1).all()
    with pytest.raises(EmsegError, match="must be 2-D"):
        thin_borders(np.ones((2, 3, 4), bool))


def test_instance_labels_are_the_thinned_cell_regions() -> None:
    mask = np.ones((20, 30), bool)
    mask[:, 10:13] = False  # a 3-px membrane between two cells
    mask[12, 13:] = False  # and a 1-px one splitting the right cell
    labels = instance_labels(mask)
    assert labels.dtype == np.uint32 and labels.shape == mask.shape
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert (labels[mask] > 0).all()  # every cell pixel belongs to a cell
    np.testing.assert_array_equal(labels.astype(np.int64), thin_borders(mask).astype(np.int64))


def test_instance_labels_of_an_all_membrane_slice_hold_no_cell() -> None:
    labels = instance_labels(np.zeros((5, 6), bool))
    assert labels.dtype == np.uint32 and not labels.any()
