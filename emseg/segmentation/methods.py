"""Cells from a network's prediction: a registry of segmentation methods, keyed by the name in `params.yaml: segment`.

Every method takes a [`Prediction`][emseg.networks.prediction.Prediction] (the membrane map,
and for an affinity model its affinities and offsets) and settings, and returns `uint32`
cell labels (0 = no cell).

* `components`: the thresholded map's 4-connected cells after Fiji's border thinning,
  the cells the challenge's scores judge (`threshold`);
* `watershed`: a seeded watershed on the membrane map, seeds at the maxima of the
  smoothed distance to the thresholded membranes (elf's `distance_transform_watershed`,
  Beier et al. 2017: `threshold`, `sigma_seeds`, `sigma_weights`, `alpha`, `min_size`);
* `multicut`: that watershed's fragments joined or cut by a multicut of the region
  adjacency graph (Kernighan-Lin), edge costs from the mean membrane probability along each
  boundary with bias `beta` (elf on bioimage-cpp);
* `gasp`: the same graph agglomerated by GASP (Bailoni et al. 2022) with `linkage`;
* `mws`: the Mutex Watershed (Wolf et al. 2020) on the affinities themselves, attractive
  nearest neighbours against repulsive long-range offsets sampled every `stride` pixels
  (affinity models only).

Settings given as a list in `params.yaml` form a grid that
[`tune`][emseg.segmentation.methods.tune] searches on the validation slices; the best by
V_rand is kept (`segment.json` beside the model). `METHODS` holds the registry: each
[`Method`][emseg.segmentation.methods.Method] with its defaults and its own grid.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emseg.config.params import Params, ParamsKeyError, one_of
from emseg.errors import EmsegError
from emseg.networks.prediction import Prediction


def _components(prediction: Prediction, threshold: float) -> np.ndarray:
    from emseg.segmentation.thinning import instance_labels, membrane_to_cell  # numba: only when used (the CLI parser imports this)

    return instance_labels(membrane_to_cell(prediction.membrane) > np.float32(threshold))


#: how the seeded watershed weighs the membrane map against the distance transform; the graph methods' fragments use these
WATERSHED_WEIGHTING = {"sigma_weights": 2.0, "alpha": 0.9}


def fragments(
    prediction: Prediction,
    threshold: float,
    sigma_seeds: float,
    min_size: int,
    sigma_weights: float = WATERSHED_WEIGHTING["sigma_weights"],
    alpha: float = WATERSHED_WEIGHTING["alpha"],
) -> np.ndarray:
    """The seeded watershed's over-segmentation (`uint32`): the fragments that multicut and GASP agglomerate.

    Seeds at the maxima of the distance to the membranes thresholded at `threshold`, smoothed
    by `sigma_seeds`; fragments under `min_size` pixels are merged (elf's
    `distance_transform_watershed`).
    """
    from elf.segmentation.watershed import distance_transform_watershed

    pieces, _ = distance_transform_watershed(
        prediction.membrane.astype(np.float32), threshold, sigma_seeds, sigma_weights=sigma_weights, min_size=min_size, alpha=alpha
    )
    return pieces.astype(np.uint32)


def _watershed(prediction: Prediction, threshold: float, sigma_seeds: float, sigma_weights: float, alpha: float, min_size: int) -> np.ndarray:
    return fragments(prediction, threshold, sigma_seeds, min_size, sigma_weights, alpha)


def _graph(prediction: Prediction, pieces: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
    """The fragments' region adjacency graph, each edge's mean membrane probability and its length."""
    from elf.segmentation.features import compute_boundary_features, compute_rag

    rag = compute_rag(pieces, n_threads=1)
    features = compute_boundary_features(rag, pieces, prediction.membrane.astype(np.float32), n_threads=1)
    return rag, features[:, 0], features[:, -1]


def _relabel(rag: Any, pieces: np.ndarray, node_labels: np.ndarray) -> np.ndarray:
    from elf.segmentation.features import project_node_labels_to_pixels

    return project_node_labels_to_pixels(rag, pieces, node_labels, n_threads=1).astype(np.uint32)


def _multicut(prediction: Prediction, beta: float, threshold: float, sigma_seeds: float, min_size: int) -> np.ndarray:
    from elf.segmentation.multicut import compute_edge_costs, multicut_kernighan_lin

    pieces = fragments(prediction, threshold, sigma_seeds, min_size)
    rag, mean, size = _graph(prediction, pieces)
    if len(mean) == 0:
        return pieces
    costs = compute_edge_costs(mean, edge_sizes=size, beta=beta, weighting_scheme="all")
    return _relabel(rag, pieces, multicut_kernighan_lin(rag, costs))


def _gasp(prediction: Prediction, beta: float, linkage: str, threshold: float, sigma_seeds: float, min_size: int) -> np.ndarray:
    from elf.segmentation.gasp import run_GASP
    from elf.segmentation.multicut import compute_edge_costs

    pieces = fragments(prediction, threshold, sigma_seeds, min_size)
    rag, mean, size = _graph(prediction, pieces)
    if len(mean) == 0:
        return pieces
    signed = compute_edge_costs(mean, beta=beta)  # log-odds of merging: > 0 attract, < 0 repel
    node_labels, _ = run_GASP(rag, signed, linkage_criteria=linkage, edge_sizes=size, verbose=False)
    return _relabel(rag, pieces, node_labels)


def _mws(prediction: Prediction, stride: int, min_size: int) -> np.ndarray:
    from elf.segmentation.mutex_watershed import mutex_watershed

    if prediction.affinities is None or prediction.offsets is None:
        raise EmsegError("segment.method mws needs an affinity model (model.target: affinities)")
    labels = mutex_watershed(prediction.affinities.astype(np.float32), [list(o) for o in prediction.offsets], [stride, stride])
    return _size_filtered(labels.astype(np.uint32), min_size, prediction.membrane)


def _size_filtered(labels: np.ndarray, min_size: int, membrane: np.ndarray) -> np.ndarray:
    """Segments under `min_size` pixels flooded by their neighbours along the membrane map."""
    if min_size <= 1:
        return labels
    from skimage.segmentation import watershed

    sizes = np.bincount(labels.ravel())
    small = sizes[labels] < min_size
    if not small.any():
        return labels
    kept = np.where(small, 0, labels)
    return watershed(membrane, markers=kept).astype(np.uint32) if kept.any() else labels


@dataclass(frozen=True)
class Method:
    """A segmentation method: its function, its settings' defaults, and which predictions it takes.

    `run` is called as `run(prediction, **settings)`; `description` is the line the parameter
    reference shows; `needs_affinities` marks a method for affinity models only.
    """

    run: Callable[..., np.ndarray]
    defaults: dict[str, Any]
    description: str
    needs_affinities: bool = False
    #: the grid :func:`tune` searches when params give none
    grid: dict[str, list[Any]] = field(default_factory=dict)


METHODS: dict[str, Method] = {
    "components": Method(
        _components, {"threshold": 0.5}, "threshold, then 4-connected cells after Fiji's border thinning",
        grid={"threshold": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]},
    ),
    "watershed": Method(
        _watershed,
        {"threshold": 0.5, "sigma_seeds": 2.0, **WATERSHED_WEIGHTING, "min_size": 50},
        "seeded watershed from distance-transform maxima (elf)",
        grid={"threshold": [0.3, 0.5, 0.7], "sigma_seeds": [1.0, 2.0, 3.0]},
    ),
    "multicut": Method(
        _multicut, {"beta": 0.5, "threshold": 0.3, "sigma_seeds": 1.0, "min_size": 25},
        "multicut of watershed fragments, boundary-mean edge costs (elf, Kernighan-Lin)",
        grid={"beta": [0.3, 0.4, 0.5, 0.6, 0.7]},
    ),
    "gasp": Method(
        _gasp, {"beta": 0.5, "linkage": "average", "threshold": 0.3, "sigma_seeds": 1.0, "min_size": 25},
        "GASP agglomeration of watershed fragments (elf)",
        # no linkage in the grid: elf's "mean" is its "average" (aliases), which only doubled the runs
        grid={"beta": [0.3, 0.4, 0.5, 0.6, 0.7]},
    ),
    "mws": Method(
        _mws, {"stride": 4, "min_size": 25}, "Mutex Watershed on the affinities (elf on bioimage-cpp)", needs_affinities=True,
        grid={"stride": [2, 4], "min_size": [0, 25, 100]},
    ),
}


def check_settings(method: str, settings: dict[str, Any]) -> None:
    """Check that `method` is registered and that every setting given is one of its own.

    Raises:
        EmsegError: An unknown method or setting, in a message the caller prefixes with its key.
    """
    if method not in METHODS:
        raise EmsegError(f"unknown segmentation method {method!r}; registered: {', '.join(METHODS)}")
    unknown = sorted(set(settings) - set(METHODS[method].defaults))
    if unknown:
        raise EmsegError(f"{', '.join(unknown)} not a setting of {method}; settings: {', '.join(METHODS[method].defaults)}")


#: the most settings combinations a segment block may ask the evaluate stage to try
MAX_GRID = 200


def check_segment_params(params: Params) -> None:
    """The cell-method registry's check of `params.segment` (a `ParamsCheck`).

    `method` must be registered and fit `model.target`; every `segment.<name>` block must name
    a registered method, with known settings and a grid of at most `MAX_GRID` combinations.

    Raises:
        ParamsKeyError: Naming the key, e.g. `segment.method: mws needs an affinity model (...)`.
    """
    segment = params.segment
    if segment.method not in METHODS:
        raise ParamsKeyError("segment.method", one_of(METHODS, segment.method))
    for name in segment.blocks():
        if name not in METHODS:
            raise ParamsKeyError(f"segment.{name}", f"not a registered segmentation method (registered: {', '.join(METHODS)})")
    for method in METHODS:
        given = segment.given(method)
        try:
            check_settings(method, given)
        except EmsegError as exc:
            raise ParamsKeyError(f"segment.{method}", str(exc)) from None
        combinations = len(settings_grid(method, given))
        if combinations > MAX_GRID:
            raise ParamsKeyError(f"segment.{method}", f"a grid of {combinations} settings; at most {MAX_GRID}")
    if params.model.target == "boundary" and METHODS[segment.method].needs_affinities:
        raise ParamsKeyError("segment.method", f"{segment.method} needs an affinity model (model.target: affinities)")


def settings_grid(method: str, given: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of a method's settings to try.

    Lists in `given` are searched (where `given` has no list for a setting, the method's own
    grid is); the other settings are fixed at their given or default values.

    Raises:
        EmsegError: As [`check_settings`][emseg.segmentation.methods.check_settings].
    """
    check_settings(method, given)
    spec = METHODS[method]
    merged = {**spec.defaults, **spec.grid, **given}
    axes = {name: value if isinstance(value, list) else [value] for name, value in merged.items()}
    return [dict(zip(axes, combination)) for combination in itertools.product(*axes.values())]


