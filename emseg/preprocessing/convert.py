"""Convert TIFF stacks into one lossless PNG per slice, verified by reading every slice back."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from emseg.config.layout import CELL_VALUE, PNG_FOLDERS, RAW_NAMES, slice_name
from emseg.errors import EmsegError
from emseg.io.atomic import staged_directory
from emseg.io.images import read_image, read_tiff, write_png
from emseg.preprocessing.fetch import check_binary_labels

PNG_DTYPES = (np.uint8, np.uint16)


def to_isbi_labels(labels: np.ndarray, origin: str) -> np.ndarray:
    """Binary labels (0 = membrane, any one positive value = cell) as `uint8` 0/255."""
    check_binary_labels(labels, origin)
    return np.where(labels > 0, CELL_VALUE, 0).astype(np.uint8)


def stack_to_pngs(stack: np.ndarray, out_dir: Path, origin: str) -> int:
    """Write each slice of `stack` to `out_dir` as a PNG, read it back and compare it; the count of slices.

    Raises:
        EmsegError: The stack is not 8- or 16-bit integer, or a slice does not read back equal.
    """
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


def convert(raw_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Turn the three stacks of `raw_dir` into the PNG folders of `out_dir`.

    `out_dir` is replaced only when every slice has been written and verified.

    Returns:
        The slice count of each PNG folder, keyed by its path under `out_dir`.

    Raises:
        EmsegError: The labels' shape differs from the images', the labels are not binary, or
            a stack cannot be stored as PNG.
    """
    paths = {stack: Path(raw_dir) / name for stack, name in RAW_NAMES.items()}
    stacks = {stack: read_tiff(path) for stack, path in paths.items()}
    images, labels = stacks["train_images"], stacks["train_labels"]
    if images.shape != labels.shape:
        raise EmsegError(f"{paths['train_labels']}: shape {labels.shape} does not match {paths['train_images']} shape {images.shape}")
    stacks["train_labels"] = to_isbi_labels(labels, str(paths["train_labels"]))
    with staged_directory(out_dir) as staging:
        return {
            PNG_FOLDERS[stack].as_posix(): stack_to_pngs(array, staging / PNG_FOLDERS[stack], str(paths[stack]))
            for stack, array in stacks.items()
        }
