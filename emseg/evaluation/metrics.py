"""ISBI-2012 segmentation metrics, reproducing Fiji's official scorer.

The ISBI 2012 EM-segmentation challenge is scored by Fiji's Trainable
Segmentation plugin (``trainableSegmentation.metrics``)::

    RandError.getMaximalVRandAfterThinning(0.0, 1.0, 0.1, true)
    VariationOfInformation.getMaximalVInfoAfterThinning(0.0, 1.0, 0.1)
    PixelError.getPixelErrorMaximalFScore(0.0, 1.0, 0.1)

This module re-implements those three calls (independently written, from
reading the Java) so that the numbers agree with Fiji to ~1e-12, plus a few
plain extras (pixel error at the chosen threshold, membrane Dice/IoU).

Conventions: a label slice has cell interior > 0 and membrane 0; a proposal
("proba_cell") is a map in [0, 1] where HIGH means cell interior.  Our models
predict membrane probability; :func:`membrane_to_cell` is the one place where
that is turned around.

What the Java does, and therefore what this module does, per threshold ``t``
(thresholds accumulated in double precision: 0.0, 0.1, ..., 0.9999999999999999):

* proposal: a pixel is cell when ``(double) p > t`` (p as a float32 value);
  the non-cell pixels ("borders") are thinned by the classic Vincent-Soille
  watershed (``WatershedTransform2D``, 4-connectivity) of the binary image
  (cell 0, border 255): pixels are visited column by column (x outer, y inner),
  neighbours in the order west, north, east, south, a FIFO queue floods the
  border level from the labelled cell regions, and a border pixel reached from
  two different regions becomes a watershed (label 0) pixel.  A slice that is
  all cell or all border is one single region (label 1).
* ground truth: 4-connected components of ``label > t`` (Fiji binarises the
  labels with the same threshold; for integer labels that is ``label > 0``).
* V_rand / V_info: foreground-restricted (GT membrane pixels ignored) Rand and
  information-theoretic F-scores; every proposal watershed pixel inside the GT
  foreground is its own singleton segment.  Both are computed per slice and
  averaged over slices (macro average); the maximum over thresholds is
  reported (a NaN average never wins, the maximum starts at 0).
* pixel error: 1 - best F-score of the cell class over the thresholds, with
  TP/FP/FN pooled over all slices and the ground truth taken as ``label > 0``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from emseg.errors import EmsegError

__all__ = [
    "ISBI_THRESHOLDS",
    "ScoreResult",
    "fiji_thresholds",
    "membrane_to_cell",
    "score",
    "segmentation_scores",
    "thin_borders",
]


def fiji_thresholds(start: float = 0.0, stop: float = 1.0, step: float = 0.1) -> tuple[float, ...]:
    """The thresholds Fiji visits: ``for (th = start; th <= stop; th += step)`` in doubles.

    With the ISBI arguments (0, 1, 0.1) the accumulated sum gives 11 values whose last
    one is 0.9999999999999999 (1.0 itself is never reached).
    """
    start, stop, step = float(start), float(stop), float(step)
    if not (math.isfinite(start) and math.isfinite(stop) and math.isfinite(step)) or step <= 0:
        raise ValueError(f"invalid thresholds: start={start}, stop={stop}, step={step}")
    if start < 0 or start > stop or stop > 1:  # Fiji logs "unvalid threshold values" here
        raise ValueError(f"invalid thresholds: need 0 <= start <= stop <= 1, got {start}, {stop}")
    out = []
    th = start
    while th <= stop:
        out.append(th)
        th += step
    return tuple(out)


ISBI_THRESHOLDS: tuple[float, ...] = fiji_thresholds(0.0, 1.0, 0.1)


def membrane_to_cell(proba_membrane: np.ndarray) -> np.ndarray:
    """Turn a membrane-probability map into the cell-probability map the scorer expects (1 - p)."""
    arr = np.asarray(proba_membrane)
    if not np.issubdtype(arr.dtype, np.floating):
        raise EmsegError(f"membrane map must be a float array in [0, 1], got dtype {arr.dtype}")
    return (1 - arr).astype(arr.dtype, copy=False)


# --------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------

_MASK = -2  # pixel at the current level, not reached yet
_WSHED = 0  # watershed (line) pixel
_INIT = -1  # not visited
_INQUEUE = -3  # waiting in the FIFO


@njit(cache=True, nogil=True, inline="always")
def _neighbour(p: int, k: int, size1: int, size2: int) -> int:
    """Flat index of neighbour ``k`` (0 west, 1 north, 2 east, 3 south) of ``p``, or -1 off the image.

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
def _flood(levels: np.ndarray) -> np.ndarray:
    """Vincent-Soille flooding exactly as Fiji's ``WatershedTransform2D.apply()`` (4-connected).

    ``levels`` is the grey image indexed ``[x, y]`` (i.e. the transpose of an ``(H, W)``
    image), C-contiguous, so the flat index ``x * H + y`` runs in Fiji's pixel order
    (x outer, y inner).  Returns int32 labels ``[x, y]``: >0 basins, 0 watershed lines.
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
    return _flood(levels)


@njit(cache=True, nogil=True)
def _label4(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean (H, W) mask, numbered in raster order.

    Like Fiji's ``FindConnectedRegions`` (which writes ``(short) regionNumber`` read back
    with ``& 0xffff``), label numbers wrap modulo 65536; region 65536 becomes 0, i.e.
    background.  Returns the labels and the largest label present.
    """
    height, width = mask.shape
    lab = np.zeros((height, width), np.int32)
    stack = np.empty(max(height * width, 1), np.int64)
    count = 0
    for y0 in range(height):
        for x0 in range(width):
            if not mask[y0, x0] or lab[y0, x0] != 0:
                continue
            count += 1
            value = count & 0xFFFF
            if value == 0:
                value = -1  # visited marker; reset to 0 below
            top = 0
            stack[top] = y0 * width + x0
            top += 1
            lab[y0, x0] = value
            while top > 0:
                top -= 1
                p = stack[top]
                y = p // width
                x = p - y * width
                if x > 0 and mask[y, x - 1] and lab[y, x - 1] == 0:
                    lab[y, x - 1] = value
                    stack[top] = p - 1
                    top += 1
                if y > 0 and mask[y - 1, x] and lab[y - 1, x] == 0:
                    lab[y - 1, x] = value
                    stack[top] = p - width
                    top += 1
                if x < width - 1 and mask[y, x + 1] and lab[y, x + 1] == 0:
                    lab[y, x + 1] = value
                    stack[top] = p + 1
                    top += 1
                if y < height - 1 and mask[y + 1, x] and lab[y + 1, x] == 0:
                    lab[y + 1, x] = value
                    stack[top] = p + width
                    top += 1
    max_label = 0
    for y in range(height):
        for x in range(width):
            if lab[y, x] < 0:
                lab[y, x] = 0
            elif lab[y, x] > max_label:
                max_label = lab[y, x]
    return lab, max_label


