"""Intensity normalisation of raw slices: the one definition used in training and inference.

Per-slice z-scoring makes the model indifferent to a microscope's gain and offset, which
matters for other labs' images; its name is stored in the model file, so a model is
always applied with the normalisation it was trained with.
"""

from __future__ import annotations

import numpy as np

from emseg.errors import EmsegError

ZSCORE_PER_SLICE = "zscore_per_slice"
DEFAULT_NORMALIZATION = {"kind": ZSCORE_PER_SLICE}
_EPS = 1e-6


def normalize(image: np.ndarray, spec: dict | None = None) -> np.ndarray:
    """Return ``image`` (2-D, any numeric dtype) as float32 normalised per ``spec``."""
    spec = spec or DEFAULT_NORMALIZATION
    if spec.get("kind") != ZSCORE_PER_SLICE:
        raise EmsegError(f"unknown normalisation {spec.get('kind')!r} in the model file")
    image = np.asarray(image, dtype=np.float32)
    mean = float(image.mean(dtype=np.float64))
    std = float(image.std(dtype=np.float64))
    return (image - mean) / max(std, _EPS)
