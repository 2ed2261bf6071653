"""From a membrane map to cells: the one place where probabilities become cell instances.

Both `emseg predict` and the ISBI scorer ([`emseg.evaluation.metrics`][emseg.evaluation.metrics])
need the same steps, so they live here, below both:

* [`membrane_to_cell`][emseg.segmentation.thinning.membrane_to_cell]: the membrane-probability
  map the networks predict, turned into the cell-probability map of the challenge's
  convention (high = cell interior);
* [`flood_watershed`][emseg.segmentation.thinning.flood_watershed]: the classic Vincent-Soille
  flooding exactly as Fiji's `WatershedTransform2D` (4-connectivity; pixels visited column by
  column, x outer and y inner; neighbours west, north, east, south; a FIFO queue floods each
  level from the labelled regions, and a pixel reached from two different regions becomes a
  watershed pixel), a line-by-line port so that cells and scores agree with Fiji to the pixel;
* [`thin_borders`][emseg.segmentation.thinning.thin_borders]: the border pixels of a binary
  cell mask thinned to 1-pixel lines with that flooding, as the scorer does at every threshold;
* [`instance_labels`][emseg.segmentation.thinning.instance_labels]: the cells of a thresholded
  mask as `uint32` instances.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from emseg.errors import EmsegError


def membrane_to_cell(proba_membrane: np.ndarray) -> np.ndarray:
    """Turn a membrane-probability map into the cell-probability map the scorer expects (`1 - p`), in the same float type.

    Raises:
        EmsegError: The map is not a float array.
    """
    arr = np.asarray(proba_membrane)
    if not np.issubdtype(arr.dtype, np.floating):
        raise EmsegError(f"membrane map must be a float array in [0, 1], got dtype {arr.dtype}")
    return (1 - arr).astype(arr.dtype, copy=False)


_MASK = -2  # pixel at the current level, not reached yet
_WSHED = 0  # watershed (line) pixel
_INIT = -1  # not visited
_INQUEUE = -3  # waiting in the FIFO


@njit(cache=True, nogil=True, inline="always")
def _neighbour(p: int, k: int, size1: int, size2: int) -> int:
    """Flat index of neighbour `k` (0 west, 1 north, 2 east, 3 south) of `p`, or -1 off the image.

    Pixels are stored column-major as in ImageJ's x-outer scan: p = x * size2 + y.
    """
    x = p // size2
    y = p - x * size2
    if k == 0:
        return p - size2 if x > 0 else -1
    if k == 1:
        return p - 1 if y > 0 else -1
    if k == 2:
        return p + size2 if x < size1 - 1 else -1
    return p + 1 if y < size2 - 1 else -1


@njit(cache=True, nogil=True)
def flood_watershed(levels: np.ndarray) -> np.ndarray:
    """Vincent-Soille flooding exactly as Fiji's `WatershedTransform2D.apply()` (4-connected).

    Args:
        levels: The 8-bit grey image indexed `[x, y]` (the transpose of an `(H, W)` image),
            C-contiguous, so that the flat index `x * H + y` runs in Fiji's pixel order (x outer,
            y inner).

    Returns:
        `int32` labels `[x, y]`: > 0 basins, 0 watershed lines.
    """
    size1, size2 = levels.shape
    npix = size1 * size2
    flat = levels.ravel()

    # Collections.sort(pixelList): by value, ties in creation order (x outer, y inner);
    # a stable counting sort gives the same order.
    start = np.zeros(257, np.int64)
    for i in range(npix):
        start[flat[i] + 1] += 1
    for v in range(256):
        start[v + 1] += start[v]
    order = np.empty(npix, np.int64)
    for i in range(npix):
        v = flat[i]
        order[start[v]] = i
        start[v] += 1

    lab = np.full(npix, _INIT, np.int32)
    queue = np.empty(max(npix, 1), np.int64)
    current_label = 0
    flag = False
    current = 0
    hi1 = 0
    hi2 = 0
    while current < npix:  # h <= hMax always holds: every value lies in [getMin(), getMax()]
        h = flat[order[current]]
        head = 0
        tail = 0
        # mask all pixels of level h; queue those next to a basin or a watershed pixel
        pi = hi1
        while pi < npix:
            p = order[pi]
            if flat[p] != h:
                hi1 = pi
                break
            lab[p] = _MASK
            for k in range(4):  # west, north, east, south
                q = _neighbour(p, k, size1, size2)
                if q < 0:
                    continue
                if lab[q] >= _WSHED:
                    queue[tail] = p
                    tail += 1
                    lab[p] = _INQUEUE
                    break
            pi += 1
        # extend the basins (geodesic SKIZ of level h-1 inside level h)
        while head < tail:
            p = queue[head]
            head += 1
            for k in range(4):
                q = _neighbour(p, k, size1, size2)
                if q < 0:
                    continue
                lq = lab[q]
                if lq > 0:
                    lp = lab[p]
                    if lp == _INQUEUE or (lp == _WSHED and flag):
                        lab[p] = lq
                    elif lp > 0 and lp != lq:
                        lab[p] = _WSHED
                        flag = False
                elif lq == _WSHED:
                    if lab[p] == _INQUEUE:
                        lab[p] = _WSHED
                        flag = True
                elif lq == _MASK:
                    lab[q] = _INQUEUE
                    queue[tail] = q
                    tail += 1
        # new minima at level h
        pi = hi2
        while pi < npix:
            p = order[pi]
            if flat[p] != h:
                hi2 = pi
                break
            if lab[p] == _MASK:
                current_label += 1
                head = 0
                tail = 0
                queue[tail] = p
                tail += 1
                lab[p] = current_label
                while head < tail:
                    p2 = queue[head]
                    head += 1
                    for k in range(4):
                        q = _neighbour(p2, k, size1, size2)
                        if q < 0:
                            continue
                        if lab[q] == _MASK:
                            queue[tail] = q
                            tail += 1
                            lab[q] = current_label
            pi += 1
            current += 1

    for i in range(npix):  # INIT (and, defensively, any other negative state) -> 0
        if lab[i] < 0:
            lab[i] = 0
    return lab.reshape((size1, size2))


@njit(cache=True, nogil=True)
def _thin_mask_t(cell_t: np.ndarray) -> np.ndarray:
    """Flood a transposed boolean cell mask: cells are level 0, borders level 255."""
    levels = np.empty(cell_t.shape, np.uint8)
    for x in range(cell_t.shape[0]):
        for y in range(cell_t.shape[1]):
            levels[x, y] = 0 if cell_t[x, y] else 255
    return flood_watershed(levels)



def thin_borders(cell_mask: np.ndarray) -> np.ndarray:
    """Thin the borders of a binary (H, W) cell mask to 1-pixel lines, as Fiji does.

    Returns:
        `int32` labels: the cell regions (with the border pixels flooded into them), numbered
        1, 2, ... in Fiji's order, and 0 for the remaining 1-pixel watershed lines. An all-cell
        or all-border mask is one region labelled 1.

    Raises:
        EmsegError: The mask is not 2-D.
    """
    mask = np.asarray(cell_mask)
    if mask.ndim != 2:
        raise EmsegError(f"cell mask must be 2-D, got shape {mask.shape}")
    mask_t = np.ascontiguousarray(mask.astype(bool, copy=False).T)
    return np.ascontiguousarray(_thin_mask_t(mask_t).T)


def instance_labels(cell_mask: np.ndarray) -> np.ndarray:
    """The `uint32` cell instances of a thresholded cell mask (H, W), 0 on the 1-pixel outlines.

    Fiji-style border thinning ([`thin_borders`][emseg.segmentation.thinning.thin_borders])
    rather than a watershed on the probabilities: its regions are exactly the 4-connected cell
    components (membrane pixels flooded into them) that the ISBI V_rand / V_info scores judge at
    this threshold, so that the labels match the reported scores; it needs no seed or
    compactness parameters, and it is deterministic and linear in the area. A mask without a
    cell pixel gives no cell at all.
    """
    if not cell_mask.any():  # thin_borders calls an all-border slice one region; here it is no cell at all
        return np.zeros(cell_mask.shape, np.uint32)
    return thin_borders(cell_mask).view(np.uint32)  # labels are >= 0, so the bits are the same