@njit(cache=True, nogil=True)
def _pair_counts(gt: np.ndarray, seg: np.ndarray, n_gt: int, n_seg: int):
    """Contingency statistics of GT labels (0 = ignored) against segment labels (0 = singleton).

    Returns ``(n, singles, sum_a2, sum_b2, sum_c2, sum_alog, sum_blog, sum_clog)`` where
    ``a`` are GT-region sizes, ``b`` segment sizes inside the GT foreground, ``c`` the
    overlaps (singletons excluded from b and c), squares as exact int64 sums and
    ``*_log`` the sums of ``p * log(p)`` with ``p = count / n``.
    """
    a = np.zeros(n_gt + 1, np.int64)
    b = np.zeros(n_seg + 1, np.int64)
    n = 0
    singles = 0
    for k in range(gt.size):
        g = gt[k]
        if g == 0:
            continue
        n += 1
        a[g] += 1
        s = seg[k]
        if s == 0:
            singles += 1
        else:
            b[s] += 1
    # group the GT labels of each segment (counting sort by segment)
    start = np.zeros(n_seg + 2, np.int64)
    for s in range(1, n_seg + 1):
        start[s + 1] = start[s] + b[s]
    fill = start.copy()
    members = np.empty(max(n - singles, 1), np.int32)
    for k in range(gt.size):
        g = gt[k]
        s = seg[k]
        if g != 0 and s != 0:
            members[fill[s]] = g
            fill[s] += 1
    scratch = np.zeros(n_gt + 1, np.int64)
    sum_c2 = 0
    sum_clog = 0.0
    nf = float(n)
    for s in range(1, n_seg + 1):
        for m in range(start[s], start[s + 1]):
            scratch[members[m]] += 1
        for m in range(start[s], start[s + 1]):
            g = members[m]
            c = scratch[g]
            if c > 0:
                sum_c2 += c * c
                pc = c / nf
                sum_clog += pc * math.log(pc)
                scratch[g] = 0
    sum_a2 = 0
    sum_alog = 0.0
    for g in range(1, n_gt + 1):
        c = a[g]
        if c > 0:
            sum_a2 += c * c
            pc = c / nf
            sum_alog += pc * math.log(pc)
    sum_b2 = 0
    sum_blog = 0.0
    for s in range(1, n_seg + 1):
        c = b[s]
        if c > 0:
            sum_b2 += c * c
            pc = c / nf
            sum_blog += pc * math.log(pc)
    return n, singles, sum_a2, sum_b2, sum_c2, sum_alog, sum_blog, sum_clog


