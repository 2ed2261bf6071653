import numpy as np
import pytest
import torch

from emseg.inference.sliding_window import (
    DIHEDRAL,
    TilePredictor,
    _forward,
    count_tiles,
    predict_affinities,
    predict_membrane,
    predict_with_logits,
    predict_with_uncertainty,
)
from emseg.networks.affinities import untransform


class _Darkness(torch.nn.Module):
    """A fixed 'model': membrane logit high where the (normalised) image is dark."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -4.0 * x


@pytest.mark.parametrize("shape", [(64, 64), (37, 101), (10, 9)])
def test_any_size_gives_a_probability_map_of_that_size(shape) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=shape, dtype=np.uint8)
    proba = predict_membrane(_Darkness(), image, patch_size=32, tta=True)
    assert proba.shape == shape and proba.dtype == np.float32
    assert 0.0 <= proba.min() and proba.max() <= 1.0
    # dark pixels get the higher membrane probability
    assert proba[image < 60].mean() > proba[image > 200].mean()


def test_tta_of_an_equivariant_model_changes_nothing() -> None:
    image = np.random.default_rng(1).integers(0, 255, size=(48, 40), dtype=np.uint8)
    plain = predict_membrane(_Darkness(), image, patch_size=32, tta=False)
    tta = predict_membrane(_Darkness(), image, patch_size=32, tta=True)
    np.testing.assert_allclose(plain, tta, atol=1e-6)


@pytest.mark.parametrize("k, flip", DIHEDRAL)
def test_each_tta_variant_is_undone(k: int, flip: bool) -> None:
    tiles = torch.arange(2 * 12 * 12, dtype=torch.float32).reshape(2, 1, 12, 12)
    # an identity model: whatever the variant does to the tile must be undone exactly
    torch.testing.assert_close(_forward(tiles, k, flip, torch.nn.Identity()), tiles, rtol=0, atol=0)
    if (k, flip) != (0, False):
        transformed = torch.rot90(torch.flip(tiles, (-1,)) if flip else tiles, k, dims=(-2, -1))
        assert not torch.equal(transformed, tiles)


def test_tta_averages_eight_variants() -> None:
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.clone())
            return torch.zeros_like(x)

    TilePredictor(Recorder(), tta=True, amp=False)(torch.randn(1, 1, 8, 8))
    assert len(seen) == 8 and len({t.numpy().tobytes() for t in seen}) == 8



@pytest.mark.parametrize("shape", [(64, 64), (67, 45), (10, 9), (130, 300), (32, 33)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_count_tiles_equals_the_tiles_the_predictor_sees(shape, overlap) -> None:
    seen: list[int] = []
    image = np.random.default_rng(0).integers(0, 255, size=shape, dtype=np.uint8)
    predict_membrane(_Darkness(), image, 32, overlap=overlap, batch_size=3, progress=seen.append)
    assert sum(seen) == count_tiles(shape, 32, overlap)
    assert all(n <= 3 for n in seen)


def test_progress_hook_changes_nothing_and_counts_tiles_once_with_tta() -> None:
    image = np.random.default_rng(2).integers(0, 255, size=(50, 70), dtype=np.uint8)
    seen: list[int] = []
    plain = predict_membrane(_Darkness(), image, 32, tta=True)
    hooked = predict_membrane(_Darkness(), image, 32, tta=True, progress=seen.append)
    np.testing.assert_array_equal(plain, hooked)
    assert sum(seen) == count_tiles(image.shape, 32, 0.5)
    # the positional signature is unchanged
    TilePredictor(_Darkness(), False, False)(torch.zeros(1, 1, 8, 8))


def test_the_logits_pass_gives_the_same_map_and_its_logits() -> None:
    image = np.random.default_rng(3).integers(0, 255, size=(40, 52), dtype=np.uint8)
    for tta in (False, True):
        proba, logits = predict_with_logits(_Darkness(), image, 32, tta=tta)
        np.testing.assert_array_equal(proba, predict_membrane(_Darkness(), image, 32, tta=tta))
        assert logits.shape == (1, 1, 40, 52)
        # an equivariant model: the blended logits are the logits of the image
        np.testing.assert_allclose(torch.sigmoid(logits)[0, 0].numpy(), proba, atol=1e-5)


class _PairDifference(torch.nn.Module):
    """A fixed affinity 'model': each channel is |x(p) - x(p + offset)|, which flips and turns carry along."""

    def __init__(self, offsets) -> None:
        super().__init__()
        self.offsets = offsets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from emseg.inference.sliding_window import _shift

        return torch.cat([8.0 * (x - _shift(x, offset)).abs() - 4.0 for offset in self.offsets], dim=1)


OFFSETS = ((-1, 0), (0, -1), (-3, 0), (0, -3))


def test_tta_of_an_equivariant_affinity_model_changes_nothing() -> None:
    image = np.random.default_rng(5).integers(0, 255, size=(32, 32), dtype=np.uint8)
    plain = predict_affinities(_PairDifference(OFFSETS), image, 32, OFFSETS, tta=False)
    tta = predict_affinities(_PairDifference(OFFSETS), image, 32, OFFSETS, tta=True)
    assert plain.shape == (4, 32, 32)
    # away from the tile's edge, where a turned tile's pairs reach outside it
    np.testing.assert_allclose(tta[:, 3:-3, 3:-3], plain[:, 3:-3, 3:-3], atol=1e-5)


def test_tta_of_affinities_is_the_mean_of_the_turned_images_predictions_turned_back() -> None:
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 4, 3, padding=1)
    image = np.random.default_rng(6).integers(0, 255, size=(32, 32), dtype=np.uint8)
    tta = predict_affinities(model, image, 32, OFFSETS, tta=True)
    total, weights = np.zeros((4, 32, 32)), np.zeros((4, 32, 32))
    for k, flip in DIHEDRAL:
        variant = np.ascontiguousarray(np.rot90(image[:, ::-1] if flip else image, k))
        back, weight = untransform(predict_affinities(model, variant, 32, OFFSETS), OFFSETS, k, flip)
        total, weights = total + back, weights + weight
    np.testing.assert_allclose(tta, total / weights, atol=1e-5)


@pytest.mark.parametrize("side", [1, 5, 16])
def test_tta_of_affinities_works_on_images_smaller_than_the_longest_offset(side: int) -> None:
    """An offset that leaves the tile from every pixel has no pair to remap: its channel is weighted out, not a crash."""
    offsets = ((-1, 0), (0, -1), (-27, 0), (0, -27))
    torch.manual_seed(0)
    image = np.random.default_rng(7).integers(0, 255, size=(side, side), dtype=np.uint8)
    affinities = predict_affinities(torch.nn.Conv2d(1, 4, 3, padding=1), image, 32, offsets, tta=True)
    assert affinities.shape == (4, side, side) and np.isfinite(affinities).all()


def _variance_by_hand(model, image, offsets=None) -> np.ndarray:
    """The variance of the 8 variants' probabilities, each predicted alone and turned back, mean over the channels."""
    maps, weights = [], []
    for k, flip in DIHEDRAL:
        variant = np.ascontiguousarray(np.rot90(image[:, ::-1] if flip else image, k))
        if offsets is None:
            back = predict_membrane(model, variant, 32)
            back = np.rot90(back, -k)
            maps.append((back[:, ::-1] if flip else back)[None])
            weights.append(np.ones_like(maps[-1]))
        else:
            back, weight = untransform(predict_affinities(model, variant, 32, offsets), offsets, k, flip)
            maps.append(back)
            weights.append(weight)
    maps, weights = np.array(maps, np.float64), np.array(weights, np.float64)
    total = weights.sum(0).clip(min=1.0)
    mean = (maps * weights).sum(0) / total
    return ((maps**2 * weights).sum(0) / total - mean**2).clip(min=0.0).mean(0)


