"""Predicting at the model's pixel size: resample an input to the model's grid, and every output back.

A network learns membranes of a certain width in pixels; an input of another pixel size
(`--pixel-size`, OME / ImageJ / TIFF tags, a volume's scale) is resampled to the pixel size the
model was trained at ([`ModelConfig.pixel_size_yx`][emseg.networks.model_file.ModelConfig.pixel_size_yx]),
predicted there, and its outputs are put back onto the input's own grid, so that every output
file has the input's shape, pixel size and units.

* [`to_model_grid`][emseg.inference.rescale.to_model_grid]: one slice onto the model's grid with
  `skimage.transform.resize`: linear interpolation, and when shrinking a Gaussian pre-filter
  (`anti_aliasing`, sigma `(1/zoom - 1) / 2` pixels) so that a finer input is averaged, not
  sub-sampled (aliased membranes break up). The same call maps the grids both ways, on the
  pixel-edge-aligned coordinates that keep the two grids on top of each other.
* [`to_input_grid`][emseg.inference.rescale.to_input_grid]: probability maps and affinities back,
  by linear interpolation, to exactly the input's shape.
* Cells are drawn on the input's grid from the prediction put back there
  ([`prediction_to_input_grid`][emseg.inference.rescale.prediction_to_input_grid]: membrane map
  and affinities interpolated, affinity offsets and the method's pixel settings converted to
  input pixels). `benchmarks/rescale_choice.py` measured this (b) against (a) segmenting at the
  model's scale and resizing the cells by nearest neighbour
  ([`labels_to_input_grid`][emseg.inference.rescale.labels_to_input_grid]) on ISBI validation
  slices at 3, 6 and 8 nm/px: (b) scored better on the mean and on 8 of the 9 slice x size
  pairs (docs: results/rescaling.md), and its cells are those of the membrane mask written on
  the same grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from emseg.networks.affinities import Offset
from emseg.networks.prediction import Prediction
from emseg.segmentation.measurements import PixelSize

#: pixel sizes within this fraction of the model's are predicted as they are
RESCALE_TOLERANCE = 0.01


def zoom_factors(input_yx_nm: tuple[float, float], model_yx_nm: tuple[float, float]) -> tuple[float, float]:
    """How much an input is enlarged to reach the model's grid, per axis: input pixel size / model pixel size.

    An input at 8 nm/px for a model of 4 nm/px is enlarged 2x; one at 2 nm/px is halved.
    """
    return float(input_yx_nm[0]) / float(model_yx_nm[0]), float(input_yx_nm[1]) / float(model_yx_nm[1])


def needs_rescaling(factors: tuple[float, float], tolerance: float = RESCALE_TOLERANCE) -> bool:
    """Whether the factors differ from 1 by more than `tolerance` on either axis."""
    return any(abs(factor - 1.0) > tolerance for factor in factors)


def scaled_shape(shape: tuple[int, ...], factors: tuple[float, float]) -> tuple[int, int]:
    """The (H, W) of a slice of `shape` (its last two axes) enlarged by `factors`; at least one pixel."""
    return max(1, round(shape[-2] * factors[0])), max(1, round(shape[-1] * factors[1]))


def _resize(array: np.ndarray, shape: tuple[int, int], order: int, anti_aliasing: bool) -> np.ndarray:
    """`array` (H, W) or (C, H, W) resized to `shape` in-plane, as float32."""
    from skimage.transform import resize

    array = np.asarray(array, dtype=np.float32)
    if array.shape[-2:] == tuple(shape):
        return array
    out_shape = (*array.shape[:-2], *shape)
    # channels are not mixed: no smoothing along axis 0 of a (C, H, W) stack
    sigma = None
    if anti_aliasing and array.ndim == 3:
        sigma = (0.0, *(max(0.0, (a / b - 1) / 2) for a, b in zip(array.shape[-2:], shape, strict=True)))
    return resize(array, out_shape, order=order, mode="edge", anti_aliasing=anti_aliasing, anti_aliasing_sigma=sigma,
                  preserve_range=True).astype(np.float32, copy=False)


def to_model_grid(image: np.ndarray, factors: tuple[float, float]) -> np.ndarray:
    """One raw slice (H, W) resampled to the model's grid: float32 of `scaled_shape(image.shape, factors)`.

    Linear interpolation; anti-aliased (Gaussian pre-filter) on an axis that shrinks. The model
    normalises intensities itself, so float32 keeps the input's range. A slice with its
    neighbouring sections (2k + 1, H, W) is resampled section by section.
    """
    if image.ndim == 3:
        return np.stack([to_model_grid(section, factors) for section in image])
    shape = scaled_shape(image.shape, factors)
    return _resize(image, shape, order=1, anti_aliasing=any(f < 1.0 for f in factors))


def to_input_grid(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Probability maps (H', W') or affinities (C, H', W') put back on the input's grid of `shape` (H, W).

    Linear interpolation, no smoothing: a thin membrane keeps its peak value when the input is
    coarser than the model. The result has exactly the input's shape, float32.
    """
    return _resize(maps, shape, order=1, anti_aliasing=False)


