"""emseg.inference.in_memory: output-name checks, streaming writes, clean failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from emseg.errors import EmsegError
from emseg.inference.in_memory import PredictOptions, check_output_names, predict_file, predict_files, total_tiles
from emseg.inference.inputs import inspect_inputs
from emseg.inference.sliding_window import predict_membrane
from emseg.networks.model_file import ModelConfig
from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION

from conftest import synthetic_stack


class _Darkness(torch.nn.Module):
    """A fixed 'model': membrane logit high where the (normalised) image is dark."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -4.0 * x


CONFIG = ModelConfig("unet", {}, dict(DEFAULT_NORMALIZATION), 32)


def test_output_name_clashes_are_refused(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / sub / "x.png")
    items = inspect_inputs([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"])
    with pytest.raises(EmsegError, match="would both write"):
        check_output_names(items, tmp_path / "out", ("proba",))
    check_output_names(items[:1], tmp_path / "out", ("proba",))
    # an output landing on an input file
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a" / "x_overlay.png")
    items = inspect_inputs([tmp_path / "a" / "x.png", tmp_path / "a" / "x_overlay.png"])
    with pytest.raises(EmsegError, match="would overwrite an input"):
        check_output_names(items, tmp_path / "a", ("overlay",))


# ---------------------------------------------------------------- per-file job


def test_predict_file_streams_a_stack(tmp_path: Path) -> None:
    images, _ = synthetic_stack(3, 40, 36, seed=4)
    tifffile.imwrite(tmp_path / "s.tif", images, photometric="minisblack")
    (item,) = inspect_inputs([tmp_path / "s.tif"])
    ticks: list[int] = []
    options = PredictOptions(threshold=0.4)
    written, _ = predict_file(_Darkness(), CONFIG, item, tmp_path / "out", options, ticks.append)
    assert sorted(p.name for p in written) == ["s_cells.csv", "s_cells.tif", "s_cells_summary.csv", "s_membrane.tif", "s_overlay.png", "s_proba.tif"]
    assert sum(ticks) == total_tiles([item], 32, 0.5)
    proba = tifffile.imread(tmp_path / "out" / "s_proba.tif")
    membrane = tifffile.imread(tmp_path / "out" / "s_membrane.tif")
    cells = tifffile.imread(tmp_path / "out" / "s_cells.tif")
    assert proba.shape == membrane.shape == cells.shape == images.shape
    np.testing.assert_array_equal(membrane == 255, ~(proba > np.float32(0.4)))
    for i in range(3):
        expected = predict_membrane(_Darkness(), images[i], 32)
        np.testing.assert_allclose(proba[i], 1 - expected, atol=1e-6)
    # dark (membrane) pixels get a low cell probability
    assert proba[images < 90].mean() < proba[images > 150].mean()
    assert not list((tmp_path / "out").glob(".*"))  # no temp files left


class _FailsOnSecondSlice(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("boom")
        return -x


def test_a_failure_mid_stack_leaves_no_file(tmp_path: Path) -> None:
    images, _ = synthetic_stack(3, 24, 24, seed=2)
    tifffile.imwrite(tmp_path / "s.tif", images, photometric="minisblack")
    items = inspect_inputs([tmp_path / "s.tif"])
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        predict_files(_FailsOnSecondSlice(), CONFIG, items, out, PredictOptions())
    assert not out.exists() or not any(out.iterdir())


def test_options_are_checked() -> None:
    for bad in (dict(outputs=("proba", "labels")), dict(outputs=()), dict(threshold=1.5), dict(overlap=1.0), dict(batch_size=0)):
        with pytest.raises(EmsegError):
            PredictOptions(**bad)  # type: ignore[arg-type]


