
import numpy as np
import pytest
import torch

from emseg.config.layout import UNLABELLED_VALUE
from emseg.evaluation.metrics import score
from emseg.inference.predictor import Predictor
from emseg.networks.model_file import ModelConfig
from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION, normalize
from emseg.segmentation.thinning import membrane_to_cell
from emseg.training.losses import build_loss
from emseg.training.sampler import membrane_target
from emseg.training.validation import validate, validation_loss

from conftest import synthetic_stack


def _predictor(model: torch.nn.Module, tta: bool) -> Predictor:
    return Predictor(model, ModelConfig("unet", {}, dict(DEFAULT_NORMALIZATION), 32), tta=tta, amp=False)


def test_validation_with_tta_scores_the_dihedral_average() -> None:
    images, labels = synthetic_stack(2, 40, 48, seed=3)
    loss_fn = build_loss("dice_ce")
    torch.manual_seed(0)
    pointwise = torch.nn.Conv2d(1, 1, 1)  # commutes with flips and rotations: TTA changes nothing
    args = (loss_fn, list(images), list(labels))
    plain, tta = validate(_predictor(pointwise, False), *args), validate(_predictor(pointwise, True), *args)
    assert tta == pytest.approx(plain, abs=1e-5)
    spatial = torch.nn.Conv2d(1, 1, 3, padding=1)  # a 3x3 kernel does not: TTA must differ
    assert validate(_predictor(spatial, True), *args)["loss"] != pytest.approx(validate(_predictor(spatial, False), *args)["loss"], abs=1e-6)


def test_validation_loss_is_computed_from_the_logits() -> None:
    """Confident logits (|x| >> 14) saturate the probability map; a loss rebuilt from the
    clamped map would be capped, the loss of the logits themselves is not."""
    images, labels = synthetic_stack(1, 40, 48, seed=6)
    confident = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        confident.weight.fill_(40.0)  # dark membranes called cell, bright cells membrane: wrong and sure
        confident.bias.fill_(0.0)
    loss_fn = build_loss("bce")
    result = validate(_predictor(confident, False), loss_fn, list(images), list(labels))
    x = torch.from_numpy(normalize(images[0]))[None, None]
    with torch.no_grad():
        direct = float(loss_fn(confident(x), torch.from_numpy(membrane_target(labels[0]))[None, None]))
    assert result["loss"] == pytest.approx(direct, rel=1e-4)
    assert result["loss"] > -np.log(1e-6)  # beyond what a map clamped at 1e-6 can express


@pytest.mark.parametrize("offsets", [None, ((-1, 0), (0, -1), (-3, 0), (0, -3))])
def test_validation_ignores_unlabelled_pixels_and_slices_nobody_labelled(offsets) -> None:
    images, labels = synthetic_stack(2, 40, 48, seed=4)
    sparse = labels[0].copy()
    sparse[:, 30:] = UNLABELLED_VALUE
    nobody = np.full_like(labels[1], UNLABELLED_VALUE)
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 1 if offsets is None else len(offsets), 3, padding=1)
    config = ModelConfig("unet", {}, dict(DEFAULT_NORMALIZATION), 32, **({} if offsets is None else {"target": "affinities", "offsets": [list(o) for o in offsets]}))
    predictor = Predictor(model, config, tta=False, amp=False)
    loss_fn = build_loss("dice_ce", "boundary" if offsets is None else "affinities")
    both = validate(predictor, loss_fn, list(images), [sparse, nobody])
    assert both == validate(predictor, loss_fn, [images[0]], [sparse])  # the slice nobody labelled changes nothing
    # the scores are those of the labelled part; the loss that of the labelled pixels (pairs)
    prediction, logits = predictor.predict_with_logits(images[0])
    assert both["v_rand"] == score(sparse, membrane_to_cell(prediction.membrane), unlabelled=UNLABELLED_VALUE).v_rand
    assert both["loss"] == pytest.approx(validation_loss(loss_fn, logits, sparse, predictor.offsets))
    assert both["loss"] != pytest.approx(validation_loss(loss_fn, logits, labels[0], predictor.offsets), rel=1e-4)
