"""Pictures for people: raw slices as 8-bit, masks tinted over them, cell outlines, panels side by side.

One set of colours and one way of drawing for the augment preview, the evaluate stage's
overlay panels and `emseg predict`'s overlay. Everything works on `(H, W)` slices and
returns RGB `uint8` arrays; nothing here makes a float copy of a whole large slice.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from emseg.io.atomic import atomic_output

#: ground-truth or predicted membrane, tinted over the image
MEMBRANE_RGB = (255, 40, 40)
#: a second mask beside the first (the evaluate panels' prediction)
PREDICTION_RGB = (40, 220, 255)
#: cell outlines, drawn opaque
OUTLINE_RGB = (255, 225, 0)
#: a tint's share of the pixel, of 256: the raw image stays readable under it
TINT_ALPHA = 128
#: white gap between panels, pixels
PANEL_GAP = 6


def to_uint8(image: np.ndarray, chunk_rows: int = 1024) -> np.ndarray:
    """A slice as 8-bit for display.

    8-bit slices are kept, booleans become 0/255, anything else is stretched between its 0.5 and
    99.5 percentiles, `chunk_rows` rows at a time (no full-size float temporary).
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.view(np.uint8) * np.uint8(255)
    step = max(1, int(np.sqrt(image.size / 1e6)))  # percentiles of ~1 MPix are plenty for display
    lo, hi = np.percentile(image[::step, ::step], (0.5, 99.5))
    scale = np.float32(255.0 / (hi - lo)) if hi > lo else np.float32(0.0)
    out = np.empty(image.shape, np.uint8)
    for start in range(0, image.shape[0], chunk_rows):  # row chunks: no full-size float temporary
        rows = image[start : start + chunk_rows].astype(np.float32)
        rows -= np.float32(lo)
        rows *= scale
        np.clip(rows, 0, 255, out=rows)
        out[start : start + chunk_rows] = rows
    return out


def grey_rgb(image: np.ndarray) -> np.ndarray:
    """The slice as an RGB picture of its 8-bit grey values."""
    return np.repeat(to_uint8(image)[..., None], 3, axis=-1)


def tint(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: int = TINT_ALPHA) -> np.ndarray:
    """Blend the `mask` pixels of `rgb` towards `colour`, in place.

    Args:
        rgb: The (H, W, 3) `uint8` picture, modified in place.
        mask: The (H, W) boolean pixels to tint.
        colour: The RGB colour blended in.
        alpha: The colour's share of each tinted pixel, of 256.

    Returns:
        `rgb` itself.
    """
    for c in range(3):
        channel = rgb[..., c]
        blended = channel[mask].astype(np.uint16) * (256 - alpha) + colour[c] * alpha
        channel[mask] = (blended >> 8).astype(np.uint8)
    return rgb


def outlines(labels: np.ndarray) -> np.ndarray:
    """The boolean outline pixels of an instance labelling: the 0 lines, plus every place where two different labels touch."""
    if not labels.any():
        return np.zeros(labels.shape, bool)
    edge = labels == 0
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    return edge


def overlay(image: np.ndarray, membrane: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The raw slice with the membrane mask tinted red and the cells' outlines drawn in yellow."""
    rgb = tint(grey_rgb(image), membrane, MEMBRANE_RGB)
    rgb[outlines(labels)] = OUTLINE_RGB
    return rgb


def side_by_side(panels: list[np.ndarray], gap: int = PANEL_GAP) -> np.ndarray:
    """RGB panels of one height in a row, with white gaps between them."""
    spacer = np.full((panels[0].shape[0], gap, 3), 255, np.uint8)
    parts = [part for panel in panels for part in (panel, spacer)][:-1]
    return np.concatenate(parts, axis=1)


def stacked(rows: list[np.ndarray], gap: int = PANEL_GAP) -> np.ndarray:
    """RGB rows of one width one below the other, with white gaps between them."""
    spacer = np.full((gap, rows[0].shape[1], 3), 255, np.uint8)
    parts = [part for row in rows for part in (row, spacer)][:-1]
    return np.concatenate(parts, axis=0)


def resized(rgb: np.ndarray, size: int) -> np.ndarray:
    """An RGB picture scaled to `size` x `size` (bilinear), for preview grids."""
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))


def write_rgb_png(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write an RGB picture as a PNG, atomically."""
    with atomic_output(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
