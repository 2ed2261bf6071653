"""The one inference path: normalise, sliding windows with Gaussian blending, optional 8x TTA.

Used by the training validation, the evaluate stage and ``emseg predict``. Test-time
augmentation is applied per tile batch (the 8 flips/rotations of each tile, averaged
before blending), so memory grows with the tile batch, not with the slice area times
the number of variants.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from emseg.device import autocast
from emseg.normalization import normalize

#: (quarter turns, flip) pairs: the 8 symmetries of the square.
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def _forward(x: torch.Tensor, k: int, flip: bool, model: nn.Module) -> torch.Tensor:
    if flip:
        x = torch.flip(x, dims=(-1,))
    y = model(torch.rot90(x, k, dims=(-2, -1)))
    y = torch.rot90(y, -k, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if flip else y


class TilePredictor(nn.Module):
    """Membrane probability of a tile batch, averaged over the dihedral variants when ``tta``."""

    def __init__(self, model: nn.Module, tta: bool, amp: bool) -> None:
        super().__init__()
        self.model = model
        self.variants = DIHEDRAL if tta else DIHEDRAL[:1]
        self.amp = amp

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(tiles, dtype=torch.float32)
        with autocast(tiles.device, self.amp):
            for k, flip in self.variants:
                total += torch.sigmoid(_forward(tiles, k, flip, self.model).float())
        return total / len(self.variants)


@torch.inference_mode()
def predict_membrane(
    model: nn.Module,
    image: np.ndarray,
    patch_size: int,
    normalization: dict | None = None,
    overlap: float = 0.5,
    tta: bool = False,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    amp: bool = True,
) -> np.ndarray:
    """Membrane probability (float32, H x W, 0..1) of one raw 2-D slice of any size."""
    device = torch.device(device)
    x = torch.from_numpy(normalize(image, normalization))[None, None]
    predictor = TilePredictor(model, tta, amp)
    output = sliding_window_inference(
        x,
        # a slice smaller than the patch is predicted whole (the network pads it itself)
        roi_size=(min(patch_size, image.shape[0]), min(patch_size, image.shape[1])),
        sw_batch_size=batch_size,
        predictor=predictor,
        overlap=overlap,
        mode="gaussian",
        padding_mode="reflect",
        sw_device=device,
        device=torch.device("cpu"),
    )
    return output[0, 0].clamp_(0.0, 1.0).numpy().astype(np.float32, copy=False)
