from pathlib import Path

import numpy as np
import pytest

from emseg.config.layout import RAW_NAMES, png_folder, slice_name
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
