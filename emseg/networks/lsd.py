"""Local shape descriptors (LSDs): an auxiliary training target that describes each pixel's cell around it.

Sheridan et al. (2022, funkelab's `lsd`) train the affinity network to also predict, for
every pixel, statistics of its own cell within a Gaussian window of `sigma` pixels: where the
cell's mass lies relative to the pixel, how it spreads, how much of the window it fills.
To predict them the network must see the whole cell around a pixel, not only the membrane
next to it, which is what tells two cells apart across a faint membrane. The head is
dropped at inference ([`PadToMultiple`][emseg.networks.architectures.PadToMultiple]'s
`forward` returns the affinities only).

In 2-D there are `LSD_CHANNELS` = 6 of them, per pixel `p` of cell `c`, with `G` the Gaussian
window and the sums over the pixels `q` of `c`:

* the mean offset `(E[q] - p) / sigma` along y and x (0 at the cell's centre);
* the variances along y and x and the yx covariance of `q`, over `sigma^2`;
* the mass `sum G(p - q)`: the share of the window the cell fills (0..1).

Membrane and unlabelled pixels belong to no cell: they carry no target (the mask is 0).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from emseg.networks.affinities import cell_instances

#: mean offset y, x; variance y, x; covariance yx; mass
LSD_CHANNELS = 6
#: the Gaussian's reach, in sigmas (scipy's `truncate`)
TRUNCATE = 3.0
#: the descriptors are computed on a grid this many times coarser (funkelab's `downsample`)
DOWNSAMPLE = 2


def lsd_targets(label: np.ndarray, sigma: float, downsample: int = DOWNSAMPLE) -> tuple[np.ndarray, np.ndarray]:
    """The local shape descriptors of a label slice (0 = membrane, `CELL_VALUE` = cell), and where they hold.

    Args:
        label: One label slice.
        sigma: The Gaussian window's sigma, pixels.
        downsample: Compute them on a grid this many times coarser, then repeat each value
            over its pixels (funkelab's `downsample`): the descriptors vary over `sigma`, not
            over a pixel, and a 512^2 slice costs a fraction of a second instead of two.

    Returns:
        `float32` (6, H, W) descriptors, and the (H, W) `float32` mask of the pixels that
        have them (1 inside a cell, 0 on membranes and unlabelled pixels).
    """
    full = cell_instances(label)
    cells = full[::downsample, ::downsample]
    sigma_grid = sigma / downsample
    out = np.zeros((LSD_CHANNELS, *cells.shape), np.float32)
    reach = math.ceil(TRUNCATE * sigma_grid)
    height, width = cells.shape
    for index, box in enumerate(ndimage.find_objects(cells), start=1):
        if box is None:
            continue
        y0, y1 = max(box[0].start - reach, 0), min(box[0].stop + reach, height)
        x0, x1 = max(box[1].start - reach, 0), min(box[1].stop + reach, width)
        inside = cells[y0:y1, x0:x1] == index
        # coordinates about the crop's centre: small numbers, no cancellation in the variances
        ys = np.arange(y1 - y0, dtype=np.float32)[:, None] - (y1 - y0) / 2
        xs = np.arange(x1 - x0, dtype=np.float32)[None, :] - (x1 - x0) / 2
        mass = inside.astype(np.float32)
        moments = np.stack([mass, mass * ys, mass * xs, mass * ys * ys, mass * xs * xs, mass * ys * xs])
        m0, my, mx, myy, mxx, mxy = ndimage.gaussian_filter(moments, (0, sigma_grid, sigma_grid), mode="constant", truncate=TRUNCATE)[
            :, inside
        ]
        m0 = np.maximum(m0, 1e-12)
        mean_y, mean_x = my / m0, mx / m0
        py, px = np.broadcast_to(ys, inside.shape)[inside], np.broadcast_to(xs, inside.shape)[inside]
        values = (
            (mean_y - py) / sigma_grid, (mean_x - px) / sigma_grid,
            (myy / m0 - mean_y**2) / sigma_grid**2, (mxx / m0 - mean_x**2) / sigma_grid**2, (mxy / m0 - mean_y * mean_x) / sigma_grid**2,
            m0,
        )
        region = out[:, y0:y1, x0:x1]
        for channel, value in enumerate(values):
            region[channel][inside] = value
    if downsample > 1:
        out = np.repeat(np.repeat(out, downsample, axis=1), downsample, axis=2)[:, : label.shape[0], : label.shape[1]]
    mask = (full > 0).astype(np.float32)
    return np.ascontiguousarray(out) * mask, mask


def turn_descriptors(lsd: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """The descriptors of a patch after `torch.rot90(patch, k, dims=(-2, -1))` and then a flip of x, from those turned with it.

    The patch's pixels have already moved; what a channel says must move too: a quarter turn
    takes a vector `(dy, dx)` to `(-dx, dy)` (so the variances trade places and the covariance
    changes sign), a flip of x takes it to `(dy, -dx)`.

    Args:
        lsd: (..., 6, H, W) descriptors whose pixels were turned and flipped with the patch.
        k: The quarter turns.
        flip: Whether x was flipped after them.
    """
    mean_y, mean_x, var_y, var_x, cov, mass = lsd.unbind(-3)
    for _ in range(k % 4):
        mean_y, mean_x, var_y, var_x, cov = -mean_x, mean_y, var_x, var_y, -cov
    if flip:
        mean_x, cov = -mean_x, -cov
    return torch.stack((mean_y, mean_x, var_y, var_x, cov, mass), dim=-3)
