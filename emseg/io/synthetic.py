"""Synthetic EM-like data (as MONAI's `create_test_image_2d`): Voronoi cells with dark membranes.

For trying emseg without a data set, for the tests and for the benchmarks' quick modes:
[`synthetic_slice`][emseg.io.synthetic.synthetic_slice] and
[`synthetic_stack`][emseg.io.synthetic.synthetic_stack] make images with their ISBI labels,
[`write_isbi_like_source`][emseg.io.synthetic.write_isbi_like_source] a folder shaped like the
ISBI 2012 download, and `TINY_PROFILE` holds the params overrides that run the whole pipeline
on it in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from emseg.config.layout import CELL_VALUE, RAW_NAMES

#: params overrides for a whole pipeline run on :func:`write_isbi_like_source`'s stacks in seconds
TINY_PROFILE: dict[str, Any] = {
    "split": {"test_size": 2, "val_size": 1},
    "augment": {"copies": 1, "preview_samples": 2},
    "model": {
        "unet": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
        "attention_unet": {"channels": [4, 8, 16], "strides": [2, 2]},
    },
    "train": {"steps": 4, "batch_size": 2, "patch_size": 32, "val_every": 2, "log_every": 2},
    "evaluate": {"tta": False, "overlays": 1, "pr_points": 20},
    "cv": {"folds": [0, 1], "val_size": 1, "resamples": 200},
}


def synthetic_slice(height: int, width: int, seed: int, cells: int = 12, dtype: type = np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """An EM-like image and its ISBI label (255 cell, 0 membrane): Voronoi cells, 2-pixel borders, noise.

    Args:
        height: The slice's height, pixels.
        width: The slice's width, pixels.
        seed: The seed of the cells and the noise.
        cells: How many Voronoi cells.
        dtype: The image's integer type (the label is always `uint8`).
    """
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, size=(cells, 2)) * (height, width)
    yy, xx = np.mgrid[0:height, 0:width]
    distances = (yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2
    nearest = np.argmin(distances, axis=-1)
    border = np.zeros((height, width), bool)
    border[:-1] |= nearest[:-1] != nearest[1:]
    border[1:] |= nearest[1:] != nearest[:-1]
    border[:, :-1] |= nearest[:, :-1] != nearest[:, 1:]
    label = np.where(border, 0, CELL_VALUE).astype(np.uint8)
    top = np.iinfo(dtype).max
    image = np.where(border, 0.25, 0.7) + rng.normal(0, 0.05, size=(height, width))
    return np.clip(image * top, 0, top).astype(dtype), label


def synthetic_stack(
    n: int, height: int, width: int, seed: int = 0, dtype: type = np.uint8, cells: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """`n` slices of [`synthetic_slice`][emseg.io.synthetic.synthetic_slice], with seeds `seed`, `seed + 1`, ...

    Returns:
        The images and the labels, as two stacks.
    """
    pairs = [synthetic_slice(height, width, seed + i, cells, dtype) for i in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def write_isbi_like_source(
    folder: str | os.PathLike[str], slices: int = 8, test_slices: int = 3, height: int = 96, width: int = 80
) -> Path:
    """A folder holding the three TIFF stacks of the ISBI 2012 download, synthetic: a `data.source` for the fetch stage.

    Args:
        folder: Where to write them (created if missing).
        slices: The labelled slices.
        test_slices: The unlabelled test slices.
        height: The slices' height, pixels.
        width: The slices' width, pixels.

    Returns:
        `folder`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = synthetic_stack(slices, height, width, seed=1)
    test, _ = synthetic_stack(test_slices, height, width, seed=100)
    for stack, array in (("train_images", images), ("train_labels", labels), ("test_images", test)):
        tifffile.imwrite(folder / RAW_NAMES[stack], array, photometric="minisblack")
    return folder