def test_the_uncertainty_is_the_variance_of_the_eight_variants() -> None:
    torch.manual_seed(1)
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    image = np.random.default_rng(8).integers(0, 255, size=(32, 32), dtype=np.uint8)
    proba, variance = predict_with_uncertainty(model, image, 32)
    np.testing.assert_array_equal(proba, predict_membrane(model, image, 32, tta=True))
    assert variance.shape == (32, 32) and variance.dtype == np.float32 and variance.max() > 1e-4
    np.testing.assert_allclose(variance, _variance_by_hand(model, image), atol=1e-5)


def test_the_uncertainty_of_affinities_averages_the_channels_variances() -> None:
    torch.manual_seed(2)
    model = torch.nn.Conv2d(1, 4, 3, padding=1)
    image = np.random.default_rng(9).integers(0, 255, size=(32, 32), dtype=np.uint8)
    affinities, variance = predict_with_uncertainty(model, image, 32, OFFSETS)
    np.testing.assert_allclose(affinities, predict_affinities(model, image, 32, OFFSETS, tta=True), atol=1e-6)
    np.testing.assert_allclose(variance, _variance_by_hand(model, image, OFFSETS), atol=1e-5)


def test_an_equivariant_model_is_certain_and_the_uncertainty_needs_tta() -> None:
    image = np.random.default_rng(10).integers(0, 255, size=(40, 48), dtype=np.uint8)
    _, variance = predict_with_uncertainty(_Darkness(), image, 32)
    assert variance.max() < 1e-6
    _, variance = predict_with_uncertainty(_PairDifference(OFFSETS), image, 32, OFFSETS)
    assert variance[3:-3, 3:-3].max() < 1e-6
    with pytest.raises(ValueError, match="needs tta"):
        TilePredictor(_Darkness(), tta=False, amp=False, uncertainty=True)
