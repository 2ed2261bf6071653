"""emseg.io.synthetic: EM-like stacks whose labels follow the ISBI convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emseg.config.layout import RAW_NAMES
from emseg.io.images import read_tiff
from emseg.io.synthetic import synthetic_slice, synthetic_stack, write_isbi_like_source
from emseg.preprocessing.fetch import validate_raw


def test_membranes_are_dark_and_labelled_zero() -> None:
    image, label = synthetic_slice(40, 50, seed=1)
    assert image.dtype == np.uint8 and label.dtype == np.uint8 and set(np.unique(label)) == {0, 255}
    assert image[label == 0].mean() < image[label == 255].mean() - 50
    assert 0.05 < (label == 0).mean() < 0.5


def test_stacks_are_seeded_and_take_a_dtype() -> None:
    a, _ = synthetic_stack(2, 20, 30, seed=4, dtype=np.uint16)
    b, _ = synthetic_stack(2, 20, 30, seed=4, dtype=np.uint16)
    assert a.dtype == np.uint16 and a.shape == (2, 20, 30) and np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])


def test_the_isbi_like_source_passes_fetch_validation(tmp_path: Path) -> None:
    source = write_isbi_like_source(tmp_path / "source", slices=4, test_slices=2, height=32, width=24)
    info = validate_raw(*(source / name for name in RAW_NAMES.values()))
    assert info["train_images"].shape == (4, 32, 24) and info["test_images"].shape == (2, 32, 24)
    assert read_tiff(source / RAW_NAMES["train_labels"]).max() == 255
