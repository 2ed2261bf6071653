"""emseg.visualization: 8-bit display, tints, outlines, overlays and panels."""

from __future__ import annotations

import numpy as np

from emseg.segmentation.thinning import instance_labels
from emseg.visualization import (
    MEMBRANE_RGB,
    OUTLINE_RGB,
    grey_rgb,
    outlines,
    overlay,
    side_by_side,
    stacked,
    tint,
    to_uint8,
)


def test_to_uint8_stretches_other_types() -> None:
    image16 = (np.arange(40 * 50).reshape(40, 50) * 30).astype(np.uint16)
    out = to_uint8(image16, chunk_rows=7)
    assert out.dtype == np.uint8 and out.shape == image16.shape
    assert out.min() == 0 and out.max() == 255 and (np.diff(out.ravel().astype(int)) >= 0).all()
    flat = to_uint8(np.full((5, 5), 3.5, np.float32))
    assert flat.dtype == np.uint8 and (flat == 0).all()
    assert to_uint8(np.eye(4, dtype=bool)).max() == 255
    u8 = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert to_uint8(u8) is u8


def test_tint_blends_only_the_masked_pixels() -> None:
    rgb = grey_rgb(np.full((2, 3), 100, np.uint8))
    mask = np.array([[True, False, False], [False, False, True]])
    tint(rgb, mask, (255, 0, 0), alpha=128)
    assert tuple(rgb[0, 0]) == (177, 50, 50) and tuple(rgb[1, 2]) == (177, 50, 50)
    assert tuple(rgb[0, 1]) == (100, 100, 100)


def test_outlines_are_the_zero_lines_and_label_changes() -> None:
    labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 0, 0]])
    edge = outlines(labels)
    assert edge[2].all() and edge[:2, 2].all() and not edge[:2, :2].any() and not edge[:2, 3].any()
    assert not outlines(np.zeros((3, 3), np.uint32)).any()


def test_overlay_marks_membranes_and_outlines() -> None:
    image = np.full((20, 30), 100, np.uint8)
    mask = np.ones((20, 30), bool)
    mask[:, 10:13] = False
    rgb = overlay(image, ~mask, instance_labels(mask))
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[5, 2]) == (100, 100, 100)  # cell interior: the raw image
    assert tuple(rgb[5, 11]) == OUTLINE_RGB  # the thinned line: an outline
    r, g, b = rgb[5, 10]  # thick membrane beside the line: tinted red
    assert r > 100 and g < 100 and b < 100 and MEMBRANE_RGB[0] == 255


def test_panels_side_by_side_and_stacked_with_white_gaps() -> None:
    a, b = grey_rgb(np.zeros((4, 5), np.uint8)), grey_rgb(np.zeros((4, 3), np.uint8))
    row = side_by_side([a, b], gap=2)
    assert row.shape == (4, 10, 3) and (row[:, 5:7] == 255).all() and (row[:, :5] == 0).all()
    grid = stacked([row, row], gap=1)
    assert grid.shape == (9, 10, 3) and (grid[4] == 255).all()