@njit(cache=True, nogil=True)
def _slice_at_threshold(proba_t: np.ndarray, gt_t: np.ndarray, gt_pos_t: np.ndarray, t: float, n_gt: int):
    """Everything one (slice, threshold) pair needs, on transposed ``[x, y]`` arrays.

    ``proba_t`` float32, compared as double (``p > t``) like Fiji; ``gt_t`` GT region
    labels; ``gt_pos_t`` the pixel-error ground truth (``label > 0``).
    """
    size1, size2 = proba_t.shape
    levels = np.empty((size1, size2), np.uint8)
    tp = 0
    fp = 0
    fn = 0
    tn = 0
    for x in range(size1):
        for y in range(size2):
            cell = proba_t[x, y] > t
            pos = gt_pos_t[x, y]
            if cell:
                levels[x, y] = 0
                if pos:
                    tp += 1
                else:
                    fp += 1
            else:
                levels[x, y] = 255
                if pos:
                    fn += 1
                else:
                    tn += 1
    seg = _flood(levels)
    # Fiji converts the float label image with convertToShortProcessor(false): clamp to 65535
    n_seg = 0
    flat = seg.ravel()
    for i in range(flat.size):
        if flat[i] > 65535:
            flat[i] = 65535
        if flat[i] > n_seg:
            n_seg = flat[i]
    stats = _pair_counts(gt_t.ravel(), flat, n_gt, n_seg)
    return (tp, fp, fn, tn) + stats


# --------------------------------------------------------------------------------------
# scores from contingency statistics (the Java formulas)
# --------------------------------------------------------------------------------------


def _rand_scores(n: int, singles: int, sum_a2: int, sum_b2: int, sum_c2: int) -> tuple[float, float, float]:
    """(V_rand F-score, split score = recall, merge score = precision) as in
    ``RandError.getForegroundRestrictedRandIndexStatsN2`` + ``ClassificationStatistics``."""
    if n == 0:
        # Java divides 0/0 here: tp, fp, fn are NaN, precision and recall NaN, F stays 0.
        return 0.0, math.nan, math.nan
    # n^2 * sum p^2 in exact integers; singletons add (1/n)^2 each to both B and AB.
    tp = sum_c2 + singles
    b = sum_b2 + singles
    fp = b - tp
    fn = sum_a2 - tp
    precision = 1.0 if fp == 0 else tp / b  # "no false positives involves maximum precision"
    recall = 1.0 if fn == 0 else tp / sum_a2
    f = 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return f, recall, precision


