"""ISBI 2012 segmentation metrics, reproducing Fiji's official scorer.

The ISBI 2012 EM-segmentation challenge is scored by Fiji's Trainable Segmentation plugin
(`trainableSegmentation.metrics`):

```java
RandError.getMaximalVRandAfterThinning(0.0, 1.0, 0.1, true)
VariationOfInformation.getMaximalVInfoAfterThinning(0.0, 1.0, 0.1)
PixelError.getPixelErrorMaximalFScore(0.0, 1.0, 0.1)
```

This module re-implements those three calls (independently written, from reading the
Java) so that the numbers agree with Fiji's to rounding (the measured agreement is on the
[Metrics](../../../explanation/metrics.md) page), plus a few plain extras (pixel error at the
chosen threshold, membrane Dice/IoU). [`score`][emseg.evaluation.metrics.score] is the entry
point; `emseg score` runs it on files.

Conventions: a label slice has cell interior > 0 and membrane 0; a proposal
(`proba_cell`) is a map in [0, 1] where HIGH means cell interior. emseg's models
predict membrane probability;
[`membrane_to_cell`][emseg.segmentation.thinning.membrane_to_cell] is the one place where
that is turned around.

What the Java does, and therefore what this module does, per threshold `t`
(thresholds accumulated in double precision: 0.0, 0.1, ..., 0.9999999999999999):

* proposal: a pixel is cell when `(double) p > t` (p as a float32 value);
  the non-cell pixels ("borders") are thinned by the classic Vincent-Soille
  watershed (`WatershedTransform2D`, 4-connectivity) of the binary image
  (cell 0, border 255), [`flood_watershed`][emseg.segmentation.thinning.flood_watershed]: a
  border pixel reached from two different regions becomes a watershed (label 0) pixel.
  A slice that is all cell or all border is one single region (label 1).
* ground truth: 4-connected components of `label > t` (Fiji binarises the
  labels with the same threshold; for integer labels that is `label > 0`).
* V_rand / V_info: foreground-restricted (GT membrane pixels ignored) Rand and
  information-theoretic F-scores; every proposal watershed pixel inside the GT
  foreground is its own singleton segment. Both are computed per slice and
  averaged over slices (macro average); the maximum over thresholds is
  reported (a NaN average never wins, the maximum starts at 0).
* pixel error: 1 - best F-score of the cell class over the thresholds, with
  TP/FP/FN pooled over all slices and the ground truth taken as `label > 0`.

Sparse labels (not in Fiji): `score(..., unlabelled=v)` treats the pixels whose label is `v`
(the canonical `UNLABELLED_VALUE` of [`emseg.config.layout`][emseg.config.layout] for the
pipeline's own labels) as unlabelled, and every count above is restricted to the labelled
pixels: an unlabelled pixel is in no ground-truth cell (the cells are the 4-connected
components of the *labelled* pixels `> t`, so an unlabelled stripe separates two cells), and
counts in neither the contingency tables (as a GT membrane pixel) nor the pixel counts. The
proposal is still thinned and segmented whole: a proposal segment that joins two labelled
cells through an unlabelled region merges them. A slice with no labelled pixel is left out
of the slice means (its per-slice values are NaN); a stack without one is an error. Without
`unlabelled` (the default, and `emseg score`'s behaviour) every pixel is labelled and the
numbers are Fiji's; with it, a stack that holds no pixel of value `v` scores exactly the same.
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
from emseg.segmentation.thinning import flood_watershed

__all__ = [
    "ISBI_THRESHOLDS",
    "ScoreResult",
    "fiji_thresholds",
    "score",
    "segmentation_scores",
]


def fiji_thresholds(start: float = 0.0, stop: float = 1.0, step: float = 0.1) -> tuple[float, ...]:
    """The thresholds Fiji visits: `for (th = start; th <= stop; th += step)` in doubles.

    With the ISBI arguments (0, 1, 0.1) the accumulated sum gives 11 values whose last
    one is 0.9999999999999999 (1.0 itself is never reached); `ISBI_THRESHOLDS` holds them.

    Raises:
        ValueError: Non-finite values, a step that is not positive, or not
            `0 <= start <= stop <= 1`.
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


