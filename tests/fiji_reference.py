"""A slow, literal transcription of Fiji's Java scorer (WatershedTransform2D, RandError,
VariationOfInformation, PixelError, ClassificationStatistics): the reference oracle that
the tests of :mod:`emseg.segmentation.thinning` and :mod:`emseg.evaluation.metrics` hold the fast
code against.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from skimage.measure import label as sk_label

from emseg.evaluation.metrics import ISBI_THRESHOLDS

# --------------------------------------------------------------------------------------
# reference oracle: literal transcription of the Java
# --------------------------------------------------------------------------------------

_MASK, _WSHED, _INIT, _INQUEUE = -2, 0, -1, -3


def java_watershed(image: np.ndarray) -> np.ndarray:
    """WatershedTransform2D(binaryProposal, 4).apply().convertToShortProcessor(false).

    ``image`` is indexed [y, x] like numpy; the Java arrays are tabLabels[x][y].
    """
    size2, size1 = image.shape  # height, width
    tab = [[_INIT] * size2 for _ in range(size1)]
    current_label = 0
    flag = False
    h_min, h_max = 0.0, 255.0  # ByteProcessor.getMin()/getMax() of a fresh 8-bit image
    # extractPixelValues: x outer, y inner; PixelRecord sorts by (value, creation number)
    pixel_list = []
    for x in range(size1):
        for y in range(size2):
            h = float(image[y, x])
            if h_min <= h <= h_max:
                pixel_list.append((h, len(pixel_list), x, y))
    pixel_list.sort(key=lambda r: (r[0], r[1]))

    def neighbors(x: int, y: int) -> list[tuple[int, int]]:  # Neighborhood2DC4
        return [(x - 1, y), (x, y - 1), (x + 1, y), (x, y + 1)]

    fifo: deque[tuple[int, int]] = deque()
    h = h_min
    current_index = 0
    while h < h_min:
        h = pixel_list[current_index][0]
        current_index += 1
    height_index1 = current_index
    height_index2 = current_index
    while current_index < len(pixel_list) and h <= h_max:
        h = pixel_list[current_index][0]
        for pixel_index in range(height_index1, len(pixel_list)):
            value, _, i, j = pixel_list[pixel_index]
            if value != h:
                height_index1 = pixel_index
                break
            tab[i][j] = _MASK
            for u, v in neighbors(i, j):
                if 0 <= u < size1 and 0 <= v < size2 and tab[u][v] >= _WSHED:
                    fifo.append((i, j))
                    tab[i][j] = _INQUEUE
                    break
        while fifo:
            i, j = fifo.popleft()
            for u, v in neighbors(i, j):
                if 0 <= u < size1 and 0 <= v < size2:
                    if tab[u][v] > 0:
                        if tab[i][j] == _INQUEUE or (tab[i][j] == _WSHED and flag):
                            tab[i][j] = tab[u][v]
                        elif tab[i][j] > 0 and tab[i][j] != tab[u][v]:
                            tab[i][j] = _WSHED
                            flag = False
                    elif tab[u][v] == _WSHED:
                        if tab[i][j] == _INQUEUE:
                            tab[i][j] = _WSHED
                            flag = True
                    elif tab[u][v] == _MASK:
                        tab[u][v] = _INQUEUE
                        fifo.append((u, v))
        pixel_index = height_index2
        while pixel_index < len(pixel_list):  # for (...; pixelIndex++, currentIndex++)
            value, _, i, j = pixel_list[pixel_index]
            if value != h:
                height_index2 = pixel_index
                break
            if tab[i][j] == _MASK:
                current_label += 1
                fifo.append((i, j))
                tab[i][j] = current_label
                while fifo:
                    p2 = fifo.popleft()
                    for u, v in neighbors(*p2):
                        if 0 <= u < size1 and 0 <= v < size2 and tab[u][v] == _MASK:
                            fifo.append((u, v))
                            tab[u][v] = current_label
            pixel_index += 1
            current_index += 1
    out = np.zeros((size2, size1), np.int64)
    for x in range(size1):
        for y in range(size2):
            value = 0 if tab[x][y] == _INIT else tab[x][y]
            out[y, x] = min(max(value, 0), 65535)
    return out


def _jdiv(a: float, b: float) -> float:
    """Java double division (x/0 -> +-Infinity or NaN, no exception)."""
    with np.errstate(all="ignore"):
        return float(np.float64(a) / np.float64(b))


def _jlog(x: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.log(np.float64(x)))


def _jmul(a: float, b: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.float64(a) * np.float64(b))


def _java_classification_f(tp: float, fp: float, fn: float) -> float:
    precision = 1.0 if fp == 0 else _jdiv(tp, tp + fp)
    recall = 1.0 if fn == 0 else _jdiv(tp, tp + fn)
    return 2.0 * precision * recall / (precision + recall) if (precision + recall) > 0 else 0.0


def _contingency(c1: np.ndarray, c2: np.ndarray) -> tuple[float, list[list[float]]]:
    p1, p2 = c1.ravel(), c2.ravel()
    n = float(np.count_nonzero(p1))
    pij = [[0.0] * (int(c2.max()) + 1) for _ in range(int(c1.max()) + 1)]
    for a, b in zip(p1, p2):
        pij[a][b] += 1
    for row in pij:
        for j in range(len(row)):
            row[j] = _jdiv(row[j], n)
    return n, pij


def _marginals(c1: np.ndarray, c2: np.ndarray) -> tuple[float, list[list[float]], list[float], list[float], float]:
    """The foreground-restricted marginals both Java scores start from: n, p_ij, a_i, b_j and the singletons' mass."""
    n, pij = _contingency(c1, c2)
    na, nb = len(pij), len(pij[0])
    ai = [0.0] * na
    for i in range(1, na):
        for j in range(nb):
            ai[i] += pij[i][j]
    bj = [0.0] * nb
    for j in range(1, nb):
        for i in range(1, na):
            bj[j] += pij[i][j]
    aux = sum(pij[i][0] for i in range(1, na))
    return n, pij, ai, bj, aux


