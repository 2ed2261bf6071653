"""Intensity normalisation of raw slices: the one definition used in training and inference.

Per-slice z-scoring makes the model indifferent to a microscope's gain and offset, which
matters for other labs' images; its name is stored in the model file, so that a model is
always applied with the normalisation it was trained with.
"""

from __future__ import annotations

import numpy as np

from emseg.errors import EmsegError

ZSCORE_PER_SLICE = "zscore_per_slice"
DEFAULT_NORMALIZATION = {"kind": ZSCORE_PER_SLICE}
_EPS = 1e-6


def normalize(image: np.ndarray, spec: dict | None = None) -> np.ndarray:
    """`image` (2-D, any numeric type) as `float32`, normalised as `spec` says.

    The mean and standard deviation are taken in float64, a band of rows at a time. A slice
    with its neighbouring sections (3-D, sections first) is normalised section by section.

    Args:
        image: One raw slice, or a slice with its sections (2k + 1, H, W).
        spec: The model file's normalisation, `{"kind": "zscore_per_slice"}` (None: that one).

    Raises:
        EmsegError: An unknown normalisation kind in the model file.
    """
    spec = spec or DEFAULT_NORMALIZATION
    if spec.get("kind") != ZSCORE_PER_SLICE:
        raise EmsegError(f"unknown normalisation {spec.get('kind')!r} in the model file")
    if image.ndim == 3:
        return np.stack([normalize(section, spec) for section in image])
    mean, std = _mean_std(image)
    out = np.asarray(image, dtype=np.float32).copy() if image.dtype == np.float32 else image.astype(np.float32)
    out -= mean
    out /= max(std, _EPS)
    return out


def _mean_std(image: np.ndarray, rows_per_chunk: int = 256) -> tuple[float, float]:
    """Mean and std in float64, a band of rows at a time: no full-size float64 temporary."""
    total = total_sq = 0.0
    for start in range(0, image.shape[0], rows_per_chunk):
        band = image[start : start + rows_per_chunk].astype(np.float64)
        total += float(band.sum())
        total_sq += float(np.square(band).sum())
    n = image.size
    mean = total / n
    return mean, float(np.sqrt(max(total_sq / n - mean * mean, 0.0)))
