"""A loaded model and how to apply it: the one inference path of training validation, evaluate and ``emseg predict``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from emseg.defaults import OVERLAP, TILE_BATCH
from emseg.inference.sliding_window import predict_membrane, predict_membrane_and_logits
from emseg.model_file import ModelConfig
from emseg.params import EvaluateParams
from emseg.postprocessing import membrane_to_cell


@dataclass(frozen=True)
class Predictor:
    """``model`` applied by sliding windows of the model's patch size, with its own normalisation.

    ``tta`` averages the 8 flips/rotations of every tile; ``amp`` allows mixed precision
    where the device has it (CUDA).
    """

    model: nn.Module
    config: ModelConfig
    overlap: float = OVERLAP
    tta: bool = False
    batch_size: int = TILE_BATCH
    device: torch.device = torch.device("cpu")
    amp: bool = True

    @classmethod
    def from_params(cls, model: nn.Module, config: ModelConfig, params: EvaluateParams, device: torch.device) -> Predictor:
        """The evaluate stage's predictor, as ``params.yaml: evaluate`` sets it."""
        return cls(model, config, params.overlap, params.tta, params.batch_size, device, params.amp)

    def _window_args(self) -> dict:
        return {
            "patch_size": self.config.patch_size,
            "normalization": self.config.normalization,
            "overlap": self.overlap,
            "tta": self.tta,
            "batch_size": self.batch_size,
            "device": self.device,
            "amp": self.amp,
        }

    def membrane(self, image: np.ndarray, progress: Callable[[int], object] | None = None) -> np.ndarray:
        """Membrane probability (float32, H x W) of one raw slice."""
        return predict_membrane(self.model, image, progress=progress, **self._window_args())

    def membrane_and_logits(self, image: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """The membrane map and the blended logits (1, 1, H, W) of the same pass."""
        return predict_membrane_and_logits(self.model, image, **self._window_args())

    def cell(self, image: np.ndarray, progress: Callable[[int], object] | None = None) -> np.ndarray:
        """Cell-interior probability (the challenge's convention, high = cell) of one raw slice."""
        return membrane_to_cell(self.membrane(image, progress))

    def cell_stack(self, images: list[np.ndarray]) -> np.ndarray:
        """Cell-interior probability of several slices of one size, as a float32 stack."""
        return np.stack([self.cell(image) for image in images]).astype(np.float32)
