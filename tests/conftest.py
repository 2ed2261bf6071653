"""Shared fixtures: tiny synthetic EM-like stacks (Voronoi cells with dark membranes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import tifffile

REPO_ROOT = Path(__file__).resolve().parents[1]
ISBI_DIR = REPO_ROOT.parent / "shared" / "isbi2012"


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ (not a package) as a module, e.g. ``load_benchmark("arch_table")``."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: a MONAI UNet small enough for unit tests (about 7 k parameters)
TINY_UNET = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}


def synthetic_slice(height: int, width: int, seed: int, cells: int = 12, dtype=np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """An EM-like image and its ISBI label (255 cell, 0 membrane): Voronoi cells, 2-px borders."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, size=(cells, 2)) * (height, width)
    yy, xx = np.mgrid[0:height, 0:width]
    distances = (yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2
    nearest = np.argmin(distances, axis=-1)
    border = np.zeros((height, width), bool)
    border[:-1] |= nearest[:-1] != nearest[1:]
    border[1:] |= nearest[1:] != nearest[:-1]
    border[:, :-1] |= nearest[:, :-1] != nearest[:, 1:]
    label = np.where(border, 0, 255).astype(np.uint8)
    top = np.iinfo(dtype).max
    image = np.where(border, 0.25, 0.7) + rng.normal(0, 0.05, size=(height, width))
    image = np.clip(image * top, 0, top).astype(dtype)
    return image, label


def synthetic_stack(n: int, height: int, width: int, seed: int = 0, dtype=np.uint8) -> tuple[np.ndarray, np.ndarray]:
    pairs = [synthetic_slice(height, width, seed + i, dtype=dtype) for i in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


@pytest.fixture
def isbi_like_source(tmp_path: Path) -> Path:
    """A folder with train-volume/train-labels/test-volume TIFFs: 8 slices of 96x80."""
    source = tmp_path / "source"
    source.mkdir()
    images, labels = synthetic_stack(8, 96, 80, seed=1)
    test, _ = synthetic_stack(3, 96, 80, seed=100)
    tifffile.imwrite(source / "train-volume.tif", images, photometric="minisblack")
    tifffile.imwrite(source / "train-labels.tif", labels, photometric="minisblack")
    tifffile.imwrite(source / "test-volume.tif", test, photometric="minisblack")
    return source
