"""What limits the cells: the fragments' ceiling and agglomeration variants, on a cross-validation run's models.

For each fold of ``cv/`` (its ``split.json`` and ``model.pt``), predict the fold's validation
and test slices as the evaluate stage does (8x TTA), then for each variant choose its
settings on the validation slices (best V_rand of the cells) and score the test slices.
Prints each variant's mean over all test slices and the paired difference against the
profile's method (``gasp`` as ``emseg.segmentation.methods`` runs it) with a 95% block-bootstrap
interval (``emseg.evaluation.statistics``), and the **oracle** ceiling of each fragment
kind: every fragment given the ground-truth cell it overlaps most, the best any
agglomeration of those fragments can do.

Variants (affinity models; the boundary ones need only the membrane map):

* ``gasp``: the profile (distance-transform fragments, mean membrane on each boundary);
* ``gasp_minima``: fragments from every local minimum of the map smoothed by 1.5 px;
* ``gasp_long_range``: the profile's fragments, plus the long-range affinities (pixel pairs
  3, 9, 27 px apart, both off the membranes) as GASP edges between fragments.

    python benchmarks/bench_cell_ceiling.py --cv cv --png data/png [--cache /tmp/cells] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from emseg.config.params import EvaluateParams
from emseg.evaluation.metrics import score
from emseg.evaluation.statistics import paired_difference, verdict
from emseg.inference.predictor import Predictor
from emseg.io.dataset import read_labelled
from emseg.networks.affinities import cell_instances
from emseg.networks.model_file import load_model
from emseg.networks.prediction import Prediction
from emseg.segmentation.methods import METHODS, cell_map, fragments, segment

#: the betas emseg.segmentation.methods searches for gasp
BETAS = METHODS["gasp"].grid["beta"]
#: the profile's fragments: emseg.segmentation.methods's gasp defaults
DISTANCE = METHODS["gasp"].defaults


def distance_fragments(prediction: Prediction) -> np.ndarray:
    """The profile's fragments, as emseg.segmentation.methods's gasp makes them."""
    return fragments(prediction, DISTANCE["threshold"], DISTANCE["sigma_seeds"], DISTANCE["min_size"])


def minima_fragments(prediction: Prediction, sigma: float = 1.5) -> np.ndarray:
    """Fragments grown from every local minimum of the membrane map smoothed by ``sigma`` px."""
    from elf.segmentation.watershed import watershed

    height = ndimage.gaussian_filter(prediction.membrane.astype(np.float32), sigma)
    markers, _ = ndimage.label(height == ndimage.minimum_filter(height, size=3))
    fragments, _ = watershed(height, markers)
    return fragments.astype(np.uint32)


def _long_range_pairs(fragments: np.ndarray, values: np.ndarray, offset: tuple[int, int], keep: np.ndarray):
    """The fragment pairs (lower id, higher id) that pixels ``offset`` apart join, both pixels kept, and the affinity of each."""
    dy, dx = offset
    height, width = fragments.shape
    y0, y1, x0, x1 = max(0, -dy), height - max(0, dy), max(0, -dx), width - max(0, dx)
    a, b = fragments[y0:y1, x0:x1], fragments[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    used = (a != b) & keep[y0:y1, x0:x1] & keep[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    return np.minimum(a[used], b[used]).astype(np.int64), np.maximum(a[used], b[used]).astype(np.int64), values[y0:y1, x0:x1][used]


def agglomerate(prediction: Prediction, fragments: np.ndarray, beta: float, long_range: bool = False) -> np.ndarray:
    """GASP (average linkage) of ``fragments``: edges from the boundary's mean membrane, and with ``long_range``
    also the long-range affinities between fragments (pixels off the membranes only: a membrane pixel's
    affinities say "apart" at every offset)."""
    import bioimage_cpp as bic
    from elf.segmentation.features import compute_boundary_features, compute_rag
    from elf.segmentation.gasp import run_GASP
    from elf.segmentation.multicut import compute_edge_costs
    from skimage.measure import label

    rag = compute_rag(fragments, n_threads=1)
    features = compute_boundary_features(rag, fragments, prediction.membrane.astype(np.float32), n_threads=1)
    graph, probability, size = rag, features[:, 0], features[:, -1]
    if long_range:
        n = int(fragments.max()) + 1
        uv = rag.uv_ids().astype(np.int64)
        keys, sums, counts = [uv[:, 0] * n + uv[:, 1]], [probability * size], [size]
        keep = prediction.membrane < 0.5
        for channel, offset in enumerate(prediction.offsets[2:], start=2):
            u, v, values = _long_range_pairs(fragments, prediction.affinities[channel], offset, keep)
            keys.append(u * n + v), sums.append(values.astype(np.float64)), counts.append(np.ones(len(values)))
        unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
        size = np.bincount(inverse, np.concatenate(counts))
        probability = np.bincount(inverse, np.concatenate(sums)) / size
        # every edge mergeable: this bioimage-cpp's non-mergeable edges over-split; disconnected clusters are split below
        graph = bic.graph.UndirectedGraph.from_edges(n, np.stack([unique // n, unique % n], 1).astype(np.uint64))
    signed = compute_edge_costs(np.clip(probability, 1e-4, 1 - 1e-4), beta=beta)
    nodes, _ = run_GASP(graph, signed, linkage_criteria="average", edge_sizes=size)
    return label(np.asarray(nodes)[fragments].astype(np.int64) + 1, connectivity=1).astype(np.uint32)


def oracle(fragments: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Each fragment as the ground-truth cell it overlaps most (fragments on membranes only: their own cell)."""
    cells = cell_instances(label)
    n, m = int(fragments.max()) + 1, int(cells.max()) + 1
    overlap = np.bincount(fragments.ravel().astype(np.int64) * m + cells.ravel(), minlength=n * m).reshape(n, m)
    overlap[:, 0] = 0
    best = overlap.argmax(1)
    alone = overlap.max(1) == 0
    best[alone] = m + np.arange(alone.sum())
    return best[fragments].astype(np.uint32)


