"""Correct cells by hand and turn the corrected, checked pixels into training labels.

The napari plugin's "correct and fine-tune" widget edits a cells layer: `uint32` (any integer)
instance labels of one slice `(H, W)` or a stack `(Z, H, W)`, 0 on the 1-pixel outlines between
cells, as [`instance_labels`][emseg.segmentation.thinning.instance_labels] writes them. Cells are
4-connected regions, as everywhere in emseg (the ISBI scorer's convention), and every edit works
within one slice:

* [`merge_cells`][emseg.segmentation.editing.merge_cells]: two cells become one, the wall between them removed;
* [`split_cell`][emseg.segmentation.editing.split_cell]: a drawn line cuts a cell in two;
* [`training_labels`][emseg.segmentation.editing.training_labels]: the checked pixels as canonical
  training labels, the rest unlabelled, so that a fine-tune learns from the corrected regions only;
* [`checked_slices`][emseg.segmentation.editing.checked_slices]: which slices hold checked pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.draw import line as draw_line

from emseg.config.layout import CELL_VALUE, UNLABELLED_VALUE
from emseg.errors import EmsegError
from emseg.preprocessing.labels import instance_cells

#: cells are 4-connected regions, as in instance_labels and the ISBI scorer
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def _cells(cells: np.ndarray) -> np.ndarray:
    """The cells as an array, refused unless they are integer labels of a slice or a stack."""
    arr = np.asarray(cells)
    if arr.ndim not in (2, 3) or arr.dtype.kind not in "iu":
        raise EmsegError(f"cells must be integer labels of shape (H, W) or (Z, H, W), got {arr.dtype} of shape {arr.shape}")
    return arr


def _near(mask: np.ndarray) -> np.ndarray:
    """Pixels with a True pixel in their 3x3 neighbourhood (themselves included), slice by slice."""
    height, width = mask.shape[-2:]
    padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    near = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            near |= padded[..., dy : dy + height, dx : dx + width]
    return near


def merge_cells(cells: np.ndarray, keep: int, other: int) -> np.ndarray:
    """Merge cell `other` into cell `keep`, removing the wall between them.

    The wall is the outline pixels (0) whose 8-neighbourhood touches both cells and no third
    cell, in the plane of each slice: they become `keep` too, so that two cells that touched
    across a wall become one region without an inner wall, while the outline towards every
    other cell stays. Cells that do not touch (in a stack: on different slices) are merged
    all the same, into one id of several regions.

    Args:
        cells: Instance labels `(H, W)` or `(Z, H, W)`, 0 on the outlines; not modified.
        keep: The id the merged cell keeps.
        other: The id that disappears.

    Returns:
        A new array of the cells' shape and type.

    Raises:
        EmsegError: `keep` equal to `other`, either of them 0 or not in the layer, or cells
            that are not integer labels of a slice or a stack.
    """
    cells = _cells(cells)
    keep, other = int(keep), int(other)
    if keep == other:
        raise EmsegError(f"cannot merge cell {keep} with itself: pick two different cells")
    for cell in (keep, other):
        if cell == 0:
            raise EmsegError("0 is the outline between cells, not a cell: pick two cells to merge")
        if not (cells == cell).any():
            raise EmsegError(f"cell {cell} is not in the layer")
    is_keep, is_other = cells == keep, cells == other
    third = (cells != 0) & ~is_keep & ~is_other
    wall = (cells == 0) & _near(is_keep) & _near(is_other) & ~_near(third)
    merged = cells.copy()
    merged[is_other | wall] = keep
    return merged


def _line(shape: tuple[int, ...], start: tuple[float, float], end: tuple[float, float]) -> np.ndarray:
    """The pixels of the segment from `start` to `end` (y, x) inside an image of `shape`, as a boolean mask.

    The segment is clipped to the image (Liang-Barsky, so that a line drawn past the edge keeps
    its direction), its ends rounded to pixels and rasterised 8-connected (Bresenham). Such a
    line separates 4-connected regions: each pair of 4-neighbours on either side of it has a
    line pixel between them.
    """
    (y0, x0), (y1, x1) = (float(v) for v in start), (float(v) for v in end)
    if not np.isfinite([y0, x0, y1, x1]).all():
        raise EmsegError(f"the line's ends must be finite numbers, got {tuple(start)} and {tuple(end)}")
    height, width = shape
    dy, dx = y1 - y0, x1 - x0
    low, high = 0.0, 1.0
    mask = np.zeros(shape, bool)
    for p, q in ((-dy, y0), (dy, height - 1 - y0), (-dx, x0), (dx, width - 1 - x0)):
        if p == 0:
            if q < 0:
                return mask  # parallel to this edge and outside it
        elif p < 0:
            low = max(low, q / p)
        else:
            high = min(high, q / p)
    if low > high:
        return mask
    ends = [(min(max(round(y0 + t * dy), 0), height - 1), min(max(round(x0 + t * dx), 0), width - 1)) for t in (low, high)]
    rows, cols = draw_line(*ends[0], *ends[1])
    mask[rows, cols] = True
    return mask


def split_cell(cells: np.ndarray, start: tuple[float, float], end: tuple[float, float], slice_index: int | None = None) -> tuple[np.ndarray, list[int]]:
    """Cut the cell under a drawn line in two (or more).

    The line, from `start` to `end` in pixel coordinates `(y, x)` (floats; it may run past the
    cell and the image), is rasterised 8-connected, one pixel thick: enough to separate the
    4-connected regions cells are. Every cell it cuts into several 4-connected pieces loses the
    line's pixels to the outline (0); the largest piece keeps the cell's id, the others get new
    ids above the layer's largest. A cell the line only enters (a line drawn past the cell to be
    split ends in its neighbours) is left as it is.

    Args:
        cells: Instance labels `(H, W)` or `(Z, H, W)`, 0 on the outlines; not modified.
        start: One end of the line, `(y, x)`.
        end: The other end, `(y, x)`.
        slice_index: The slice of a stack the line is drawn on (required for a stack); for a
            single slice None or 0.

    Returns:
        The new array, and the new ids in the order given.

    Raises:
        EmsegError: A stack without a valid `slice_index` (or another index than 0 for a
            slice), a line that crosses no cell or cuts none in two, new ids that the layer's
            integer type cannot hold, or cells that are not integer labels of a slice or a stack.
    """
    cells = _cells(cells)
    if cells.ndim == 3:
        if slice_index is None:
            raise EmsegError(f"the layer is a stack of {cells.shape[0]} slices: name the slice the line is drawn on")
        if not 0 <= slice_index < cells.shape[0]:
            raise EmsegError(f"slice {slice_index} is out of range: the stack has {cells.shape[0]} slices")
    elif slice_index not in (None, 0):
        raise EmsegError(f"slice {slice_index} is out of range: the layer is a single slice")
    plane = cells[slice_index] if cells.ndim == 3 else cells
    line = _line(plane.shape, start, end)
    crossed = [int(cell) for cell in np.unique(plane[line]) if cell != 0]
    if not crossed:
        raise EmsegError("the line crosses no cell: draw it across the cell to split")
    split = cells.copy()
    out = split[slice_index] if cells.ndim == 3 else split  # a view: writes land in `split`
    next_id, top = int(cells.max()) + 1, int(np.iinfo(cells.dtype).max)
    new_ids: list[int] = []
    for cell in crossed:
        inside = plane == cell
        pieces, count = ndimage.label(inside & ~line, _FOUR_CONNECTED)
        if count <= ndimage.label(inside, _FOUR_CONNECTED)[1]:
            continue
        out[inside & line] = 0
        largest = int(np.argmax(np.bincount(pieces.ravel())[1:])) + 1
        for piece in range(1, count + 1):
            if piece == largest:
                continue
            if next_id > top:
                raise EmsegError(f"cannot split cell {cell}: its new id would pass {top}, the largest the layer's {cells.dtype} holds")
            out[pieces == piece] = next_id
            new_ids.append(next_id)
            next_id += 1
    if not new_ids:
        names = ", ".join(str(cell) for cell in crossed)
        raise EmsegError(f"the line does not cut cell{'s' if len(crossed) > 1 else ''} {names} in two: draw it across the whole cell")
    return split, new_ids


def training_labels(cells: np.ndarray, checked: np.ndarray) -> np.ndarray:
    """Canonical training labels from corrected cells, labelled only where the user checked them.

    Inside `checked`, cells become `CELL_VALUE` and outlines 0, with a border drawn between
    touching cells by [`instance_cells`][emseg.preprocessing.labels.instance_cells] (on the whole
    layer, so that borders at the edge of the checked region are right too); elsewhere
    `UNLABELLED_VALUE`, which every loss ignores.

    Args:
        cells: Instance labels `(H, W)` or `(Z, H, W)`, 0 on the outlines.
        checked: A mask of the same shape, True where the cells were checked.

    Returns:
        `uint8` labels of the cells' shape: 0 membrane, `CELL_VALUE` cell, `UNLABELLED_VALUE` unchecked.

    Raises:
        EmsegError: Masks of different shapes, nothing checked, or cells that are not integer
            labels of a slice or a stack.
    """
    cells = _cells(cells)
    checked = np.asarray(checked, bool)
    if checked.shape != cells.shape:
        raise EmsegError(f"the checked mask has shape {checked.shape}, the cells {cells.shape}: they must match")
    if not checked.any():
        raise EmsegError("nothing is marked as checked: mark the slices or regions you corrected first")
    labels = np.where(instance_cells(cells), CELL_VALUE, 0).astype(np.uint8)
    labels[~checked] = UNLABELLED_VALUE
    return labels


def checked_slices(checked: np.ndarray) -> list[int]:
    """The indices of the slices with a checked pixel: of a stack `(Z, H, W)`, or `[0]` or `[]` for one slice `(H, W)`.

    Raises:
        EmsegError: A mask that is neither a slice nor a stack.
    """
    mask = np.asarray(checked, bool)
    if mask.ndim == 2:
        return [0] if mask.any() else []
    if mask.ndim == 3:
        return [int(i) for i in np.flatnonzero(mask.any(axis=(1, 2)))]
    raise EmsegError(f"the checked mask must be (H, W) or (Z, H, W), got shape {mask.shape}")