def labels_to_input_grid(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Cells (H', W') drawn at the model's scale, on the input's grid of `shape` (H, W) by nearest neighbour.

    Each input pixel takes the label under its centre. A cell left with no pixel (smaller than
    an input pixel) is dropped and the others renumbered 1..N in their order, so every label
    of the result is a cell of it; 0 stays 0.

    Returns:
        uint32 labels of exactly `shape`.
    """
    from skimage.segmentation import relabel_sequential

    height, width = labels.shape
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * (height / shape[0])).astype(np.intp), height - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * (width / shape[1])).astype(np.intp), width - 1)
    resized = np.ascontiguousarray(labels[rows[:, None], cols[None, :]])
    return relabel_sequential(resized.astype(np.uint32, copy=False))[0].astype(np.uint32, copy=False)


def scaled_offsets(offsets: tuple[Offset, ...], factors: tuple[float, float]) -> tuple[Offset, ...]:
    """Affinity offsets in model pixels as offsets in input pixels (an input `factors` times coarser than the model).

    Each component is divided by its axis's factor and rounded, keeping its sign and never
    rounding a non-zero offset to 0: the channel of offset (0, -9) of a model at 4 nm/px links
    pixels 36 nm apart, which is (0, -4.5) -> (0, -4) pixels of an 8 nm/px input.
    """
    def one(value: int, factor: float) -> int:
        return 0 if value == 0 else int(np.sign(value)) * max(1, round(abs(value) / factor))

    return tuple((one(dy, factors[0]), one(dx, factors[1])) for dy, dx in offsets)


def prediction_to_input_grid(prediction: Prediction, shape: tuple[int, int], factors: tuple[float, float]) -> Prediction:
    """A prediction made on the model's grid, on the input's grid of `shape`: what the cells are drawn from.

    The membrane map, the affinities and the uncertainty are interpolated linearly
    ([`to_input_grid`][emseg.inference.rescale.to_input_grid]); the offsets become input pixels
    ([`scaled_offsets`][emseg.inference.rescale.scaled_offsets]).
    """
    affinities = None if prediction.affinities is None else to_input_grid(prediction.affinities, shape)
    offsets = None if prediction.offsets is None else scaled_offsets(prediction.offsets, factors)
    uncertainty = None if prediction.uncertainty is None else to_input_grid(prediction.uncertainty, shape)
    return Prediction(to_input_grid(prediction.membrane, shape), affinities, offsets, uncertainty)


#: settings of the cell methods (emseg.segmentation.methods) that measure the image in pixels: lengths, and areas
#: (mws's `stride` only thins out its long-range edges, so it stays as it is)
LENGTH_SETTINGS = ("sigma_seeds", "sigma_weights")
AREA_SETTINGS = ("min_size",)


def settings_on_input_grid(settings: dict[str, Any], factors: tuple[float, float]) -> dict[str, Any]:
    """A cell method's settings, chosen in model pixels, for an input `factors` times coarser.

    Lengths are divided by the mean factor, areas by the product of the factors (at least
    1 pixel); the other settings are kept.
    """
    mean = (factors[0] + factors[1]) / 2
    out = dict(settings)
    for key in LENGTH_SETTINGS:
        if key in out:
            out[key] = float(out[key]) / mean
    for key in AREA_SETTINGS:
        if key in out:
            out[key] = max(1, round(out[key] / (factors[0] * factors[1])))
    return out


def _size(value: float) -> str:
    return f"{value:.3g}"


@dataclass(frozen=True)
class Rescaling:
    """What `emseg predict` does about one input's pixel size, and the one line it prints about it.

    `factors` is None when the input is predicted on its own grid (sizes agree, or either is
    unknown, or `--no-rescale`); else how much the input is enlarged to the model's grid.
    """

    factors: tuple[float, float] | None
    note: str

    @property
    def active(self) -> bool:
        """Whether the input is resampled to the model's grid."""
        return self.factors is not None

    def model_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The in-plane shape an input slice of `shape` has on the model's grid."""
        return scaled_shape(shape, self.factors) if self.factors else (shape[-2], shape[-1])


def plan_rescaling(pixel_size: PixelSize | None, model_yx_nm: tuple[float, float] | None, enabled: bool = True) -> Rescaling:
    """Whether and how much to rescale an input of `pixel_size` for a model of `model_yx_nm`.

    Args:
        pixel_size: The input's pixel size (`--pixel-size` or its file's), or None when unknown.
        model_yx_nm: The model's in-plane pixel size in nm, or None (a model file of format 1-2).
        enabled: False for `--no-rescale`: predict on the input's grid, say nothing.

    Returns:
        The factors (None: no resampling) and the line to print ('' for `--no-rescale`).
    """
    if not enabled:
        return Rescaling(None, "")
    if model_yx_nm is None:
        return Rescaling(None, "the model file records no pixel size (older format): predicted on the input's own grid")
    model = "x".join(dict.fromkeys(_size(v) for v in model_yx_nm))
    if pixel_size is None:
        return Rescaling(None, f"input pixel size unknown: assumed the model's {model} nm/px (give --pixel-size to rescale)")
    nm = pixel_size.nm
    factors = zoom_factors((nm, nm), model_yx_nm)
    if not all(math.isfinite(f) and f > 0 for f in factors):
        return Rescaling(None, f"input {_size(nm)} nm/px: no usable zoom for the model's {model} nm/px; predicted on the input's own grid")
    head = f"input {_size(nm)} nm/px, model {model} nm/px"
    if not needs_rescaling(factors):
        return Rescaling(None, f"{head}: predicted as is")
    zoom = "x".join(dict.fromkeys(f"{f:.3g}" for f in factors))
    return Rescaling(factors, f"{head}: predicted at {zoom}x")
