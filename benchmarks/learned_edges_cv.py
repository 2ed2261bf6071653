"""Learned edge weights for the cell step, under cross-validation, on models already trained.

GASP joins the watershed fragments by one number per edge: the mean membrane probability
along it. The multicut pipelines of the ISBI 2012 leaderboard (Beier et al. 2017, elf's
`segmentation.learning`) learn the edge's probability of being a true cell border instead,
from many features: statistics of the membrane map along the edge, of every affinity channel
across it (long-range offsets included), and of the two fragments (size, shape, the raw
slice and the membrane map inside them). This script measures what that buys, fold by fold:

* the fold's model predicts its validation and test slices (TTA, as evaluate does);
* the fragments are those of the fold's chosen GASP step (`segment.json`);
* a random forest learns "cut or join" on the validation slices' edges (a border between
  two ground-truth cells, or not; fragments mostly on ground-truth membrane are left out),
  with `--with-training` on the training slices' edges too;
* its agglomeration (GASP average or multicut) and bias `beta` are chosen on the validation
  slices by leave-one-slice-out (each slice's edges predicted by a forest of the others),
  never on the test slices; the forest of all validation slices then draws the test cells.

The folds land in the layout of a cross-validation (`OUT/folds/<k>/plots/per_slice.json`),
so `emseg compare` pairs them with the run's own GASP cells:

    python benchmarks/learned_edges_cv.py --run /work/cv-relu --out /work/learned/relu
    emseg compare benchmarks/results/levers/relu/folds /work/learned/relu/folds --metrics segment_v_rand,segment_v_info
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from run_all import command_line, write_result

from emseg.config.layout import UNLABELLED_VALUE
from emseg.config.params import load_params
from emseg.errors import EmsegError, run_with_clean_errors
from emseg.evaluation.metrics import score
from emseg.inference.predictor import Predictor
from emseg.io.atomic import read_json, write_json
from emseg.io.dataset import read_labelled
from emseg.networks.affinities import cell_instances
from emseg.networks.model_file import load_model
from emseg.networks.prediction import Prediction
from emseg.runtime.machine import machine_info
from emseg.segmentation.methods import cell_map, check_segment_params, fragments

#: the agglomerations and biases searched on the validation slices
AGGLOMERATIONS = ("gasp", "multicut")
BETAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
#: the forest: sklearn's defaults but the trees' count, seeded
FOREST = {"n_estimators": 200, "random_state": 0}
#: the fragment settings of a chosen GASP step
FRAGMENT_KEYS = ("threshold", "sigma_seeds", "min_size")


def edge_features(prediction: Prediction, pieces: np.ndarray, image: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
    """The fragments' graph, each edge's features, and each edge's length (pixels)."""
    from elf.segmentation.features import compute_affinity_features, compute_boundary_features, compute_rag, compute_region_features

    rag = compute_rag(pieces, n_threads=1)
    membrane = prediction.membrane.astype(np.float32)
    boundary = compute_boundary_features(rag, pieces, membrane, n_threads=1)
    parts = [boundary]
    if prediction.affinities is not None:
        # elf reads affinities as boundary evidence of each offset: 1 - the network's "same cell" probability
        across = 1.0 - prediction.affinities.astype(np.float32)
        parts.append(compute_affinity_features(rag, pieces, across, [list(o) for o in prediction.offsets], n_threads=1))
    uv = rag.uv_ids()
    parts.append(compute_region_features(uv, image.astype(np.float32), pieces, n_threads=1))
    parts.append(compute_region_features(uv, membrane, pieces, n_threads=1))
    return rag, np.nan_to_num(np.concatenate(parts, axis=1)).astype(np.float32), boundary[:, -1]


