"""A topology-aware loss of the nearest-neighbour affinities: constrained MALIS (Turaga et al. 2009; Funke et al. 2018).

A segmentation merges two cells through the edge of the highest affinity on the best path
between them (the maximin edge) and splits a cell where that edge is low. MALIS weighs each
edge by how many pixel pairs have it as their maximin edge, so the loss falls where one wrong
affinity would join or cut whole cells, not where a pixel is merely misclassified.

The constrained form runs two passes of Kruskal's algorithm over the edges, highest affinity
first: in the *positive* pass the edges between different cells are set to 0 (so only pairs
within a cell find their maximin edge, counted as pairs of the same cell joined), in the
*negative* pass the edges inside a cell are set to 1 (pairs of different cells merged). The
loss is the weighted squared error of the predicted affinities against 1 (positive weights)
and 0 (negative weights), normalised by the pairs counted.

emseg's affinity channels are boundary probabilities (1: the pair is not in one cell, see
[`affinity_targets`][emseg.networks.affinities.affinity_targets]); the passes run on their
complement, the probability that the pair is joined. The cells are the connected components
of the target's joined nearest-neighbour pairs (those the mask keeps): membrane and unlabelled
pixels, which no joined pair reaches, belong to no cell and count in no pair. The counting is a numba kernel on the CPU; its weights carry no
gradient, the squared error does.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import nn

from emseg.config.defaults import DEFAULT_OFFSETS

#: the offsets the loss reads: the first two affinity channels, which params require to be these
NEAREST = DEFAULT_OFFSETS[:2]
#: MALIS's share beside the affinity loss: both are means of per-pair errors in [0, 1]
MALIS_WEIGHT = 1.0


@numba.njit(cache=True)
def _find(parent: np.ndarray, node: int) -> int:
    root = node
    while parent[root] != root:
        root = parent[root]
    while parent[node] != root:  # path compression
        parent[node], node = root, parent[node]
    return root


@numba.njit(cache=True)
def _edge_ends(index: int, h: int, w: int) -> tuple[int, int]:
    """The two pixels of edge `index` of the (2, H, W) edge grid: channel 0 pairs (y, x) with (y-1, x), channel 1 with (y, x-1)."""
    channel, pixel = divmod(index, h * w)
    return pixel, pixel - (w if channel == 0 else 1)


@numba.njit(cache=True)
def _cells(joined: np.ndarray) -> tuple[np.ndarray, int]:
    """Each pixel's cell (1..n, 0: none): the components of at least 2 pixels of the joined (and kept) pairs, (2, H, W) bool."""
    _, h, w = joined.shape
    n = h * w
    parent = np.arange(n)
    for index in range(2 * n):
        channel, pixel = divmod(index, n)
        y, x = divmod(pixel, w)
        if (channel == 0 and y == 0) or (channel == 1 and x == 0):
            continue
        if joined[channel, y, x]:
            a, b = _edge_ends(index, h, w)
            ra, rb = _find(parent, a), _find(parent, b)
            if ra != rb:
                parent[ra] = rb
    size = np.zeros(n, np.int64)
    for pixel in range(n):
        size[_find(parent, pixel)] += 1
    ids = np.zeros(n, np.int64)
    labels = np.zeros(n, np.int64)
    count = 0
    for pixel in range(n):
        root = _find(parent, pixel)
        if size[root] < 2:
            continue
        if ids[root] == 0:
            count += 1
            ids[root] = count
        labels[pixel] = ids[root]
    return labels, count