def _info_scores(
    n: int, singles: int, sum_alog: float, sum_blog: float, sum_clog: float
) -> tuple[float, float, float]:
    """(V_info F-score, split score, merge score) as in
    ``VariationOfInformation.foregroundRestrictedFscore`` (merge = C(A|B), split = C(B|A))."""
    if n == 0:
        # Java: H(A) = 0 so prec = 0, rec = 1; H(B) is NaN (0 * log 0), F = 0.
        return 0.0, 1.0, 0.0
    s_log_n = (singles / n) * math.log(n)
    sum_a = sum_alog
    sum_b = sum_blog - s_log_n
    sum_ab = sum_clog - s_log_n
    ha = -sum_a
    hb = -sum_b
    hab = sum_b - sum_ab
    hba = sum_a - sum_ab
    prec = (ha - hab) / ha if ha != 0 else math.nan
    rec = (hb - hba) / hb if hb != 0 else math.nan
    if ha == 0:
        prec, rec = 0.0, 1.0
    if hb == 0:
        prec, rec = 1.0, 0.0
    denom = prec + rec
    if denom == 0:
        # zero mutual information (e.g. orthogonal halves): Java computes 0.0 / 0.0 = NaN.
        # The NaN makes this threshold's slice average NaN, which the maximum skips.
        num = 2.0 * prec * rec
        f = math.nan if num == 0 else math.copysign(math.inf, num)
    else:
        f = 2.0 * prec * rec / denom
    return f, rec, prec


def _class_f(tp: float, fp: float, fn: float) -> float:
    """F-score with Fiji's ``ClassificationStatistics`` conventions."""
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _ratio(num: float, den: float) -> float:
    # both classes empty everywhere: perfect agreement (our choice; Fiji has no Dice/IoU)
    return 1.0 if den == 0 else num / den


def _fiji_max(values: Sequence[float]) -> tuple[float, int]:
    """``max = 0; for v: if (v > max) max = v`` and the index where it first happened.

    As in Fiji's log line, the threshold is the first one when nothing beats 0.
    """
    best, best_i = 0.0, 0
    for i, v in enumerate(values):
        if v > best:  # NaN never compares greater
            best, best_i = v, i
    return best, best_i


def segmentation_scores(gt_labels: np.ndarray, seg_labels: np.ndarray) -> dict[str, float]:
    """V_rand / V_info (and split/merge scores) of one 2-D segment labelling against GT regions.

    ``gt_labels``: GT region ids, 0 = membrane (ignored).  ``seg_labels``: proposal segment
    ids, 0 = singleton pixels.  No thresholding or thinning: this is the contingency part of
    the scorer, useful to score a segmentation that is already labelled.
    """
    gt = np.asarray(gt_labels)
    sg = np.asarray(seg_labels)
    if gt.shape != sg.shape or gt.ndim != 2:
        raise EmsegError(f"label maps must be 2-D and equal in shape, got {gt.shape} and {sg.shape}")
    if gt.size and (gt.min() < 0 or sg.min() < 0):
        raise EmsegError("label maps must be non-negative")
    gt_ids = np.unique(gt, return_inverse=True)[1].reshape(gt.shape).astype(np.int32)
    if gt.size and gt.min() > 0:
        gt_ids += 1  # keep 0 free: no GT pixel is background
    sg_ids = np.unique(sg, return_inverse=True)[1].reshape(sg.shape).astype(np.int32)
    if sg.size and sg.min() > 0:
        sg_ids += 1
    n, singles, a2, b2, c2, alog, blog, clog = _pair_counts(
        gt_ids.ravel(), sg_ids.ravel(), int(gt_ids.max(initial=0)), int(sg_ids.max(initial=0))
    )
    v_rand, rand_split, rand_merge = _rand_scores(n, singles, a2, b2, c2)
    v_info, info_split, info_merge = _info_scores(n, singles, alog, blog, clog)
    return {
        "v_rand": v_rand,
        "rand_split": rand_split,
        "rand_merge": rand_merge,
        "v_info": v_info,
        "info_split": info_split,
        "info_merge": info_merge,
    }


