"""Losses keyed by the name used in ``params.yaml: train.loss``; all take membrane logits."""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss
from torch import nn

from emseg.errors import EmsegError

LOSSES: dict[str, Callable[[], nn.Module]] = {
    "dice_ce": lambda: DiceCELoss(sigmoid=True),
    "dice": lambda: DiceLoss(sigmoid=True),
    "bce": lambda: nn.BCEWithLogitsLoss(),
    "dice_focal": lambda: DiceFocalLoss(sigmoid=True),
}


def build_loss(name: str) -> nn.Module:
    """A loss module ``loss(logits, target)`` for (B, 1, H, W) membrane logits and 0/1 targets."""
    if name not in LOSSES:
        raise EmsegError(f"params train.loss: unknown loss {name!r}; valid: {', '.join(sorted(LOSSES))}")
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
