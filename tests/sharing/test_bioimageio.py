"""emseg.sharing.bioimageio: what a package says of each model target, and where it may be written.

A whole package, checked by bioimageio.core's own test against `emseg predict`, is
tests/cli/test_export.py's (through `emseg export`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emseg.errors import EmsegError
from emseg.networks.model_file import ModelConfig
from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION
from emseg.sharing.bioimageio import HEADS, export_bioimageio

from conftest import tiny_model_file


def test_each_model_target_has_a_head_and_affinity_channels_are_named_by_offset() -> None:
    assert set(HEADS) == {"boundary", "affinities"}
    config = ModelConfig("unet", {}, dict(DEFAULT_NORMALIZATION), 32, out_channels=3, target="affinities", offsets=[[-1, 0], [0, -1], [-9, 0]])
    assert HEADS["affinities"].channel_names(config) == ["dym1_dx0", "dy0_dxm1", "dym9_dx0"]
    assert not HEADS["affinities"].invert and HEADS["boundary"].invert  # a boundary package outputs the cell probability


@pytest.mark.parametrize(("name", "message"), [("package.tar", "the package is a .zip file"), ("missing/package.zip", "folder .*missing not found")])
def test_a_bad_destination_is_refused_before_anything_is_written(tmp_path: Path, name: str, message: str) -> None:
    model = tiny_model_file(tmp_path / "m.pt")
    with pytest.raises(EmsegError, match=message):
        export_bioimageio(model, tmp_path / name, np.zeros((32, 32), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_a_model_the_package_cannot_describe_is_refused_in_one_line_before_anything_is_written(tmp_path: Path) -> None:
    model = tiny_model_file(tmp_path / "m.pt", context=1)
    with pytest.raises(EmsegError, match=rf"^{tmp_path / 'm.pt'}: the model reads 1 section\(s\) on each side.*not written yet"):
        export_bioimageio(model, tmp_path / "package.zip", np.zeros((32, 32), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
