"""The architecture of an auto-context model as a BioImage Model Zoo package holds it: two MONAI networks in a row.

This file is copied into the package unchanged (its `pytorch_state_dict` weights name it), so
it imports torch and MONAI only. It predicts what emseg's
[`AutoContext`][emseg.networks.architectures.AutoContext] predicts at inference: the second
network reads the slice and the sigmoid of the first network's prediction. Its state dict
has the same keys (`first.*`, `second.*`), so the model file's weights load into it as they
are; the export traces it for the package's torchscript weights and checks its output against
emseg's own.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks import nets
from torch import nn


class AutoContextNetwork(nn.Module):
    """Two `monai.networks.nets` networks in a row; the second reads the input and the first's sigmoid.

    Args:
        first_class: The first network's class in `monai.networks.nets` (e.g. `UNet`).
        first_kwargs: Its constructor arguments, `in_channels` and `out_channels` included.
        second_class: The second network's class.
        second_kwargs: Its constructor arguments; its `in_channels` are the first's input and
            output channels together.
    """

    def __init__(self, first_class: str, first_kwargs: dict[str, Any], second_class: str, second_kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.first = getattr(nets, first_class)(**first_kwargs)
        self.second = getattr(nets, second_class)(**second_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The second network's logits (B, C, H, W) for a (B, C_in, H, W) batch."""
        first = self.first(x)
        if isinstance(first, (list, tuple)):  # BasicUNetPlusPlus returns its heads, the main one last
            first = first[-1]
        return self.second(torch.cat([x, torch.sigmoid(first).to(x.dtype)], dim=1))
