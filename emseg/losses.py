"""Losses keyed by the name used in ``params.yaml: train.loss``; all take membrane logits."""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, SoftclDiceLoss
from torch import nn

from emseg.errors import EmsegError

#: clDice's share of ``dice_ce_cldice``; the clDice paper uses 0.1-0.5 beside a volumetric loss
CLDICE_ALPHA = 0.3
#: soft-skeleton iterations: half-widths up to about 3 px, the width of ISBI membranes
CLDICE_ITERATIONS = 3


class DiceCEclDiceLoss(nn.Module):
    """(1 - alpha) DiceCE + alpha clDice (Shit et al. 2021) on the membrane channel: clDice
    rewards a predicted membrane skeleton that lies inside the true membrane and covers it,
    so a gap in a membrane, which merges two cells, costs more than its few pixels."""

    def __init__(self, alpha: float = CLDICE_ALPHA, iterations: int = CLDICE_ITERATIONS) -> None:
        super().__init__()
        self.alpha = alpha
        self.dice_ce = DiceCELoss(sigmoid=True)
        self.cldice = SoftclDiceLoss(iter_=iterations, sigmoid=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.alpha) * self.dice_ce(logits, target) + self.alpha * self.cldice(logits, target)


LOSSES: dict[str, Callable[[], nn.Module]] = {
    "dice_ce": lambda: DiceCELoss(sigmoid=True),
    "dice": lambda: DiceLoss(sigmoid=True),
    "bce": lambda: nn.BCEWithLogitsLoss(),
    "dice_focal": lambda: DiceFocalLoss(sigmoid=True),
    "dice_ce_cldice": DiceCEclDiceLoss,
}


def build_loss(name: str) -> nn.Module:
    """A loss module ``loss(logits, target)`` for (B, 1, H, W) membrane logits and 0/1 targets."""
    if name not in LOSSES:
        raise EmsegError(f"unknown loss {name!r}; registered: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]()


def deep_supervision_weights(n_heads: int) -> list[float]:
    """nnU-Net's weights: halved per head, main head first, summing to 1."""
    raw = [0.5**i for i in range(n_heads)]
    return [w / sum(raw) for w in raw]


def border_term(logits: torch.Tensor, target: torch.Tensor, pixel_weights: torch.Tensor) -> torch.Tensor:
    """The extra cross-entropy of up-weighted pixels: with weights w >= 1, loss + this term
    is the base loss with its cross-entropy weighted by w (exactly so for ``dice_ce``/``bce``)."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return ((pixel_weights - 1.0) * bce).mean()


def supervised_loss(
    loss: nn.Module, heads: list[torch.Tensor], target: torch.Tensor, pixel_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The loss of the main prediction, or the weighted sum over deep-supervision heads,
    plus the border term when per-pixel weights are given."""

    def one(head: torch.Tensor) -> torch.Tensor:
        value = loss(head.float(), target)
        return value if pixel_weights is None else value + border_term(head.float(), target, pixel_weights)

    if len(heads) == 1:
        return one(heads[0])
    weights = deep_supervision_weights(len(heads))
    return sum(w * one(h) for w, h in zip(weights, heads))