# --------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _label4(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean (H, W) mask, numbered in raster order.

    Like Fiji's `FindConnectedRegions` (which writes `(short) regionNumber` read back
    with `& 0xffff`), label numbers wrap modulo 65536; region 65536 becomes 0, i.e.
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

    Returns `(n, singles, sum_a2, sum_b2, sum_c2, sum_alog, sum_blog, sum_clog)` where
    `a` are GT-region sizes, `b` segment sizes inside the GT foreground, `c` the
    overlaps (singletons excluded from b and c), squares as exact int64 sums and
    `*_log` the sums of `p * log(p)` with `p = count / n`.
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
    sum_a2, sum_alog = _size_terms(a, nf)
    sum_b2, sum_blog = _size_terms(b, nf)
    return n, singles, sum_a2, sum_b2, sum_c2, sum_alog, sum_blog, sum_clog


@njit(cache=True, nogil=True)
def _size_terms(sizes: np.ndarray, nf: float) -> tuple[int, float]:
    """`sum(c^2)` (exact, int64) and `sum(p log p)` with `p = c / n` over the sizes from index 1 on."""
    sum_sq = 0
    sum_log = 0.0
    for i in range(1, sizes.size):
        c = sizes[i]
        if c > 0:
            sum_sq += c * c
            pc = c / nf
            sum_log += pc * math.log(pc)
    return sum_sq, sum_log


@njit(cache=True, nogil=True)
def _slice_at_threshold(proba_t: np.ndarray, gt_t: np.ndarray, gt_pos_t: np.ndarray, known_t: np.ndarray, t: float, n_gt: int):
    """Everything one (slice, threshold) pair needs, on transposed `[x, y]` arrays.

    `proba_t` float32, compared as double (`p > t`) like Fiji; `gt_t` GT region
    labels (0 on unlabelled pixels too); `gt_pos_t` the pixel-error ground truth (`label > 0`);
    `known_t` the labelled pixels, the only ones the pixel counts count.
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
                if not known_t[x, y]:
                    continue
                if pos:
                    tp += 1
                else:
                    fp += 1
            else:
                levels[x, y] = 255
                if not known_t[x, y]:
                    continue
                if pos:
                    fn += 1
                else:
                    tn += 1
    seg = flood_watershed(levels)
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
    `RandError.getForegroundRestrictedRandIndexStatsN2` + `ClassificationStatistics`."""
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
    `VariationOfInformation.foregroundRestrictedFscore` (merge = C(A|B), split = C(B|A))."""
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
    """F-score with Fiji's `ClassificationStatistics` conventions."""
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _ratio(num: float, den: float) -> float:
    # both classes empty everywhere: perfect agreement (our choice; Fiji has no Dice/IoU)
    return 1.0 if den == 0 else num / den


def _fiji_max(values: Sequence[float]) -> tuple[float, int]:
    """`max = 0; for v: if (v > max) max = v` and the index where it first happened.

    As in Fiji's log line, the threshold is the first one when nothing beats 0.
    """
    best, best_i = 0.0, 0
    for i, v in enumerate(values):
        if v > best:  # NaN never compares greater
            best, best_i = v, i
    return best, best_i


def segmentation_scores(gt_labels: np.ndarray, seg_labels: np.ndarray, labelled: np.ndarray | None = None) -> dict[str, float]:
    """V_rand and V_info (and their split and merge scores) of one 2-D segment labelling against GT regions.

    No thresholding or thinning: this is the contingency part of the scorer, useful to score
    a segmentation that is already labelled.

    Args:
        gt_labels: GT region ids, 0 = membrane (ignored).
        seg_labels: Proposal segment ids, 0 = singleton pixels.
        labelled: Where the ground truth is labelled (boolean, the maps' shape); the other
            pixels are ignored as membrane is. None: everywhere.

    Returns:
        `v_rand`, `rand_split`, `rand_merge`, `v_info`, `info_split` and `info_merge`.

    Raises:
        EmsegError: The maps (or `labelled`) are not 2-D and equal in shape, or hold negative labels.
    """
    gt = np.asarray(gt_labels)
    sg = np.asarray(seg_labels)
    if gt.shape != sg.shape or gt.ndim != 2:
        raise EmsegError(f"label maps must be 2-D and equal in shape, got {gt.shape} and {sg.shape}")
    if gt.size and (gt.min() < 0 or sg.min() < 0):
        raise EmsegError("label maps must be non-negative")
    if labelled is not None:
        if np.shape(labelled) != gt.shape:
            raise EmsegError(f"the labelled mask must have the label maps' shape {gt.shape}, got {np.shape(labelled)}")
        gt = np.where(np.asarray(labelled, bool), gt, 0)  # an unlabelled pixel is ignored, as a membrane pixel is
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
    "pixel_error",
)


