"""The one inference path: normalise, sliding windows with Gaussian blending, optional 8x TTA.

Used by the training validation, the evaluate stage and `emseg predict`. Test-time
augmentation is applied per tile batch (the 8 flips and rotations of each tile, averaged
before blending), so that memory grows with the tile batch, not with the slice area times
the number of variants. A boundary model's one channel turns with the tile; an affinity
model's channels also trade places (an offset along x becomes one along y, and one turned
to point the other way is the same pixel pair read from its other end): see
[`variant_plan`][emseg.networks.affinities.variant_plan].

With TTA, the variance of the 8 variants' probabilities is the predicted uncertainty
([`predict_with_uncertainty`][emseg.inference.sliding_window.predict_with_uncertainty]): where
the flipped and turned tiles disagree, the network is unsure of the pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference
from monai.inferers.utils import _get_scan_interval
from torch import nn

from emseg.config.defaults import OVERLAP, TILE_BATCH
from emseg.networks.affinities import Offset, variant_plan
from emseg.preprocessing.normalization import normalize
from emseg.runtime.device import autocast

#: (quarter turns, flip) pairs: the 8 symmetries of the square.
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def _forward(x: torch.Tensor, k: int, flip: bool, model: nn.Module) -> torch.Tensor:
    if flip:
        x = torch.flip(x, dims=(-1,))
    y = model(torch.rot90(x, k, dims=(-2, -1)))
    y = torch.rot90(y, -k, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if flip else y


def _shift(t: torch.Tensor, offset: Offset) -> torch.Tensor:
    """`out[..., y, x] = t[..., y + dy, x + dx]`, 0 where that lies outside."""
    dy, dx = offset
    out = torch.zeros_like(t)
    height, width = t.shape[-2:]
    if abs(dy) >= height or abs(dx) >= width:  # the offset leaves the tile from every pixel
        return out
    out[..., max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)] = t[
        ..., max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)
    ]
    return out


def _remap(variant: torch.Tensor, plan: list[tuple[int, int, Offset | None]]) -> tuple[torch.Tensor, torch.Tensor]:
    """A variant's affinity channels (already turned back) in the original channels, and the weight of each value."""
    out = torch.zeros_like(variant)
    weight = torch.zeros_like(variant)
    ones = torch.ones_like(variant[:, :1])
    for source, target, shift in plan:
        out[:, target : target + 1] += variant[:, source : source + 1] if shift is None else _shift(variant[:, source : source + 1], shift)
        weight[:, target : target + 1] += ones if shift is None else _shift(ones, shift)
    return out, weight


