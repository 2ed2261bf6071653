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


def loss_value(loss: nn.Module, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return loss(logits.float(), target.float())