@dataclass
class ScoreResult:
    """Scores of a proposal against ground truth (see [`score`][emseg.evaluation.metrics.score]).

    `v_rand`, `v_info` and `pixel_error` are the challenge's: the best over the thresholds,
    at `v_rand_threshold`, `v_info_threshold` and `pixel_error_threshold`.
    `pixel_error_plain`, `dice` and `iou` (membrane class) are taken at `v_rand_threshold`.
    `per_threshold` holds stack-level values per threshold (`pixel_error` = 1 - pooled cell
    F-score); `per_slice` the per-slice values at `v_rand_threshold`.
    """

    v_rand: float
    v_info: float
    pixel_error: float
    pixel_error_plain: float
    dice: float
    iou: float
    v_rand_threshold: float
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
                "v_rand_threshold": self.v_rand_threshold,
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


def _check_inputs(labels: Any, proba: Any, labels_name: str, proba_name: str, unlabelled: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labels and the map as float32 stacks, and the stack of labelled pixels (boolean)."""
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
    known = np.ones(lab.shape, bool) if unlabelled is None else lab != unlabelled
    if not known.any():
        raise EmsegError(f"{labels_name}: no labelled pixel (every pixel is the unlabelled value {unlabelled:g})")
    return lab32, prob32, known


def _score_one_slice(
    labels2d: np.ndarray, proba2d: np.ndarray, known2d: np.ndarray, thresholds: Sequence[float], pool: ThreadPoolExecutor | None = None
) -> np.ndarray:
    """Per-threshold raw statistics of one slice (`known2d`: its labelled pixels): array (n_thresholds, 12)."""
    proba_t = np.ascontiguousarray(proba2d.T)
    gt_pos_t = np.ascontiguousarray((labels2d > 0).T)
    known_t = np.ascontiguousarray(known2d.T)
    labels64 = labels2d.astype(np.float64)
    gts: list[tuple[np.ndarray, int]] = []
    prev_mask = None
    for t in thresholds:
        # Fiji binarises the GT with the same threshold (label > t); for integer labels this
        # is the same mask at every t, so the components are computed once. Unlabelled
        # pixels are in no GT cell: the contingency tables skip them as membrane.
        mask = (labels64 > t) & known2d
        if prev_mask is None or not np.array_equal(mask, prev_mask):
            gt, n_gt = _label4(mask)
            current = (np.ascontiguousarray(gt.T), int(n_gt))
            prev_mask = mask
        gts.append(current)

    def run(i: int) -> tuple:
        return _slice_at_threshold(proba_t, gts[i][0], gt_pos_t, known_t, float(thresholds[i]), gts[i][1])

    indices = range(len(thresholds))
    rows = list(pool.map(run, indices)) if pool is not None else [run(i) for i in indices]
    return np.array(rows, np.float64).reshape(len(thresholds), 12)


def _raw_stats(lab: np.ndarray, prob: np.ndarray, known: np.ndarray, thresholds: list[float], workers: int | None) -> np.ndarray:
    """The counts of every (slice, threshold) pair over the labelled pixels `known`: array (slices, thresholds, 12)."""
    n_slices = lab.shape[0]
    if workers is None:
        workers = os.cpu_count() or 1
    if workers <= 1:
        return np.stack([_score_one_slice(lab[k], prob[k], known[k], thresholds) for k in range(n_slices)])
    # the numba kernels release the GIL: threads over slices, or over the thresholds of
    # each slice when there are fewer slices than workers (one big slice)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        if n_slices >= workers:
            return np.stack(list(pool.map(lambda k: _score_one_slice(lab[k], prob[k], known[k], thresholds), range(n_slices))))
        return np.stack([_score_one_slice(lab[k], prob[k], known[k], thresholds, pool) for k in range(n_slices)])


def _per_slice_scores(stats: np.ndarray, scored: np.ndarray) -> dict[str, np.ndarray]:
    """Each per-slice score at each threshold: `{key: (slices, thresholds)}`; NaN for a slice not `scored` (nothing labelled)."""
    n_slices, n_thr = stats.shape[:2]
    per_slice: dict[str, np.ndarray] = {k: np.full((n_slices, n_thr), math.nan) for k in _PER_SLICE_KEYS}
    for k in np.flatnonzero(scored):
        for i in range(n_thr):
            tp, fp, fn, tn, n, singles, a2, b2, c2, alog, blog, clog = stats[k, i]
            n, singles, a2, b2, c2 = (int(v) for v in (n, singles, a2, b2, c2))
            rand = _rand_scores(n, singles, a2, b2, c2)
            info = _info_scores(n, singles, alog, blog, clog)
            per_slice["v_rand"][k, i], per_slice["rand_split"][k, i], per_slice["rand_merge"][k, i] = rand
            per_slice["v_info"][k, i], per_slice["info_split"][k, i], per_slice["info_merge"][k, i] = info
            per_slice["pixel_error_plain"][k, i] = (fp + fn) / (tp + fp + fn + tn)
            per_slice["dice"][k, i] = _ratio(2 * tn, 2 * tn + fp + fn)
            per_slice["iou"][k, i] = _ratio(tn, tn + fp + fn)
            per_slice["pixel_error"][k, i] = 1.0 - _class_f(tp, fp, fn)
    return per_slice


def _per_threshold_scores(per_slice: dict[str, np.ndarray], stats: np.ndarray, scored: np.ndarray) -> dict[str, list[float]]:
    """Stack-level scores per threshold: slice means of the segmentation scores over the `scored` slices, pooled pixel counts."""
    n_thr = stats.shape[1]
    means_over = [int(k) for k in np.flatnonzero(scored)]  # a slice nobody labelled has no score to average

    def slice_mean(key: str, i: int) -> float:
        total = 0.0
        for k in means_over:  # Fiji: fScore += f.get(), then / getSize()
            total += float(per_slice[key][k, i])
        return total / len(means_over)

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
    return per_threshold


def score(
    labels: np.ndarray,
    proba_cell: np.ndarray,
    thresholds: Sequence[float] = ISBI_THRESHOLDS,
    *,
    labels_name: str = "labels",
    proba_name: str = "proposal",
    workers: int | None = None,
    unlabelled: float | None = None,
) -> ScoreResult:
    """Score a cell-probability map against ISBI-style labels, as Fiji's official scorer.

    Args:
        labels: (H, W) or (N, H, W) labels, 0 = membrane, > 0 = cell (but `unlabelled`).
        proba_cell: The map of the same shape, float in [0, 1], high = cell (use
            [`membrane_to_cell`][emseg.segmentation.thinning.membrane_to_cell] for membrane maps).
        thresholds: The thresholds to score at (default: the challenge's 11).
        labels_name: Names the labels in error messages.
        proba_name: Names the map in error messages.
        workers: Threads scoring slices (or one slice's thresholds) in parallel; None: one per core.
        unlabelled: The label value of pixels nobody labelled (`UNLABELLED_VALUE` for the
            pipeline's canonical labels), left out of every count; None: every pixel is
            labelled (Fiji's scorer). See the module's notes on sparse labels.

    Returns:
        The scores ([`ScoreResult`][emseg.evaluation.metrics.ScoreResult]); a slice without a
            labelled pixel is NaN in `per_slice` and left out of the means.

    Raises:
        EmsegError: A shape mismatch, empty, non-numeric or negative labels, no labelled
            pixel, a map that is not float, NaN, values outside [0, 1], or no finite thresholds.
    """
    thresholds = [float(t) for t in thresholds]
    if not thresholds or not all(math.isfinite(t) for t in thresholds):
        raise EmsegError(f"thresholds must be a non-empty list of finite numbers, got {thresholds}")
    lab, prob, known = _check_inputs(labels, proba_cell, labels_name, proba_name, unlabelled)
    stats = _raw_stats(lab, prob, known, thresholds, workers)
    scored = known.reshape(len(known), -1).any(axis=1)
    per_slice = _per_slice_scores(stats, scored)
    per_threshold = _per_threshold_scores(per_slice, stats, scored)
    v_rand, i_best = _fiji_max(per_threshold["v_rand"])
    v_info, i_info = _fiji_max(per_threshold["v_info"])
    best_f, i_pixel = _fiji_max(per_threshold["pixel_f_score"])
    return ScoreResult(
        v_rand=v_rand,
        v_info=v_info,
        pixel_error=1.0 - best_f,
        pixel_error_plain=per_threshold["pixel_error_plain"][i_best],
        dice=per_threshold["dice"][i_best],
        iou=per_threshold["iou"][i_best],
        v_rand_threshold=thresholds[i_best],
        v_info_threshold=thresholds[i_info],
        pixel_error_threshold=thresholds[i_pixel],
        thresholds=list(thresholds),
        per_threshold=per_threshold,
        per_slice={key: [float(v) for v in per_slice[key][:, i_best]] for key in _PER_SLICE_KEYS},
        n_slices=lab.shape[0],
    )
