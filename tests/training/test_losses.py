import pytest
import torch

from emseg.config.params import parse_params
from emseg.errors import EmsegError
from emseg.training.losses import AFFINITY_LOSSES, LOSSES, build_loss, check_loss_params


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