def _java_rand_f(c1: np.ndarray, c2: np.ndarray) -> float:
    """RandError.getForegroundRestrictedRandIndexStatsN2(cluster1, cluster2).fScore"""
    n, pij, ai, bj, aux = _marginals(c1, c2)
    na, nb = len(pij), len(pij[0])
    sum_a2 = sum(a * a for a in ai)
    sum_b2 = sum(b * b for b in bj) + _jdiv(aux, n)
    sum_ab2 = sum(pij[i][j] ** 2 for i in range(1, na) for j in range(1, nb)) + _jdiv(aux, n)
    n2 = n * n
    tp = _jmul(n2, sum_ab2)
    fp = _jmul(n2, sum_b2) - tp
    fn = _jmul(n2, sum_a2) - tp
    return _java_classification_f(tp, fp, fn)


def _java_info_f(c1: np.ndarray, c2: np.ndarray) -> float:
    """VariationOfInformation.foregroundRestrictedFscore(cluster1, cluster2)"""
    n, pij, ai, bj, aux = _marginals(c1, c2)
    na, nb = len(pij), len(pij[0])
    sum_a = sum(a * _jlog(a) for a in ai if a != 0)
    sum_b = sum(b * _jlog(b) for b in bj if b != 0) - _jmul(aux, _jlog(n))
    sum_ab = sum(pij[i][j] * _jlog(pij[i][j]) for i in range(1, na) for j in range(1, nb) if pij[i][j] != 0)
    sum_ab -= _jmul(aux, _jlog(n))
    ha, hb = -sum_a, -sum_b
    hab, hba = sum_b - sum_ab, sum_a - sum_ab
    prec = _jdiv(ha - hab, ha)
    rec = _jdiv(hb - hba, hb)
    if ha == 0:
        prec, rec = 0.0, 1.0
    if hb == 0:
        prec, rec = 1.0, 0.0
    return _jdiv(2.0 * prec * rec, prec + rec)


def java_scores(labels: np.ndarray, proba: np.ndarray, thresholds=ISBI_THRESHOLDS) -> dict[str, list[float]]:
    """Per-threshold V_rand, V_info (slice averages) and pooled pixel F, the Java way."""
    labels = np.asarray(labels, np.float32)
    proba = np.asarray(proba, np.float32)
    out: dict[str, list[float]] = {"v_rand": [], "v_info": [], "pixel_f": []}
    for th in thresholds:
        f_rand = f_info = 0.0
        tp = fp = fn = 0.0
        for lab, prop in zip(labels, proba):
            gt = sk_label(lab.astype(np.float64) > th, connectivity=1)
            binary_proposal = np.where(prop.astype(np.float64) > th, 0, 255)
            seg = java_watershed(binary_proposal)
            f_rand += _java_rand_f(gt, seg)
            f_info += _java_info_f(gt, seg)
            pos, pred = lab > 0, prop.astype(np.float64) > th
            tp += np.sum(pos & pred)
            fp += np.sum(~pos & pred)
            fn += np.sum(pos & ~pred)
        out["v_rand"].append(f_rand / len(labels))
        out["v_info"].append(f_info / len(labels))
        out["pixel_f"].append(_java_classification_f(tp, fp, fn))
    return out


def java_max(values: list[float]) -> float:
    best = 0.0
    for v in values:
        if v > best:
            best = v
    return best
