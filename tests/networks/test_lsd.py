"""emseg.networks.lsd: local shape descriptors whose values are known, and that turn with their patch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emseg.config.layout import CELL_VALUE
from emseg.networks.lsd import LSD_CHANNELS, lsd_targets, turn_descriptors

from conftest import synthetic_stack


def test_a_round_cell_centres_its_descriptors_and_membranes_carry_none() -> None:
    yy, xx = np.mgrid[:61, :61]
    label = np.where((yy - 30) ** 2 + (xx - 30) ** 2 <= 20**2, CELL_VALUE, 0).astype(np.uint8)
    lsd, mask = lsd_targets(label, 4.0, downsample=1)
    assert lsd.shape == (LSD_CHANNELS, 61, 61) and lsd.dtype == np.float32
    np.testing.assert_array_equal(mask, label == CELL_VALUE)
    assert not lsd[:, label == 0].any()
    centre = lsd[:, 30, 30]
    assert abs(centre[0]) < 1e-4 and abs(centre[1]) < 1e-4 and abs(centre[4]) < 1e-4  # no pull, no tilt
    assert centre[2] == pytest.approx(1.0, abs=0.02) and centre[5] == pytest.approx(1.0, abs=0.01)  # the whole window inside
    near_top = lsd[:, 11, 30]  # one pixel inside the top edge: the cell's mass lies below it, half the window is out
    assert near_top[0] > 0.3 and abs(near_top[1]) < 1e-4 and 0.4 < near_top[5] < 0.7


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_turned_descriptors_are_the_descriptors_of_the_turned_label(k: int, flip: bool) -> None:
    label = synthetic_stack(1, 48, 56, seed=3, cells=6)[1][0]
    lsd, _ = lsd_targets(label, 5.0, downsample=1)
    turned = np.rot90(label, k)
    turned = np.ascontiguousarray(turned[:, ::-1] if flip else turned)
    moved = torch.rot90(torch.from_numpy(lsd), k, dims=(-2, -1))
    moved = torch.flip(moved, (-1,)) if flip else moved
    np.testing.assert_allclose(turn_descriptors(moved, k, flip).numpy(), lsd_targets(turned, 5.0, downsample=1)[0], atol=1e-4)


def test_the_coarse_grid_keeps_the_shape_and_stays_close() -> None:
    label = synthetic_stack(1, 50, 63, seed=4, cells=5)[1][0]
    fine, mask = lsd_targets(label, 6.0, downsample=1)
    coarse, same_mask = lsd_targets(label, 6.0)
    assert coarse.shape == fine.shape
    np.testing.assert_array_equal(mask, same_mask)
    assert np.abs(coarse - fine)[:, mask > 0].mean() < 0.1