def segment(method: str, prediction: Prediction, settings: dict[str, Any] | None = None) -> np.ndarray:
    """The cell labels (`uint32`, 0 = no cell) of one slice by `method`.

    Args:
        method: A registered method.
        prediction: What the model said about the slice.
        settings: The method's settings (its defaults for the rest).

    Raises:
        EmsegError: An unknown method or setting, or a method that needs affinities given a
            boundary model's prediction.
    """
    check_settings(method, settings or {})
    spec = METHODS[method]
    if spec.needs_affinities and prediction.affinities is None:
        raise EmsegError(f"segment.method {method} needs an affinity model (model.target: affinities)")
    return spec.run(prediction, **{**spec.defaults, **(settings or {})})


def timed_segment(method: str, prediction: Prediction, settings: dict[str, Any] | None = None) -> tuple[np.ndarray, float]:
    """[`segment`][emseg.segmentation.methods.segment], and its wall time in seconds."""
    start = time.perf_counter()
    labels = segment(method, prediction, settings)
    return labels, time.perf_counter() - start


def cell_map(labels: np.ndarray) -> np.ndarray:
    """A label image as the map the ISBI scorer takes, so that every threshold of the scorer gives these cells.

    0 on one-pixel borders between cells (and where there is no cell), 1 inside.
    """
    edge = labels == 0
    # where two cells touch (no 0 line between them), the pixel below or right of the contact becomes border
    edge[1:] |= (labels[1:] != labels[:-1]) & (labels[:-1] > 0)
    edge[:, 1:] |= (labels[:, 1:] != labels[:, :-1]) & (labels[:, :-1] > 0)
    return (~edge).astype(np.float32)


def tune(
    method: str,
    given: dict[str, Any],
    predictions: Sequence[Prediction],
    labels: Sequence[np.ndarray],
    score_cells: Callable[[np.ndarray, np.ndarray], float],
) -> tuple[dict[str, Any], float, list[dict[str, Any]]]:
    """The settings of the grid with the best score on the given (validation) slices.

    Args:
        method: A registered method.
        given: The settings given in params (lists are searched, see
            [`settings_grid`][emseg.segmentation.methods.settings_grid]).
        predictions: The model's predictions of the slices.
        labels: Their ISBI labels.
        score_cells: Scores a stack of [`cell_map`][emseg.segmentation.methods.cell_map]s
            against the labels: `score_cells(labels, cell_maps)`, higher is better.

    Returns:
        The best settings (ties keep the first), their score, and every try with its score.
    """
    tries = []
    for settings in settings_grid(method, given):
        maps = np.stack([cell_map(segment(method, p, settings)) for p in predictions])
        tries.append({"settings": settings, "v_rand": float(score_cells(np.stack(labels), maps))})
    best = max(tries, key=lambda t: t["v_rand"])
    return best["settings"], best["v_rand"], tries
