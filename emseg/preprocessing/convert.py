"""Convert the raw stacks into one lossless PNG per slice, verified by reading every slice back.

The labels are put in emseg's convention on the way
([`canonical_labels`][emseg.preprocessing.labels.canonical_labels]: 0 membrane, 255 cell,
128 unlabelled) with the params' `data.labels`, `data.membrane_value` and `data.unlabelled`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emseg.config.layout import PNG_FOLDERS, RAW_NAMES, slice_name
from emseg.errors import EmsegError
from emseg.io.atomic import staged_directory
from emseg.io.images import read_image, write_png
from emseg.io.stacks import load_stack
from emseg.preprocessing.labels import IMAGE_DTYPES, LabelKind, LabelledSlices, labelled_from_stacks


def stack_to_pngs(stack: np.ndarray | Sequence[np.ndarray], out_dir: Path, origin: str) -> int:
    """Write each slice of `stack` to `out_dir` as a PNG, read it back and compare it; the count of slices.

    Raises:
        EmsegError: A slice is not 8- or 16-bit integer, or does not read back equal.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(stack):
        if image.dtype not in IMAGE_DTYPES:
            raise EmsegError(f"{origin}: pixel type {image.dtype} is not supported (8-bit or 16-bit integer images)")
        path = out_dir / slice_name(index)
        write_png(path, np.ascontiguousarray(image))
        back = read_image(path)[0]
        if back.dtype != image.dtype or not np.array_equal(back, image):
            raise EmsegError(f"{path}: PNG read back differs from slice {index} of {origin}")
    return len(stack)


def convert(
    raw_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    labels: LabelKind = "membrane",
    membrane_value: int | str = "auto",
    unlabelled: int | None = None,
    test_images: bool = True,
) -> dict[str, int]:
    """Turn the stacks of `raw_dir` into the PNG folders of `out_dir`.

    `out_dir` is replaced only when every slice has been written and verified. Without test
    images (`data.test_images: ''`) the test folder is written empty: the evaluate stage has
    no unlabelled slices to predict.

    Args:
        raw_dir: The fetched stacks (`data/raw`), named as `RAW_NAMES` of [`emseg.config.layout`][emseg.config.layout].
        out_dir: The PNG root (`data/png`).
        labels: The kind of labels, `membrane` or `instances` (`data.labels`).
        membrane_value: A mask's membrane value, or `auto` (`data.membrane_value`).
        unlabelled: The label value of unlabelled pixels, or None (`data.unlabelled`).
        test_images: Whether there is a test stack (`data.test_images` not empty); if so, it must be in `raw_dir`.

    Returns:
        The slice count of each PNG folder, keyed by its path under `out_dir`.

    Raises:
        EmsegError: The labels do not match the images or cannot be put in emseg's convention,
            or a stack cannot be stored as PNG.
    """
    return convert_labelled(raw_dir, out_dir, labels, membrane_value, unlabelled, test_images)[0]


def convert_labelled(
    raw_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    labels: LabelKind = "membrane",
    membrane_value: int | str = "auto",
    unlabelled: int | None = None,
    test_images: bool = True,
) -> tuple[dict[str, int], LabelledSlices]:
    """[`convert`][emseg.preprocessing.convert.convert]: the slice counts, and the labelled slices it wrote (for the stage's summary line)."""
    paths = {stack: Path(raw_dir) / name for stack, name in RAW_NAMES.items()}
    data = labelled_from_stacks(load_stack(paths["train_images"]), load_stack(paths["train_labels"]), labels, membrane_value, unlabelled)
    test = load_stack(paths["test_images"]).pixels if test_images else []
    with staged_directory(out_dir) as staging:
        counts = {
            PNG_FOLDERS[stack].as_posix(): stack_to_pngs(slices, staging / PNG_FOLDERS[stack], str(paths[stack]))
            for stack, slices in (("train_images", data.images), ("train_labels", data.labels), ("test_images", test))
        }
    return counts, data