@numba.njit(cache=True)
def _pass(weights: np.ndarray, valid: np.ndarray, labels: np.ndarray, n_cells: int, positive: bool, h: int, w: int) -> np.ndarray:
    """Kruskal's algorithm over the valid edges, highest weight first: per edge, the pairs it joins (same cell if `positive`, else different cells)."""
    n = h * w
    out = np.zeros(2 * n, np.float64)
    parent = np.arange(n)
    # a row per pixel: how many pixels of each cell its component holds (only the roots' rows are kept up to date)
    counts = np.zeros((n, n_cells + 1), np.int64)
    for pixel in range(n):
        counts[pixel, labels[pixel]] = 1
    order = np.argsort(-weights)
    for index in order:
        if not valid[index]:
            continue
        a, b = _edge_ends(index, h, w)
        ra, rb = _find(parent, a), _find(parent, b)
        if ra == rb:
            continue
        same = 0
        in_a = 0
        in_b = 0
        for cell in range(1, n_cells + 1):
            same += counts[ra, cell] * counts[rb, cell]
            in_a += counts[ra, cell]
            in_b += counts[rb, cell]
        out[index] = same if positive else in_a * in_b - same
        if in_a + counts[ra, 0] < in_b + counts[rb, 0]:
            ra, rb = rb, ra
        parent[rb] = ra
        for cell in range(n_cells + 1):
            counts[ra, cell] += counts[rb, cell]
    return out


def malis_weights(joined: np.ndarray, in_one_cell: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The constrained MALIS pair counts of one sample's nearest-neighbour edges.

    Args:
        joined: The predicted probability that each pair of the offsets `NEAREST` is in one
            cell, (2, H, W).
        in_one_cell: Whether the truth has the pair in one cell, (2, H, W) bool.
        mask: The pairs that count (0: an offset leaving the patch, an unlabelled pixel), (2, H, W).

    Returns:
        The positive counts (pairs of one cell whose maximin edge it is) and the negative ones
        (pairs of two cells) of each edge, each (2, H, W) float64.
    """
    _, h, w = joined.shape
    valid = (mask > 0.5).reshape(-1) & _edges_inside(h, w)
    inside = in_one_cell.reshape(-1) & valid
    labels, n_cells = _cells(np.ascontiguousarray(inside.reshape(2, h, w)))
    flat = joined.reshape(-1).astype(np.float64)
    # only edges inside a cell can join two of its pixels: the others, set to 0, would come last and join none
    positive = _pass(np.where(inside, flat, 0.0), valid & inside, labels, n_cells, True, h, w)
    negative = _pass(np.where(inside, 1.0, flat), valid, labels, n_cells, False, h, w)
    return positive.reshape(2, h, w), negative.reshape(2, h, w)


def _edges_inside(h: int, w: int) -> np.ndarray:
    """The edges of the (2, H, W) grid whose both pixels are in the patch."""
    inside = np.ones((2, h, w), bool)
    inside[0, 0, :] = False
    inside[1, :, 0] = False
    return inside.reshape(-1)


class MalisLoss(nn.Module):
    """Constrained MALIS on the first two channels (the offsets `NEAREST`) of affinity logits, over the pairs of `mask`.

    `loss(logits, target, mask)`, all (B, C, H, W), emseg's boundary convention (target 1: the
    pair is not in one cell): per sample, the squared errors of the predicted probabilities
    that a pair is joined, weighted by their positive and negative pair counts
    ([`malis_weights`][emseg.training.malis.malis_weights]), over the pairs counted; averaged
    over the samples (a sample without a pair of pixels in cells counts 0).
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The loss of the batch's nearest-neighbour affinities."""
        joined = 1.0 - torch.sigmoid(logits[:, :2].float())
        plain = joined.detach().cpu().numpy()
        in_one_cell, masks = target[:, :2].detach().cpu().numpy() < 0.5, mask[:, :2].detach().cpu().numpy()
        total = joined.new_zeros(())
        for i in range(joined.shape[0]):
            positive, negative = malis_weights(plain[i], in_one_cell[i], masks[i])
            pairs = positive.sum() + negative.sum()
            if pairs == 0:
                continue
            pos = torch.from_numpy(positive / pairs).to(joined)
            neg = torch.from_numpy(negative / pairs).to(joined)
            total = total + (pos * (1.0 - joined[i]) ** 2 + neg * joined[i] ** 2).sum()
        return total / joined.shape[0]
