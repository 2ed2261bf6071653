"""emseg.config.layout: the names under data/, and the params defaults that follow from them."""

from __future__ import annotations

from pathlib import Path

from emseg.config.layout import PNG_FOLDERS, RAW_NAMES, STACKS, augmented_name, png_folder, slice_name
from emseg.config.params import DataParams


def test_names_sort_in_slice_order() -> None:
    names = [slice_name(i) for i in (0, 9, 10, 100)]
    assert names == sorted(names) == ["slice_000.png", "slice_009.png", "slice_010.png", "slice_100.png"]
    assert augmented_name(3, 1) == "slice_003_aug_01.png" and augmented_name(3, 1) > slice_name(3)


def test_every_stack_has_one_raw_name_and_one_png_folder() -> None:
    assert tuple(RAW_NAMES) == tuple(PNG_FOLDERS) == STACKS
    assert len(set(RAW_NAMES.values())) == len(set(PNG_FOLDERS.values())) == 3
    assert png_folder("data/png", "test_images") == Path("data/png/test/images")


def test_the_source_names_default_to_the_raw_names() -> None:
    assert DataParams().source_names() == RAW_NAMES
    assert DataParams(train_images="vol.tif").source_names()["train_images"] == "vol.tif"
