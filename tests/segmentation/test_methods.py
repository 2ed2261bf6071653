"""emseg.segmentation.methods: each method on an image whose cells are known, and the settings and tuning around them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from emseg.config.layout import UNLABELLED_VALUE
from emseg.config.params import parse_params
from emseg.errors import EmsegError
from emseg.evaluation.metrics import score, segmentation_scores
from emseg.networks.affinities import DEFAULT_OFFSETS, affinity_targets, boundary_from_affinities
from emseg.networks.prediction import Prediction
from emseg.segmentation.methods import METHODS, cell_map, check_segment_params, fragments, segment, settings_grid, tune


def _two_cells_with_a_gap() -> tuple[np.ndarray, np.ndarray]:
    """Two 40x30 cells side by side; the membrane between them (3 px wide) has a 6-pixel gap in the
    prediction, as a faint membrane would: thresholding merges the two cells."""
    label = np.full((40, 63), 255, np.uint8)
    label[:, 30:33] = 0
    membrane = ndimage.gaussian_filter((label == 0).astype(np.float32), 1.0)
    membrane /= membrane.max()
    membrane[17:23, 28:35] = 0.05  # the gap
    return label, membrane


def test_thresholded_components_merge_through_the_gap() -> None:
    label, membrane = _two_cells_with_a_gap()
    cells = segment("components", Prediction(membrane), {"threshold": 0.5})
    assert len(np.unique(cells[label > 0])) == 1


@pytest.mark.parametrize(("method", "whole"), [("watershed", False), ("multicut", True), ("gasp", True)])
def test_agglomeration_keeps_the_two_cells_apart(method: str, whole: bool) -> None:
    label, membrane = _two_cells_with_a_gap()
    cells = segment(method, Prediction(membrane))
    left, right = cells[:, :25], cells[:, 38:]
    assert not set(np.unique(left)) & set(np.unique(right))
    if whole:  # the seeded watershed leaves fragments; multicut and GASP join them into the two cells
        assert segmentation_scores(ndimage.label(label > 0)[0], cells)["v_rand"] > 0.95


@pytest.mark.parametrize("method", ["multicut", "gasp"])
def test_the_graph_methods_join_the_watersheds_fragments_and_never_split_one(method: str) -> None:
    _, membrane = _two_cells_with_a_gap()
    prediction = Prediction(membrane)
    settings = METHODS[method].defaults
    pieces = fragments(prediction, settings["threshold"], settings["sigma_seeds"], settings["min_size"])
    cells = segment(method, prediction)
    assert len(np.unique(pieces)) > len(np.unique(cells))  # something was joined
    for piece in np.unique(pieces):
        assert len(np.unique(cells[pieces == piece])) == 1


def test_the_mutex_watershed_keeps_the_cells_apart_where_short_range_affinities_join_them() -> None:
    label, _ = _two_cells_with_a_gap()
    affinities, _ = affinity_targets(label, DEFAULT_OFFSETS)
    affinities[:2] = 0.05 + 0.9 * affinities[:2]  # confident nearest neighbours, surer long-range repulsion
    affinities[:2, 15:25, 29:34] = 0.05  # the nearest neighbours across the gap say: join
    prediction = Prediction(boundary_from_affinities(affinities), affinities, DEFAULT_OFFSETS)
    cells = segment("mws", prediction, {"stride": 1, "min_size": 25})
    assert not set(np.unique(cells[:, :25])) & set(np.unique(cells[:, 38:]))
    assert len(np.unique(segment("components", prediction)[label > 0])) == 1  # where thresholding merges


def test_mws_needs_affinities_and_settings_are_checked() -> None:
    _, membrane = _two_cells_with_a_gap()
    with pytest.raises(EmsegError, match="mws needs an affinity model"):
        segment("mws", Prediction(membrane))
    with pytest.raises(EmsegError, match="sigma not a setting of watershed; settings: threshold"):
        segment("watershed", Prediction(membrane), {"sigma": 2})
    with pytest.raises(EmsegError, match="unknown segmentation method 'mwz'"):
        segment("mwz", Prediction(membrane))


def test_lists_form_a_grid_and_scalars_fix_a_setting() -> None:
    grid = settings_grid("gasp", {"beta": [0.4, 0.6], "linkage": "mean"})
    assert len(grid) == 2 and {g["beta"] for g in grid} == {0.4, 0.6} and {g["linkage"] for g in grid} == {"mean"}
    assert len(settings_grid("components", {})) == len(METHODS["components"].grid["threshold"])


def test_tuning_picks_the_best_setting_on_the_given_slices() -> None:
    label, membrane = _two_cells_with_a_gap()
    settings, best, tries = tune("components", {"threshold": [0.1, 0.5, 0.99]}, [Prediction(membrane)], [label],
                                 lambda gt, maps: score(gt, maps, [0.5]).v_rand)
    assert len(tries) == 3 and best == max(t["v_rand"] for t in tries)
    assert settings == next(t["settings"] for t in tries if t["v_rand"] == best)


def test_a_cell_map_gives_the_same_cells_at_every_threshold() -> None:
    labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 3]], np.uint32)
    mapped = cell_map(labels)
    assert set(np.unique(mapped)) == {0.0, 1.0}
    gt = np.where(cell_map(labels) > 0, 255, 0).astype(np.uint8)
    result = score(gt, mapped)
    assert len(set(result.per_threshold["v_rand"][:-1])) == 1  # the same cells at every threshold below 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"segment": {"method": "mwz"}}, r"^params.yaml: segment.method: Input should be 'components', .*\(got 'mwz'\)$"),
        ({"segment": {"watershd": {}}}, r"^params.yaml: segment.watershd: not a registered segmentation method"),
        ({"segment": {"watershed": {"sigma": 1}}}, r"^params.yaml: segment.watershed: sigma not a setting of watershed"),
        ({"segment": {"gasp": {"beta": [0.1] * 10, "threshold": [0.1] * 5, "linkage": ["mean"] * 5}}}, r"segment.gasp: a grid of 250 settings; at most 200"),
        ({"model": {"target": "boundary"}, "segment": {"method": "mws"}}, r"^params.yaml: segment.method: mws needs an affinity model"),
    ],
)
def test_the_registry_checks_the_segment_params_with_one_line(raw: dict, message: str) -> None:
    with pytest.raises(EmsegError, match=message):
        parse_params(raw, checks=(check_segment_params,))


def test_an_affinity_model_with_the_mutex_watershed_is_a_valid_profile() -> None:
    params = parse_params({"model": {"target": "affinities"}, "segment": {"method": "mws", "mws": {"stride": [2, 4]}}}, checks=(check_segment_params,))
    assert params.segment.given() == {"stride": [2, 4]}


def test_tuning_with_the_sparse_label_scorer_ignores_unlabelled_cells() -> None:
    """`tune` scores through the callable it is given: with `score(..., unlabelled=...)` a merge
    into a cell nobody labelled is no merge, as if that cell were cropped away."""
    label, membrane = _two_cells_with_a_gap()
    sparse = label.copy()
    sparse[:, 33:] = UNLABELLED_VALUE  # the right cell: nobody labelled it
    grid = {"threshold": [0.1, 0.5, 0.99]}
    _, _, tries = tune("components", grid, [Prediction(membrane)], [sparse], lambda gt, maps: score(gt, maps, [0.5], unlabelled=UNLABELLED_VALUE).v_rand)
    for tried in tries:
        cropped = cell_map(segment("components", Prediction(membrane), tried["settings"]))[:, :33]
        assert tried["v_rand"] == score(label[:, :33], cropped, [0.5]).v_rand
    _, _, naive = tune("components", grid, [Prediction(membrane)], [sparse], lambda gt, maps: score(gt, maps, [0.5]).v_rand)
    assert [t["v_rand"] for t in naive] != [t["v_rand"] for t in tries]  # 128 read as cell: the merge counts
