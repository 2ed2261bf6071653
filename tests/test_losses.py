import torch

from emseg.losses import build_loss


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