class TilePredictor(nn.Module):
    """Probabilities of a tile batch, averaged over the dihedral variants when `tta`.

    A boundary model (`offsets` None) gives the membrane probability; an affinity model
    one channel per offset, each variant's channels mapped back to the original offsets.
    With `logits`, the mean logit over the variants as well, as a second output: what a
    loss is computed from. With `uncertainty`, the variance of the variants' probabilities
    averaged over the channels (B, 1, P, P), as the last output.

    Args:
        model: The network.
        tta: Average the 8 flips and rotations of every tile.
        amp: Allow mixed precision where the device has it.
        progress: Called with the number of tiles after each batch (e.g. a tqdm bar's `update`).
        logits: Also return the mean logits.
        offsets: An affinity model's offsets; None for a boundary model.
        uncertainty: Also return the variance across the variants (needs `tta`).
    """

    def __init__(
        self,
        model: nn.Module,
        tta: bool,
        amp: bool,
        progress: Callable[[int], object] | None = None,
        logits: bool = False,
        offsets: tuple[Offset, ...] | None = None,
        uncertainty: bool = False,
    ) -> None:
        super().__init__()
        if uncertainty and not tta:
            raise ValueError("the uncertainty is the variance across the test-time augmentations: it needs tta")
        self.model = model
        self.variants = DIHEDRAL if tta else DIHEDRAL[:1]
        self.amp = amp
        #: called with the number of tiles after each batch (e.g. a tqdm bar's ``update``)
        self.progress = progress
        self.logits = logits
        self.plans = {variant: variant_plan(offsets, *variant) for variant in self.variants} if offsets else None
        self.uncertainty = uncertainty

    def forward(self, tiles: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The probabilities (B, C, P, P) of a batch of normalised tiles; with `logits` and `uncertainty` those as well."""
        proba, logits, squares = self._boundary(tiles) if self.plans is None else self._affinities(tiles)
        if self.progress is not None:
            self.progress(int(tiles.shape[0]))
        outputs = [proba]
        if logits is not None:
            outputs.append(logits)
        if squares is not None:
            # E[p^2] - E[p]^2 per channel, then the mean over the channels: one map, however many offsets
            outputs.append((squares - proba * proba).clamp_(min=0.0).mean(dim=1, keepdim=True))
        return proba if len(outputs) == 1 else tuple(outputs)

    def _boundary(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        total = torch.zeros_like(tiles, dtype=torch.float32)
        total_logits = torch.zeros_like(total) if self.logits else None
        total_squares = torch.zeros_like(total) if self.uncertainty else None
        with autocast(tiles.device, self.amp):
            for k, flip in self.variants:
                logits = _forward(tiles, k, flip, self.model).float()
                proba = torch.sigmoid(logits)
                total += proba
                if total_logits is not None:
                    total_logits += logits
                if total_squares is not None:
                    total_squares += proba * proba
        n = len(self.variants)
        return total / n, None if total_logits is None else total_logits / n, None if total_squares is None else total_squares / n

    def _affinities(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        total = total_logits = total_squares = weights = None
        with autocast(tiles.device, self.amp):
            for variant in self.variants:
                logits = _forward(tiles, *variant, self.model).float()
                probas = torch.sigmoid(logits)
                proba, weight = _remap(probas, self.plans[variant])
                total = proba if total is None else total + proba
                weights = weight if weights is None else weights + weight
                if self.logits:
                    mapped, _ = _remap(logits, self.plans[variant])
                    total_logits = mapped if total_logits is None else total_logits + mapped
                if self.uncertainty:
                    squares, _ = _remap(probas * probas, self.plans[variant])
                    total_squares = squares if total_squares is None else total_squares + squares
        weights = weights.clamp_(min=1.0)  # the identity variant covers every pair: only rounding guards here
        return (
            total / weights,
            None if total_logits is None else total_logits / weights,
            None if total_squares is None else total_squares / weights,
        )


def _roi_size(shape: tuple[int, int], patch_size: int) -> tuple[int, int]:
    # a slice smaller than the patch is predicted whole (the network pads it itself)
    return (min(patch_size, shape[0]), min(patch_size, shape[1]))


def count_tiles(shape: tuple[int, int], patch_size: int, overlap: float = 0.5) -> int:
    """How many tiles [`predict_membrane`][emseg.inference.sliding_window.predict_membrane] runs for one slice of `shape`.

    For progress bars. Computed with MONAI's own window layout, so that it stays equal to what
    `sliding_window_inference` visits.
    """
    shape = (int(shape[0]), int(shape[1]))
    roi = _roi_size(shape, patch_size)
    return len(dense_patch_slices(shape, roi, _get_scan_interval(shape, roi, 2, (overlap, overlap))))


def _sliding_window(
    predictor: TilePredictor, image: np.ndarray, patch_size: int, normalization: dict | None, overlap: float, batch_size: int, device: torch.device
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    x = torch.from_numpy(normalize(image, normalization))
    x = x[None, None] if x.ndim == 2 else x[None]  # a slice with its neighbouring sections: they are the channels
    return sliding_window_inference(
        x,
        roi_size=_roi_size(image.shape[-2:], patch_size),
        sw_batch_size=batch_size,
        predictor=predictor,
        overlap=overlap,
        mode="gaussian",
        padding_mode="reflect",
        sw_device=device,
        device=torch.device("cpu"),
    )


def _membrane_map(output: torch.Tensor) -> np.ndarray:
    return output[0, 0].clamp_(0.0, 1.0).numpy().astype(np.float32, copy=False)


@torch.inference_mode()
def predict_membrane(
    model: nn.Module,
    image: np.ndarray,
    patch_size: int,
    normalization: dict | None = None,
    overlap: float = OVERLAP,
    tta: bool = False,
    batch_size: int = TILE_BATCH,
    device: torch.device | str = "cpu",
    amp: bool = True,
    *,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """The membrane probability (`float32`, H x W, 0..1) of one raw 2-D slice of any size.

    Args:
        model: The network (a boundary model).
        image: One raw slice (H, W), or for a model that reads neighbouring sections the slice
            with them (2k + 1, H, W, [`with_neighbours`][emseg.io.sections.with_neighbours]);
            it is normalised here.
        patch_size: The sliding window's side.
        normalization: The model file's normalisation (None: the per-slice z-score).
        overlap: The overlap of neighbouring windows, a fraction of the window.
        tta: Average the 8 flips and rotations of every tile.
        batch_size: Tiles per forward pass.
        device: Where the network runs.
        amp: Allow mixed precision where the device has it.
        progress: Called with the number of tiles after each tile batch
            ([`count_tiles`][emseg.inference.sliding_window.count_tiles] gives the total).
    """
    predictor = TilePredictor(model, tta, amp, progress)
    output = _sliding_window(predictor, image, patch_size, normalization, overlap, batch_size, torch.device(device))
    return _membrane_map(output)


@torch.inference_mode()
def predict_with_logits(
    model: nn.Module, image: np.ndarray, patch_size: int, offsets: tuple[Offset, ...] | None = None, **settings: Any
) -> tuple[np.ndarray, torch.Tensor]:
    """A prediction and the blended logits of the same pass, for a loss.

    Args:
        model: The network.
        image: One raw slice.
        patch_size: The sliding window's side.
        offsets: An affinity model's offsets; None for a boundary model.
        **settings: The other arguments of [`predict_membrane`][emseg.inference.sliding_window.predict_membrane]
            (`normalization`, `overlap`, `tta`, `batch_size`, `device`, `amp`).

    Returns:
        The map of [`predict_membrane`][emseg.inference.sliding_window.predict_membrane] (`offsets` None)
        or of [`predict_affinities`][emseg.inference.sliding_window.predict_affinities], and the
        blended logits (1, C, H, W).
    """
    window = {"normalization": None, "overlap": OVERLAP, "tta": False, "batch_size": TILE_BATCH, "device": "cpu", "amp": True, **settings}
    predictor = TilePredictor(model, window["tta"], window["amp"], logits=True, offsets=offsets)
    proba, logits = _sliding_window(
        predictor, image, patch_size, window["normalization"], window["overlap"], window["batch_size"], torch.device(window["device"])
    )
    if offsets is None:
        return _membrane_map(proba), logits
    return proba[0].clamp_(0.0, 1.0).numpy().astype(np.float32, copy=False), logits


@torch.inference_mode()
def predict_with_uncertainty(
    model: nn.Module,
    image: np.ndarray,
    patch_size: int,
    offsets: tuple[Offset, ...] | None = None,
    *,
    progress: Callable[[int], object] | None = None,
    **settings: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """A prediction with 8x TTA and its uncertainty: the variance of the 8 variants' probabilities.

    The variance is taken per channel (per offset of an affinity model) and averaged over the
    channels, so the uncertainty is one map (`float32`, H x W, 0..0.25) whatever the model's
    outputs: high where the flipped and turned tiles disagree about a membrane.

    Args:
        model: The network.
        image: One raw slice.
        patch_size: The sliding window's side.
        offsets: An affinity model's offsets; None for a boundary model.
        progress: Called with the number of tiles after each tile batch.
        **settings: The other arguments of [`predict_membrane`][emseg.inference.sliding_window.predict_membrane]
            (`normalization`, `overlap`, `batch_size`, `device`, `amp`); `tta` is always on.

    Returns:
        The map of [`predict_membrane`][emseg.inference.sliding_window.predict_membrane] (`offsets` None)
        or of [`predict_affinities`][emseg.inference.sliding_window.predict_affinities], and the uncertainty.
    """
    window = {"normalization": None, "overlap": OVERLAP, "batch_size": TILE_BATCH, "device": "cpu", "amp": True, **settings, "tta": True}
    predictor = TilePredictor(model, True, window["amp"], progress, offsets=offsets, uncertainty=True)
    proba, variance = _sliding_window(
        predictor, image, patch_size, window["normalization"], window["overlap"], window["batch_size"], torch.device(window["device"])
    )
    variance = _membrane_map(variance)
    if offsets is None:
        return _membrane_map(proba), variance
    return proba[0].clamp_(0.0, 1.0).numpy().astype(np.float32, copy=False), variance


@torch.inference_mode()
def predict_affinities(
    model: nn.Module,
    image: np.ndarray,
    patch_size: int,
    offsets: tuple[Offset, ...],
    normalization: dict | None = None,
    overlap: float = OVERLAP,
    tta: bool = False,
    batch_size: int = TILE_BATCH,
    device: torch.device | str = "cpu",
    amp: bool = True,
    *,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """The affinities (`float32`, C x H x W, 0..1, one channel per offset; 1 = not the same cell) of one raw slice.

    The arguments are those of [`predict_membrane`][emseg.inference.sliding_window.predict_membrane],
    plus the model's `offsets`, by which the channels of flipped and turned tiles are mapped back.
    """
    predictor = TilePredictor(model, tta, amp, progress, offsets=offsets)
    output = _sliding_window(predictor, image, patch_size, normalization, overlap, batch_size, torch.device(device))
    return output[0].clamp_(0.0, 1.0).numpy().astype(np.float32, copy=False)
