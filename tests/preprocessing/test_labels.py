"""emseg.preprocessing.labels: membrane masks and instance labels into emseg's convention, sparse labels, and the checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

from emseg.config.layout import CELL_VALUE, UNLABELLED_VALUE
from emseg.errors import EmsegError
from emseg.io.stacks import Stack, VoxelSize
from emseg.preprocessing.labels import canonical_labels, choose_membrane_value, instance_cells, load_labelled, match_slices

# a 1-pixel membrane grid (value 7) around cells (value 3): membranes are the minority
MASK = np.full((2, 8, 8), 3, np.uint8)
MASK[:, ::4, :] = 7
MASK[:, :, ::4] = 7


def test_auto_takes_the_rarer_value_as_membrane() -> None:
    out = canonical_labels(MASK, "m.tif")
    np.testing.assert_array_equal(out, np.where(MASK == 7, 0, CELL_VALUE))
    inverted = np.where(MASK == 7, 0, 9).astype(np.uint8)  # ISBI polarity: 0 membrane, the minority
    np.testing.assert_array_equal(canonical_labels(inverted, "m.tif"), np.where(MASK == 7, 0, CELL_VALUE))
    assert choose_membrane_value(np.array([0, 255]), np.array([5, 5]), "auto", "m.tif") == 0  # a tie: the lower value


def test_a_given_membrane_value_overrides_the_minority() -> None:
    out = canonical_labels(MASK, "m.tif", membrane_value=3)
    np.testing.assert_array_equal(out, np.where(MASK == 3, 0, CELL_VALUE))
    with pytest.raises(EmsegError, match=r"m\.tif: membrane_value 5 is none of the label values 3, 7"):
        canonical_labels(MASK, "m.tif", membrane_value=5)


@pytest.mark.parametrize("given", [1, 255, "auto"])
def test_one_bit_masks_take_1_or_255_for_white(given: int | str) -> None:
    membrane = MASK == 7
    for mask in (membrane, membrane.astype(np.uint8), membrane.astype(np.uint8) * 255):
        np.testing.assert_array_equal(canonical_labels(mask, "m.png", membrane_value=given), np.where(membrane, 0, CELL_VALUE))
    np.testing.assert_array_equal(canonical_labels(membrane, "m.png", membrane_value=0), np.where(membrane, CELL_VALUE, 0))


def test_unlabelled_pixels_and_slices_become_128() -> None:
    labels = MASK.copy()
    labels[1] = 200  # a whole slice nobody labelled
    labels[0, 5:, 5:] = 200
    out = canonical_labels(labels, "m.tif", membrane_value=7, unlabelled=200)
    assert (out[1] == UNLABELLED_VALUE).all() and (out[0, 5:, 5:] == UNLABELLED_VALUE).all()
    np.testing.assert_array_equal(out[0, :5, :5], np.where(MASK[0, :5, :5] == 7, 0, CELL_VALUE))
    np.testing.assert_array_equal(canonical_labels(MASK, "m.tif", unlabelled=200), canonical_labels(MASK, "m.tif"))  # absent: fine


@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        (np.zeros((2, 4, 4), np.uint8), {}, r"m\.tif: labels hold one value only \(0\): no membrane/cell contrast"),
        (np.where(MASK == 7, 0, 9), {"unlabelled": 9}, r"m\.tif: labels hold one value only besides the unlabelled value \(0\)"),
        (np.full((2, 4, 4), 9), {"unlabelled": 9}, r"m\.tif: every pixel is unlabelled \(9\)"),
        (np.arange(16).reshape(1, 4, 4) % 3, {}, r"m\.tif: labels must be binary .*found values 0, 1, 2; for one integer per cell set labels: instances"),
        (MASK.astype(np.float32), {"kind": "instances"}, r"m\.tif: instance labels must be integers"),
        (MASK, {"kind": "cells"}, r"labels kind 'cells'"),
        (MASK, {"membrane_value": "3"}, r"membrane_value '3': use an integer or auto"),
    ],
)
def test_labels_that_cannot_be_converted_are_one_line(labels: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(EmsegError, match=message) as info:
        canonical_labels(labels, "m.tif", **kwargs)
    assert "\n" not in str(info.value)


def _touching_cells() -> np.ndarray:
    """Four cells that touch along straight and stepped borders, a background strip and one cell alone."""
    ids = np.zeros((1, 12, 12), np.int32)
    ids[0, :6, :6], ids[0, :6, 6:], ids[0, 6:, :6], ids[0, 6:, 6:10] = 1, 2, 3, 4
    ids[0, 3:6, 4:6] = 3  # a step in the border between 1 and 3
    ids[0, 10:, 10:] = 9  # beside 4, and background beside it
    ids[0, 6:10, 10:] = 0
    return ids


def test_touching_instances_never_join_once_their_borders_are_membrane() -> None:
    ids = _touching_cells()
    out = canonical_labels(ids, "cells.tif", kind="instances")
    components, count = ndimage.label(out[0] == CELL_VALUE)  # 4-connectivity
    assert count == 5
    for component in range(1, count + 1):
        assert len(np.unique(ids[0][components == component])) == 1  # each component is part of one cell
    assert (out[0][ids[0] == 0] == 0).all()  # background stays membrane


def test_a_border_between_two_cells_costs_one_pixel() -> None:
    ids = np.ones((1, 4, 6), np.int64)
    ids[0, :, 3:] = 2
    cells = instance_cells(ids)
    assert (~cells).sum() == 4 and not cells[0, :, 2].any() and cells[0, :, 3].all()


def test_instances_with_unlabelled_pixels() -> None:
    ids = _touching_cells()
    ids[0, :, :2] = -1  # nobody labelled these
    out = canonical_labels(ids, "cells.tif", kind="instances", unlabelled=-1)
    assert (out[0, :, :2] == UNLABELLED_VALUE).all()
    assert out[0, 0, 2] == CELL_VALUE  # beside unlabelled pixels: no border
    only_cells = np.where(ids == 0, 5, ids)  # 0 is the unlabelled value: no background at all
    only_cells[0, :, :2] = 0
    out = canonical_labels(only_cells, "cells.tif", kind="instances", unlabelled=0)
    assert (out[0, :, :2] == UNLABELLED_VALUE).all() and (out == 0).any()


def test_instances_that_never_touch_give_no_membrane_and_are_refused() -> None:
    ids = np.full((1, 4, 4), 9)
    ids[0, :2, :2], ids[0, 2:, 2:] = 1, 2
    with pytest.raises(EmsegError, match=r"c\.tif: the labels give no membrane pixel once converted"):
        canonical_labels(ids, "c.tif", kind="instances", unlabelled=9)


def _stack(spec: str, pixels: np.ndarray, size: VoxelSize | None = None, files: tuple[str, ...] | None = None) -> Stack:
    return Stack(spec, pixels, size, files)


def test_folders_match_by_name_suffix_aside_and_are_reordered() -> None:
    images = _stack("raw", np.arange(2)[:, None, None] * np.ones((2, 3, 3), np.uint8), files=("00.tif", "01.tif"))
    labels = _stack("gt", np.arange(2)[::-1, None, None] * np.ones((2, 3, 3), np.uint8), files=("01.png", "00.tif"))
    matched = match_slices(images, labels)
    assert matched.slice_files == ("00.tif", "01.png")
    np.testing.assert_array_equal(matched.pixels, images.pixels)
    with pytest.raises(EmsegError, match=r"gt: label files 02\.png match no image in raw"):
        match_slices(images, _stack("gt", labels.pixels, files=("00.png", "02.png")))
    with pytest.raises(EmsegError, match=r"gt: no label file for images 01\.tif of raw"):
        match_slices(images, _stack("gt", labels.pixels[:1], files=("00.png",)))


def test_shapes_and_pixel_sizes_must_agree() -> None:
    images = _stack("raw.tif", np.zeros((2, 4, 4), np.uint8), VoxelSize(4.0, 4.0))
    with pytest.raises(EmsegError, match=r"gt\.tif: shape \(2, 4, 3\) does not match raw\.tif shape \(2, 4, 4\)"):
        match_slices(images, _stack("gt.tif", np.zeros((2, 4, 3), np.uint8)))
    with pytest.raises(EmsegError, match=r"gt\.tif: pixel size 5 nm disagrees with raw\.tif's 4 nm"):
        match_slices(images, _stack("gt.tif", np.zeros((2, 4, 4), np.uint8), VoxelSize(5.0, 5.0)))
    match_slices(images, _stack("gt.tif", np.zeros((2, 4, 4), np.uint8)))  # one size only: nothing to disagree


def _folders(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    images = (np.arange(2 * 8 * 8) % 251).astype(np.uint8).reshape(2, 8, 8)
    for index in range(2):
        (tmp_path / "raw").mkdir(exist_ok=True)
        tifffile.imwrite(tmp_path / "raw" / f"{index:02d}.tif", images[index], resolution=(1 / 0.0046, 1 / 0.0046), imagej=True,
                         metadata={"unit": "um"})
        (tmp_path / "membranes").mkdir(exist_ok=True)
        Image.fromarray(MASK[index] == 7).save(tmp_path / "membranes" / f"{index:02d}.png")  # 1-bit, True = membrane
    return tmp_path / "raw", tmp_path / "membranes", images


def test_load_labelled_from_folders(tmp_path: Path) -> None:
    raw, membranes, images = _folders(tmp_path)
    data = load_labelled(raw, membranes)
    assert [image.dtype for image in data.images] == [np.uint8, np.uint8]
    np.testing.assert_array_equal(np.stack(data.images), images)
    np.testing.assert_array_equal(np.stack(data.labels), np.where(MASK == 7, 0, CELL_VALUE))
    assert data.membrane_value == 1 and data.pixel_size == VoxelSize(4.6, 4.6) and data.pixel_size_from == "files"
    assert data.fractions()["membrane"] == pytest.approx((MASK == 7).mean())
    assert "2 labelled slices of 8x8: membrane 43.8%" in data.summary()
    given = load_labelled(raw, membranes, pixel_size=[50, 4, 4])
    assert given.pixel_size == VoxelSize(4.0, 4.0, 50.0) and given.pixel_size_from == "given"


def test_load_labelled_refuses_float_images(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "raw.tif", np.zeros((2, 8, 8), np.float32))
    tifffile.imwrite(tmp_path / "gt.tif", MASK)
    with pytest.raises(EmsegError, match=r"raw\.tif: pixel type float32 is not supported"):
        load_labelled(tmp_path / "raw.tif", tmp_path / "gt.tif")
    tifffile.imwrite(tmp_path / "raw.tif", np.zeros((2, 8, 8), np.uint8))
    data = load_labelled(tmp_path / "raw.tif", tmp_path / "gt.tif")
    assert data.pixel_size is None and data.pixel_size_from is None and data.membrane_value == 7
