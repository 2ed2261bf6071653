"""Cell labels of a volume, block by block, numbered consistently across block borders.

Each block's cells are drawn on the block and a halo of `halo` pixels around it (by any
cell method: the caller passes the drawing), then cut to the core and numbered 1..n there
([`block_cells`][emseg.inference.volume.stitching.block_cells]). Beside its core, a block
keeps its own labels of the `2 * band` pixels straddling each of its four core edges (its
"bands"). Two neighbouring blocks have labelled those pixels each in its own way, and
[`border_joins`][emseg.inference.volume.stitching.border_joins] says which of their cells
are one:

* `touch` (the `components` method, `band` 1): the flooding that thins borders to 1-pixel
  lines leaves a 0-line between any two different cells, and with a halo wider than any
  membrane a block's core equals the whole slice's labels, so two non-zero pixels that touch
  across the border are one cell;
* `overlap` (the agglomerations, whose cells touch without a 0-line): a cell of one block and
  a cell of the other are one when each is the other's largest overlap in the band and the
  overlap covers at least `MIN_OVERLAP` of the smaller one's pixels there. This is
  python-elf's overlap stitching (`elf.segmentation.stitching.stitch_segmentation`, which
  holds the whole segmentation in memory and solves a multicut over it), made block-local:
  a mutual best match needs only the two bands, so memory stays flat as the volume grows.

The joins are the edges of a graph whose connected components
(`scipy.sparse.csgraph.connected_components`) are the cells of the volume
([`relabel_tables`][emseg.inference.volume.stitching.relabel_tables]), numbered 1, 2, ... in
the order they first appear (block by block, each block's cells in its own order): the same
numbers on every run and for every worker count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from emseg.errors import EmsegError
from emseg.inference.volume.blocks import Block

#: pixels of prediction read around a block for its cells
LABEL_HALO = 128
#: pixels on each side of a block border whose two labellings the `overlap` join compares
STITCH_BAND = 16
#: the least share of the smaller cell's band pixels that a mutual best overlap must cover
MIN_OVERLAP = 0.5
#: the join rules of `border_joins`
JOINS = ("touch", "overlap")

#: draws the cells (`uint32`, 0 = no cell) of a region (rows, columns) of one slice
RegionCells = Callable[[slice, slice], np.ndarray]


def join_rule(method: str) -> tuple[str, int]:
    """How the blocks of a cell method are joined, and the band they keep: `components` touch, the rest overlap."""
    return ("touch", 1) if method == "components" else ("overlap", STITCH_BAND)


@dataclass(frozen=True)
class BlockCells:
    """One block's cells: its core's local labels 1..`count` (0 = no cell), and its four bands.

    `bands` is `(4, 2 * band, side)`: top, bottom, left and right, each the block's local
    labels of the `2 * band` rows (for left and right: columns, transposed) straddling that
    core edge, across the core's width (height); 0 outside the slice and beyond the core's
    side, and for cells the block's core does not hold.
    """

    block: Block
    core: np.ndarray
    count: int
    bands: np.ndarray


def _band(outer: np.ndarray, origin: tuple[int, int], slice_shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """The labels of global rows and columns `[start, stop)` from `outer` (at `origin`), 0 outside the slice."""
    out = np.zeros((rows[1] - rows[0], cols[1] - cols[0]), outer.dtype)
    r0, r1 = max(rows[0], 0), min(rows[1], slice_shape[0])
    c0, c1 = max(cols[0], 0), min(cols[1], slice_shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - rows[0] : r1 - rows[0], c0 - cols[0] : c1 - cols[0]] = outer[r0 - origin[0] : r1 - origin[0], c0 - origin[1] : c1 - origin[1]]
    return out


def _to_local(labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`labels` numbered by their place in `values` (sorted, non-zero) plus one; 0 for values not there."""
    if len(values) == 0:
        return np.zeros(labels.shape, np.uint32)
    place = np.minimum(np.searchsorted(values, labels), len(values) - 1)
    return np.where((values[place] == labels) & (labels != 0), place + 1, 0).astype(np.uint32)


