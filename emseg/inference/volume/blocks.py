"""Block-wise prediction whose block cores equal the whole-slice prediction.

A block is a rectangle of one slice (its *core*). It is predicted with the tile layout of
the *whole slice* (MONAI's window grid for the slice's shape and the overlap), restricted
to the windows that touch the core, blended with the same Gaussian weights in the same
window order, and normalised with the whole slice's statistics. Every window that covers
a core pixel is therefore among the block's windows, added in the same order as in
[`predict_membrane`][emseg.inference.sliding_window.predict_membrane], so that the core is the
whole-slice prediction up to the network's own float noise across tile batches of
different composition (the tests hold the difference under a small tolerance; the measured
equivalence is on the [Volumes](../../../../results/volumes.md) results page). The read
region (the halo) is the bounding box of those windows: at most one patch beyond the core
on each side.

Only the model's tiles are shared with the in-memory path
([`TilePredictor`][emseg.inference.sliding_window.TilePredictor]: the same TTA and affinity
remapping); memory is bounded by the block, not the slice.

An input of another pixel size than the model's is predicted block by block at the model's
scale ([`predict_rescaled_block`][emseg.inference.volume.blocks.predict_rescaled_block]): each
block with a halo of one model window is resampled, predicted and put back on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from emseg.errors import EmsegError
from emseg.inference.sliding_window import TilePredictor, _roi_size
from emseg.preprocessing.normalization import _EPS, ZSCORE_PER_SLICE, _mean_std

#: MONAI's sliding_window_inference default, which the in-memory path uses
SIGMA_SCALE = 0.125

Window = tuple[slice, slice]
#: reads rows x cols of one slice
RegionReader = Callable[[slice, slice], np.ndarray]


@dataclass(frozen=True)
class Block:
    """The core of one block: rows `[y0, y1)` and columns `[x0, x1)` of slice `z`; `index` numbers it in the grid."""

    index: int
    z: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def rows(self) -> slice:
        """The core's rows, as a slice."""
        return slice(self.y0, self.y1)

    @property
    def cols(self) -> slice:
        """The core's columns, as a slice."""
        return slice(self.x0, self.x1)

    @property
    def pixels(self) -> int:
        """The core's number of pixels."""
        return (self.y1 - self.y0) * (self.x1 - self.x0)


def block_grid(shape: tuple[int, int, int], block_size: int) -> list[Block]:
    """The blocks of a (Z, Y, X) volume: one slice deep, `block_size` square (smaller at the far edges).

    `block_size` should be a multiple of the output chunk side, so that no two blocks
    write the same chunk (a chunk written by two processes at once would lose one write).

    Raises:
        EmsegError: `block_size` is below 1.
    """
    if block_size < 1:
        raise EmsegError(f"--block-size must be at least 1, got {block_size}")
    depth, height, width = shape
    blocks = []
    for z in range(depth):
        for y0 in range(0, height, block_size):
            for x0 in range(0, width, block_size):
                blocks.append(Block(len(blocks), z, y0, min(y0 + block_size, height), x0, min(x0 + block_size, width)))
    return blocks


def slice_windows(shape: tuple[int, int], patch_size: int, overlap: float) -> list[Window]:
    """The windows MONAI's sliding window visits on a whole slice of `shape`, in its order."""
    shape = (int(shape[0]), int(shape[1]))
    roi = _roi_size(shape, patch_size)
    return [(w[0], w[1]) for w in dense_patch_slices(shape, roi, _get_scan_interval(shape, roi, 2, (overlap, overlap)))]


def _touches(window: Window, block: Block) -> bool:
    rows, cols = window
    return rows.start < block.y1 and rows.stop > block.y0 and cols.start < block.x1 and cols.stop > block.x0


def block_windows(windows: list[Window], block: Block) -> list[Window]:
    """The windows of the slice's layout that cover a pixel of the block's core, in layout order."""
    return [w for w in windows if _touches(w, block)]


def halo_region(windows: list[Window]) -> Window:
    """The bounding box of `windows`: the region a block reads."""
    return (
        slice(min(w[0].start for w in windows), max(w[0].stop for w in windows)),
        slice(min(w[1].start for w in windows), max(w[1].stop for w in windows)),
    )


