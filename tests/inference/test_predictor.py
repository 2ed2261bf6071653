"""emseg.inference.predictor: the one inference path, as evaluate and `emseg predict` configure it."""

from __future__ import annotations

import numpy as np
import torch

from emseg.config.params import EvaluateParams
from emseg.inference.predictor import Predictor
from emseg.inference.sliding_window import predict_membrane
from emseg.networks.model_file import ModelConfig
from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION


class _Darkness(torch.nn.Module):
    """A fixed 'model': membrane logit high where the (normalised) image is dark."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -4.0 * x


CONFIG = ModelConfig("unet", {}, dict(DEFAULT_NORMALIZATION), 32)


def test_from_params_takes_the_evaluate_block() -> None:
    params = EvaluateParams(tta=False, overlap=0.25, batch_size=2, amp=False)
    predictor = Predictor.from_params(_Darkness(), CONFIG, params, torch.device("cpu"))
    assert (predictor.overlap, predictor.tta, predictor.batch_size, predictor.amp) == (0.25, False, 2, False)


def test_cell_is_one_minus_the_membrane_map_of_the_sliding_window() -> None:
    images = np.random.default_rng(0).integers(0, 255, size=(2, 40, 36), dtype=np.uint8)
    predictor = Predictor(_Darkness(), CONFIG, tta=True)
    expected = predict_membrane(_Darkness(), images[0], 32, tta=True)
    np.testing.assert_array_equal(predictor.membrane(images[0]), expected)
    np.testing.assert_array_equal(predictor.cell(images[0]), 1 - expected)
    stack = predictor.cell_stack(list(images))
    assert stack.shape == (2, 40, 36) and stack.dtype == np.float32
    prediction, logits = predictor.predict_with_logits(images[1])
    proba = prediction.membrane
    np.testing.assert_array_equal(1 - proba, stack[1])
    assert logits.shape == (1, 1, 40, 36)
