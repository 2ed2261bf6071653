import itertools
import math

import pytest
import torch
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, SoftclDiceLoss

from emseg.config.params import parse_params
from emseg.errors import EmsegError
from emseg.training.losses import AFFINITY_LOSSES, CLDICE_ALPHA, CLDICE_ITERATIONS, LOSSES, build_loss, check_loss_params, supervised_loss


def _membrane_line() -> torch.Tensor:
    target = torch.zeros(1, 1, 64, 64)
    target[..., :, 30:33] = 1.0  # a 3 px membrane crossing the whole patch
    return target


def _logits(mask: torch.Tensor) -> torch.Tensor:
    return (mask * 2 - 1) * 12.0  # confident predictions


def test_cldice_punishes_a_gap_more_than_the_same_pixels_lost_along_an_edge() -> None:
    target = _membrane_line()
    gap = target.clone()
    gap[..., 29:35, 30:33] = 0.0  # 18 pixels: the membrane is cut, two cells merge
    shaved = target.clone()
    shaved[..., 0:18, 32] = 0.0  # the same 18 pixels thinned off one side: still closed
    dice = build_loss("dice")
    cldice = build_loss("dice_ce_cldice")
    assert abs(dice(_logits(gap), target) - dice(_logits(shaved), target)) < 1e-4
    assert cldice(_logits(gap), target) > cldice(_logits(shaved), target) + 0.01


def test_cldice_is_near_zero_for_a_perfect_prediction() -> None:
    target = _membrane_line()
    assert build_loss("dice_ce_cldice")(_logits(target), target) < 0.01


@pytest.mark.parametrize("name", sorted(AFFINITY_LOSSES))
def test_affinity_losses_ignore_the_pairs_the_mask_leaves_out(name: str) -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = (torch.rand(2, 3, 8, 8) > 0.5).float()
    mask = torch.ones_like(target)
    mask[:, :, :2] = 0.0  # pairs that leave the patch
    loss = build_loss(name, "affinities")
    changed = logits.clone()
    changed[:, :, :2] = 50.0  # whatever the network says there
    assert loss(changed, target, mask) == pytest.approx(float(loss(logits, target, mask)))
    perfect = (target * 2 - 1) * 20.0
    assert float(loss(perfect, target, mask)) < 0.01 < float(loss(-perfect, target, mask))


def test_a_boundary_only_loss_is_not_offered_for_affinities() -> None:
    with pytest.raises(EmsegError, match="unknown loss 'dice_focal' for an affinities model; registered: bce, dice, dice_ce"):
        build_loss("dice_focal", "affinities")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"loss": "hinge"}}, r"^params.yaml: train.loss: Input should be 'dice_ce', .*'dice_ce_cldice' \(got 'hinge'\)$"),
        ({"model": {"target": "affinities"}, "train": {"loss": "dice_focal"}}, r"^params.yaml: train.loss: dice_focal does not take affinities"),
    ],
)
def test_the_registry_checks_the_loss_with_one_line(raw: dict, message: str) -> None:
    with pytest.raises(EmsegError, match=message):
        parse_params(raw, checks=(check_loss_params,))
    assert parse_params({"model": {"target": "boundary"}, "train": {"loss": "dice_focal"}}, checks=(check_loss_params,))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_accept_logits_and_binary_targets(name: str) -> None:
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    loss = build_loss(name)(logits, target)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_unknown_loss() -> None:
    with pytest.raises(EmsegError, match="unknown loss 'l2' for a boundary model; registered: bce, dice"):
        build_loss("l2")


def _batch(channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, channels, 24, 24, generator=generator) * 3
    target = (torch.rand(2, channels, 24, 24, generator=generator) > 0.7).float()
    mask = torch.ones_like(target)
    mask[0, :, :, 10:] = 0.0  # sample 0: its right part nobody labelled
    mask[1, :, 5:9] = 0.0  # sample 1: a band
    return logits, target, mask


@pytest.mark.parametrize(("name", "target_kind"), [(n, "boundary") for n in sorted(LOSSES)] + [(n, "affinities") for n in sorted(AFFINITY_LOSSES)])
def test_no_loss_hears_what_is_predicted_where_the_mask_is_0(name: str, target_kind: str) -> None:
    logits, target, mask = _batch(1 if target_kind == "boundary" else 3)
    loss = build_loss(name, target_kind)
    elsewhere = torch.where(mask > 0, logits, torch.randn(logits.shape) * 20)  # whatever the network says there
    flipped_target = torch.where(mask > 0, target, 1 - target)  # and whatever the target says there
    value = float(loss(logits, target, mask))
    assert float(loss(elsewhere, flipped_target, mask)) == pytest.approx(value, rel=1e-5, abs=1e-6)
    weights = 1 + 4 * target  # border weights too: their extra term is taken over the mask
    with_weights = float(supervised_loss(loss, [logits, logits / 2], target, weights, mask))
    assert float(supervised_loss(loss, [elsewhere, elsewhere / 2], flipped_target, weights, mask)) == pytest.approx(with_weights, rel=1e-5)
    assert value != pytest.approx(float(loss(logits, target, torch.ones_like(mask))), rel=1e-3)  # the mask does leave something out


