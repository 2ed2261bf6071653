"""emseg.training.malis: constrained MALIS pair counts and loss of the nearest-neighbour affinities."""

from __future__ import annotations

import numpy as np
import torch

from emseg.config.layout import CELL_VALUE, UNLABELLED_VALUE
from emseg.networks.affinities import affinity_targets
from emseg.training.malis import NEAREST, MalisLoss, malis_weights


def _two_cells(height: int = 6, width: int = 7) -> np.ndarray:
    label = np.full((height, width), CELL_VALUE, np.uint8)
    label[:, 3] = 0  # a membrane column between two cells of 3 x 6 and 3 x 6 pixels
    return label


def _weights(label: np.ndarray, joined: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    target, mask = affinity_targets(label, NEAREST)
    return malis_weights(joined, target < 0.5, mask)


def test_every_pair_of_one_cell_and_every_pair_of_two_cells_is_counted_once() -> None:
    label = _two_cells()
    positive, negative = _weights(label, np.random.default_rng(0).random((2, 6, 7)))
    assert positive.sum() == 2 * (18 * 17 // 2) and negative.sum() == 18 * 18


def test_a_bridge_across_the_membrane_takes_all_the_negative_weight_at_its_weakest_edge() -> None:
    label = _two_cells()
    joined = np.full((2, 6, 7), 0.9)
    joined[1, :, 3] = joined[1, :, 4] = 0.05  # the horizontal edges into and out of the membrane column: cut
    joined[1, 2, 3], joined[1, 2, 4] = 0.6, 0.4  # but row 2 bridges the column, weakest at its second edge
    positive, negative = _weights(label, joined)
    assert negative[1, 2, 4] == 18 * 18 and negative.sum() == 18 * 18
    assert positive[1, :, 3:5].sum() == 0  # no pair of one cell is joined across the membrane


def test_unlabelled_pixels_belong_to_no_cell_and_count_in_no_pair() -> None:
    label = _two_cells()
    label[:, 5:] = UNLABELLED_VALUE  # the right cell keeps one column of 6 pixels
    positive, negative = _weights(label, np.random.default_rng(1).random((2, 6, 7)))
    assert positive.sum() == 18 * 17 // 2 + 6 * 5 // 2 and negative.sum() == 18 * 6


def test_the_loss_pulls_the_bridge_apart_and_keeps_the_cells_joined() -> None:
    label = _two_cells()
    target, mask = (torch.from_numpy(a)[None] for a in affinity_targets(label, NEAREST))
    logits = torch.zeros(1, 2, 6, 7, requires_grad=True)  # every pair joined with probability 0.5
    loss = MalisLoss()(logits, target, mask)
    loss.backward()
    inside = (target < 0.5) & (mask > 0.5)
    # the logits are boundary probabilities: descending the gradient raises them across the membrane, lowers them inside
    assert loss > 0 and (logits.grad[inside] >= 0).all() and (logits.grad[~inside & (mask > 0.5)] <= 0).all()
    assert logits.grad[~inside & (mask > 0.5)].sum() < 0


def test_a_patch_without_cells_costs_nothing() -> None:
    label = np.zeros((5, 5), np.uint8)
    target, mask = (torch.from_numpy(a)[None] for a in affinity_targets(label, NEAREST))
    assert MalisLoss()(torch.randn(1, 2, 5, 5), target, mask) == 0
