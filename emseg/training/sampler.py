"""Random training patches drawn in memory from the training slices, and the targets they carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from emseg.errors import EmsegError
from emseg.networks.affinities import Offset, affinity_targets
from emseg.preprocessing.normalization import normalize


def membrane_target(label: np.ndarray) -> np.ndarray:
    """A boundary model's target from an ISBI label (0 = membrane): 1.0 on membrane, 0.0 in cells."""
    return (label == 0).astype(np.float32)


@dataclass
class TrainingData:
    """The slices of one training run: what patches are drawn from, and what validation predicts whole."""

    train_images: list[np.ndarray]
    train_labels: list[np.ndarray]
    val_images: list[np.ndarray]
    val_labels: list[np.ndarray]


class Batch(NamedTuple):
    """A batch of patches, each (B, C, P, P): image, target, per-pixel loss weights and affinity mask.

    `weights` is None without per-pixel loss weights; `mask`, for an affinity model, holds the
    pixel pairs that exist in the patch (None for a boundary model).
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
    ) -> PatchSampler:
        """A sampler of the given slices, seeded.

        Args:
            images: The raw training slices (normalised here).
            labels: Their ISBI labels.
            patch_size: The patch side, pixels.
            random_dihedral: Flip and turn each patch at random.
            seed: The seed of the patch stream.
            weights: Per-pixel loss weights of each slice, or None.
            offsets: An affinity model's offsets; None for a boundary model.

        Raises:
            EmsegError: No training slices, or a slice smaller than the patch.
        """
        if not images:
            raise EmsegError("no training slices: check data/split.json and the augment output")
        for image in images:
            if min(image.shape) < patch_size:
                raise EmsegError(
                    f"params train.patch_size: {patch_size} is larger than a training slice ({image.shape[0]}x{image.shape[1]})"
                )
        generator = torch.Generator().manual_seed(seed)
        # an affinity model keeps the labels themselves: its target is derived patch by patch
        targets = [torch.from_numpy(l.copy()) if offsets else torch.from_numpy(membrane_target(l)) for l in labels]
        return cls(
            [torch.from_numpy(normalize(i)) for i in images],
            targets,
            patch_size,
            random_dihedral,
            generator,
            [torch.from_numpy(w) for w in weights] if weights is not None else None,
            offsets,
        )

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def sample(self, batch_size: int) -> Batch:
        """A batch of `batch_size` random patches."""
        xs, ys, ws = [], [], []
        size = self.patch_size
        for _ in range(batch_size):
            index = self._randint(len(self.images))
            image, target = self.images[index], self.targets[index]
            top = self._randint(image.shape[0] - size + 1)
            left = self._randint(image.shape[1] - size + 1)
            crop = (slice(top, top + size), slice(left, left + size))
            patches = [image[crop], target[crop]] + ([self.weights[index][crop]] if self.weights is not None else [])
            if self.random_dihedral:
                k, flip = self._randint(4), self._randint(2)
                patches = [torch.rot90(p, k) for p in patches]
                if flip:
                    patches = [torch.flip(p, (1,)) for p in patches]
            xs.append(patches[0])
            ys.append(patches[1])
            if self.weights is not None:
                ws.append(patches[2])
        x = torch.stack(xs)[:, None].contiguous()
        weights = torch.stack(ws)[:, None].contiguous() if ws else None
        if self.offsets is None:
            return Batch(x, torch.stack(ys)[:, None].contiguous(), weights)
        pairs = [affinity_targets(label.numpy(), self.offsets) for label in ys]
        target = torch.from_numpy(np.stack([p[0] for p in pairs]))
        return Batch(x, target, weights, torch.from_numpy(np.stack([p[1] for p in pairs])))
