"""A loaded model and how to apply it: the one inference path of training validation, evaluate and `emseg predict`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from emseg.config.defaults import OVERLAP, TILE_BATCH
from emseg.config.params import EvaluateParams
from emseg.inference.sliding_window import predict_affinities, predict_membrane, predict_with_logits, predict_with_uncertainty
from emseg.networks.affinities import Offset, boundary_from_affinities
from emseg.networks.model_file import ModelConfig
from emseg.networks.prediction import Prediction
from emseg.segmentation.thinning import membrane_to_cell


@dataclass(frozen=True)
class Predictor:
    """`model` applied by sliding windows of the model's patch size, with its own normalisation.

    A boundary model gives a membrane map; an affinity model (`config.target`) its affinities,
    and a membrane map made from them.

    Args:
        model: The network.
        config: The model file's config: normalisation, patch size, target and offsets.
        overlap: The overlap of neighbouring windows, a fraction of the window.
        tta: Average the 8 flips and rotations of every tile.
        batch_size: Tiles per forward pass.
        device: Where the network runs.
        amp: Allow mixed precision where the device has it (CUDA).
        tile: Another window side than the patch size the model was trained on (the network
            is fully convolutional): larger windows recompute fewer overlapping pixels.
    """

    model: nn.Module
    config: ModelConfig
    overlap: float = OVERLAP
    tta: bool = False
    batch_size: int = TILE_BATCH
    device: torch.device = torch.device("cpu")
    amp: bool = True
    tile: int | None = None

    @property
    def window(self) -> int:
        """The side of the sliding window: `tile`, else the model's training patch size."""
        return self.config.window(self.tile)

    @classmethod
    def from_params(cls, model: nn.Module, config: ModelConfig, params: EvaluateParams, device: torch.device) -> Predictor:
        """The evaluate stage's predictor, as `params.yaml: evaluate` sets it."""
        return cls(model, config, params.overlap, params.tta, params.batch_size, device, params.amp)

    @property
    def offsets(self) -> tuple[Offset, ...] | None:
        """An affinity model's offsets; None for a boundary model."""
        return self.config.offset_tuples()

    def _window_args(self) -> dict:
        return {
            "patch_size": self.window,
            "normalization": self.config.normalization,
            "overlap": self.overlap,
            "tta": self.tta,
            "batch_size": self.batch_size,
            "device": self.device,
            "amp": self.amp,
        }

    def _prediction(self, proba: np.ndarray, uncertainty: np.ndarray | None = None) -> Prediction:
        if self.offsets is None:
            return Prediction(proba, uncertainty=uncertainty)
        return Prediction(boundary_from_affinities(proba), proba, self.offsets, uncertainty)

    def predict(self, image: np.ndarray, progress: Callable[[int], object] | None = None, uncertainty: bool = False) -> Prediction:
        """What the model says about one raw slice: the membrane map, and the affinities of an affinity model.

        With `uncertainty` (which needs `tta`), the variance across the test-time
        augmentations as well ([`Prediction.uncertainty`][emseg.networks.prediction.Prediction]).
        """
        if uncertainty:
            if not self.tta:
                raise ValueError("the uncertainty is the variance across the test-time augmentations: it needs tta")
            settings = {key: value for key, value in self._window_args().items() if key not in ("patch_size", "tta")}
            proba, variance = predict_with_uncertainty(self.model, image, self.window, self.offsets, progress=progress, **settings)
            return self._prediction(proba, variance)
        if self.offsets is None:
            return Prediction(predict_membrane(self.model, image, progress=progress, **self._window_args()))
        return self._prediction(predict_affinities(self.model, image, offsets=self.offsets, progress=progress, **self._window_args()))

    def predict_with_logits(self, image: np.ndarray) -> tuple[Prediction, torch.Tensor]:
        """[`predict`][emseg.inference.predictor.Predictor.predict], and the blended logits (1, C, H, W) of the same pass."""
        proba, logits = predict_with_logits(self.model, image, offsets=self.offsets, **self._window_args())
        return self._prediction(proba), logits

    def membrane(self, image: np.ndarray, progress: Callable[[int], object] | None = None) -> np.ndarray:
        """The membrane probability (`float32`, H x W) of one raw slice."""
        return self.predict(image, progress).membrane

    def cell(self, image: np.ndarray, progress: Callable[[int], object] | None = None) -> np.ndarray:
        """The cell-interior probability (the challenge's convention, high = cell) of one raw slice."""
        return membrane_to_cell(self.membrane(image, progress))

    def cell_stack(self, images: list[np.ndarray]) -> np.ndarray:
        """The cell-interior probability of several slices of one size, as a `float32` stack."""
        return np.stack([self.cell(image) for image in images]).astype(np.float32)
