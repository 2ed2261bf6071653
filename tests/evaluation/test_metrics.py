"""Tests of emseg.evaluation.metrics (the ISBI-2012 / Fiji scorer).

Expected values are either worked out by hand in the test (closed forms), computed
independently (skimage / numpy), or come from :mod:`fiji_reference`, a slow, literal
transcription of the Fiji Java code kept as a reference oracle.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage.measure import label as sk_label
from skimage.metrics import contingency_table

from emseg.errors import EmsegError
from emseg.evaluation.metrics import ISBI_THRESHOLDS, fiji_thresholds, score, segmentation_scores
from emseg.segmentation.thinning import thin_borders

from fiji_reference import java_max, java_scores

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _columns(width: int, height: int, membrane_cols: list[int]) -> np.ndarray:
    """A uint8 0/255 slice: cell everywhere except the given membrane columns."""
    img = np.full((height, width), 255, np.uint8)
    img[:, membrane_cols] = 0
    return img


def _proba(cell_slice: np.ndarray) -> np.ndarray:
    return (cell_slice > 0).astype(np.float32)


def _xlogx(p: float) -> float:
    return p * math.log(p)


# --------------------------------------------------------------------------------------
# thresholds and conversion
# --------------------------------------------------------------------------------------


def test_isbi_thresholds_are_double_accumulated():
    assert len(ISBI_THRESHOLDS) == 11
    assert ISBI_THRESHOLDS[0] == 0.0
    assert ISBI_THRESHOLDS[3] == 0.30000000000000004
    assert ISBI_THRESHOLDS[-1] == 0.9999999999999999
    assert fiji_thresholds(0.0, 1.0, 0.1) == ISBI_THRESHOLDS
    assert fiji_thresholds(0.0, 0.0, 0.1) == (0.0,)  # Fiji's binary-proposal setting
    with pytest.raises(ValueError):
        fiji_thresholds(0.5, 0.2, 0.1)


def test_float32_pixel_is_compared_as_double():
    # Membrane pixels hold float32(0.1) = 0.10000000149..., which is > 0.1 as a double:
    # at t = 0.0 and 0.1 the whole slice is cell (one segment), from t = 0.2 on it is exact.
    lab = _columns(5, 4, [2])
    prob = _proba(lab)
    prob[:, 2] = np.float32(0.1)
    result = score(lab, prob)
    merged = 2 * (8**2 + 8**2) / ((8**2 + 8**2) + 16**2)  # one segment over two 8-px cells
    assert result.per_threshold["v_rand"][:3] == pytest.approx([merged, merged, 1.0])
    assert result.v_rand == 1.0
    assert result.v_rand_threshold == 0.2


# --------------------------------------------------------------------------------------
# hand-computed cases
# --------------------------------------------------------------------------------------


def test_perfect_match():
    lab = _columns(5, 4, [2])
    result = score(lab, _proba(lab))
    assert result.v_rand == 1.0
    assert result.v_info == 1.0
    assert result.pixel_error == 0.0
    assert result.pixel_error_plain == 0.0
    assert result.dice == 1.0 and result.iou == 1.0
    assert result.v_rand_threshold == 0.0  # first threshold reaching the maximum


def test_merge_of_two_cells():
    # GT: A (cols 0-1) | B (cols 3-4) | C (cols 6-7), membranes at cols 2 and 5.
    # The proposal misses the membrane at col 2: A and B merge into one 16-px segment.
    lab = _columns(8, 4, [2, 5])
    prob = _proba(_columns(8, 4, [5]))
    result = score(lab, prob)
    # Rand: sum a^2 = 3*64, sum b^2 = 16^2 + 8^2, sum p^2 = 3*64 -> recall 1, precision 0.6
    precision = 192 / 320
    assert result.v_rand == pytest.approx(2 * precision / (precision + 1))
    assert result.v_rand == pytest.approx(0.75)
    # information: H(GT) = log 3, H(S) = -(2/3 log 2/3 + 1/3 log 1/3), split 1, merge H(S)/H(GT)
    ha = math.log(3)
    hb = -(_xlogx(2 / 3) + _xlogx(1 / 3))
    assert result.v_info == pytest.approx(2 * hb / (ha + hb), abs=1e-12)
    # pixels: TP 24, FP 4 (col 2), FN 0, TN 4
    assert result.pixel_error == pytest.approx(1 - 48 / 52)
    assert result.pixel_error_plain == pytest.approx(4 / 32)
    assert result.dice == pytest.approx(8 / 12)  # membrane class: 2*4 / (4 + 8)
    assert result.iou == pytest.approx(4 / 8)


def test_split_of_one_cell():
    # GT: A (cols 0-1), membrane col 2, B (cols 3-7).  The proposal adds a membrane at
    # col 5 inside B: B splits in two 8-px segments plus 4 singleton line pixels.
    lab = _columns(8, 4, [2])
    prob = _proba(_columns(8, 4, [2, 5]))
    result = score(lab, prob)
    n = 28
    sum_a2 = 8**2 + 20**2
    sum_p2 = 3 * 8**2 + 4  # three overlaps of 8 px, four singletons
    assert result.v_rand == pytest.approx(2 * sum_p2 / (sum_a2 + sum_p2))  # precision 1
    assert result.v_rand == pytest.approx(392 / 660)
    ha = -(_xlogx(8 / n) + _xlogx(20 / n))
    hb = -(3 * _xlogx(8 / n)) + (4 / n) * math.log(n)  # singletons: 4 * (1/n) log n
    assert result.v_info == pytest.approx(2 * ha / (ha + hb), abs=1e-12)
    assert result.per_slice["rand_merge"] == [1.0]
    assert result.per_slice["rand_split"] == pytest.approx([sum_p2 / sum_a2])
    assert result.pixel_error == pytest.approx(1 - 48 / 52)  # TP 24, FN 4, FP 0


def test_thick_border_line_goes_to_the_east_pixel():
    # A 2-px proposal membrane (cols 3-4) between cells (cols 0-2 and 5-6).  Fiji's flooding
    # (column-wise FIFO, W/N/E/S) puts the 1-px line on col 4 and gives col 3 to the west cell.
    prob = _proba(_columns(7, 3, [3, 4]))
    expected_lines = np.array([[1, 1, 1, 1, 0, 2, 2]] * 3)
    np.testing.assert_array_equal(thin_borders(prob > 0), expected_lines)
    # GT membrane on col 4: the line lies on it, col 3 belongs to the west cell -> perfect.
    lab_east = _columns(7, 3, [4])
    assert score(lab_east, prob).v_rand == 1.0
    assert score(lab_east, prob).v_info == 1.0
    # GT membrane on col 3: the line lies inside GT cell B -> 3 singletons in B.
    lab_west = _columns(7, 3, [3])
    result = score(lab_west, prob)
    # a = 9, 9; segments in GT: 9 (west cell), 6 (cols 5-6), 3 singletons
    assert result.v_rand == pytest.approx(2 * 120 / (162 + 120))
    ha = math.log(2)
    hb = -(_xlogx(9 / 18) + _xlogx(6 / 18)) + (3 / 18) * math.log(18)
    assert result.v_info == pytest.approx(2 * ha / (ha + hb), abs=1e-12)


def test_thick_border_rows_line_goes_to_the_south_pixel():
    prob = _proba(_columns(7, 3, [3, 4]).T.copy())
    np.testing.assert_array_equal(thin_borders(prob > 0), np.array([[1, 1, 1, 1, 0, 2, 2]] * 3).T)
    lab = _columns(7, 3, [3]).T.copy()
    assert score(lab, prob).v_rand == pytest.approx(240 / 282)


def test_all_membrane_slice_scores_zero():
    # Fiji divides by n = 0 on an all-membrane GT slice: V_rand and V_info of that slice are 0
    # (not NaN), so a stack of one perfect slice and one all-membrane slice averages 0.5.
    perfect = _columns(5, 4, [2])
    empty = np.zeros((4, 5), np.uint8)
    labels = np.stack([perfect, empty])
    proba = np.stack([_proba(perfect), np.zeros((4, 5), np.float32)])
    result = score(labels, proba)
    assert result.per_slice["v_rand"] == [1.0, 0.0]
    assert result.per_slice["v_info"] == [1.0, 0.0]
    assert result.v_rand == 0.5 and result.v_info == 0.5
    assert result.pixel_error == 0.0  # pooled pixels are all right


def test_single_cell_slice():
    # One GT cell, proposal all cell: Rand F is 1; Fiji sets the information precision to 0
    # when H(GT) = 0 and then to 1 with recall 0 when H(proposal) = 0, so V_info is 0.
    lab = np.full((4, 5), 255, np.uint8)
    result = score(lab, np.ones((4, 5), np.float32))
    assert result.v_rand == 1.0
    assert result.v_info == 0.0
    assert result.pixel_error == 0.0
    assert result.dice == 1.0 and result.iou == 1.0  # no membrane anywhere: agreement


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_all_border_or_all_cell_proposal_is_one_segment(fill):
    # Two 8-px GT cells.  A proposal that is all border (0) or all cell (1) is ONE segment
    # (label 1), not 16 singletons: F = 2 * 128 / (128 + 16^2) = 2/3 either way.
    lab = _columns(5, 4, [2])
    result = score(lab, np.full((4, 5), fill, np.float32))
    assert result.v_rand == pytest.approx(2 / 3)
    assert result.v_info == 0.0
    if fill == 0.0:  # nothing predicted as cell: precision 1 (no FP), recall 0 -> F 0
        assert result.pixel_error == 1.0
        assert result.pixel_error_threshold == 0.0


def test_integer_labels_equal_binary_labels():
    lab = _columns(8, 4, [2, 5])
    prob = np.linspace(0, 1, lab.size, dtype=np.float32).reshape(lab.shape)
    a = score(lab, prob).to_dict()
    b = score((lab > 0).astype(np.float32), prob).to_dict()
    assert a == b


# --------------------------------------------------------------------------------------
# the whole scorer against the literal Java transcription
# --------------------------------------------------------------------------------------

_LEVELS = [0.0, np.float32(0.1), 0.25, np.float32(0.3), 0.5, 0.75, np.float32(0.9), 1.0]


def _assert_matches_java(labels: np.ndarray, proba: np.ndarray) -> None:
    java = java_scores(labels, proba)
    result = score(labels, proba)
    np.testing.assert_allclose(result.per_threshold["v_rand"], java["v_rand"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.per_threshold["v_info"], java["v_info"], rtol=0, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(result.per_threshold["pixel_f_score"], java["pixel_f"], rtol=0, atol=1e-12)
    assert result.v_rand == pytest.approx(java_max(java["v_rand"]), abs=1e-9)
    assert result.v_info == pytest.approx(java_max(java["v_info"]), abs=1e-9)
    assert result.pixel_error == pytest.approx(1 - java_max(java["pixel_f"]), abs=1e-12)


def test_score_equals_java_on_random_stacks():
    rng = np.random.default_rng(5)
    for _ in range(6):
        n, h, w = rng.integers(1, 3), rng.integers(2, 14), rng.integers(2, 14)
        labels = np.where(rng.random((n, h, w)) < 0.7, 255, 0).astype(np.uint8)
        proba = rng.choice(np.array(_LEVELS, np.float32), size=(n, h, w))
        _assert_matches_java(labels, proba)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 2).flatmap(
        lambda n: st.tuples(st.integers(1, 6), st.integers(1, 6)).flatmap(
            lambda hw: st.tuples(
                st.lists(st.booleans(), min_size=n * hw[0] * hw[1], max_size=n * hw[0] * hw[1]),
                st.lists(st.sampled_from(_LEVELS), min_size=n * hw[0] * hw[1], max_size=n * hw[0] * hw[1]),
                st.just((n, hw[0], hw[1])),
            )
        )
    )
)
def test_score_equals_java_property(data):
    cells, values, shape = data
    labels = np.array(cells, bool).reshape(shape).astype(np.uint8) * 255
    proba = np.array(values, np.float32).reshape(shape)
    _assert_matches_java(labels, proba)


# --------------------------------------------------------------------------------------
# properties and independent computations
# --------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(st.integers(1, 2), st.integers(1, 7), st.integers(1, 7)).flatmap(
        lambda s: st.tuples(
            st.just(s),
            st.lists(st.integers(0, 3), min_size=s[0] * s[1] * s[2], max_size=s[0] * s[1] * s[2]),
            st.lists(st.sampled_from(_LEVELS), min_size=s[0] * s[1] * s[2], max_size=s[0] * s[1] * s[2]),
        )
    )
)
def test_scores_lie_in_unit_interval(data):
    shape, labels, values = data
    result = score(np.array(labels, np.uint8).reshape(shape), np.array(values, np.float32).reshape(shape))
    eps = 1e-12
    for name in ("v_rand", "v_info", "pixel_error", "pixel_error_plain", "dice", "iou"):
        assert -eps <= getattr(result, name) <= 1 + eps, name
    for v in result.per_threshold["v_rand"] + result.per_threshold["pixel_error"]:
        assert -eps <= v <= 1 + eps
    for v in result.per_threshold["v_info"]:  # NaN where Fiji divides 0 by 0
        assert math.isnan(v) or -eps <= v <= 1 + eps
    assert result.v_rand_threshold in result.thresholds
    assert len(result.per_slice["v_rand"]) == shape[0]


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(st.integers(1, 8), st.integers(1, 8)).flatmap(
        lambda s: st.tuples(
            st.just(s),
            st.lists(st.integers(1, 4), min_size=s[0] * s[1], max_size=s[0] * s[1]),
            st.lists(st.integers(1, 4), min_size=s[0] * s[1], max_size=s[0] * s[1]),
        )
    )
)
def test_rand_and_info_f_are_symmetric_without_border_pixels(data):
    shape, a, b = data
    a = np.array(a).reshape(shape)
    b = np.array(b).reshape(shape)
    ab, ba = segmentation_scores(a, b), segmentation_scores(b, a)
    assert ab["v_rand"] == pytest.approx(ba["v_rand"], abs=1e-12)
    assert ab["rand_split"] == pytest.approx(ba["rand_merge"], abs=1e-12)
    assert ab["v_info"] == pytest.approx(ba["v_info"], abs=1e-12, nan_ok=True)


def _voronoi_labels(rng: np.random.Generator, h: int, w: int, n_seeds: int) -> np.ndarray:
    """Cells of a random Voronoi partition, separated by 1-px membranes (0)."""
    seeds = rng.integers(0, [h, w], size=(n_seeds, 2))
    yy, xx = np.mgrid[:h, :w]
    region = np.argmin((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2, axis=-1)
    membrane = np.zeros((h, w), bool)
    membrane[:, :-1] |= region[:, :-1] != region[:, 1:]
    membrane[:-1, :] |= region[:-1, :] != region[1:, :]
    return np.where(membrane, 0, 255).astype(np.uint8)


def test_v_rand_and_v_info_agree_with_skimage_contingency():
    # Proposal borders only on GT membrane pixels (some membranes dropped = merges): then no
    # proposal border pixel lies in the GT foreground and the score is the plain foreground
    # contingency of GT components against proposal components.
    rng = np.random.default_rng(11)
    for _ in range(5):
        lab = _voronoi_labels(rng, 40, 48, 12)
        fg = lab > 0
        prob = np.where(fg | (rng.random(lab.shape) < 0.3), 1.0, 0.0).astype(np.float32)
        gt_cc = sk_label(fg, connectivity=1)
        seg_cc = sk_label(prob > 0.5, connectivity=1)
        table = contingency_table(gt_cc[fg], seg_cc[fg]).toarray().astype(np.float64)
        n = table.sum()
        a, b = table.sum(axis=1), table.sum(axis=0)
        expected_rand = 2 * (table**2).sum() / ((a**2).sum() + (b**2).sum())
        p, pa, pb = table[table > 0] / n, a[a > 0] / n, b[b > 0] / n
        h_gt, h_seg = -(pa * np.log(pa)).sum(), -(pb * np.log(pb)).sum()
        mutual = (p * np.log(p)).sum() - (pa * np.log(pa)).sum() - (pb * np.log(pb)).sum()
        expected_info = 2 * mutual / (h_gt + h_seg)
        result = score(lab, prob)
        assert result.per_threshold["v_rand"][5] == pytest.approx(expected_rand, abs=1e-12)
        assert result.per_threshold["v_info"][5] == pytest.approx(expected_info, abs=1e-12)
        assert result.v_rand == pytest.approx(expected_rand, abs=1e-12)


# --------------------------------------------------------------------------------------
# input checks and output shape
# --------------------------------------------------------------------------------------


def test_input_errors():
    lab = _columns(5, 4, [2])
    with pytest.raises(EmsegError, match="shape mismatch"):
        score(lab, np.zeros((4, 6), np.float32))
    bad = _proba(lab)
    bad[0, 0] = np.nan
    with pytest.raises(EmsegError, match="NaN"):
        score(lab, bad, proba_name="pred.tif")
    with pytest.raises(EmsegError, match=r"pred\.tif.*\[0, 1\]"):
        score(lab, _proba(lab) * 2, proba_name="pred.tif")
    with pytest.raises(EmsegError, match="float"):
        score(lab, lab)  # an 8-bit map must be scaled first


def test_to_dict_is_json_ready():
    import json

    lab = np.stack([_columns(5, 4, [2]), np.zeros((4, 5), np.uint8)])
    prob = np.stack([_proba(lab[0]), np.zeros((4, 5), np.float32)])
    data = score(lab, prob).to_dict()
    json.dumps(data, allow_nan=False)
    for key in ("v_rand", "v_info", "pixel_error", "pixel_error_plain", "dice", "iou", "v_rand_threshold"):
        assert isinstance(data[key], float)
    assert data["per_slice"]["rand_merge"][1] is None  # NaN (Fiji's 0/0) -> null
    assert len(data["per_threshold"]["v_rand"]) == 11
    assert set(data["per_slice"]) >= {"v_rand", "v_info", "pixel_error_plain", "dice", "iou"}


# --------------------------------------------------------------------------------------
# sparse labels: unlabelled pixels count nowhere
# --------------------------------------------------------------------------------------

UNLABELLED = 128  # the canonical value (emseg.config.layout.UNLABELLED_VALUE)


def _sparse_slice(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 24x24 slice labelled in its left 14 columns only, and a proposal; column 13 is membrane in both.

    The labelled part has four GT cells; the proposal splits one (a line at column 3) and merges
    two (row 8 is cell in the proposal below 0.55) at some thresholds. Every proposal border
    inside a GT cell lies >= 10 px from the unlabelled part, and the membrane column keeps the
    proposal's segments apart: the unlabelled part can change nothing, so that cropping it away
    gives exactly the same scores.
    """
    label = np.full((24, 24), 255, np.uint8)
    label[8, :13] = label[16, :13] = label[:, 6] = label[:, 13] = 0
    proba = np.where(label > 0, 1.0, 0.2).astype(np.float32)
    proba[8, :6] = 0.55  # a membrane the proposal misses below 0.55: a merge
    proba[:8, 3] = 0.35  # a line inside a cell: a split from 0.35 on
    label[:, 14:] = UNLABELLED
    proba[:, 14:] = rng.random((24, 10))  # whatever the proposal says where nobody labelled
    return label, proba


