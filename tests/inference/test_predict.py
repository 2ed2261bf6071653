"""Tests of the ``emseg predict`` library: inputs, instance labels, overlay, streaming writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from emseg.errors import EmsegError
from emseg.evaluation.metrics import thin_borders
from emseg.inference.predict import (
    PredictOptions,
    check_output_names,
    discover_inputs,
    display_uint8,
    inspect_inputs,
    instance_labels,
    output_paths,
    overlay,
    predict_file,
    predict_files,
    total_tiles,
)
from emseg.inference.sliding_window import TilePredictor, count_tiles, predict_membrane
from emseg.model_file import ModelConfig
from emseg.normalization import DEFAULT_NORMALIZATION

from conftest import synthetic_slice, synthetic_stack


class _Darkness(torch.nn.Module):
    """A fixed 'model': membrane logit high where the (normalised) image is dark."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -4.0 * x


CONFIG = ModelConfig("unet", {}, dict(DEFAULT_NORMALIZATION), 32)


# ---------------------------------------------------------------- tile counting / progress


@pytest.mark.parametrize("shape", [(64, 64), (67, 45), (10, 9), (130, 300), (32, 33)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_count_tiles_equals_the_tiles_the_predictor_sees(shape, overlap) -> None:
    seen: list[int] = []
    image = np.random.default_rng(0).integers(0, 255, size=shape, dtype=np.uint8)
    predict_membrane(_Darkness(), image, 32, overlap=overlap, batch_size=3, progress=seen.append)
    assert sum(seen) == count_tiles(shape, 32, overlap)
    assert all(n <= 3 for n in seen)


def test_progress_hook_changes_nothing_and_counts_tiles_once_with_tta() -> None:
    image = np.random.default_rng(2).integers(0, 255, size=(50, 70), dtype=np.uint8)
    seen: list[int] = []
    plain = predict_membrane(_Darkness(), image, 32, tta=True)
    hooked = predict_membrane(_Darkness(), image, 32, tta=True, progress=seen.append)
    np.testing.assert_array_equal(plain, hooked)
    assert sum(seen) == count_tiles(image.shape, 32, 0.5)
    # the positional signature is unchanged
    TilePredictor(_Darkness(), False, False)(torch.zeros(1, 1, 8, 8))


# ---------------------------------------------------------------- instance labels and overlay


def test_instance_labels_are_the_thinned_cell_regions() -> None:
    mask = np.ones((20, 30), bool)
    mask[:, 10:13] = False  # a 3-px membrane between two cells
    mask[12, 13:] = False  # and a 1-px one splitting the right cell
    labels = instance_labels(mask)
    assert labels.dtype == np.uint32 and labels.shape == mask.shape
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert (labels[mask] > 0).all()  # every cell pixel belongs to a cell
    np.testing.assert_array_equal(labels.astype(np.int64), thin_borders(mask).astype(np.int64))
    # the thick membrane is thinned to its middle line (Fiji floods the T junction into a cell)
    assert (np.delete(labels[:, 11], 12) == 0).all() and (labels[:, 10] > 0).all()


def test_instance_labels_of_no_cells_and_all_cells() -> None:
    assert not instance_labels(np.zeros((9, 7), bool)).any()
    assert (instance_labels(np.ones((9, 7), bool)) == 1).all()


def test_display_uint8_stretches_other_types() -> None:
    image16 = (np.arange(40 * 50).reshape(40, 50) * 30).astype(np.uint16)
    out = display_uint8(image16, chunk_rows=7)
    assert out.dtype == np.uint8 and out.shape == image16.shape
    assert out.min() == 0 and out.max() == 255 and (np.diff(out.ravel().astype(int)) >= 0).all()
    flat = display_uint8(np.full((5, 5), 3.5, np.float32))
    assert flat.dtype == np.uint8 and (flat == 0).all()
    assert display_uint8(np.eye(4, dtype=bool)).max() == 255
    u8 = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert display_uint8(u8) is u8


def test_overlay_marks_membranes_and_outlines() -> None:
    image = np.full((20, 30), 100, np.uint8)
    mask = np.ones((20, 30), bool)
    mask[:, 10:13] = False
    labels = instance_labels(mask)
    rgb = overlay(image, ~mask, labels)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[5, 2]) == (100, 100, 100)  # cell interior: the raw image
    assert tuple(rgb[5, 11]) == (255, 225, 0)  # the thinned line: an outline
    r, g, b = rgb[5, 10]  # thick membrane beside the line: tinted red
    assert r > 100 and g < 100 and b < 100


# ---------------------------------------------------------------- inputs and names


def test_folders_expand_to_their_image_files(tmp_path: Path) -> None:
    folder = tmp_path / "slices"
    folder.mkdir()
    for name in ("b.png", "a.tif", "notes.txt"):
        (folder / name).write_bytes(b"")
    single = tmp_path / "c.jpg"
    assert discover_inputs([folder, single]) == [folder / "a.tif", folder / "b.png", single]
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmsegError, match="empty: folder holds no image files"):
        discover_inputs([tmp_path / "empty"])


def test_inspect_reads_flags_colour_and_refuses_non_finite(tmp_path: Path) -> None:
    grey, _ = synthetic_slice(20, 24, 0)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
    items = inspect_inputs([tmp_path / "grey.png", tmp_path / "rgb.png"], cache_bytes=grey.nbytes)
    assert [item.colour for item in items] == [False, True]
    assert [item.shape for item in items] == [(1, 20, 24)] * 2
    assert items[0].array is not None and items[1].array is None  # over the cache budget: read again later
    np.testing.assert_array_equal(items[1].read()[0], items[0].read()[0])
    bad = np.ones((8, 8), np.float32)
    bad[2, 3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", bad)
    with pytest.raises(EmsegError, match="nan.tif: image contains NaN"):
        inspect_inputs([tmp_path / "nan.tif"])


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
    written = predict_file(_Darkness(), CONFIG, item, tmp_path / "out", options, ticks.append)
    assert sorted(p.name for p in written) == ["s_cells.tif", "s_membrane.tif", "s_overlay.png", "s_proba.tif"]
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


def test_output_paths_follow_the_input_kind(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((5, 6), np.uint8))
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((2, 5, 6), np.uint8))
    one, two = inspect_inputs([tmp_path / "one.tif", tmp_path / "two.tif"])
    assert output_paths(one, tmp_path, ("mask",))["mask"].name == "one_membrane.png"
    assert output_paths(two, tmp_path, ("mask", "proba")) == {
        "proba": tmp_path / "two_proba.tif",
        "mask": tmp_path / "two_membrane.tif",
    }
