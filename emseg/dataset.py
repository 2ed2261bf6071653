"""The converted PNG data set on disk, and random training patches drawn from it in memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emseg.errors import EmsegError
from emseg.io import read_image
from emseg.normalization import normalize
from emseg.preprocessing.convert import slice_name

TRAIN_IMAGES = Path("train") / "images"
TRAIN_LABELS = Path("train") / "labels"
TEST_IMAGES = Path("test") / "images"


def membrane_target(label: np.ndarray) -> np.ndarray:
    """The model's target from an ISBI label (0 = membrane): 1.0 on membrane, 0.0 in cells."""
    return (label == 0).astype(np.float32)


def read_slices(folder: str | os.PathLike[str], names: list[str]) -> list[np.ndarray]:
    return [read_image(Path(folder) / name)[0] for name in names]


def read_labelled(png_root: str | os.PathLike[str], indices: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Raw images and ISBI labels of the given labelled slice indices."""
    root = Path(png_root)
    names = [slice_name(i) for i in indices]
    return read_slices(root / TRAIN_IMAGES, names), read_slices(root / TRAIN_LABELS, names)


def read_augmented(aug_root: str | os.PathLike[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    root = Path(aug_root)
    names = sorted(p.name for p in (root / "images").glob("*.png"))
    return read_slices(root / "images", names), read_slices(root / "labels", names)


@dataclass
class PatchSampler:
    """Random ``patch_size`` crops of normalised slices, with optional random flips and quarter turns."""

    images: list[torch.Tensor]
    targets: list[torch.Tensor]
    patch_size: int
    random_dihedral: bool
    generator: torch.Generator

    @classmethod
    def from_arrays(
        cls, images: list[np.ndarray], labels: list[np.ndarray], patch_size: int, random_dihedral: bool, seed: int
    ) -> PatchSampler:
        if not images:
            raise EmsegError("no training slices: check data/split.json and the augment output")
        for image in images:
            if min(image.shape) < patch_size:
                raise EmsegError(
                    f"params train.patch_size: {patch_size} is larger than a training slice ({image.shape[0]}x{image.shape[1]})"
                )
        generator = torch.Generator().manual_seed(seed)
        return cls(
            [torch.from_numpy(normalize(i)) for i in images],
            [torch.from_numpy(membrane_target(l)) for l in labels],
            patch_size,
            random_dihedral,
            generator,
        )

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch ``(x, y)`` of shape (B, 1, P, P) each."""
        xs, ys = [], []
        size = self.patch_size
        for _ in range(batch_size):
            index = self._randint(len(self.images))
            image, target = self.images[index], self.targets[index]
            top = self._randint(image.shape[0] - size + 1)
            left = self._randint(image.shape[1] - size + 1)
            x = image[top : top + size, left : left + size]
            y = target[top : top + size, left : left + size]
            if self.random_dihedral:
                k, flip = self._randint(4), self._randint(2)
                x, y = torch.rot90(x, k), torch.rot90(y, k)
                if flip:
                    x, y = torch.flip(x, (1,)), torch.flip(y, (1,))
            xs.append(x)
            ys.append(y)
        return torch.stack(xs)[:, None].contiguous(), torch.stack(ys)[:, None].contiguous()
