"""emseg.preprocessing.normalization: per-slice z-scoring, the one definition for training and inference."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.errors import EmsegError
from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION, _mean_std, normalize


def test_a_slice_comes_out_with_mean_zero_and_std_one() -> None:
    image = np.random.default_rng(0).integers(0, 256, (64, 80)).astype(np.uint8)
    out = normalize(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert abs(float(out.mean())) < 1e-5 and float(out.std()) == pytest.approx(1.0, abs=1e-5)


def test_a_microscope_gain_and_offset_change_nothing() -> None:
    """Why per-slice z-scoring: another lab's brighter or darker image gives the network the same input."""
    image = np.random.default_rng(1).random((40, 48)).astype(np.float32)
    np.testing.assert_allclose(normalize(image), normalize(3.0 * image + 20.0), atol=1e-4)
    as_16_bit = (image * 4000 + 1000).astype(np.uint16)
    np.testing.assert_allclose(normalize(as_16_bit), normalize(as_16_bit.astype(np.float64) / 7.0), atol=1e-4)


def test_the_banded_statistics_equal_numpy_on_a_tall_image() -> None:
    image = np.random.default_rng(2).integers(0, 65535, (1000, 37)).astype(np.uint16)
    mean, std = _mean_std(image, rows_per_chunk=64)
    assert mean == pytest.approx(float(image.mean()), rel=1e-12) and std == pytest.approx(float(image.std()), rel=1e-9)


def test_a_constant_slice_gives_zeros_not_nan() -> None:
    out = normalize(np.full((8, 8), 7, np.uint8))
    assert np.isfinite(out).all() and not out.any()


def test_the_input_is_left_as_it_was() -> None:
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    kept = image.copy()
    normalize(image)
    np.testing.assert_array_equal(image, kept)


def test_a_model_file_asking_for_another_normalisation_is_refused() -> None:
    assert DEFAULT_NORMALIZATION == {"kind": "zscore_per_slice"}
    with pytest.raises(EmsegError, match="unknown normalisation 'minmax' in the model file"):
        normalize(np.zeros((2, 2)), {"kind": "minmax"})
