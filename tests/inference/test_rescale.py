"""emseg.inference.rescale: zoom factors, resampling both ways, cells and predictions on the input's grid, the notes."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.inference.rescale import (
    labels_to_input_grid,
    needs_rescaling,
    plan_rescaling,
    prediction_to_input_grid,
    scaled_offsets,
    scaled_shape,
    settings_on_input_grid,
    to_input_grid,
    to_model_grid,
    zoom_factors,
)
from emseg.networks.prediction import Prediction
from emseg.segmentation.measurements import PixelSize


def test_zoom_factors_and_the_tolerance() -> None:
    assert zoom_factors((8.0, 6.0), (4.0, 4.0)) == (2.0, 1.5)
    assert zoom_factors((2.0, 2.0), (4.0, 4.0)) == (0.5, 0.5)
    assert not needs_rescaling((1.009, 0.995)) and needs_rescaling((1.02, 1.0)) and needs_rescaling((1.0, 0.98))
    assert scaled_shape((3, 45, 67), (2.0, 0.5)) == (90, 34) and scaled_shape((1, 1), (0.1, 0.1)) == (1, 1)


@pytest.mark.parametrize("factors", [(1.83, 1.83), (0.5, 0.5), (0.75, 1.3)])
def test_the_round_trip_keeps_shapes_and_values(factors: tuple[float, float]) -> None:
    rows, cols = np.mgrid[0:45, 0:67].astype(np.float32)
    ramp = rows + 2 * cols  # a smooth image: resampling there and back changes it little
    model = to_model_grid(ramp, factors)
    assert model.shape == scaled_shape(ramp.shape, factors) and model.dtype == np.float32
    back = to_input_grid(model, ramp.shape)
    assert back.shape == ramp.shape and back.dtype == np.float32
    inner = (slice(3, -3), slice(3, -3))  # the edges are extended, not extrapolated
    assert np.abs(back[inner] - ramp[inner]).max() < 0.1 * (ramp.max() - ramp.min()) / min(ramp.shape)
    stack = np.stack([model, 2 * model])  # affinities: channels stay apart
    assert to_input_grid(stack, (45, 67)).shape == (2, 45, 67)
    np.testing.assert_allclose(to_input_grid(stack, (45, 67))[1], 2 * back, rtol=1e-5, atol=1e-3)


def test_shrinking_is_anti_aliased() -> None:
    checkerboard = (np.indices((40, 40)).sum(axis=0) % 2).astype(np.float32)  # detail finer than the model's grid
    small = to_model_grid(checkerboard, (0.5, 0.5))
    assert small.shape == (20, 20)
    assert abs(small.mean() - 0.5) < 0.02 and small.std() < 0.1  # averaged to grey, not sub-sampled to one phase


def test_cells_back_on_the_input_grid_are_a_valid_labelling() -> None:
    labels = np.zeros((40, 40), np.uint32)
    labels[2:20, 2:20] = 7
    labels[22:38, 5:35] = 3
    labels[30, 38] = 9  # one pixel: vanishes on a grid twice as coarse
    small = labels_to_input_grid(labels, (20, 20))
    assert small.shape == (20, 20) and small.dtype == np.uint32
    assert sorted(np.unique(small)) == [0, 1, 2]  # renumbered 1..N, the vanished cell dropped
    large = labels_to_input_grid(labels, (73, 81))
    assert large.shape == (73, 81) and sorted(np.unique(large)) == [0, 1, 2, 3]
    assert (large > 0).mean() == pytest.approx((labels > 0).mean(), abs=0.02)


def test_a_prediction_on_the_input_grid_scales_its_offsets() -> None:
    assert scaled_offsets(((-1, 0), (0, -9), (-27, 0)), (2.0, 2.0)) == ((-1, 0), (0, -4), (-14, 0))  # never rounded to 0
    assert scaled_offsets(((-3, 0), (0, -3)), (0.5, 0.5)) == ((-6, 0), (0, -6))
    membrane = np.random.default_rng(0).random((30, 30), dtype=np.float32)
    prediction = Prediction(membrane, np.stack([membrane, membrane]), ((-1, 0), (0, -9)))
    back = prediction_to_input_grid(prediction, (15, 16), (2.0, 2.0))
    assert back.membrane.shape == (15, 16) and back.affinities.shape == (2, 15, 16) and back.offsets == ((-1, 0), (0, -4))
    assert prediction_to_input_grid(Prediction(membrane), (15, 15), (2.0, 2.0)).affinities is None


def test_settings_in_pixels_follow_the_input_grid() -> None:
    settings = {"beta": 0.4, "threshold": 0.3, "sigma_seeds": 1.0, "min_size": 25}
    assert settings_on_input_grid(settings, (2.0, 2.0)) == {"beta": 0.4, "threshold": 0.3, "sigma_seeds": 0.5, "min_size": 6}
    assert settings_on_input_grid({"min_size": 1}, (10.0, 10.0)) == {"min_size": 1}
    assert settings_on_input_grid({}, (2.0, 2.0)) == {}


def test_the_plan_and_its_one_line() -> None:
    plan = plan_rescaling(PixelSize(8, "nm"), (4.0, 4.0))
    assert plan.active and plan.factors == (2.0, 2.0) and plan.note == "input 8 nm/px, model 4 nm/px: predicted at 2x"
    assert plan.model_shape((1, 30, 40)) == (60, 80)
    plan = plan_rescaling(PixelSize(0.0073, "um"), (4.0, 4.0))
    assert plan.note.startswith("input 7.3 nm/px, model 4 nm/px: predicted at 1.8")
    same = plan_rescaling(PixelSize(4.02, "nm"), (4.0, 4.0))
    assert not same.active and same.note.endswith("predicted as is") and same.model_shape((1, 30, 40)) == (30, 40)
    unknown = plan_rescaling(None, (4.0, 4.0))
    assert not unknown.active and "unknown" in unknown.note and "4 nm/px" in unknown.note
    old = plan_rescaling(PixelSize(8, "nm"), None)
    assert not old.active and "no pixel size" in old.note
    off = plan_rescaling(PixelSize(8, "nm"), (4.0, 4.0), enabled=False)
    assert not off.active and off.note == ""
