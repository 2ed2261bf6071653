"""Does a low per-cell confidence go with a wrong cell? Checked on a cross-validation run's models.

For each fold of ``cv/`` that has its ``model.pt``, predict the fold's test slices as the
evaluate stage does (8x TTA) with the uncertainty (the variance across the 8 variants,
``emseg predict --outputs uncertainty``), draw the cells with the fold's own cell step
(``segment.json``, chosen on its validation slices) and give every cell the confidence of
``emseg predict``'s measurements (``emseg.segmentation.measurements.cell_confidence``: its
definition was fixed before this check, nothing here is chosen on the scored slices).

A cell's correctness is its IoU with the ground-truth cell it overlaps most, counted on
the ground truth's cell pixels (its membranes are nobody's): a merge or a split lowers it.
Printed and written (``--json``), over the test slices of every fold:

* Spearman's rank correlation of confidence and IoU, with a 95% block-bootstrap interval
  (blocks of 3 slices, as ``emseg compare``);
* the AUROC of the confidence for telling cells with IoU < 0.5 (wrong) from the rest;
* how many of the wrong cells a reviewer finds by checking the least confident 10% of
  the cells, against the 10% that checking at random finds;
* per slice, the correlation of the mean cell confidence with the cells' V_rand.

``--choose`` instead compares candidate statistics of a cell's variance (``STATISTICS``) on
the folds' validation slices, where the package's one was chosen.

    python benchmarks/bench_confidence.py --cv cv --png data/png [--folds 0,1] [--cache /tmp/conf] [--json out.json] [--choose]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage, stats

from emseg.config.defaults import BLOCK_SLICES
from emseg.config.params import EvaluateParams
from emseg.evaluation.metrics import score
from emseg.inference.predictor import Predictor
from emseg.io.dataset import read_labelled
from emseg.networks.affinities import cell_instances
from emseg.networks.model_file import load_model
from emseg.networks.prediction import Prediction
from emseg.runtime.machine import machine_info, machine_line
from emseg.segmentation.measurements import cell_confidence, cell_uncertainty
from emseg.segmentation.methods import cell_map, segment

#: a cell whose best IoU with a ground-truth cell is below this is wrong (the usual instance-matching criterion)
WRONG_BELOW = 0.5
#: the share of cells a reviewer checks, least confident first
REVIEWED = 0.10


def _mean_over(labels: np.ndarray, variance: np.ndarray) -> np.ndarray:
    size = int(labels.max()) + 1
    return np.bincount(labels.ravel(), variance.ravel(), size) / np.maximum(np.bincount(labels.ravel(), minlength=size), 1)


def _cell_and_rim(cells: np.ndarray, rim: int) -> np.ndarray:
    from skimage.segmentation import expand_labels

    return expand_labels(cells, rim)


#: candidate per-cell statistics of the variance, for --choose: each cell's value for labels 0..max
STATISTICS = {
    "mean along the border (the package's)": lambda cells, v: cell_uncertainty(cells, v),
    "mean over the cell and a 2-pixel rim": lambda cells, v: _mean_over(_cell_and_rim(cells, 2), v),
    "90th percentile over the cell and rim": lambda cells, v: np.array(
        [0.0, *ndimage.labeled_comprehension(v, _cell_and_rim(cells, 2), np.arange(1, int(cells.max()) + 1), lambda x: np.percentile(x, 90), float, 0.0)]
    ),
    "maximum over the cell and rim": lambda cells, v: np.array([0.0, *ndimage.maximum(v, _cell_and_rim(cells, 2), np.arange(1, int(cells.max()) + 1))]),
}


def choose(cv: Path, png: Path, folds: list[int]) -> dict[str, dict[str, float]]:
    """Each candidate statistic's Spearman correlation with IoU and wrong cells found, on the folds' validation slices."""
    values: dict[str, list[np.ndarray]] = {name: [] for name in STATISTICS}
    ious = []
    for fold in folds:
        folder = cv / "folds" / str(fold)
        split = json.loads((folder / "split.json").read_text())
        step = json.loads((folder / "segment.json").read_text())
        model, config = load_model(folder / "model.pt", torch.device("cpu"))
        predictor = Predictor.from_params(model, config, EvaluateParams(), torch.device("cpu"))
        images, labels = read_labelled(png, split["val"], config.context)
        for image, label in zip(images, labels, strict=True):
            prediction = predictor.predict(image, uncertainty=True)
            cells = segment(step["method"], prediction, step.get("settings", {}))
            present = np.bincount(cells.ravel(), minlength=int(cells.max()) + 1)[1:] > 0
            ious.append(cell_iou(cells, label)[present])
            for name, statistic in STATISTICS.items():
                values[name].append(np.asarray(statistic(cells, prediction.uncertainty.astype(np.float64)))[1:][present])
    iou = np.concatenate(ious)
    wrong = iou < WRONG_BELOW
    report = {}
    for name, parts in values.items():
        confidence = cell_confidence(np.concatenate(parts))
        checked = np.argsort(confidence, kind="stable")[: max(1, round(REVIEWED * len(confidence)))]
        report[name] = {"spearman_confidence_iou": float(stats.spearmanr(confidence, iou).statistic),
                        "wrong_found_in_reviewed": float(wrong[checked].sum() / max(wrong.sum(), 1)), "cells": len(iou), "wrong": int(wrong.sum())}
    return report


def cell_iou(cells: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Every cell's (1..max) IoU with the ground-truth cell it overlaps most, on the ground truth's cell pixels."""
    truth = cell_instances(label)
    known = truth > 0
    n, m = int(cells.max()) + 1, int(truth.max()) + 1
    overlap = np.bincount(cells[known].astype(np.int64) * m + truth[known], minlength=n * m).reshape(n, m)
    size_cell = overlap.sum(1)
    size_truth = np.bincount(truth[known], minlength=m)
    best = overlap.argmax(1)
    inter = overlap[np.arange(n), best]
    union = size_cell + size_truth[best] - inter
    return (inter / np.maximum(union, 1))[1:]


