"""Block cores predicted with the whole slice's tile layout equal the whole-slice prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emseg.inference.rescale import to_input_grid, to_model_grid
from emseg.inference.sliding_window import TilePredictor, predict_membrane
from emseg.inference.volume.blocks import (
    SliceStats,
    block_grid,
    block_windows,
    halo_region,
    predict_block,
    predict_rescaled_block,
    rescaled_halo,
    slice_windows,
)
from emseg.networks.architectures import build_network, resolve_kwargs
from emseg.preprocessing.normalization import _mean_std

from conftest import TINY_UNET, synthetic_slice

PATCH = 32


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network("unet", resolve_kwargs("unet", TINY_UNET)).eval()


@pytest.mark.parametrize("shape, size", [((1, 10, 10), 4), ((2, 33, 70), 16), ((1, 64, 64), 64), ((3, 5, 200), 48)])
def test_the_grid_covers_every_pixel_once(shape: tuple[int, int, int], size: int) -> None:
    seen = np.zeros(shape, int)
    for index, block in enumerate(block_grid(shape, size)):
        assert block.index == index
        seen[block.z, block.rows, block.cols] += 1
    assert (seen == 1).all()


def test_a_block_reads_at_most_one_patch_beyond_its_core() -> None:
    shape = (200, 300)
    windows = slice_windows(shape, PATCH, 0.5)
    for block in block_grid((1, *shape), 50):
        rows, cols = halo_region(block_windows(windows, block))
        assert block.y0 - PATCH < rows.start <= block.y0 and block.y1 <= rows.stop < block.y1 + PATCH
        assert block.x0 - PATCH < cols.start <= block.x0 and block.x1 <= cols.stop < block.x1 + PATCH


def test_slice_stats_are_those_of_the_in_memory_normalisation() -> None:
    image = synthetic_slice(700, 90, seed=3)[0]
    assert SliceStats(lambda r, c: image[r, c], image.shape).mean_std() == _mean_std(image)


@pytest.mark.parametrize(
    "shape, size, overlap, tta",
    [((100, 90), 16, 0.5, False), ((100, 90), 50, 0.25, False), ((64, 96), 32, 0.5, True), ((20, 150), 40, 0.5, False)],
)
def test_block_cores_equal_the_whole_slice_prediction(model, shape, size, overlap, tta) -> None:
    image = synthetic_slice(*shape, seed=1)[0]
    whole = predict_membrane(model, image, PATCH, overlap=overlap, tta=tta, batch_size=3, amp=False)
    read = lambda rows, cols: image[rows, cols]  # noqa: E731
    stats = SliceStats(read, shape).mean_std()
    tiles = TilePredictor(model, tta, False)
    blocked = np.full(shape, np.nan, np.float32)
    for block in block_grid((1, *shape), size):
        blocked[block.rows, block.cols] = predict_block(tiles, read, shape, block, PATCH, overlap, 3, stats)[0]
    # the same windows, weights and order: only tile batches of other company differ
    np.testing.assert_allclose(blocked, whole, rtol=0, atol=1e-5)


@pytest.mark.parametrize("factors, halo", [((2.0, 2.0), (18, 18)), ((0.6, 0.6), (56, 56))])
def test_rescaled_block_cores_are_the_rescaled_whole_slice_up_to_the_borders(model, factors, halo) -> None:
    shape = (60, 76)
    image = synthetic_slice(*shape, seed=2)[0]
    assert rescaled_halo(PATCH, factors) == halo  # one model window (32 / factor input pixels), and 2 for the interpolation
    whole = to_input_grid(predict_membrane(model, to_model_grid(image, factors), PATCH, batch_size=4, amp=False), shape)
    read = lambda rows, cols: image[rows, cols]
    stats = SliceStats(read, shape).mean_std()
    tiles = TilePredictor(model, False, False)
    blocked = np.full(shape, np.nan, np.float32)
    for block in block_grid((1, *shape), 30):
        core = predict_rescaled_block(tiles, read, shape, block, factors, PATCH, 0.5, 4, stats)
        assert core.shape == (1, block.y1 - block.y0, block.x1 - block.x0) and core.dtype == np.float32
        blocked[block.rows, block.cols] = core[0]
    assert not np.isnan(blocked).any() and blocked.min() >= 0 and blocked.max() <= 1
    # each block resampled on its own and normalised with the input slice's statistics: close, not equal
    assert np.abs(blocked - whole).mean() < 0.02
