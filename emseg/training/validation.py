"""Validation during training: whole validation slices through the shared inference path, scored the ISBI way.

Unlabelled pixels (`UNLABELLED_VALUE`, sparse labels) count in neither the loss nor the scores;
a slice with no labelled pixel is left out of both means.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from emseg.config.layout import UNLABELLED_VALUE
from emseg.evaluation.metrics import score
from emseg.inference.predictor import Predictor
from emseg.networks.affinities import Offset, affinity_targets
from emseg.segmentation.thinning import membrane_to_cell
from emseg.training.sampler import labelled_mask, membrane_target


def validation_loss(loss_fn: nn.Module, logits: torch.Tensor, label: np.ndarray, offsets: tuple[Offset, ...] | None) -> float:
    """The loss of one whole slice's blended logits against its label's target, over its labelled pixels (pairs)."""
    if offsets is None:
        target = torch.from_numpy(membrane_target(label))[None, None]
        mask = labelled_mask(label)
        # a fully labelled slice takes the unmasked loss, the one it always took
        return float(loss_fn(logits, target) if mask is None else loss_fn(logits, target, torch.from_numpy(mask)[None, None]))
    target, mask = affinity_targets(label, offsets)
    return float(loss_fn(logits, torch.from_numpy(target)[None], torch.from_numpy(mask)[None]))


def validate(predictor: Predictor, loss_fn: nn.Module, images: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    """Full-slice validation of the predictor's model on the validation slices.

    The slices are predicted through the shared inference path (with the predictor's `tta`,
    averaged over the 8 flips and rotations, the way evaluate predicts).

    Returns:
        The mean loss of the blended logits, the ISBI metrics of the membrane maps (`v_rand`,
        `v_info`, `pixel_error`, `dice`) and `threshold`, the best V_rand threshold, which
        `emseg predict` applies by default. Unlabelled pixels count in none of them.

    Raises:
        EmsegError: No validation slice has a labelled pixel.
    """
    predictor.model.eval()
    passes = [predictor.predict_with_logits(image) for image in images]
    predictor.model.train()
    losses = [
        validation_loss(loss_fn, logits, label, predictor.offsets)
        for (_, logits), label in zip(passes, labels)
        if (label != UNLABELLED_VALUE).any()  # a slice nobody labelled has no loss (0 would pull the mean down)
    ]
    maps = membrane_to_cell(np.stack([prediction.membrane for prediction, _ in passes]))
    result = score(np.stack(labels), maps, unlabelled=UNLABELLED_VALUE, labels_name="validation labels")
    return {
        "loss": float(np.mean(losses)),
        "v_rand": result.v_rand,
        "v_info": result.v_info,
        "pixel_error": result.pixel_error,
        "dice": result.dice,
        # the V_rand threshold on the validation slices: `emseg predict` applies it by default
        "threshold": result.v_rand_threshold,
    }


