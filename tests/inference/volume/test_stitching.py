"""Cells drawn block by block are the whole slice's cells, one number each across block borders."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.errors import EmsegError
from emseg.inference.volume.blocks import Block, block_grid
from emseg.inference.volume.stitching import LABEL_HALO, block_cells, border_joins, join_rule, relabel_tables, stitch_in_memory
from emseg.networks.prediction import Prediction
from emseg.segmentation.methods import segment
from emseg.segmentation.thinning import instance_labels

from conftest import synthetic_stack


def _components(masks: np.ndarray, size: int, halo: int = LABEL_HALO) -> np.ndarray:
    rule, band = join_rule("components")
    draw = lambda z: lambda r, c: instance_labels(masks[z][r, c])
    return stitch_in_memory(draw, masks.shape, block_grid(masks.shape, size), rule, band, halo)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    cells = pairs[:, pairs[0] > 0]
    return bool(((a == 0) == (b == 0)).all()) and len(np.unique(cells[0])) == cells.shape[1] == len(np.unique(cells[1]))


def _numbered_across_the_volume(out: np.ndarray) -> None:
    per_slice = [set(np.unique(out[z]).tolist()) - {0} for z in range(out.shape[0])]
    assert sum(map(len, per_slice)) == len(set().union(*per_slice)) == int(out.max())
    assert sorted(set().union(*per_slice)) == list(range(1, int(out.max()) + 1))


@pytest.mark.parametrize("size", [16, 25, 40, 200])
def test_blockwise_components_are_the_whole_slices_cells(size: int) -> None:
    masks = synthetic_stack(3, 90, 110, seed=5, cells=20)[1] > 0
    out = _components(masks, size)
    for z in range(masks.shape[0]):
        assert _same_partition(out[z], instance_labels(masks[z]))
    _numbered_across_the_volume(out)


def test_the_numbering_does_not_depend_on_the_block_size() -> None:
    masks = synthetic_stack(2, 64, 64, seed=2, cells=10)[1] > 0
    assert _same_partition(_components(masks, 16), _components(masks, 64))


def test_an_empty_volume_has_no_cells() -> None:
    assert not _components(np.zeros((1, 40, 40), bool), 16).any()


def _agreeing(a: np.ndarray, b: np.ndarray) -> float:
    """The share of pixels on which two labellings agree once each cell of `a` is matched to its largest overlap in `b`."""
    pairs, counts = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1, return_counts=True)
    best = {}
    for (x, y), n in zip(pairs.T.tolist(), counts.tolist()):
        if n > best.get(x, (0, 0))[1]:
            best[x] = (y, n)
    matched = [y for y, _ in best.values()]
    assert len(set(matched)) == len(matched), "two cells matched to one"
    return sum(n for _, n in best.values()) / a.size


@pytest.mark.parametrize("size", [24, 40])
def test_blockwise_gasp_is_the_whole_slices_gasp_and_a_cell_cut_by_a_border_keeps_one_label(size: int) -> None:
    from scipy.ndimage import gaussian_filter

    masks = synthetic_stack(2, 96, 112, seed=3, cells=14)[1] > 0
    membranes = np.stack([np.clip(gaussian_filter((~m).astype(np.float32), 1.0) * 1.5, 0, 1) for m in masks])
    draw = lambda z: lambda r, c: segment("gasp", Prediction(membranes[z][r, c]))
    blocks = block_grid(masks.shape, size)
    rule, band = join_rule("gasp")
    out = stitch_in_memory(draw, masks.shape, blocks, rule, band, halo=48)
    cut = 0
    for z in range(masks.shape[0]):
        whole = segment("gasp", Prediction(membranes[z]))
        assert len(np.unique(whole)) >= 10
        # the same cells, up to the few pixels where a watershed's ties fall otherwise in a smaller region
        assert _agreeing(out[z], whole) > 0.995 and _agreeing(whole, out[z]) > 0.995
        for cell in np.unique(whole):
            inside = [b for b in blocks if b.z == z and (whole[b.rows, b.cols] == cell).any()]
            if len(inside) > 1:  # cut by a block border: still one label
                cut += 1
                assert np.bincount(out[z][whole == cell]).max() > 0.98 * (whole == cell).sum()
    assert cut >= 5  # the test means something only if cells do cross block borders
    _numbered_across_the_volume(out)


def test_overlap_joins_take_mutual_best_matches_only() -> None:
    # rows 0-1 above the border, 2-3 below; the first block splits what the second keeps whole, and vice versa
    first = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [1, 1, 2, 2], [1, 1, 1, 1]], np.uint32)
    second = np.array([[3, 3, 4, 4], [3, 3, 4, 4], [3, 3, 4, 4], [3, 3, 3, 3]], np.uint32)
    a, b = border_joins(first, second, "overlap")
    assert sorted(zip(a.tolist(), b.tolist())) == [(1, 3), (2, 4)]
    # a small sliver that overlaps a big cell is not its best match: no join
    a, b = border_joins(np.array([[5, 5, 5, 5], [5, 5, 5, 5]], np.uint32), np.array([[7, 7, 7, 7], [7, 8, 8, 7]], np.uint32), "overlap")
    assert a.tolist() == [5] and b.tolist() == [7]


def test_touch_joins_pair_the_two_core_lines_across_the_border() -> None:
    first = np.array([[1, 0, 2], [9, 9, 9]], np.uint32)  # its last core line, then what it drew beyond (ignored)
    second = np.array([[9, 9, 9], [3, 3, 0]], np.uint32)  # what it drew before the border (ignored), then its first line
    a, b = border_joins(first, second, "touch")
    assert sorted(set(zip(a.tolist(), b.tolist()))) == [(1, 3)]


def test_bad_bands_and_rules_are_refused() -> None:
    with pytest.raises(EmsegError, match="halo"):
        block_cells(lambda r, c: np.ones((10, 10), np.uint32), (10, 10), Block(0, 0, 0, 10, 0, 10), 10, halo=4, band=8)
    with pytest.raises(EmsegError, match="join rule"):
        border_joins(np.zeros((2, 3), np.uint32), np.zeros((2, 3), np.uint32), "nearest")


def test_relabel_tables_number_in_order_of_first_appearance() -> None:
    tables = relabel_tables({0: 2, 1: 2}, [(0, np.array([2]), 1, np.array([1]))])
    assert tables[0].tolist() == [0, 1, 2] and tables[1].tolist() == [0, 2, 3]
