"""Cells labelled block by block are the whole slice's cells, one number each across block borders."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.inference.volume.blocks import block_grid
from emseg.inference.volume.stitching import block_labels, faces, relabel_tables
from emseg.segmentation.thinning import instance_labels

from conftest import synthetic_stack


def _blockwise(masks: np.ndarray, size: int, halo: int = 128) -> np.ndarray:
    blocks = block_grid(masks.shape, size)
    local = {b.index: block_labels(lambda r, c, z=b.z: masks[z][r, c], masks.shape[1:], b, halo) for b in blocks}
    tables = relabel_tables([faces(b, local[b.index]) for b in blocks])
    out = np.zeros(masks.shape, np.uint32)
    for b in blocks:
        out[b.z, b.rows, b.cols] = tables[b.index][local[b.index]]
    return out


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    cells = pairs[:, pairs[0] > 0]
    return bool(((a == 0) == (b == 0)).all()) and len(np.unique(cells[0])) == cells.shape[1] == len(np.unique(cells[1]))


@pytest.mark.parametrize("size", [16, 25, 40, 200])
def test_blockwise_cells_are_the_whole_slices_cells(size: int) -> None:
    images, labels = synthetic_stack(3, 90, 110, seed=5, cells=20)
    masks = labels > 0
    out = _blockwise(masks, size)
    for z in range(masks.shape[0]):
        whole = instance_labels(masks[z])
        assert _same_partition(out[z], whole)
    # numbered 1..n over the whole volume, no number shared between slices
    per_slice = [set(np.unique(out[z])) - {0} for z in range(3)]
    assert sum(map(len, per_slice)) == len(set().union(*per_slice)) == int(out.max())
    assert sorted(set().union(*per_slice)) == list(range(1, int(out.max()) + 1))


def test_the_numbering_does_not_depend_on_the_block_size() -> None:
    masks = synthetic_stack(2, 64, 64, seed=2, cells=10)[1] > 0
    assert _same_partition(_blockwise(masks, 16), _blockwise(masks, 64))


def test_an_empty_volume_has_no_cells() -> None:
    out = _blockwise(np.zeros((1, 40, 40), bool), 16)
    assert not out.any()
