"""The converted PNG data set on disk (`data/png/`, `data/augmented/`), read slice by slice.

What lies where is [`emseg.config.layout`][emseg.config.layout]'s to say; this module reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from emseg.config.layout import AUGMENTED_IMAGES, AUGMENTED_LABELS, png_folder, slice_name
from emseg.errors import EmsegError
from emseg.io.images import list_images, read_image


def read_slices(folder: str | os.PathLike[str], names: list[str]) -> list[np.ndarray]:
    """The 2-D slices of the named PNG files of `folder`, in the order given."""
    return [read_image(Path(folder) / name)[0] for name in names]


def count_labelled(png_root: str | os.PathLike[str]) -> int:
    """How many labelled slices the converted data set holds."""
    return len(list_images(png_folder(png_root, "train_images")))


def read_labelled(png_root: str | os.PathLike[str], indices: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The raw images and ISBI labels of the labelled slices with the given indices."""
    names = [slice_name(i) for i in indices]
    return read_slices(png_folder(png_root, "train_images"), names), read_slices(png_folder(png_root, "train_labels"), names)


def read_unlabelled(png_root: str | os.PathLike[str]) -> list[np.ndarray]:
    """Every slice of the unlabelled test volume, in order.

    Raises:
        EmsegError: A gap in the slices' numbering (one line naming the missing file).
    """
    folder = png_folder(png_root, "test_images")
    names = [path.name for path in list_images(folder)]
    expected = [slice_name(i) for i in range(len(names))]
    if names != expected:
        missing = next(name for name in expected if name not in names)
        raise EmsegError(f"{folder / missing}: file not found (the unlabelled slices must be numbered from 0 without gaps)")
    return read_slices(folder, names)


def read_augmented(aug_root: str | os.PathLike[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The images and labels of the augment stage's output folder (empty lists for no copies).

    Raises:
        EmsegError: The folder does not exist.
    """
    root = Path(aug_root)
    if not root.is_dir():  # an empty folder is fine (augment copies: 0), a missing one is not
        raise EmsegError(f"{root}: augmented slices folder not found (the augment stage's --out)")
    names = sorted(p.name for p in (root / AUGMENTED_IMAGES).glob("*.png"))
    return read_slices(root / AUGMENTED_IMAGES, names), read_slices(root / AUGMENTED_LABELS, names)