def edge_truth(rag: Any, pieces: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each edge's target (1: a border between two ground-truth cells) and whether it has one (no fragment mostly on membrane)."""
    from elf.segmentation.learning import compute_edge_labels

    cut, known = compute_edge_labels(rag, pieces, cell_instances(label).astype(np.uint32), ignore_label=0, n_threads=1)
    return cut.astype(np.int64), known


def agglomerate(rag: Any, pieces: np.ndarray, cut_probability: np.ndarray, lengths: np.ndarray, how: str, beta: float) -> np.ndarray:
    """Cells from the edges' cut probabilities: GASP (average linkage) or a multicut, with bias `beta`."""
    from elf.segmentation.features import project_node_labels_to_pixels
    from elf.segmentation.gasp import run_GASP
    from elf.segmentation.multicut import compute_edge_costs, multicut_kernighan_lin

    if len(cut_probability) == 0:
        return pieces
    if how == "gasp":
        nodes, _ = run_GASP(rag, compute_edge_costs(cut_probability, beta=beta), linkage_criteria="average", edge_sizes=lengths, verbose=False)
    else:
        nodes = multicut_kernighan_lin(rag, compute_edge_costs(cut_probability, edge_sizes=lengths, beta=beta, weighting_scheme="all"))
    return project_node_labels_to_pixels(rag, pieces, nodes, n_threads=1).astype(np.uint32)


def forest(slices: list[dict]) -> Any:
    """A forest trained on the known edges of `slices`."""
    from sklearn.ensemble import RandomForestClassifier

    features = np.concatenate([s["features"][s["known"]] for s in slices])
    targets = np.concatenate([s["cut"][s["known"]] for s in slices])
    return RandomForestClassifier(n_jobs=2, **FOREST).fit(features, targets)


def cut_probabilities(model: Any, features: np.ndarray) -> np.ndarray:
    """The forest's probability that each edge is a border (class 1)."""
    if len(features) == 0:
        return np.zeros(0, np.float32)
    columns = list(model.classes_)
    return model.predict_proba(features)[:, columns.index(1)].astype(np.float32) if 1 in columns else np.zeros(len(features), np.float32)


def cells_v_rand(labels: list[np.ndarray], cells: list[np.ndarray]):
    """The ISBI scores of the cells (every threshold of the scorer gives them), as evaluate scores its cell step."""
    return score(np.stack(labels), np.stack([cell_map(c) for c in cells]), [0.5], workers=1, unlabelled=UNLABELLED_VALUE)


def prepared(predictor: Predictor, images: list[np.ndarray], labels: list[np.ndarray], settings: dict) -> list[dict]:
    """Each slice's fragments, graph, edge features, lengths and edge targets."""
    out = []
    for image, label in zip(images, labels):
        prediction = predictor.predict(image)
        pieces = fragments(prediction, **{k: settings[k] for k in FRAGMENT_KEYS})
        rag, features, lengths = edge_features(prediction, pieces, image)
        cut, known = edge_truth(rag, pieces, label)
        out.append({"rag": rag, "pieces": pieces, "features": features, "lengths": lengths, "cut": cut, "known": known, "label": label})
    return out


def choose(val: list[dict], extra: list[dict]) -> dict:
    """The agglomeration and beta of the best leave-one-slice-out V_rand on the validation slices (`extra` always in the forest)."""
    held_out = [cut_probabilities(forest([*extra, *(o for j, o in enumerate(val) if j != i)]), s["features"]) for i, s in enumerate(val)]
    tries = []
    for how in AGGLOMERATIONS:
        for beta in BETAS:
            cells = [agglomerate(s["rag"], s["pieces"], p, s["lengths"], how, beta) for s, p in zip(val, held_out)]
            tries.append({"agglomeration": how, "beta": beta, "v_rand": float(cells_v_rand([s["label"] for s in val], cells).v_rand)})
    best = max(tries, key=lambda t: t["v_rand"])
    return {**best, "tried": tries}


def run_fold(run: Path, fold: int, out: Path, with_training: bool = False) -> dict:
    """Fold `fold` of the run with learned edges; its per-slice rows and choice land in `out/folds/<fold>/`."""
    params = load_params(run / "params.yaml", (check_segment_params,))
    png = run / "data" / "png"
    folder = run / "cv" / "folds" / str(fold)
    split = read_json(folder / "split.json")
    chosen = read_json(folder / "segment.json")
    if chosen.get("method") != "gasp":
        raise EmsegError(f"{folder / 'segment.json'}: the fold's cell step is {chosen.get('method')!r}; its fragments are GASP's")
    model, config = load_model(folder / "model.pt")
    predictor = Predictor.from_params(model, config, params.evaluate, torch.device("cpu"))
    started = time.perf_counter()
    val = prepared(predictor, *read_labelled(png, split["val"], config.context), chosen["settings"])
    test_images, test_labels = read_labelled(png, split["test"], config.context)
    test = prepared(predictor, test_images, test_labels, chosen["settings"])
    # the training slices' edges: many more, but predicted by a model that saw them (cleaner than on new slices)
    extra = prepared(predictor, *read_labelled(png, split["train"], config.context), chosen["settings"]) if with_training else []
    choice = choose(val, extra)
    final = forest([*extra, *val])
    cells = [agglomerate(s["rag"], s["pieces"], cut_probabilities(final, s["features"]), s["lengths"], choice["agglomeration"], choice["beta"])
             for s in test]
    result = cells_v_rand(test_labels, cells)
    rows = [{"slice": slice_id, "segment_v_rand": float(result.per_slice["v_rand"][i]), "segment_v_info": float(result.per_slice["v_info"][i])}
            for i, slice_id in enumerate(split["test"])]
    target = out / "folds" / str(fold)
    (target / "plots").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / "split.json", target / "split.json")
    write_json(target / "plots" / "per_slice.json", rows)
    summary = {"fold": fold, "forest_on": "training and validation slices" if with_training else "validation slices", "fragments": {k: chosen["settings"][k] for k in FRAGMENT_KEYS}, "choice": choice,
               "known_val_edges": int(sum(s["known"].sum() for s in val)), "segment_v_rand": float(result.v_rand),
               "seconds": time.perf_counter() - started}
    write_json(target / "learned.json", summary)
    print(f"fold {fold}: {choice['agglomeration']} beta {choice['beta']} (validation {choice['v_rand']:.4f}), "
          f"test cells V_rand {result.v_rand:.4f} ({summary['seconds']:.0f} s)", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Every fold of the run with learned edges; OUT/learned.json with the command and the machine."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a cross-validation clone: cv/folds/<k>/ with model.pt, split.json, segment.json")
    parser.add_argument("--out", type=Path, required=True, help="where the folds' results go (OUT/folds/<k>/)")
    parser.add_argument("--folds", default="0,1,2,3,4", help="the folds (default: %(default)s)")
    parser.add_argument("--with-training", action="store_true", help="the forest also learns from the training slices' edges")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    results = [run_fold(args.run, int(k), args.out, args.with_training) for k in args.folds.split(",")]
    write_result(args.out / "learned.json", {"benchmark": "learned_edges_cv", "command": command_line("learned_edges_cv.py", argv),
                                             "run": str(args.run), "machine": machine_info(), "folds": results})
    return 0


if __name__ == "__main__":
    sys.exit(run_with_clean_errors(main, debug=False, prog="learned_edges_cv.py"))
