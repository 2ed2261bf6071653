"""emseg.inference.in_memory: output-name checks, streaming writes, clean failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from emseg.errors import EmsegError
from emseg.inference.in_memory import PredictOptions, check_output_names, plan_inputs, predict_file, predict_files, total_tiles
from emseg.inference.inputs import inspect_inputs
from emseg.inference.sliding_window import predict_membrane
from emseg.networks.model_file import ModelConfig
from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION
from emseg.segmentation.measurements import PixelSize

from conftest import synthetic_stack


class _Darkness(torch.nn.Module):
    """A fixed 'model': membrane logit high where the (normalised) image is dark."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -4.0 * x


CONFIG = ModelConfig("unet", {}, dict(DEFAULT_NORMALIZATION), 32)
#: the same 'model', trained (it says) at 4 nm/px
SIZED = ModelConfig("unet", {}, dict(DEFAULT_NORMALIZATION), 32, pixel_size=[50, 4, 4])


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




# ---------------------------------------------------------------- pixel size


def _stack_file(tmp_path: Path, shape: tuple[int, int, int] = (2, 41, 37)) -> Path:
    images, _ = synthetic_stack(*shape, seed=5)
    tifffile.imwrite(tmp_path / "s.tif", images, photometric="minisblack")
    return tmp_path / "s.tif"


def test_an_input_of_another_pixel_size_is_predicted_at_the_models_and_written_on_its_own_grid(tmp_path: Path) -> None:
    items = inspect_inputs([_stack_file(tmp_path)])
    options = PredictOptions(threshold=0.5, pixel_size=PixelSize(8, "nm"))
    (plan,) = plan_inputs(items, SIZED, options)
    assert plan.factors == (2.0, 2.0) and plan.note == "input 8 nm/px, model 4 nm/px: predicted at 2x"
    ticks: list[int] = []
    predict_files(_Darkness(), SIZED, items, tmp_path / "out", options, ticks.append, rescalings=[plan])
    assert sum(ticks) == total_tiles(items, 32, 0.5, [plan]) > total_tiles(items, 32, 0.5)  # tiles of the 82 x 74 model grid
    proba = tifffile.imread(tmp_path / "out" / "s_proba.tif")
    membrane = tifffile.imread(tmp_path / "out" / "s_membrane.tif")
    cells = tifffile.imread(tmp_path / "out" / "s_cells.tif")
    assert proba.shape == membrane.shape == cells.shape == (2, 41, 37) and proba.dtype == np.float32
    np.testing.assert_array_equal(membrane == 255, ~(proba > np.float32(0.5)))
    for page in cells:  # a valid labelling: 1..N, every label a cell of the slice
        assert page.dtype == np.uint32 and sorted(np.unique(page[page > 0])) == list(range(1, page.max() + 1))
    rows = (tmp_path / "out" / "s_cells.csv").read_text().splitlines()
    header = rows[0].split(",")
    first = dict(zip(header, rows[1].split(","), strict=True))
    assert "area_nm2" in header and float(first["area_nm2"]) == pytest.approx(float(first["area_px"]) * 64)  # the input's 8 nm pixels


def test_no_rescale_and_an_unknown_pixel_size_give_todays_outputs(tmp_path: Path) -> None:
    source = _stack_file(tmp_path)
    items = inspect_inputs([source])
    predict_files(_Darkness(), CONFIG, items, tmp_path / "today", PredictOptions(pixel_size=PixelSize(8, "nm")))
    kept = PredictOptions(pixel_size=PixelSize(8, "nm"), rescale=False)
    assert plan_inputs(items, SIZED, kept)[0].note == ""
    predict_files(_Darkness(), SIZED, items, tmp_path / "kept", kept)
    unknown = PredictOptions()
    (plan,) = plan_inputs(items, SIZED, unknown)
    assert not plan.active and plan.note.startswith("input pixel size unknown: assumed the model's 4 nm/px")
    predict_files(_Darkness(), SIZED, items, tmp_path / "unknown", unknown)
    assert "no pixel size" in plan_inputs(items, CONFIG, PredictOptions(pixel_size=PixelSize(8, "nm")))[0].note
    for name in ("s_proba.tif", "s_cells.tif", "s_membrane.tif"):
        today = tifffile.imread(tmp_path / "today" / name)
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "kept" / name), today)
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "unknown" / name), today)
