"""What a network says about one slice, in the form every cell method and every scorer takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emseg.networks.affinities import Offset


@dataclass(frozen=True)
class Prediction:
    """What a model said about one slice: the membrane map (H, W), and an affinity model's affinities (C, H, W)."""

    membrane: np.ndarray
    affinities: np.ndarray | None = None
    offsets: tuple[Offset, ...] | None = None