def thin_borders(cell_mask: np.ndarray) -> np.ndarray:
    """Thin the borders of a binary (H, W) cell mask to 1-pixel lines, as Fiji does.

    Returns int32 labels: cell regions (with the border pixels flooded into them) numbered
    1.. in Fiji's order, 0 for the remaining 1-pixel watershed lines.  An all-cell or
    all-border mask is one region labelled 1.
    """
    mask = np.asarray(cell_mask)
    if mask.ndim != 2:
        raise EmsegError(f"cell mask must be 2-D, got shape {mask.shape}")
    mask_t = np.ascontiguousarray(mask.astype(bool, copy=False).T)
    return np.ascontiguousarray(_thin_mask_t(mask_t).T)


# --------------------------------------------------------------------------------------
# the scorer
# --------------------------------------------------------------------------------------

_PER_SLICE_KEYS = (
    "v_rand",
    "v_info",
    "rand_split",
    "rand_merge",
    "info_split",
    "info_merge",
    "pixel_error_plain",
    "dice",
    "iou",
)


@dataclass
class ScoreResult:
    """Scores of a proposal against ground truth (see :func:`score`).

    ``threshold`` is the best-V_rand threshold; ``pixel_error_plain``, ``dice`` and ``iou``
    (membrane class) are taken there.  ``per_threshold`` holds stack-level values per
    threshold (``pixel_error`` = 1 - pooled cell F-score); ``per_slice`` the per-slice
    values at ``threshold``.
    """

    v_rand: float
    v_info: float
    pixel_error: float
    pixel_error_plain: float
    dice: float
    iou: float
    threshold: float
    v_info_threshold: float
    pixel_error_threshold: float
    thresholds: list[float]
    per_threshold: dict[str, list[float]] = field(default_factory=dict)
    per_slice: dict[str, list[float]] = field(default_factory=dict)
    n_slices: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN and infinities become None)."""

        def clean(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if isinstance(v, (float, np.floating)):
                v = float(v)
                return v if math.isfinite(v) else None
            if isinstance(v, np.integer):
                return int(v)
            return v

        return clean(
            {
                "v_rand": self.v_rand,
                "v_info": self.v_info,
                "pixel_error": self.pixel_error,
                "pixel_error_plain": self.pixel_error_plain,
                "dice": self.dice,
                "iou": self.iou,
                "threshold": self.threshold,
                "v_info_threshold": self.v_info_threshold,
                "pixel_error_threshold": self.pixel_error_threshold,
                "n_slices": self.n_slices,
                "thresholds": list(self.thresholds),
                "per_threshold": self.per_threshold,
                "per_slice": self.per_slice,
            }
        )


def _as_stack(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 2:
        return array[np.newaxis]
    if array.ndim != 3:
        raise EmsegError(f"{name}: expected a 2-D slice or a 3-D stack (N, H, W), got shape {array.shape}")
    return array


def _check_inputs(labels: Any, proba: Any, labels_name: str, proba_name: str) -> tuple[np.ndarray, np.ndarray]:
    lab = np.asarray(labels)
    prob = np.asarray(proba)
    if lab.shape != prob.shape:
        raise EmsegError(f"shape mismatch: {labels_name} {lab.shape} vs {proba_name} {prob.shape}")
    lab = _as_stack(lab, labels_name)
    prob = _as_stack(prob, proba_name)
    if lab.size == 0:
        raise EmsegError(f"{labels_name}: empty image (shape {lab.shape})")
    if not (np.issubdtype(lab.dtype, np.number) or lab.dtype == bool) or np.issubdtype(lab.dtype, np.complexfloating):
        raise EmsegError(f"{labels_name}: labels must be numeric, got dtype {lab.dtype}")
    if np.issubdtype(lab.dtype, np.floating) and not np.isfinite(lab).all():
        raise EmsegError(f"{labels_name}: labels contain NaN or infinite values")
    if lab.min() < 0:
        raise EmsegError(f"{labels_name}: labels must be >= 0 (0 = membrane, > 0 = cell), found {lab.min()}")
    if prob.dtype == bool:
        prob = prob.astype(np.float32)
    if not np.issubdtype(prob.dtype, np.floating):
        raise EmsegError(
            f"{proba_name}: the probability map must be float in [0, 1], got dtype {prob.dtype} "
            "(scale 8-bit maps by 1/255, 16-bit by 1/65535)"
        )
    if np.isnan(prob).any():
        raise EmsegError(f"{proba_name}: probability map contains NaN")
    lo, hi = float(prob.min()), float(prob.max())
    if lo < 0 or hi > 1:
        raise EmsegError(f"{proba_name}: probability values must lie in [0, 1], found [{lo:g}, {hi:g}]")
    # ImageJ holds every map as 32-bit float (convertToFloat); a float64 map is rounded to
    # float32 first so the score equals Fiji's on the same map saved as a 32-bit TIFF.
    prob32 = np.ascontiguousarray(prob, dtype=np.float32)
    # Labels too are compared as float32 values (ImageProcessor.convertToFloat).
    lab32 = np.ascontiguousarray(lab, dtype=np.float32)
    return lab32, prob32


def _score_one_slice(
    labels2d: np.ndarray, proba2d: np.ndarray, thresholds: Sequence[float], pool: ThreadPoolExecutor | None = None
) -> np.ndarray:
    """Per-threshold raw statistics of one slice: array (n_thresholds, 12)."""
    proba_t = np.ascontiguousarray(proba2d.T)
    gt_pos_t = np.ascontiguousarray((labels2d > 0).T)
    labels64 = labels2d.astype(np.float64)
    gts: list[tuple[np.ndarray, int]] = []
    prev_mask = None
    for t in thresholds:
        # Fiji binarises the GT with the same threshold (label > t); for integer labels this
        # is the same mask at every t, so the components are computed once.
        mask = labels64 > t
        if prev_mask is None or not np.array_equal(mask, prev_mask):
            gt, n_gt = _label4(mask)
            current = (np.ascontiguousarray(gt.T), int(n_gt))
            prev_mask = mask
        gts.append(current)

    def run(i: int) -> tuple:
        return _slice_at_threshold(proba_t, gts[i][0], gt_pos_t, float(thresholds[i]), gts[i][1])

    indices = range(len(thresholds))
    rows = list(pool.map(run, indices)) if pool is not None else [run(i) for i in indices]
    return np.array(rows, np.float64).reshape(len(thresholds), 12)


def score(
    labels: np.ndarray,
    proba_cell: np.ndarray,
    thresholds: Sequence[float] = ISBI_THRESHOLDS,
    *,
    labels_name: str = "labels",
    proba_name: str = "proposal",
    workers: int | None = None,
) -> ScoreResult:
    """Score a cell-probability map against ISBI-style labels, as Fiji's official scorer.

    ``labels`` and ``proba_cell`` are (H, W) or (N, H, W); labels 0 = membrane, > 0 = cell;
    ``proba_cell`` float in [0, 1], high = cell (use :func:`membrane_to_cell` for membrane
    maps).  ``labels_name`` / ``proba_name`` name the inputs in error messages.  Raises
    :class:`EmsegError` on shape mismatch, NaN, or values outside [0, 1].
    """
    thresholds = [float(t) for t in thresholds]
    if not thresholds or not all(math.isfinite(t) for t in thresholds):
        raise EmsegError(f"thresholds must be a non-empty list of finite numbers, got {thresholds}")
    lab, prob = _check_inputs(labels, proba_cell, labels_name, proba_name)
    n_slices = lab.shape[0]
    n_thr = len(thresholds)

    if workers is None:
        workers = os.cpu_count() or 1
    if workers <= 1:
        raw = [_score_one_slice(lab[k], prob[k], thresholds) for k in range(n_slices)]
    else:
        # the numba kernels release the GIL: threads over slices, or over the thresholds of
        # each slice when there are fewer slices than workers (one big slice)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            if n_slices >= workers:
                raw = list(pool.map(lambda k: _score_one_slice(lab[k], prob[k], thresholds), range(n_slices)))
            else:
                raw = [_score_one_slice(lab[k], prob[k], thresholds, pool) for k in range(n_slices)]
    stats = np.stack(raw)  # (slices, thresholds, 12)

    per_slice_all: dict[str, np.ndarray] = {k: np.empty((n_slices, n_thr)) for k in _PER_SLICE_KEYS}
    for k in range(n_slices):
        for i in range(n_thr):
            tp, fp, fn, tn, n, singles, a2, b2, c2, alog, blog, clog = stats[k, i]
            n, singles, a2, b2, c2 = (int(v) for v in (n, singles, a2, b2, c2))
            rand = _rand_scores(n, singles, a2, b2, c2)
            info = _info_scores(n, singles, alog, blog, clog)
            per_slice_all["v_rand"][k, i], per_slice_all["rand_split"][k, i], per_slice_all["rand_merge"][k, i] = rand
            per_slice_all["v_info"][k, i], per_slice_all["info_split"][k, i], per_slice_all["info_merge"][k, i] = info
            per_slice_all["pixel_error_plain"][k, i] = (fp + fn) / (tp + fp + fn + tn)
            per_slice_all["dice"][k, i] = _ratio(2 * tn, 2 * tn + fp + fn)
            per_slice_all["iou"][k, i] = _ratio(tn, tn + fp + fn)

    def slice_mean(key: str, i: int) -> float:
        total = 0.0
        for k in range(n_slices):  # Fiji: fScore += f.get(), then / getSize()
            total += float(per_slice_all[key][k, i])
        return total / n_slices

    pooled = stats[:, :, :4].sum(axis=0)  # (thresholds, [tp, fp, fn, tn])
    per_threshold: dict[str, list[float]] = {
        key: [slice_mean(key, i) for i in range(n_thr)]
        for key in ("v_rand", "v_info", "rand_split", "rand_merge", "info_split", "info_merge")
    }
    pixel_f = [float(_class_f(*pooled[i, :3])) for i in range(n_thr)]
    per_threshold["pixel_f_score"] = pixel_f
    per_threshold["pixel_error"] = [1.0 - f for f in pixel_f]
    per_threshold["pixel_error_plain"] = [
        float((pooled[i, 1] + pooled[i, 2]) / pooled[i].sum()) for i in range(n_thr)
    ]
    tp_, fp_, fn_, tn_ = (pooled[:, c] for c in range(4))
    per_threshold["dice"] = [float(_ratio(2 * tn_[i], 2 * tn_[i] + fp_[i] + fn_[i])) for i in range(n_thr)]
    per_threshold["iou"] = [float(_ratio(tn_[i], tn_[i] + fp_[i] + fn_[i])) for i in range(n_thr)]

    v_rand, i_best = _fiji_max(per_threshold["v_rand"])
    v_info, i_info = _fiji_max(per_threshold["v_info"])
    best_f, i_pixel = _fiji_max(pixel_f)

    return ScoreResult(
        v_rand=v_rand,
        v_info=v_info,
        pixel_error=1.0 - best_f,
        pixel_error_plain=per_threshold["pixel_error_plain"][i_best],
        dice=per_threshold["dice"][i_best],
        iou=per_threshold["iou"][i_best],
        threshold=thresholds[i_best],
        v_info_threshold=thresholds[i_info],
        pixel_error_threshold=thresholds[i_pixel],
        thresholds=list(thresholds),
        per_threshold=per_threshold,
        per_slice={key: [float(v) for v in per_slice_all[key][:, i_best]] for key in _PER_SLICE_KEYS},
        n_slices=n_slices,
    )