def fold_cells(cv: Path, png: Path, fold: int, cache: Path | None) -> list[dict[str, Any]]:
    """One fold's test cells: slice, label, area, confidence, IoU; and each slice's V_rand and mean confidence."""
    path = cache / f"fold{fold}.npz" if cache else None
    folder = cv / "folds" / str(fold)
    split = json.loads((folder / "split.json").read_text())
    images, labels = read_labelled(png, split["test"])
    if path is not None and path.exists():
        stored = np.load(path)
        offsets = tuple(tuple(int(x) for x in o) for o in stored["offsets"]) if stored["offsets"].size else None
        made = [Prediction(m, a if offsets else None, offsets, u) for m, a, u in zip(stored["membrane"], stored["affinities"], stored["uncertainty"])]
    else:
        model, config = load_model(folder / "model.pt", torch.device("cpu"))
        predictor = Predictor.from_params(model, config, EvaluateParams(), torch.device("cpu"))
        made = [predictor.predict(image, uncertainty=True) for image in images]
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                path, offsets=np.array(predictor.offsets or []), membrane=np.stack([p.membrane for p in made]),
                affinities=np.stack([p.affinities if p.affinities is not None else p.membrane[None] for p in made]),
                uncertainty=np.stack([p.uncertainty for p in made]),
            )
    step = json.loads((folder / "segment.json").read_text())
    rows = []
    for slice_id, prediction, label in zip(split["test"], made, labels, strict=True):
        cells = segment(step["method"], prediction, step.get("settings", {}))
        confidence = cell_confidence(cell_uncertainty(cells, prediction.uncertainty))[1:]
        iou = cell_iou(cells, label)
        area = np.bincount(cells.ravel(), minlength=int(cells.max()) + 1)[1:]
        present = area > 0
        v_rand = float(score(label[None], cell_map(cells)[None], [0.5], workers=1).per_slice["v_rand"][0])
        rows.append({"fold": fold, "slice": int(slice_id), "v_rand": v_rand, "area": area[present].tolist(),
                     "confidence": confidence[present].tolist(), "iou": iou[present].tolist()})
    return rows


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """The probability that a positive's score is below a negative's (ties half): low confidence flags wrong cells."""
    ranks = stats.rankdata(-scores)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def summarise(rows: list[dict[str, Any]], resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The figures of the module's docstring, over every slice of `rows`."""
    confidence = np.concatenate([r["confidence"] for r in rows])
    iou = np.concatenate([r["iou"] for r in rows])
    wrong = iou < WRONG_BELOW
    order = np.argsort(confidence, kind="stable")
    checked = order[: max(1, round(REVIEWED * len(order)))]
    rho = float(stats.spearmanr(confidence, iou).statistic)
    # block bootstrap over slices: resample blocks of contiguous slices, as emseg compare does
    slices = sorted(r["slice"] for r in rows)
    by_slice = {r["slice"]: r for r in rows}
    blocks = [slices[i : i + BLOCK_SLICES] for i in range(0, len(slices), BLOCK_SLICES)]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        chosen = [s for b in rng.integers(0, len(blocks), len(blocks)) for s in blocks[b]]
        c = np.concatenate([by_slice[s]["confidence"] for s in chosen])
        u = np.concatenate([by_slice[s]["iou"] for s in chosen])
        draws.append(stats.spearmanr(c, u).statistic)
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    slice_confidence = [float(np.average(r["confidence"], weights=r["area"])) for r in rows]
    slice_rho = float(stats.spearmanr(slice_confidence, [r["v_rand"] for r in rows]).statistic)
    return {
        "cells": len(iou), "slices": len(rows), "wrong_cells": int(wrong.sum()),
        "spearman_confidence_iou": rho, "spearman_low": float(low), "spearman_high": float(high),
        "auroc_wrong": auroc(confidence, wrong),
        "reviewed_share": REVIEWED, "wrong_found_in_reviewed": float(wrong[checked].sum() / max(wrong.sum(), 1)),
        "mean_iou_reviewed": float(iou[checked].mean()), "mean_iou_rest": float(np.delete(iou, checked).mean()),
        "spearman_slice_confidence_v_rand": slice_rho,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", type=Path, default=Path("cv"))
    parser.add_argument("--png", type=Path, default=Path("data/png"))
    parser.add_argument("--folds", default="0,1,2,3,4", help="the folds to use (those without a model.pt are skipped, and said so)")
    parser.add_argument("--cache", type=Path, default=None, help="keep the predictions here (a second run only scores)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--choose", action="store_true", help="compare candidate statistics on the validation slices instead")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The check over the folds that have a model; printed, and written as JSON with ``--json``."""
    args = parse_args(argv)
    if args.choose:
        folds = [int(f) for f in args.folds.split(",") if (args.cv / "folds" / f / "model.pt").is_file()]
        report = choose(args.cv, args.png, folds)
        for name, row in report.items():
            print(f"{name:42s} Spearman {row['spearman_confidence_iou']:+.3f}  wrong found in the least confident 10%: "
                  f"{row['wrong_found_in_reviewed']:.0%}  ({row['cells']} cells, {row['wrong']} wrong; validation slices of folds {folds})")
        if args.json:
            args.json.write_text(json.dumps({"folds": folds, "validation": report}, indent=1))
        return 0
    rows, used = [], []
    for fold in [int(f) for f in args.folds.split(",")]:
        if not (args.cv / "folds" / str(fold) / "model.pt").is_file():
            print(f"fold {fold}: no model.pt, skipped")
            continue
        made = fold_cells(args.cv, args.png, fold, args.cache)
        rows += made
        used.append(fold)
        print(f"fold {fold}: {sum(len(r['iou']) for r in made)} cells on slices {[r['slice'] for r in made]}", flush=True)
    if not rows:
        print("no fold has a model: nothing to check")
        return 1
    command = "python benchmarks/bench_confidence.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {"command": command, "machine": machine_line(machine_info()), "folds": used, "wrong_below": WRONG_BELOW, **summarise(rows)}
    for key, value in report.items():
        print(f"{key:36s} {value}")
    if args.json:
        args.json.write_text(json.dumps({**report, "per_slice": [{k: r[k] for k in ("fold", "slice", "v_rand")} for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