VARIANTS: dict[str, tuple[Callable[..., np.ndarray], dict[str, list[Any]]]] = {
    "gasp": (lambda p, beta: segment("gasp", p, {"beta": beta, "linkage": "average"}), {"beta": BETAS}),
    "gasp_minima": (lambda p, beta: agglomerate(p, minima_fragments(p), beta), {"beta": BETAS}),
    "gasp_long_range": (lambda p, beta: agglomerate(p, distance_fragments(p), beta, long_range=True), {"beta": BETAS}),
}
FRAGMENTS = {"distance (the profile's)": distance_fragments, "minima, 1.5 px": minima_fragments}


def per_slice_v_rand(labels: np.ndarray, cells: list[np.ndarray]) -> np.ndarray:
    """The V_rand of each slice's cells against its labels."""
    return np.asarray(score(labels, np.stack([cell_map(c) for c in cells]), [0.5], workers=1).per_slice["v_rand"])


def predictions(cv: Path, png: Path, fold: int, cache: Path | None) -> dict[str, Any]:
    """A fold's validation and test predictions (8x TTA, as the evaluate stage makes them) with their labels and ids; cached in ``cache``."""
    path = cache / f"fold{fold}.npz" if cache else None
    if path is not None and path.exists():
        stored = np.load(path)
        offsets = tuple(tuple(int(x) for x in o) for o in stored["offsets"]) if stored["offsets"].size else None
        return {
            part: ([Prediction(m, a if offsets else None, offsets) for m, a in zip(stored[f"{part}_membrane"], stored[f"{part}_affinities"])],
                   stored[f"{part}_labels"], stored[f"{part}_ids"].tolist())
            for part in ("val", "test")
        }
    model, config = load_model(cv / "folds" / str(fold) / "model.pt", torch.device("cpu"))
    predictor = Predictor.from_params(model, config, EvaluateParams(), torch.device("cpu"))
    split = json.loads((cv / "folds" / str(fold) / "split.json").read_text())
    out, stored = {}, {"offsets": np.array(predictor.offsets or [])}
    for part in ("val", "test"):
        images, labels = read_labelled(png, split[part])
        made = [predictor.predict(image) for image in images]
        out[part] = (made, np.stack(labels), list(split[part]))
        stored.update({
            f"{part}_membrane": np.stack([p.membrane for p in made]),
            f"{part}_affinities": np.stack([p.affinities if p.affinities is not None else p.membrane[None] for p in made]),
            f"{part}_labels": np.stack(labels), f"{part}_ids": np.array(split[part]),
        })
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **stored)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", type=Path, default=Path("cv"))
    parser.add_argument("--png", type=Path, default=Path("data/png"))
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--cache", type=Path, default=None, help="keep the predictions here (a second run only scores)")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def choose_and_score(run: Callable[..., np.ndarray], grid: dict[str, list[Any]], val: list[Prediction], val_labels: np.ndarray,
                     test: list[Prediction], test_labels: np.ndarray) -> tuple[dict[str, Any], list[float]]:
    """The settings of ``grid`` with the best mean V_rand on the validation slices, and the test slices' V_rand with them."""
    tries = []
    for combination in itertools.product(*grid.values()):
        settings = dict(zip(grid, combination))
        tries.append((float(per_slice_v_rand(val_labels, [run(p, **settings) for p in val]).mean()), settings))
    best = max(tries, key=lambda t: t[0])[1]
    return best, per_slice_v_rand(test_labels, [run(p, **best) for p in test]).tolist()


