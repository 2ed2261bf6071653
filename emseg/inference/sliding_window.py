"""The one inference path: normalise, sliding windows with Gaussian blending, optional 8x TTA.

Used by the training validation, the evaluate stage and ``emseg predict``. Test-time
augmentation is applied per tile batch (the 8 flips/rotations of each tile, averaged
before blending), so memory grows with the tile batch, not with the slice area times
the number of variants.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference
from monai.inferers.utils import _get_scan_interval
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

    def __init__(
        self, model: nn.Module, tta: bool, amp: bool, progress: Callable[[int], object] | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.variants = DIHEDRAL if tta else DIHEDRAL[:1]
        self.amp = amp
        #: called with the number of tiles after each batch (e.g. a tqdm bar's ``update``)
        self.progress = progress

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(tiles, dtype=torch.float32)
        with autocast(tiles.device, self.amp):
            for k, flip in self.variants:
                total += torch.sigmoid(_forward(tiles, k, flip, self.model).float())
        if self.progress is not None:
            self.progress(int(tiles.shape[0]))
        return total / len(self.variants)


def _roi_size(shape: tuple[int, int], patch_size: int) -> tuple[int, int]:
    # a slice smaller than the patch is predicted whole (the network pads it itself)
    return (min(patch_size, shape[0]), min(patch_size, shape[1]))


def count_tiles(shape: tuple[int, int], patch_size: int, overlap: float = 0.5) -> int:
    """How many tiles :func:`predict_membrane` runs for one slice of ``shape`` (for progress bars).

    Computed with MONAI's own window layout, so it stays equal to what
    ``sliding_window_inference`` visits.
    """
    shape = (int(shape[0]), int(shape[1]))
    roi = _roi_size(shape, patch_size)
    return len(dense_patch_slices(shape, roi, _get_scan_interval(shape, roi, 2, (overlap, overlap))))


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
    *,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Membrane probability (float32, H x W, 0..1) of one raw 2-D slice of any size.

    ``progress``, when given, is called with the number of tiles after each tile batch
    (:func:`count_tiles` gives the total).
    """
    device = torch.device(device)
    x = torch.from_numpy(normalize(image, normalization))[None, None]
    predictor = TilePredictor(model, tta, amp, progress)
    output = sliding_window_inference(
        x,
        roi_size=_roi_size(image.shape, patch_size),
        sw_batch_size=batch_size,
        predictor=predictor,
        overlap=overlap,
        mode="gaussian",
        padding_mode="reflect",
        sw_device=device,
        device=torch.device("cpu"),
    )
    return output[0, 0].clamp_(0.0, 1.0).numpy().astype(np.float32, copy=False)
