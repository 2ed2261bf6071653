"""Random training patches drawn in memory from the training slices, and the targets they carry.

Labels follow the canonical convention of [`emseg.config.layout`][emseg.config.layout]: 0 =
membrane, `CELL_VALUE` = cell, `UNLABELLED_VALUE` = not labelled. Unlabelled pixels count in no
loss: a boundary model's batch carries a mask of the labelled pixels, an affinity model's mask
leaves out the pairs that touch one. A slice without an unlabelled pixel is sampled exactly as
before sparse labels existed: the same random draws, the same tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from emseg.config.layout import UNLABELLED_VALUE
from emseg.errors import EmsegError
from emseg.networks.affinities import Offset, affinity_targets
from emseg.networks.lsd import LSD_CHANNELS, lsd_targets, turn_descriptors
from emseg.preprocessing.normalization import normalize

#: how a consistency patch is perturbed for the trained network (the teacher sees it clean), in units of
#: the z-scored slice: a contrast factor and a brightness shift drawn per patch, and Gaussian noise per pixel;
#: about the strength of the augment stage's contrast, gamma and noise, so that both views stay plausible EM
CONSISTENCY_CONTRAST = (0.75, 1.25)
CONSISTENCY_SHIFT = (-0.25, 0.25)
CONSISTENCY_NOISE_STD = 0.1


def membrane_target(label: np.ndarray) -> np.ndarray:
    """A boundary model's target from a label (0 = membrane): 1.0 on membrane, 0.0 in cells (and, masked out, on unlabelled pixels)."""
    return (label == 0).astype(np.float32)


def labelled_mask(label: np.ndarray) -> np.ndarray | None:
    """A boundary model's loss mask of one label slice (`float32`, 0 on unlabelled pixels), or None when every pixel is labelled."""
    labelled = label != UNLABELLED_VALUE
    return None if labelled.all() else labelled.astype(np.float32)


def _patch_corners(labelled: np.ndarray, size: int) -> torch.Tensor:
    """The flat indices `top * (W - size + 1) + left` of the `size` patches of a slice that hold a labelled pixel."""
    # a summed-area table counts each window's labelled pixels in one pass
    table = np.pad(np.cumsum(np.cumsum(labelled, 0, dtype=np.int64), 1), ((1, 0), (1, 0)))
    counts = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
    return torch.from_numpy(np.flatnonzero(counts > 0))


@dataclass
class TrainingData:
    """The slices of one training run: what patches are drawn from, and what validation predicts whole."""

    train_images: list[np.ndarray]
    train_labels: list[np.ndarray]
    val_images: list[np.ndarray]
    val_labels: list[np.ndarray]
    #: slices without labels (the test volume), for a consistency loss (`train.consistency_weight`); empty: none
    unlabelled_images: list[np.ndarray] = field(default_factory=list)


class ConsistencyBatch(NamedTuple):
    """Patches of the unlabelled slices, each (B, C, P, P): as the teacher sees them, and perturbed, as the trained network does."""

    clean: torch.Tensor
    perturbed: torch.Tensor

    def to(self, device: torch.device) -> ConsistencyBatch:
        """The batch on `device` (copied without blocking where it can)."""
        return ConsistencyBatch(*(t.to(device, non_blocking=True) for t in self))


class Batch(NamedTuple):
    """A batch of patches, each (B, C, P, P): image, target, per-pixel loss weights and loss mask.

    `weights` is None without per-pixel loss weights (U-Net border weights). `mask` is what
    counts in the loss: for an affinity model, the pixel pairs that exist in the patch and are
    labelled at both ends; for a boundary model, the labelled pixels (1) and the unlabelled
    ones (0), or None when the training slices have no unlabelled pixel.
    """

    image: torch.Tensor
    target: torch.Tensor
    weights: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        """The batch on `device` (copied without blocking where it can)."""
        return Batch(*(None if t is None else t.to(device, non_blocking=True) for t in self))


