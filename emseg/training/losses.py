"""Losses keyed by the name used in `params.yaml: train.loss`: for membrane logits, and masked ones for affinities.

A boundary model takes any of `LOSSES`; an affinity model those of `AFFINITY_LOSSES`, the
same names masked per offset ([`MaskedAffinityLoss`][emseg.training.losses.MaskedAffinityLoss]).
[`check_loss_params`][emseg.training.losses.check_loss_params] checks the name when params are
loaded, [`build_loss`][emseg.training.losses.build_loss] makes the loss.

Every loss takes a mask of the pixels (or pixel pairs) that count, 0 where the label says
nothing (sparse labels, an offset leaving the patch): a masked pixel counts in no term, neither
in a cross-entropy's mean nor in a Dice sum, so that whatever is predicted there changes
nothing. A boundary loss called without a mask is MONAI's loss itself, as it always was.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss, SoftclDiceLoss
from torch import nn

from emseg.config.params import Params, ParamsKeyError, one_of
from emseg.errors import EmsegError

#: clDice's share of ``dice_ce_cldice``; the clDice paper uses 0.1-0.5 beside a volumetric loss
CLDICE_ALPHA = 0.3
#: soft-skeleton iterations: half-widths up to about 3 px, the width of ISBI membranes
CLDICE_ITERATIONS = 3
#: MONAI's Dice smoothing (`smooth_nr`, `smooth_dr`), which the masked Dice terms keep
DICE_SMOOTH = 1e-5


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of per-pixel `values` over the pixels of `mask` (0 when the mask holds none)."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def masked_dice(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """MONAI's soft Dice loss of sigmoid(`logits`) over the pixels of `mask`, per sample and channel, averaged.

    A masked pixel counts in neither the overlap nor the denominator; a sample and channel
    without a pixel counted has Dice 1 (loss 0), as MONAI's smoothing gives an empty one.
    """
    proba = torch.sigmoid(logits) * mask
    kept = target * mask
    dims = (-2, -1)
    overlap = (proba * kept).sum(dims)
    dice = (2 * overlap + smooth) / (proba.sum(dims) + kept.sum(dims) + smooth)
    return (1.0 - dice).mean()


class MaskableLoss(nn.Module):
    """A boundary loss of `LOSSES`: MONAI's module without a mask, its terms over the mask's pixels with one.

    Args:
        plain: The MONAI (or torch) loss, what `loss(logits, target)` returns.
        dice: Whether the loss has a soft Dice term.
        pixelwise: Its per-pixel term: `bce`, `focal` (MONAI's sigmoid focal loss) or None.
    """

    def __init__(self, plain: nn.Module, dice: bool, pixelwise: str | None) -> None:
        super().__init__()
        self.plain, self.dice, self.pixelwise = plain, dice, pixelwise
        self.focal = FocalLoss(reduction="none") if pixelwise == "focal" else None

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of membrane logits against 0/1 targets, both (B, 1, H, W), over the pixels of `mask` if given."""
        if mask is None:
            return self.plain(logits, target)
        total = masked_dice(logits, target, mask) if self.dice else logits.new_zeros(())
        if self.pixelwise == "bce":
            total = total + masked_mean(nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none"), mask)
        elif self.focal is not None:
            total = total + masked_mean(self.focal(logits, target), mask)
        return total


class DiceCEclDiceLoss(nn.Module):
    """`(1 - alpha) DiceCE + alpha clDice` (Shit et al. 2021) on the membrane channel: the `dice_ce_cldice` loss.

    clDice rewards a predicted membrane skeleton that lies inside the true membrane and covers
    it, so that a gap in a membrane, which merges two cells, costs more than its few pixels.

    Args:
        alpha: clDice's share of the loss.
        iterations: The soft skeleton's iterations (the half-widths of membrane it thins).
    """

    def __init__(self, alpha: float = CLDICE_ALPHA, iterations: int = CLDICE_ITERATIONS) -> None:
        super().__init__()
        self.alpha = alpha
        self.dice_ce = DiceCELoss(sigmoid=True)
        self.cldice = SoftclDiceLoss(iter_=iterations, sigmoid=True)

        self.masked_dice_ce = MaskableLoss(self.dice_ce, dice=True, pixelwise="bce")
        self.masked_cldice = SoftclDiceLoss(iter_=iterations)  # on probabilities already masked

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of membrane logits against 0/1 targets, both (B, 1, H, W), over the pixels of `mask` if given.

        With a mask, both skeletons are taken of maps that are 0 outside it (the probability
        and the target alike), so that what is predicted there reaches neither: a masked pixel
        lies on no skeleton, and none near it depends on it.
        """
        if mask is None:
            return (1.0 - self.alpha) * self.dice_ce(logits, target) + self.alpha * self.cldice(logits, target)
        cldice = self.masked_cldice(torch.sigmoid(logits) * mask, target * mask)
        return (1.0 - self.alpha) * self.masked_dice_ce(logits, target, mask) + self.alpha * cldice


LOSSES: dict[str, Callable[[], nn.Module]] = {
    "dice_ce": lambda: MaskableLoss(DiceCELoss(sigmoid=True), dice=True, pixelwise="bce"),
    "dice": lambda: MaskableLoss(DiceLoss(sigmoid=True), dice=True, pixelwise=None),
    "bce": lambda: MaskableLoss(nn.BCEWithLogitsLoss(), dice=False, pixelwise="bce"),
    "dice_focal": lambda: MaskableLoss(DiceFocalLoss(sigmoid=True), dice=True, pixelwise="focal"),
    "dice_ce_cldice": DiceCEclDiceLoss,
}


class MaskedAffinityLoss(nn.Module):
    """Soft Dice and/or binary cross-entropy of each affinity channel, over the pixel pairs that exist.

    `mask` (like the target, (B, C, H, W)) is 0 where an offset leaves the patch or a pixel of
    the pair is unlabelled: those pairs have no target and count in neither term. Dice is
    taken per sample and channel and averaged, as MONAI's `DiceLoss`
    ([`masked_dice`][emseg.training.losses.masked_dice]); cross-entropy is the mean over the
    pairs counted.
    """

    def __init__(self, dice: bool = True, bce: bool = True, smooth: float = DICE_SMOOTH) -> None:
        super().__init__()
        self.dice, self.bce, self.smooth = dice, bce, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The loss of affinity logits against their target over the pairs of `mask`, all (B, C, H, W)."""
        total = logits.new_zeros(())
        if self.bce:
            total = total + masked_mean(nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none"), mask)
        if self.dice:
            total = total + masked_dice(logits, target, mask, self.smooth)
        return total


#: the losses of an affinity model, by the same names as their membrane-map counterparts
AFFINITY_LOSSES: dict[str, Callable[[], nn.Module]] = {
    "dice_ce": lambda: MaskedAffinityLoss(dice=True, bce=True),
    "dice": lambda: MaskedAffinityLoss(dice=True, bce=False),
    "bce": lambda: MaskedAffinityLoss(dice=False, bce=True),
}


#: the descriptors' share of the loss beside the affinities' (Sheridan et al. weigh the two heads alike)
LSD_WEIGHT = 1.0


class WithDescriptors(nn.Module):
    """An affinity loss of the first channels, plus the masked mean squared error of the last `aux_channels`.

    The last channels are the local shape descriptors ([`emseg.networks.lsd`][emseg.networks.lsd]),
    regressed as they are (no sigmoid), over the cell pixels their mask keeps.

    Args:
        base: The affinity loss (`loss(logits, target, mask)`).
        aux_channels: The descriptor channels at the end of logits, target and mask.
        weight: The descriptors' share.
    """

    def __init__(self, base: nn.Module, aux_channels: int, weight: float = LSD_WEIGHT) -> None:
        super().__init__()
        self.base, self.aux_channels, self.weight = base, aux_channels, weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The loss of (B, C + aux, H, W) logits against the affinity targets and the descriptors."""
        n = logits.shape[1] - self.aux_channels
        errors = (logits[:, n:] - target[:, n:]) ** 2
        return self.base(logits[:, :n], target[:, :n], mask[:, :n]) + self.weight * masked_mean(errors, mask[:, n:])


def build_loss(name: str, target: str = "boundary", aux_channels: int = 0) -> nn.Module:
    """A loss module by name, for the model's target.

    Args:
        name: A registered loss (`train.loss`).
        target: `boundary`: `loss(logits, target)` on (B, 1, H, W) membrane logits and 0/1
            targets; `affinities`: `loss(logits, target, mask)` on (B, C, H, W).
        aux_channels: An affinity model's auxiliary descriptor channels after its affinities
            ([`WithDescriptors`][emseg.training.losses.WithDescriptors]); 0: none.

    Raises:
        EmsegError: The name is not registered for this target.
    """
    registry = AFFINITY_LOSSES if target == "affinities" else LOSSES
    if name not in registry:
        raise EmsegError(f"unknown loss {name!r} for {'an affinities' if target == 'affinities' else 'a boundary'} model; registered: {', '.join(sorted(registry))}")
    loss = registry[name]()
    return WithDescriptors(loss, aux_channels) if aux_channels else loss


def check_loss_params(params: Params) -> None:
    """The loss registry's check of `train.loss` (a `ParamsCheck`): a registered loss, and one that takes the model's target.

    Raises:
        ParamsKeyError: Naming `train.loss`.
    """
    loss = params.train.loss
    if loss not in LOSSES:
        raise ParamsKeyError("train.loss", one_of(LOSSES, loss))
    if params.model.target == "affinities" and loss not in AFFINITY_LOSSES:
        raise ParamsKeyError("train.loss", f"{loss} does not take affinities; use one of {', '.join(AFFINITY_LOSSES)}")


def deep_supervision_weights(n_heads: int) -> list[float]:
    """nnU-Net's weights of deep-supervision heads: halved per head, main head first, summing to 1."""
    raw = [0.5**i for i in range(n_heads)]
    return [w / sum(raw) for w in raw]


def border_term(logits: torch.Tensor, target: torch.Tensor, pixel_weights: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The extra cross-entropy of up-weighted pixels.

    With weights `w >= 1`, the loss plus this term is the base loss with its cross-entropy
    weighted by `w` (exactly so for `dice_ce` and `bce`); with a boundary model's `mask`, over
    the mask's pixels, as the masked base loss's cross-entropy.
    """
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if mask is None:
        return ((pixel_weights - 1.0) * bce).mean()
    return masked_mean((pixel_weights - 1.0) * bce, mask)


def supervised_loss(
    loss: nn.Module,
    heads: list[torch.Tensor],
    target: torch.Tensor,
    pixel_weights: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss of one batch.

    The loss of the main prediction, or the weighted sum over deep-supervision heads
    ([`deep_supervision_weights`][emseg.training.losses.deep_supervision_weights]), plus the
    border term when per-pixel weights are given.

    Args:
        loss: The loss module ([`build_loss`][emseg.training.losses.build_loss]).
        heads: The network's heads, the main one first.
        target: The batch's target.
        pixel_weights: Per-pixel loss weights (U-Net border weights, boundary models only), or None.
        mask: What counts in the loss ([`Batch`][emseg.training.sampler.Batch]): an affinity
            model's pixel pairs, a boundary model's labelled pixels (None when all are).
    """

    def one(head: torch.Tensor) -> torch.Tensor:
        value = loss(head.float(), target) if mask is None else loss(head.float(), target, mask)
        return value if pixel_weights is None else value + border_term(head.float(), target, pixel_weights, mask)

    if len(heads) == 1:
        return one(heads[0])
    weights = deep_supervision_weights(len(heads))
    return sum(w * one(h) for w, h in zip(weights, heads))


#: the share of the steps over which the consistency weight ramps up: the teacher (a moving average
#: of the weights) predicts noise early on, and its targets should count only once it has learnt
CONSISTENCY_RAMPUP = 0.25


def consistency_ramp(step: int, steps: int) -> float:
    """The consistency weight's factor at `step` (0-based) of `steps`: `exp(-5 (1 - t)^2)` over the ramp-up, then 1.

    The sigmoid-shaped ramp-up of Laine and Aila (2017) and Tarvainen and Valpola's mean teacher
    (2017), over the first `CONSISTENCY_RAMPUP` of the steps.
    """
    ramp = CONSISTENCY_RAMPUP * steps
    if ramp <= 0 or step >= ramp:
        return 1.0
    return math.exp(-5.0 * (1.0 - step / ramp) ** 2)


def consistency_loss(student_logits: torch.Tensor, teacher_probabilities: torch.Tensor) -> torch.Tensor:
    """The mean squared difference of the trained network's probabilities and the teacher's (no gradient flows to the teacher's).

    Probabilities rather than logits: a confident teacher's logits grow without bound, its
    probabilities do not, so the squared error stays on the scale of the supervised loss.
    """
    return nn.functional.mse_loss(torch.sigmoid(student_logits.float()), teacher_probabilities.detach().float())