def block_cells(draw: RegionCells, slice_shape: tuple[int, int], block: Block, side: int, halo: int = LABEL_HALO, band: int = 1) -> BlockCells:
    """The cells of a block's core, drawn with a halo, and its bands.

    Args:
        draw: Draws the cells of a region of the block's slice.
        slice_shape: The slice's (height, width).
        block: The block.
        side: The bands' length (the grid's block side; smaller blocks are padded with 0).
        halo: The pixels drawn around the core.
        band: The pixels kept on each side of each core edge (at most `halo`).

    Raises:
        EmsegError: A band wider than the halo.
    """
    if not 1 <= band <= halo:
        raise EmsegError(f"a stitching band of {band} pixels needs a halo of at least as many, got {halo}")
    height, width = slice_shape
    rows = slice(max(block.y0 - halo, 0), min(block.y1 + halo, height))
    cols = slice(max(block.x0 - halo, 0), min(block.x1 + halo, width))
    outer = np.asarray(draw(rows, cols))
    core = outer[block.y0 - rows.start : block.y1 - rows.start, block.x0 - cols.start : block.x1 - cols.start]
    values, inverse = np.unique(core, return_inverse=True)
    local = (inverse.reshape(core.shape) + (values[0] != 0)).astype(np.uint32)  # 0 stays 0, cells become 1..n
    values = values[values != 0]
    origin = (rows.start, cols.start)
    across = (block.x0, block.x1)
    down = (block.y0, block.y1)
    strips = [
        _band(outer, origin, slice_shape, (block.y0 - band, block.y0 + band), across),
        _band(outer, origin, slice_shape, (block.y1 - band, block.y1 + band), across),
        _band(outer, origin, slice_shape, down, (block.x0 - band, block.x0 + band)).T,
        _band(outer, origin, slice_shape, down, (block.x1 - band, block.x1 + band)).T,
    ]
    bands = np.zeros((4, 2 * band, side), np.uint32)
    for i, strip in enumerate(strips):
        bands[i, :, : strip.shape[1]] = _to_local(strip, values)
    return BlockCells(block, local, len(values), bands)


