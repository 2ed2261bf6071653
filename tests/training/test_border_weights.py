import numpy as np
import pytest

from emseg.training.border_weights import border_weight_map


def test_thin_membrane_between_two_cells_weighs_most() -> None:
    label = np.full((20, 40), 255, np.uint8)
    label[:, 10] = 0  # 1-px membrane between cells A and B
    label[:, 25:31] = 0  # 6-px membrane between cells B and C
    weights = border_weight_map(label, w0=10.0, sigma=5.0)
    assert np.all(weights[label > 0] == 1.0)
    # 1-px membrane: d1 = d2 = 1 -> 1 + 10 exp(-4/50)
    assert weights[5, 10] == pytest.approx(1 + 10 * np.exp(-4 / 50), rel=1e-5)
    # the middle of the 6-px membrane (column 27): d1 = 3, d2 = 4
    assert weights[5, 27] == pytest.approx(1 + 10 * np.exp(-49 / 50), rel=1e-5)


def test_membrane_inside_one_cell_gets_little_extra_weight() -> None:
    label = np.full((40, 40), 255, np.uint8)
    label[18:21, 18:21] = 0  # an organelle outline inside a single cell
    weights = border_weight_map(label, w0=10.0, sigma=5.0)
    assert weights.max() < 1.01  # no second cell nearby


def test_all_membrane_slice() -> None:
    weights = border_weight_map(np.zeros((8, 8), np.uint8), w0=10.0, sigma=5.0)
    assert np.all(weights == 1.0)