class SliceStats:
    """The whole slice's mean and standard deviation, from bands of rows read one at a time.

    The bands are those of the in-memory normalisation
    ([`normalize`][emseg.preprocessing.normalization.normalize] computes its statistics with the
    same function, called here), so that the statistics, and the normalised tiles, are bit for
    bit those of the in-memory path.

    Args:
        read: Reads a region (rows, columns) of the slice.
        shape: The slice's (height, width).
    """

    def __init__(self, read: RegionReader, shape: tuple[int, int]) -> None:
        self._read = read
        self.shape = shape
        self.size = shape[0] * shape[1]

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self._read(rows, slice(0, self.shape[1]))

    def mean_std(self) -> tuple[float, float]:
        """The slice's mean and standard deviation, in float64."""
        return _mean_std(self)  # type: ignore[arg-type]


#: one slice's mean and standard deviation, or one pair per section of a slice read with its neighbouring sections
Stats = tuple[float, float] | tuple[tuple[float, float], ...]


def normalize_with(region: np.ndarray, mean: float, std: float, spec: dict | None) -> np.ndarray:
    """`region` normalised with its whole slice's statistics.

    As [`normalize`][emseg.preprocessing.normalization.normalize] normalises the whole slice.

    Raises:
        EmsegError: An unknown normalisation kind in the model file.
    """
    if spec and spec.get("kind") != ZSCORE_PER_SLICE:
        raise EmsegError(f"unknown normalisation {spec.get('kind')!r} in the model file")
    out = region.astype(np.float32)
    out -= mean
    out /= max(std, _EPS)
    return out


def normalize_sections(region: np.ndarray, stats: Stats, spec: dict | None) -> np.ndarray:
    """A region of one slice (H, W) or of a slice with its sections (2k + 1, H, W), each section normalised with its own slice's statistics."""
    if region.ndim == 2:
        return normalize_with(region, *stats, spec)  # type: ignore[arg-type]
    return np.stack([normalize_with(section, mean, std, spec) for section, (mean, std) in zip(region, stats, strict=True)])  # type: ignore[misc]


@torch.inference_mode()
def predict_block(
    tiles: TilePredictor,
    read: RegionReader,
    slice_shape: tuple[int, int],
    block: Block,
    patch_size: int,
    overlap: float,
    batch_size: int,
    stats: Stats,
    normalization: dict | None = None,
    device: torch.device = torch.device("cpu"),
) -> np.ndarray:
    """The model's blended output of one block's core.

    Args:
        tiles: The model's tile predictor (TTA and affinity remapping included).
        read: Reads a region (rows, columns) of the block's slice: (H, W), or for a model that
            reads neighbouring sections the slice's region with theirs (2k + 1, H, W).
        slice_shape: The whole slice's (height, width).
        block: The block.
        patch_size: The sliding window's side.
        overlap: The overlap of neighbouring windows.
        batch_size: Tiles per forward pass.
        stats: The whole slice's mean and standard deviation
            ([`SliceStats`][emseg.inference.volume.blocks.SliceStats]); with sections, one pair per section.
        normalization: The model file's normalisation.
        device: Where the network runs.

    Returns:
        The output (C, core rows, core columns), `float32` in [0, 1].
    """
    windows = block_windows(slice_windows(slice_shape, patch_size, overlap), block)
    rows, cols = halo_region(windows)
    x = torch.from_numpy(normalize_sections(read(rows, cols), stats, normalization))
    x = x[None, None] if x.ndim == 2 else x[None]
    roi = _roi_size(slice_shape, patch_size)
    importance = compute_importance_map(roi, mode="gaussian", sigma_scale=SIGMA_SCALE, device=device, dtype=torch.float32)[None, None]
    local = [(slice(r.start - rows.start, r.stop - rows.start), slice(c.start - cols.start, c.stop - cols.start)) for r, c in windows]
    count = torch.zeros((1, 1, rows.stop - rows.start, cols.stop - cols.start), dtype=torch.float32)
    for r, c in local:  # MONAI sums the weights of every window first, in layout order
        count[..., r, c] += importance.cpu()
    output: torch.Tensor | None = None
    for start in range(0, len(local), batch_size):
        group = local[start : start + batch_size]
        batch = torch.cat([x[..., r, c] for r, c in group]).to(device)
        result = tiles(batch)
        result = result[0] if isinstance(result, tuple) else result
        result = (result * importance).cpu()
        if output is None:
            output = torch.zeros((1, result.shape[1], *count.shape[2:]), dtype=torch.float32)
        for (r, c), tile in zip(group, result):
            output[0, :, r, c] += tile
    assert output is not None
    output /= count
    core = output[0, :, block.y0 - rows.start : block.y1 - rows.start, block.x0 - cols.start : block.x1 - cols.start]
    return core.clamp_(0.0, 1.0).numpy().astype(np.float32, copy=False)