@dataclass
class PatchSampler:
    """Random `patch_size` crops of normalised slices, with optional random flips and quarter turns.

    A boundary model's target is the membrane map, cropped with the image. An affinity
    model's (`offsets` given) is derived from each patch's label after its flips and turns
    ([`affinity_targets`][emseg.networks.affinities.affinity_targets]), so that it is the target
    of the patch the network sees, with the mask of the pairs the patch holds.

    Sparse labels: a patch entirely unlabelled would teach nothing (its loss is 0 whatever the
    network says) and spend a batch slot, so a slice with unlabelled pixels is cropped only
    where the patch holds a labelled pixel, drawn uniformly among those corners in one draw
    (`corners`); a fully labelled slice draws its top and left as it always did. Slices with no
    labelled pixel are left out.
    """

    images: list[torch.Tensor]
    targets: list[torch.Tensor]
    patch_size: int
    random_dihedral: bool
    generator: torch.Generator
    #: per-pixel loss weights (e.g. U-Net border weights), cropped with the patches; None = uniform
    weights: list[torch.Tensor] | None = None
    #: an affinity model's offsets; None for a boundary model
    offsets: tuple[Offset, ...] | None = None
    #: a boundary model's loss masks (1 = labelled), cropped with the patches; None when every pixel is labelled
    masks: list[torch.Tensor] | None = None
    #: per slice, the patch corners that hold a labelled pixel (see `_patch_corners`); None for a fully labelled slice
    corners: list[torch.Tensor | None] | None = None
    #: per slice, its local shape descriptors (6, H, W) and their mask (H, W), for an auxiliary head; None: none
    descriptors: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    #: normalised slices without labels, cropped for a consistency loss (`sample_unlabelled`); None: none
    unlabelled: list[torch.Tensor] | None = None

    @classmethod
    def from_arrays(
        cls,
        images: list[np.ndarray],
        labels: list[np.ndarray],
        patch_size: int,
        random_dihedral: bool,
        seed: int,
        weights: list[np.ndarray] | None = None,
        offsets: tuple[Offset, ...] | None = None,
        lsd_sigma: float = 0.0,
        unlabelled: list[np.ndarray] | None = None,
    ) -> PatchSampler:
        """A sampler of the given slices, seeded.

        Args:
            images: The raw training slices (normalised here), or each with its neighbouring
                sections (2k + 1, H, W): the sections are cropped, flipped and turned with it.
            labels: Their labels (0 = membrane, `CELL_VALUE` = cell, `UNLABELLED_VALUE` = not labelled).
            patch_size: The patch side, pixels.
            random_dihedral: Flip and turn each patch at random.
            seed: The seed of the patch stream.
            weights: Per-pixel loss weights of each slice, or None.
            offsets: An affinity model's offsets; None for a boundary model.
            lsd_sigma: Also give each patch its local shape descriptors of this sigma (an
                affinity model's auxiliary head), computed once per slice here; 0: none.
            unlabelled: Slices without labels (each alone, or with its sections as `images`),
                normalised here, for
                [`sample_unlabelled`][emseg.training.sampler.PatchSampler.sample_unlabelled]; None: none.

        Raises:
            EmsegError: No training slices, a slice smaller than the patch, or no labelled pixel.
        """
        if not images:
            raise EmsegError("no training slices: check data/split.json and the augment output")
        for image in (*images, *(unlabelled or ())):
            if min(image.shape[-2:]) < patch_size:
                raise EmsegError(
                    f"params train.patch_size: {patch_size} is larger than a training slice ({image.shape[-2]}x{image.shape[-1]})"
                )
        generator = torch.Generator().manual_seed(seed)
        masks = [labelled_mask(l) for l in labels]
        corners = None
        if any(m is not None for m in masks):
            # sparse labels: slices nobody labelled are left out, the others cropped where they are labelled
            kept = [i for i, m in enumerate(masks) if m is None or m.any()]
            if not kept:
                raise EmsegError(f"no labelled pixel in the training labels: every pixel is unlabelled ({UNLABELLED_VALUE})")
            images, labels, masks = [images[i] for i in kept], [labels[i] for i in kept], [masks[i] for i in kept]
            weights = [weights[i] for i in kept] if weights is not None else None
            corners = [None if m is None else _patch_corners(m, patch_size) for m in masks]
        # an affinity model keeps the labels themselves: its target (and mask) is derived patch by patch
        targets = [torch.from_numpy(l.copy()) if offsets else torch.from_numpy(membrane_target(l)) for l in labels]
        descriptors = None
        if lsd_sigma > 0:  # once per slice: a patch crops, turns and flips them with its label
            descriptors = [tuple(torch.from_numpy(a) for a in lsd_targets(l, lsd_sigma)) for l in labels]
        boundary_masks = None
        if corners is not None and not offsets:
            boundary_masks = [torch.from_numpy(np.ones(l.shape, np.float32) if m is None else m) for l, m in zip(labels, masks)]
        return cls(
            [torch.from_numpy(normalize(i)) for i in images],
            targets,
            patch_size,
            random_dihedral,
            generator,
            [torch.from_numpy(w) for w in weights] if weights is not None else None,
            offsets,
            boundary_masks,
            corners,
            descriptors,  # type: ignore[arg-type]
            [torch.from_numpy(normalize(u)) for u in unlabelled] if unlabelled else None,
        )

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def _turn(self, patches: list[torch.Tensor]) -> tuple[list[torch.Tensor], int, bool]:
        """`patches` turned by the same random quarter turns and flip (when `random_dihedral`), with the turns and flip drawn."""
        if not self.random_dihedral:
            return patches, 0, False
        k, flip = self._randint(4), bool(self._randint(2))
        # on the last two axes: a slice's sections turn with it
        patches = [torch.rot90(p, k, dims=(-2, -1)) for p in patches]
        return ([torch.flip(p, (-1,)) for p in patches] if flip else patches), k, flip

    def sample(self, batch_size: int) -> Batch:
        """A batch of `batch_size` random patches."""
        xs, ys, ws, ms, ds = [], [], [], [], []
        size = self.patch_size
        for _ in range(batch_size):
            index = self._randint(len(self.images))
            image, target = self.images[index], self.targets[index]
            corners = self.corners[index] if self.corners is not None else None
            if corners is None:
                top = self._randint(image.shape[-2] - size + 1)
                left = self._randint(image.shape[-1] - size + 1)
            else:
                top, left = divmod(int(corners[self._randint(len(corners))]), image.shape[-1] - size + 1)
            crop = (slice(top, top + size), slice(left, left + size))
            patches = [image[(..., *crop)], target[crop]]
            patches += [self.weights[index][crop]] if self.weights is not None else []
            patches += [self.masks[index][crop]] if self.masks is not None else []
            patches += [d[(..., *crop)] for d in self.descriptors[index]] if self.descriptors is not None else []
            patches, k, flip = self._turn(patches)
            if self.descriptors is not None:  # what the descriptors say turns with their pixels
                *patches, descriptors, kept = patches
                ds.append(torch.cat([turn_descriptors(descriptors, k, flip), kept[None].expand(LSD_CHANNELS, -1, -1)]))
            xs.append(patches[0])
            ys.append(patches[1])
            if self.weights is not None:
                ws.append(patches[2])
            if self.masks is not None:
                ms.append(patches[-1])
        x = torch.stack(xs)
        x = (x[:, None] if x.ndim == 3 else x).contiguous()  # (B, 1, P, P), or (B, 2k + 1, P, P) with sections
        weights = torch.stack(ws)[:, None].contiguous() if ws else None
        if self.offsets is None:
            mask = torch.stack(ms)[:, None].contiguous() if ms else None
            return Batch(x, torch.stack(ys)[:, None].contiguous(), weights, mask)
        pairs = [affinity_targets(label.numpy(), self.offsets) for label in ys]
        target = torch.from_numpy(np.stack([p[0] for p in pairs]))
        mask = torch.from_numpy(np.stack([p[1] for p in pairs]))
        if ds:  # the descriptors after the affinities, in the target and in the mask
            both = torch.stack(ds)
            target = torch.cat([target, both[:, :LSD_CHANNELS]], 1).contiguous()
            mask = torch.cat([mask, both[:, LSD_CHANNELS:]], 1).contiguous()
        return Batch(x, target, weights, mask)

    def sample_unlabelled(self, batch_size: int) -> ConsistencyBatch:
        """`batch_size` random patches of the unlabelled slices, flipped and turned, clean and perturbed.

        The perturbed view multiplies each patch by a contrast factor, adds a brightness shift
        (both drawn per patch) and Gaussian noise (`CONSISTENCY_*`); the geometry is the same in
        both views, so the teacher's affinities are the target of the same pixel pairs. Drawn
        from the sampler's own stream: a checkpoint that saves it resumes both.

        Raises:
            EmsegError: The sampler was made without unlabelled slices.
        """
        if not self.unlabelled:
            raise EmsegError("train.consistency_weight: there are no unlabelled slices to sample (data.test_images)")
        size, xs = self.patch_size, []
        for _ in range(batch_size):
            image = self.unlabelled[self._randint(len(self.unlabelled))]
            top = self._randint(image.shape[-2] - size + 1)
            left = self._randint(image.shape[-1] - size + 1)
            xs.append(self._turn([image[..., top:top + size, left:left + size]])[0][0])
        clean = torch.stack(xs)
        clean = (clean[:, None] if clean.ndim == 3 else clean).contiguous()
        per_patch = (batch_size, 1, 1, 1)
        contrast = _uniform(per_patch, CONSISTENCY_CONTRAST, self.generator)
        shift = _uniform(per_patch, CONSISTENCY_SHIFT, self.generator)
        noise = torch.randn(clean.shape, generator=self.generator) * CONSISTENCY_NOISE_STD
        return ConsistencyBatch(clean, (clean * contrast + shift + noise).contiguous())


def _uniform(shape: tuple[int, ...], bounds: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=generator)