def measure_fold(fold: int, args: argparse.Namespace, scores: dict[str, dict[int, float]], chosen: dict[str, list[dict[str, Any]]]) -> None:
    """One fold: each variant chosen on validation and scored on test, and each fragment kind's oracle, into ``scores`` and ``chosen``; printed."""
    data = predictions(args.cv, args.png, fold, args.cache)
    val, val_labels, _ = data["val"]
    test, test_labels, test_ids = data["test"]
    for name, (run, grid) in VARIANTS.items():
        if name == "gasp_long_range" and test[0].affinities is None:
            continue
        best, test_scores = choose_and_score(run, grid, val, val_labels, test, test_labels)
        chosen[name].append(best)
        scores[name].update(zip(test_ids, test_scores))
    for kind, make in FRAGMENTS.items():
        cells = [oracle(make(p), label) for p, label in zip(test, test_labels)]
        scores[f"oracle: {kind}"].update(zip(test_ids, per_slice_v_rand(test_labels, cells).tolist()))
    print(f"fold {fold}: " + "  ".join(f"{name} {np.mean([scores[name][i] for i in test_ids]):.4f}" for name in scores if scores[name]), flush=True)


def compare_with_profile(scores: dict[str, dict[int, float]]) -> dict[str, dict[str, Any]]:
    """Each variant's mean over every test slice and, but for gasp, its paired difference from gasp with a 95% interval; printed."""
    reference = scores["gasp"]
    ids = sorted(reference)
    report = {}
    for name, table in scores.items():
        if not table:
            continue
        values = np.array([table[i] for i in ids])
        row: dict[str, Any] = {"mean": float(values.mean()), "slices": len(ids)}
        if name != "gasp":
            difference = paired_difference([reference[i] for i in ids], values.tolist(), ids)
            row.update(difference=difference.mean, low=difference.low, high=difference.high, verdict=verdict("v_rand", difference))
        report[name] = row
        extra = "" if name == "gasp" else f"  B - A {row['difference']:+.4f} [{row['low']:+.4f}, {row['high']:+.4f}] {row['verdict']}"
        print(f"{name:28s} {row['mean']:.4f}{extra}")
    return report


def main(argv: list[str] | None = None) -> int:
    """Every fold's variants and oracles; the comparison printed, and written as JSON with ``--json``."""
    args = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    scores: dict[str, dict[int, float]] = {name: {} for name in [*VARIANTS, *(f"oracle: {k}" for k in FRAGMENTS)]}
    chosen: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    for fold in [int(f) for f in args.folds.split(",")]:
        measure_fold(fold, args, scores, chosen)
    report = compare_with_profile(scores)
    if args.json:
        args.json.write_text(json.dumps({"scores": report, "chosen": chosen}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