def test_unlabelled_pixels_score_as_if_cropped_away():
    rng = np.random.default_rng(5)
    label, proba = _sparse_slice(rng)
    full = score(label, proba, unlabelled=UNLABELLED, workers=1).to_dict()
    cropped = score(label[:, :14], proba[:, :14], workers=1).to_dict()
    assert full == cropped
    assert 0.3 < full["v_rand"] < 1.0 and len(set(full["per_threshold"]["v_rand"])) > 2  # the case tests something
    # treated as cell (the default, Fiji's reading of 128 > 0), the same pixels change the scores
    assert score(label, proba, workers=1).to_dict() != cropped


def test_a_slice_nobody_labelled_is_left_out_of_the_means():
    label, proba = _sparse_slice(np.random.default_rng(6))
    nobody = np.full_like(label, UNLABELLED)
    stack = score(np.stack([label, nobody]), np.stack([proba, proba]), unlabelled=UNLABELLED, workers=1)
    alone = score(label, proba, unlabelled=UNLABELLED, workers=1)
    assert stack.per_threshold == alone.per_threshold and stack.v_rand == alone.v_rand
    assert stack.per_slice["v_rand"][0] == alone.v_rand and math.isnan(stack.per_slice["v_rand"][1])
    with pytest.raises(EmsegError, match="^labels: no labelled pixel"):
        score(nobody, proba, unlabelled=UNLABELLED)