def rescaled_halo(patch_size: int, factors: tuple[float, float]) -> tuple[int, int]:
    """The context read around a block's core when it is predicted at the model's scale: one window of the model's grid.

    A window of `patch_size` model pixels is `patch_size / factor` input pixels; two more keep
    the interpolation at the region's edge away from the core.
    """
    return tuple(math.ceil(patch_size / factor) + 2 for factor in factors)  # type: ignore[return-value]


@torch.inference_mode()
def predict_rescaled_block(
    tiles: TilePredictor,
    read: RegionReader,
    slice_shape: tuple[int, int],
    block: Block,
    factors: tuple[float, float],
    patch_size: int,
    overlap: float,
    batch_size: int,
    stats: Stats,
    normalization: dict | None = None,
    device: torch.device | None = None,
) -> np.ndarray:
    """The model's output of one block's core, predicted at the model's pixel size and put back on the input's grid.

    The core and a halo of one model window ([`rescaled_halo`][emseg.inference.volume.blocks.rescaled_halo])
    are read on the input's grid, resampled to the model's grid
    ([`to_model_grid`][emseg.inference.rescale.to_model_grid]), predicted there with the sliding
    window as one slice, interpolated back ([`to_input_grid`][emseg.inference.rescale.to_input_grid])
    and cropped to the core. The input slice's own statistics normalise it, and each block is
    resampled on its own: unlike [`predict_block`][emseg.inference.volume.blocks.predict_block],
    the cores equal the in-memory prediction only up to interpolation at the block borders.

    Args:
        tiles: The model's tile predictor.
        read: Reads a region (rows, columns) of the block's slice (with its sections, as for
            [`predict_block`][emseg.inference.volume.blocks.predict_block]), on the input's grid.
        slice_shape: The whole slice's (height, width), input pixels.
        block: The block, input pixels.
        factors: How much the input is enlarged to the model's grid
            ([`zoom_factors`][emseg.inference.rescale.zoom_factors]).
        patch_size: The sliding window's side, model pixels.
        overlap: The overlap of neighbouring windows.
        batch_size: Tiles per forward pass.
        stats: The whole slice's mean and standard deviation (one pair per section with sections).
        normalization: The model file's normalisation.
        device: Where the network runs (None: the CPU).

    Returns:
        The output (C, core rows, core columns) on the input's grid, `float32` in [0, 1].
    """
    from emseg.inference.rescale import to_input_grid, to_model_grid

    halo_y, halo_x = rescaled_halo(patch_size, factors)
    rows = slice(max(0, block.y0 - halo_y), min(slice_shape[0], block.y1 + halo_y))
    cols = slice(max(0, block.x0 - halo_x), min(slice_shape[1], block.x1 + halo_x))
    region = read(rows, cols)
    scaled = to_model_grid(region, factors)
    shape = (int(scaled.shape[-2]), int(scaled.shape[-1]))
    whole = Block(0, block.z, 0, shape[0], 0, shape[1])
    output = predict_block(tiles, lambda r, c: scaled[..., r, c], shape, whole, patch_size, overlap, batch_size, stats, normalization,
                           device or torch.device("cpu"))
    back = to_input_grid(output, region.shape[-2:])
    core = back[:, block.y0 - rows.start : block.y1 - rows.start, block.x0 - cols.start : block.x1 - cols.start]
    return np.clip(core, 0.0, 1.0).astype(np.float32, copy=False)