@pytest.mark.parametrize("name", ["bce", "dice", "dice_ce", "dice_focal"])
def test_a_masked_loss_is_the_loss_of_the_labelled_part_cut_out(name: str) -> None:
    """A masked pixel counts in no Dice sum (numerator or denominator) and no cross-entropy mean."""
    logits, target, _ = _batch(1)
    mask = torch.ones_like(target)
    mask[..., 15:] = 0.0
    loss = build_loss(name)
    assert float(loss(logits, target, mask)) == pytest.approx(float(loss(logits[..., :15], target[..., :15])), rel=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_mask_of_ones_is_no_mask(name: str) -> None:
    logits, target, _ = _batch(1)
    loss = build_loss(name)
    assert float(loss(logits, target, torch.ones_like(target))) == pytest.approx(float(loss(logits, target)), rel=1e-5)


def test_without_a_mask_the_boundary_losses_are_monai_s_own_bit_for_bit() -> None:
    """Fully labelled (ISBI) training takes the loss it always took: MONAI's modules, the same floats."""
    logits, target, _ = _batch(1)
    monai = {
        "dice_ce": DiceCELoss(sigmoid=True),
        "dice": DiceLoss(sigmoid=True),
        "bce": torch.nn.BCEWithLogitsLoss(),
        "dice_focal": DiceFocalLoss(sigmoid=True),
    }
    for name, reference in monai.items():
        assert torch.equal(build_loss(name)(logits, target), reference(logits, target)), name
    cldice = (1.0 - CLDICE_ALPHA) * DiceCELoss(sigmoid=True)(logits, target) + CLDICE_ALPHA * SoftclDiceLoss(iter_=CLDICE_ITERATIONS, sigmoid=True)(
        logits, target
    )
    assert torch.equal(build_loss("dice_ce_cldice")(logits, target), cldice)


def test_descriptors_add_their_masked_squared_error_to_the_affinity_loss() -> None:
    from emseg.training.losses import LSD_WEIGHT, WithDescriptors

    torch.manual_seed(0)
    logits, target = torch.randn(2, 4 + 6, 8, 8), torch.rand(2, 4 + 6, 8, 8)
    mask = torch.ones_like(target)
    mask[:, 4:, :4] = 0  # half the rows hold no descriptor
    loss = build_loss("dice_ce", "affinities", aux_channels=6)
    assert isinstance(loss, WithDescriptors)
    base = build_loss("dice_ce", "affinities")(logits[:, :4], target[:, :4], mask[:, :4])
    squared = ((logits[:, 4:] - target[:, 4:]) ** 2)[:, :, 4:].mean()  # the rows that hold descriptors
    torch.testing.assert_close(loss(logits, target, mask), base + LSD_WEIGHT * squared)
    changed = logits.clone()
    changed[:, 4:, :4] += 5.0  # what is predicted where no descriptor is held changes nothing
    torch.testing.assert_close(loss(changed, target, mask), loss(logits, target, mask))


def test_the_consistency_ramps_up_over_the_first_quarter_then_holds() -> None:
    from emseg.training.losses import CONSISTENCY_RAMPUP, consistency_ramp

    factors = [consistency_ramp(step, 400) for step in range(0, 400, 10)]
    assert factors[0] == pytest.approx(math.exp(-5.0))
    assert all(a < b for a, b in itertools.pairwise(factors) if b < 1.0)
    assert consistency_ramp(int(CONSISTENCY_RAMPUP * 400), 400) == 1.0 == consistency_ramp(399, 400)


def test_the_consistency_loss_is_zero_at_the_teachers_probabilities_and_trains_the_student_only() -> None:
    from emseg.training.losses import consistency_loss

    teacher = torch.rand(2, 3, 8, 8, requires_grad=True)
    student = torch.logit(teacher.detach()).clone().requires_grad_()
    assert float(consistency_loss(student, teacher)) == pytest.approx(0.0, abs=1e-10)
    moved = (student.detach() + 1.0).requires_grad_()
    loss = consistency_loss(moved, teacher)
    loss.backward()
    assert float(loss) > 0 and moved.grad is not None and teacher.grad is None