def test_an_unlabelled_value_absent_from_the_labels_changes_nothing():
    rng = np.random.default_rng(8)
    labels = np.stack([_voronoi_labels(rng, 40, 44, 9) for _ in range(2)])
    proba = np.clip((labels > 0) * 0.7 + 0.4 * rng.random(labels.shape), 0, 1).astype(np.float32)
    assert score(labels, proba, unlabelled=UNLABELLED, workers=1).to_dict() == score(labels, proba, workers=1).to_dict()


def test_segmentation_scores_ignore_pixels_outside_the_labelled_mask():
    gt = np.zeros((6, 8), np.int32)
    gt[:, :3], gt[:, 4:6] = 1, 2
    seg = np.ones_like(gt)  # merges 1 and 2
    seg[:, 6:] = 3
    labelled = np.ones(gt.shape, bool)
    labelled[:, 4:] = False  # GT cell 2 unlabelled: no merge is left to see
    assert segmentation_scores(gt, seg, labelled) == segmentation_scores(gt[:, :4], seg[:, :4])
    assert segmentation_scores(gt, seg, labelled)["v_rand"] == 1.0 > segmentation_scores(gt, seg)["v_rand"]
    with pytest.raises(EmsegError, match="labelled mask must have the label maps' shape"):
        segmentation_scores(gt, seg, labelled[:, :4])
