from pathlib import Path

import numpy as np
import pytest

from emseg.config.layout import CELL_VALUE, RAW_NAMES, UNLABELLED_VALUE, png_folder, slice_name
from emseg.errors import EmsegError
from emseg.io.images import read_image
from emseg.preprocessing.convert import convert

from conftest import synthetic_stack, tif


def _write_raw(folder: Path, images: np.ndarray, labels: np.ndarray, test: np.ndarray) -> Path:
    for stack, array in (("train_images", images), ("train_labels", labels), ("test_images", test)):
        tif(folder / RAW_NAMES[stack], array)
    return folder


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_convert_is_lossless_and_keeps_bit_depth(tmp_path: Path, dtype) -> None:
    images, labels = synthetic_stack(3, 37, 53, dtype=dtype)  # odd, non-square
    raw = _write_raw(tmp_path / "raw", images, labels, images[:2])
    counts = convert(raw, tmp_path / "png")
    assert counts == {"train/images": 3, "train/labels": 3, "test/images": 2}
    for index in range(3):
        back = read_image(png_folder(tmp_path / "png", "train_images") / slice_name(index))[0]
        assert back.dtype == dtype
        np.testing.assert_array_equal(back, images[index])
        label = read_image(png_folder(tmp_path / "png", "train_labels") / slice_name(index))[0]
        np.testing.assert_array_equal(label, labels[index])


def test_single_page_tiff_and_01_labels(tmp_path: Path) -> None:
    images, labels = synthetic_stack(1, 20, 24)
    raw = _write_raw(tmp_path / "raw", images[0], (labels[0] > 0).astype(np.uint8), images[0])
    convert(raw, tmp_path / "png")
    label = read_image(png_folder(tmp_path / "png", "train_labels") / slice_name(0))[0]
    assert set(np.unique(label)) == {0, 255}  # ISBI convention on disk


def test_float_images_are_refused_without_output(tmp_path: Path) -> None:
    images, labels = synthetic_stack(2, 16, 16)
    raw = _write_raw(tmp_path / "raw", images.astype(np.float32), labels, images)
    with pytest.raises(EmsegError, match="pixel type float32"):
        convert(raw, tmp_path / "png")
    assert not (tmp_path / "png").exists()


def test_no_test_stack_writes_an_empty_test_folder(tmp_path: Path) -> None:
    images, labels = synthetic_stack(2, 16, 16)
    raw = tmp_path / "raw"
    tif(raw / RAW_NAMES["train_images"], images)
    tif(raw / RAW_NAMES["train_labels"], labels)
    with pytest.raises(EmsegError, match=r"test-volume\.tif: no such file"):
        convert(raw, tmp_path / "png")  # a test stack is expected unless told otherwise
    counts = convert(raw, tmp_path / "png", test_images=False)
    assert counts == {"train/images": 2, "train/labels": 2, "test/images": 0}
    assert png_folder(tmp_path / "png", "test_images").is_dir() and not any(png_folder(tmp_path / "png", "test_images").iterdir())


def test_membrane_value_instances_and_unlabelled_reach_the_pngs(tmp_path: Path) -> None:
    images, labels = synthetic_stack(2, 20, 24)
    membrane = labels == 0
    inverted = np.where(membrane, 1, 0).astype(np.uint8)  # VNC polarity: 1 = membrane
    inverted[1] = 7  # a slice nobody labelled
    raw = _write_raw(tmp_path / "raw", images, inverted, images)
    convert(raw, tmp_path / "png", membrane_value=1, unlabelled=7)
    label = read_image(png_folder(tmp_path / "png", "train_labels") / slice_name(0))[0]
    np.testing.assert_array_equal(label, np.where(membrane[0], 0, CELL_VALUE))
    assert (read_image(png_folder(tmp_path / "png", "train_labels") / slice_name(1))[0] == UNLABELLED_VALUE).all()

    instances = np.zeros((1, 6, 6), np.uint16)
    instances[0, :, 3:] = 2
    instances[0, :, :3] = 1
    instances[0, 0] = 0
    raw = _write_raw(tmp_path / "raw2", images[:1, :6, :6], instances, images[:1])
    convert(raw, tmp_path / "png2", labels="instances")
    label = read_image(png_folder(tmp_path / "png2", "train_labels") / slice_name(0))[0]
    assert (label[0] == 0).all() and (label[1:, 2] == 0).all() and (label[1:, 3] == CELL_VALUE).all()


def test_labels_that_cannot_be_converted_leave_no_output(tmp_path: Path) -> None:
    images, labels = synthetic_stack(2, 16, 16)
    raw = _write_raw(tmp_path / "raw", images, np.zeros_like(labels), images)
    with pytest.raises(EmsegError, match=r"raw/train-labels\.tif: labels hold one value only"):
        convert(raw, tmp_path / "png")
    assert not (tmp_path / "png").exists()
