"""What a network says about one slice, in the form that every cell method and every scorer takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emseg.networks.affinities import Offset


@dataclass(frozen=True)
class Prediction:
    """What a model said about one slice: the membrane map, and an affinity model's affinities.

    `membrane` is the membrane probability (H, W); an affinity model adds `affinities`
    (C, H, W), one channel per offset of `offsets`, and its membrane map is made of them
    ([`boundary_from_affinities`][emseg.networks.affinities.boundary_from_affinities]).
    `uncertainty` (H, W), where asked for, is the variance of the test-time augmentations'
    probabilities, averaged over the channels
    ([`predict_with_uncertainty`][emseg.inference.sliding_window.predict_with_uncertainty]).
    """

    membrane: np.ndarray
    affinities: np.ndarray | None = None
    offsets: tuple[Offset, ...] | None = None
    uncertainty: np.ndarray | None = None
