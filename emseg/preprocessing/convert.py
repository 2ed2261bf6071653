"""Convert TIFF stacks into one lossless PNG per slice, verified by reading every slice back."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emseg.errors import EmsegError
from emseg.io import new_folder, read_image, read_tiff, write_png
from emseg.preprocessing.fetch import check_binary_labels

#: ISBI convention kept on disk: cell interior 255, membrane 0. The model's target is ``label == 0``.
CELL_VALUE = 255
SLICE_PATTERN = "slice_{:03d}.png"
PNG_DTYPES = (np.uint8, np.uint16)


@contextmanager
def staged_directory(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging folder that replaces ``final`` only if the block succeeds."""
    final = Path(final)
    staging = final.with_name(f".{final.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    with new_folder(final.parent):  # nor does a failure leave a new empty parent folder
        staging.mkdir()
        try:
            yield staging
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def slice_name(index: int) -> str:
    return SLICE_PATTERN.format(index)


def to_isbi_labels(labels: np.ndarray, origin: str) -> np.ndarray:
    """Binary labels (0 = membrane, any one positive value = cell) as uint8 0/255."""
    check_binary_labels(labels, origin)
    return np.where(labels > 0, CELL_VALUE, 0).astype(np.uint8)


def stack_to_pngs(stack: np.ndarray, out_dir: Path, origin: str) -> int:
    """Write each slice of ``stack`` to ``out_dir``, read it back and compare; return the count."""
    if stack.dtype not in PNG_DTYPES:
        raise EmsegError(f"{origin}: pixel type {stack.dtype} is not supported (8-bit or 16-bit integer images)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(stack):
        path = out_dir / slice_name(index)
        write_png(path, np.ascontiguousarray(image))
        back = read_image(path)[0]
        if back.dtype != image.dtype or not np.array_equal(back, image):
            raise EmsegError(f"{path}: PNG read back differs from slice {index} of {origin}")
    return len(stack)


def convert(raw_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], raw_names: dict[str, str]) -> dict[str, int]:
    """Turn ``raw_dir``'s three stacks into ``out_dir/{train/images,train/labels,test/images}``."""
    raw = Path(raw_dir)
    images_path, labels_path, test_path = (raw / raw_names[k] for k in ("train_images", "train_labels", "test_images"))
    images, labels, test = read_tiff(images_path), read_tiff(labels_path), read_tiff(test_path)
    if images.shape != labels.shape:
        raise EmsegError(f"{labels_path}: shape {labels.shape} does not match {images_path} shape {images.shape}")
    labels = to_isbi_labels(labels, str(labels_path))
    with staged_directory(out_dir) as staging:
        counts = {
            "train/images": stack_to_pngs(images, staging / "train" / "images", str(images_path)),
            "train/labels": stack_to_pngs(labels, staging / "train" / "labels", str(labels_path)),
            "test/images": stack_to_pngs(test, staging / "test" / "images", str(test_path)),
        }
    return counts