def border_joins(first: np.ndarray, second: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of cells that are one across a border: local labels of `first` and of `second`.

    `first` is the upper (left) block's band along the border, `second` the lower (right)
    block's band along the same border, both `(2 * band, side)`, rows in the same global order.

    Args:
        first: The upper or left block's band.
        second: The lower or right block's band.
        rule: `touch` or `overlap` (the module's description says what each joins).

    Raises:
        EmsegError: An unknown rule, or bands of different shapes.
    """
    if rule not in JOINS:
        raise EmsegError(f"unknown join rule {rule!r}; one of {', '.join(JOINS)}")
    if first.shape != second.shape:
        raise EmsegError(f"bands of shapes {first.shape} and {second.shape} do not meet")
    if rule == "touch":
        band = first.shape[0] // 2
        mine, theirs = first[band - 1], second[band]  # the last core line of the first block, the first of the second
        touching = (mine > 0) & (theirs > 0)
        return mine[touching].astype(np.int64), theirs[touching].astype(np.int64)
    a, b = first.astype(np.int64).ravel(), second.astype(np.int64).ravel()
    both = (a > 0) & (b > 0)
    if not both.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    base = int(b.max()) + 1
    pairs, counts = np.unique(a[both] * base + b[both], return_counts=True)
    pa, pb = pairs // base, pairs % base
    # each one's largest overlap (ties: the smaller label), by sorting on (label, -count, other)
    best_of_a = np.lexsort((pb, -counts, pa))
    best_of_a = best_of_a[np.r_[True, pa[best_of_a][1:] != pa[best_of_a][:-1]]]
    best_of_b = np.lexsort((pa, -counts, pb))
    best_of_b = best_of_b[np.r_[True, pb[best_of_b][1:] != pb[best_of_b][:-1]]]
    mutual = np.intersect1d(best_of_a, best_of_b)
    size_a, size_b = np.bincount(a), np.bincount(b)
    smaller = np.minimum(size_a[pa[mutual]], size_b[pb[mutual]])
    kept = mutual[counts[mutual] >= MIN_OVERLAP * smaller]
    return pa[kept], pb[kept]


def neighbours(blocks: Iterable[Block]) -> list[tuple[Block, Block, int]]:
    """Every pair of blocks that share a border, as `(first, second, side)`: side 1 (second below) or 3 (second right of it)."""
    by_corner = {(b.z, b.y0, b.x0): b for b in blocks}
    pairs = []
    for block in sorted(by_corner.values(), key=lambda b: b.index):
        below = by_corner.get((block.z, block.y1, block.x0))
        if below is not None:
            pairs.append((block, below, 1))
        beside = by_corner.get((block.z, block.y0, block.x1))
        if beside is not None:
            pairs.append((block, beside, 3))
    return pairs


#: the band of the second block that meets the first's band `side` (bottom meets top, right meets left)
FACING = {1: 0, 3: 2}


def relabel_tables(counts: dict[int, int], joins: Iterable[tuple[int, np.ndarray, int, np.ndarray]]) -> dict[int, np.ndarray]:
    """Per block index, the table from local label to volume label (entry 0 is 0).

    Args:
        counts: Each block's number of local cells.
        joins: `(block, labels, other block, other labels)`: the local cells that are one.

    Raises:
        EmsegError: More cells than `uint32` labels can number.
    """
    offsets, total = {}, 0
    for index in sorted(counts):
        offsets[index] = total
        total += counts[index]
    if total >= np.iinfo(np.uint32).max:
        raise EmsegError(f"{total} cells do not fit uint32 labels")
    sources, targets = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for first, mine, second, theirs in joins:
        sources.append(np.asarray(mine, np.int64) + offsets[first] - 1)
        targets.append(np.asarray(theirs, np.int64) + offsets[second] - 1)
    s, t = np.concatenate(sources), np.concatenate(targets)
    graph = coo_matrix((np.ones(len(s), np.int8), (s, t)), shape=(total, total))
    _, component = connected_components(graph, directed=False)
    # number the cells in order of first appearance, so the numbering is the block order's
    _, first_seen = np.unique(component, return_index=True)
    rank = np.empty(len(first_seen), np.uint32)
    rank[np.argsort(first_seen)] = np.arange(1, len(first_seen) + 1, dtype=np.uint32)
    volume_label = rank[component] if total else np.zeros(0, np.uint32)
    return {
        index: np.concatenate([[0], volume_label[offsets[index] : offsets[index] + counts[index]]]).astype(np.uint32)
        for index in counts
    }


def stitch_in_memory(draw: Callable[[int], RegionCells], shape: tuple[int, int, int], blocks: list[Block], rule: str, band: int, halo: int = LABEL_HALO) -> np.ndarray:
    """The volume's cells drawn block by block and stitched, all in memory (the block path's logic, for tests and benchmarks).

    Args:
        draw: For a slice index, what draws the cells of a region of it.
        shape: The volume's (Z, Y, X).
        blocks: Its block grid.
        rule: The join rule.
        band: The band each block keeps.
        halo: The pixels drawn around each core.
    """
    side = max(max(b.y1 - b.y0, b.x1 - b.x0) for b in blocks)
    found = {b.index: block_cells(draw(b.z), shape[1:], b, side, halo, band) for b in blocks}
    joins = []
    for first, second, edge in neighbours(blocks):
        mine, theirs = border_joins(found[first.index].bands[edge], found[second.index].bands[FACING[edge]], rule)
        joins.append((first.index, mine, second.index, theirs))
    tables = relabel_tables({i: c.count for i, c in found.items()}, joins)
    out = np.zeros(shape, np.uint32)
    for b in blocks:
        out[b.z, b.rows, b.cols] = tables[b.index][found[b.index].core]
    return out
