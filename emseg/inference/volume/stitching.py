"""Cell labels of a volume, block by block, numbered consistently across block borders.

Each block's cells are the [`instance_labels`][emseg.segmentation.thinning.instance_labels] of
the thresholded mask read with a halo of `halo` pixels, cut to the core; the membrane
flooding that thins borders to 1-pixel lines reaches no further than the membranes are
thick, so that with a halo wider than any membrane the core equals the whole slice's
labels (the tests check it on the ISBI slices). Cells cut by a block border are then
joined: the flooding leaves a 0-line between any two different cells, so two non-zero
pixels that touch across a border are one cell. The joins are the edges of a graph whose
connected components (`scipy.sparse.csgraph.connected_components`) are the cells of the
volume, numbered 1, 2, ... in the order they first appear (slice by slice, block by block):
the same numbers on every run and for every worker count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from emseg.errors import EmsegError
from emseg.inference.volume.blocks import Block, RegionReader
from emseg.segmentation.thinning import instance_labels

#: pixels of mask read around a block for its labels
LABEL_HALO = 128


@dataclass(frozen=True)
class BlockFaces:
    """One block's local cell count, and the local labels along its four core edges."""

    block: Block
    count: int
    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray


def block_labels(read_mask: RegionReader, slice_shape: tuple[int, int], block: Block, halo: int = LABEL_HALO) -> np.ndarray:
    """The cells of the block's core, `uint32`, numbered 1..n in the flooding's order (0 on the outlines).

    Args:
        read_mask: Reads a region (rows, columns) of the slice's boolean cell mask.
        slice_shape: The slice's (height, width).
        block: The block.
        halo: The pixels of mask read around the core.
    """
    height, width = slice_shape
    rows = slice(max(block.y0 - halo, 0), min(block.y1 + halo, height))
    cols = slice(max(block.x0 - halo, 0), min(block.x1 + halo, width))
    labels = instance_labels(np.asarray(read_mask(rows, cols), dtype=bool))
    core = labels[block.y0 - rows.start : block.y1 - rows.start, block.x0 - cols.start : block.x1 - cols.start]
    values, local = np.unique(core, return_inverse=True)
    if values[0] != 0:  # no outline pixel in this core: every value is a cell
        local = local + 1
    return local.reshape(core.shape).astype(np.uint32)


def faces(block: Block, labels: np.ndarray) -> BlockFaces:
    """The [`BlockFaces`][emseg.inference.volume.stitching.BlockFaces] of a block from its local labels."""
    return BlockFaces(block, int(labels.max(initial=0)), labels[0].copy(), labels[-1].copy(), labels[:, 0].copy(), labels[:, -1].copy())


def _joins(a: np.ndarray, b: np.ndarray, offset_a: int, offset_b: int) -> tuple[np.ndarray, np.ndarray]:
    touching = (a > 0) & (b > 0)
    return a[touching].astype(np.int64) + offset_a - 1, b[touching].astype(np.int64) + offset_b - 1


def relabel_tables(found: Sequence[BlockFaces]) -> dict[int, np.ndarray]:
    """Per block index, the table from local label to volume label (entry 0 is 0).

    Raises:
        EmsegError: More cells than `uint32` labels can number.
    """
    ordered = sorted(found, key=lambda f: f.block.index)
    offsets, total = {}, 0
    for f in ordered:
        offsets[f.block.index] = total
        total += f.count
    if total >= np.iinfo(np.uint32).max:
        raise EmsegError(f"{total} cells do not fit uint32 labels")
    by_corner = {(f.block.z, f.block.y0, f.block.x0): f for f in ordered}
    sources, targets = [], []
    for f in ordered:
        below = by_corner.get((f.block.z, f.block.y1, f.block.x0))
        if below is not None:
            s, t = _joins(f.bottom, below.top, offsets[f.block.index], offsets[below.block.index])
            sources.append(s), targets.append(t)
        beside = by_corner.get((f.block.z, f.block.y0, f.block.x1))
        if beside is not None:
            s, t = _joins(f.right, beside.left, offsets[f.block.index], offsets[beside.block.index])
            sources.append(s), targets.append(t)
    s = np.concatenate(sources) if sources else np.zeros(0, np.int64)
    t = np.concatenate(targets) if targets else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(s), np.int8), (s, t)), shape=(total, total))
    _, component = connected_components(graph, directed=False)
    # number the cells in order of first appearance, so the numbering is the block order's
    _, first = np.unique(component, return_index=True)
    rank = np.empty(len(first), np.uint32)
    rank[np.argsort(first)] = np.arange(1, len(first) + 1, dtype=np.uint32)
    volume_label = rank[component] if total else np.zeros(0, np.uint32)
    return {
        f.block.index: np.concatenate([[0], volume_label[offsets[f.block.index] : offsets[f.block.index] + f.count]]).astype(np.uint32)
        for f in ordered
    }
