"""emseg.networks.prediction: one slice's prediction, as every cell method and scorer takes it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from emseg.config.defaults import DEFAULT_OFFSETS
from emseg.networks.affinities import affinity_targets, boundary_from_affinities
from emseg.networks.prediction import Prediction


def test_a_boundary_models_prediction_is_its_membrane_map_alone() -> None:
    prediction = Prediction(np.zeros((4, 4), np.float32))
    assert prediction.affinities is None and prediction.offsets is None


def test_an_affinity_models_prediction_carries_a_boundary_map_made_of_its_nearest_neighbours() -> None:
    label = np.full((40, 40), 255, np.uint8)
    label[:, 20] = 0
    affinities, _ = affinity_targets(label, DEFAULT_OFFSETS)
    prediction = Prediction(boundary_from_affinities(affinities), affinities, DEFAULT_OFFSETS)
    assert prediction.affinities.shape[0] == len(prediction.offsets) and prediction.membrane.shape == label.shape


def test_a_prediction_cannot_be_reassigned() -> None:
    """Tuning hands the same prediction to every setting of a grid: none of them may swap its maps."""
    prediction = Prediction(np.zeros((2, 2), np.float32))
    with pytest.raises(dataclasses.FrozenInstanceError):
        prediction.membrane = np.ones((2, 2), np.float32)  # type: ignore[misc]
