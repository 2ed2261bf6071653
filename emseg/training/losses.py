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


def supervised_loss(loss: nn.Module, heads: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """The loss of the main prediction, or the weighted sum over deep-supervision heads."""
    if len(heads) == 1:
        return loss(heads[0].float(), target)
    weights = deep_supervision_weights(len(heads))
    return sum(w * loss(h.float(), target) for w, h in zip(weights, heads))
