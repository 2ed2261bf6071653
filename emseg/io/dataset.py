"""The converted PNG data set on disk (`data/png/`, `data/augmented/`), read slice by slice.

What lies where is [`emseg.config.layout`][emseg.config.layout]'s to say; this module reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from emseg.config.layout import AUGMENTED_CONTEXT, AUGMENTED_IMAGES, AUGMENTED_LABELS, context_name, png_folder, slice_name
from emseg.errors import EmsegError
from emseg.io.images import list_images, read_image
from emseg.io.sections import neighbour_indices, neighbour_offsets, with_neighbours


def read_slices(folder: str | os.PathLike[str], names: list[str]) -> list[np.ndarray]:
    """The 2-D slices of the named PNG files of `folder`, in the order given."""
    return [read_image(Path(folder) / name)[0] for name in names]


def count_labelled(png_root: str | os.PathLike[str]) -> int:
    """How many labelled slices the converted data set holds."""
    return len(list_images(png_folder(png_root, "train_images")))


def read_labelled(png_root: str | os.PathLike[str], indices: list[int], context: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The raw images and ISBI labels of the labelled slices with the given indices.

    With `context`, each image comes with its `context` sections on each side of the labelled
    stack (`(2 * context + 1, H, W)`, [`with_neighbours`][emseg.io.sections.with_neighbours]'s
    layout), whichever part of the split they belong to: a neighbour's raw pixels are input,
    never a label.
    """
    names = [slice_name(i) for i in indices]
    labels = read_slices(png_folder(png_root, "train_labels"), names)
    folder = png_folder(png_root, "train_images")
    if not context:
        return read_slices(folder, names), labels
    count = count_labelled(png_root)
    wanted = {j for i in indices for j in neighbour_indices(i, count, context)}
    read = dict(zip(sorted(wanted), read_slices(folder, [slice_name(j) for j in sorted(wanted)]), strict=True))
    return [np.stack([read[j] for j in neighbour_indices(i, count, context)]) for i in indices], labels


def read_unlabelled(png_root: str | os.PathLike[str], context: int = 0) -> list[np.ndarray]:
    """Every slice of the unlabelled test volume, in order; with `context`, each with its sections (2k + 1, H, W) of that volume.

    Raises:
        EmsegError: A gap in the slices' numbering (one line naming the missing file).
    """
    folder = png_folder(png_root, "test_images")
    names = [path.name for path in list_images(folder)]
    expected = [slice_name(i) for i in range(len(names))]
    if names != expected:
        missing = next(name for name in expected if name not in names)
        raise EmsegError(f"{folder / missing}: file not found (the unlabelled slices must be numbered from 0 without gaps)")
    slices = read_slices(folder, names)
    return [with_neighbours(slices, i, context) for i in range(len(slices))] if context else slices


def read_augmented(aug_root: str | os.PathLike[str], context: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The images and labels of the augment stage's output folder (empty lists for no copies).

    With `context`, each image comes with its neighbouring sections from `context/`, deformed
    with it (`(2 * context + 1, H, W)`).

    Raises:
        EmsegError: The folder does not exist, or a copy's neighbour is missing (the set was
            augmented for another `model.context`).
    """
    root = Path(aug_root)
    if not root.is_dir():  # an empty folder is fine (augment copies: 0), a missing one is not
        raise EmsegError(f"{root}: augmented slices folder not found (the augment stage's --out)")
    names = sorted(p.name for p in (root / AUGMENTED_IMAGES).glob("*.png"))
    images, labels = read_slices(root / AUGMENTED_IMAGES, names), read_slices(root / AUGMENTED_LABELS, names)
    if not context:
        return images, labels
    stacks = []
    for name, image in zip(names, images, strict=True):
        around = {}
        for offset in neighbour_offsets(context):
            path = root / AUGMENTED_CONTEXT / context_name(name, offset)
            if not path.is_file():
                raise EmsegError(f"{path}: file not found (augmented without the neighbouring sections model.context {context} reads)")
            around[offset] = read_image(path)[0]
        stacks.append(np.stack([image if d == 0 else around[d] for d in range(-context, context + 1)]))
    return stacks, labels
