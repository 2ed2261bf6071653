"""Seeded, materialised augmentation of the training slices with MONAI dictionary transforms.

Elastic deformation (as in the U-Net paper: random displacements on a coarse grid,
smoothly interpolated), flips, 90-degree rotations and intensity changes (gamma,
contrast, noise, blur) are built from `params.yaml: augment` in
[`build_transforms`][emseg.preprocessing.augment.build_transforms], the one list of them.
Image and label go through the same spatial transforms, the label with nearest-neighbour
interpolation, so that it stays binary. A slice given with its neighbouring sections
(`(2k + 1, H, W)`, for `model.context` k) is deformed as one: every section moves with the
slice and its label.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from monai.transforms import (
    Compose,
    Rand2DElasticd,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandRotate90d,
    RandScaleIntensityFixedMeand,
)
from monai.transforms.transform import MapTransform, Transform

from emseg.config.layout import AUGMENTED_CONTEXT, AUGMENTED_IMAGES, AUGMENTED_LABELS, augmented_name, context_name
from emseg.config.params import AugmentParams
from emseg.io.images import write_png
from emseg.io.sections import centre, neighbour_offsets
from emseg.visualization import MEMBRANE_RGB, grey_rgb, resized, side_by_side, stacked, tint, write_rgb_png

IMAGE, LABEL = "image", "label"


class ClipIntensityd(MapTransform):
    """Keep augmented intensities in the [0, 1] range they are stored in."""

    def __call__(self, data: dict) -> dict:
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = out[key].clamp(0.0, 1.0) if isinstance(out[key], torch.Tensor) else np.clip(out[key], 0.0, 1.0)
        return out


def build_transforms(params: AugmentParams) -> Compose:
    """The augmentation pipeline for samples `{'image': (1, H, W) float in [0, 1], 'label': (1, H, W)}`."""
    elastic = params.elastic
    spatial: list[Transform] = []
    if elastic.prob > 0:
        spatial.append(
            Rand2DElasticd(
                keys=[IMAGE, LABEL],
                spacing=(elastic.grid_spacing, elastic.grid_spacing),
                magnitude_range=elastic.magnitude,
                prob=elastic.prob,
                rotate_range=elastic.rotate_range or None,
                scale_range=(elastic.scale_range, elastic.scale_range) if elastic.scale_range else None,
                mode=["bilinear", "nearest"],
                padding_mode="reflection",
            )
        )
    spatial += [
        RandFlipd(keys=[IMAGE, LABEL], prob=params.flip_prob, spatial_axis=0),
        RandFlipd(keys=[IMAGE, LABEL], prob=params.flip_prob, spatial_axis=1),
        RandRotate90d(keys=[IMAGE, LABEL], prob=params.rotate90_prob, max_k=3),
    ]
    intensity: list[Transform] = [
        RandAdjustContrastd(keys=IMAGE, prob=params.gamma.prob, gamma=params.gamma.range),
        RandScaleIntensityFixedMeand(
            keys=IMAGE, prob=params.contrast.prob, factors=(params.contrast.range[0] - 1.0, params.contrast.range[1] - 1.0)
        ),
        RandGaussianNoised(keys=IMAGE, prob=params.noise.prob, mean=0.0, std=params.noise.std, sample_std=True),
        RandGaussianSmoothd(keys=IMAGE, prob=params.blur.prob, sigma_x=params.blur.range, sigma_y=params.blur.range),
        ClipIntensityd(keys=IMAGE),
    ]
    return Compose(spatial + intensity)


def _as_float(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The image as MONAI's channel-first float in [0, 1]: a slice gets one channel, a slice with its sections keeps theirs."""
    scale = float(np.iinfo(image.dtype).max)
    floats = image.astype(np.float32) / scale
    return (floats[np.newaxis] if image.ndim == 2 else floats), scale


def augment_slices(
    images: list[np.ndarray],
    labels: list[np.ndarray],
    params: AugmentParams,
    seed: int,
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Augmented copies of every training slice, `params.copies` per slice, from one seeded stream.

    Args:
        images: The training slices (H, W), or each with its neighbouring sections (2k + 1, H, W).
        labels: Their labels (H, W).
        params: The `augment` block.
        seed: The seed of the one random stream.

    Returns:
        One `(source index, image, label)` per copy, in the input's types and shapes; the label
        keeps the input's values (0 membrane, the cell value, and the unlabelled value of sparse labels).
    """
    transforms = build_transforms(params)
    transforms.set_random_state(seed=seed)
    results = []
    for index, (image, label) in enumerate(zip(images, labels)):
        float_image, scale = _as_float(image)
        for _ in range(params.copies):
            sample = transforms({IMAGE: torch.from_numpy(float_image), LABEL: torch.from_numpy(label[np.newaxis].copy())})
            aug_image = np.asarray(sample[IMAGE])
            aug_image = aug_image[0] if image.ndim == 2 else aug_image
            aug_label = np.asarray(sample[LABEL])[0]
            # nearest-neighbour resampling keeps the label's own values (membrane, cell and unlabelled alike)
            results.append((index, np.rint(aug_image * scale).astype(image.dtype), np.rint(aug_label).astype(label.dtype)))
    return results


def write_augmented(samples: list[tuple[int, np.ndarray, np.ndarray]], slice_ids: list[int], out_dir: str | os.PathLike[str]) -> list[str]:
    """Write the samples of [`augment_slices`][emseg.preprocessing.augment.augment_slices] as image and label PNG pairs.

    A sample with neighbouring sections writes its slice to `images/` and each section to
    `context/` ([`context_name`][emseg.config.layout.context_name]).

    Args:
        samples: The `(source index, image, label)` copies.
        slice_ids: The labelled-slice number of each source index, for the file names.
        out_dir: The augmented set's folder (`images/` and `labels/` inside).

    Returns:
        The file names written, one per sample.
    """
    out = Path(out_dir)
    names = []
    copy_counter: dict[int, int] = {}
    for source, image, label in samples:
        copy = copy_counter.get(source, 0)
        copy_counter[source] = copy + 1
        name = augmented_name(slice_ids[source], copy)
        if image.ndim == 3:
            context = image.shape[0] // 2
            for offset in neighbour_offsets(context):
                write_png(out / AUGMENTED_CONTEXT / context_name(name, offset), image[context + offset])
            image = image[context]
        write_png(out / AUGMENTED_IMAGES / name, image)
        write_png(out / AUGMENTED_LABELS / name, label)
        names.append(name)
    return names


def write_preview(
    originals: list[tuple[np.ndarray, np.ndarray]],
    augmented: list[tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike[str],
    tile: int = 256,
) -> None:
    """A grid PNG of samples: one row per sample, original beside augmented, membranes tinted red (of a stack, its middle slice)."""
    originals = [(centre(image), label) for image, label in originals]
    augmented = [(centre(image), label) for image, label in augmented]
    rows = [
        side_by_side([resized(tint(grey_rgb(image), label == 0, MEMBRANE_RGB), tile) for image, label in pair], gap=4)
        for pair in zip(originals, augmented)
    ]
    write_rgb_png(path, stacked(rows, gap=4))
