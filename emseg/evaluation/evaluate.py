"""The evaluate stage: predict the held-out test slices, score them the ISBI way, plot.

Pixels of sparse labels that nobody labelled (`UNLABELLED_VALUE` of
[`emseg.config.layout`][emseg.config.layout]) count in no score.

Writes the scalar metrics (for `dvc metrics`), the per-slice, per-threshold and
precision-recall tables and overlay images (for `dvc plots`), the exact stacks it
scored (so that anyone can re-score them elsewhere), and the probability map of the
unlabelled test volume in the challenge's convention (high = cell interior).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import precision_recall_curve

from emseg.config.layout import EVAL_NAMES, UNLABELLED_VALUE, slice_name
from emseg.config.params import EvaluateParams, SegmentParams
from emseg.evaluation import score_names
from emseg.evaluation.metrics import ScoreResult, score
from emseg.evaluation.score_names import SEGMENTED_KEYS, VALIDATED_KEYS, of_cells
from emseg.inference.predictor import Predictor
from emseg.io.atomic import write_json
from emseg.io.images import write_tiff
from emseg.io.sections import centre
from emseg.networks.prediction import Prediction
from emseg.runtime.machine import machine_info, machine_line
from emseg.segmentation.methods import cell_map, timed_segment, tune
from emseg.segmentation.thinning import membrane_to_cell
from emseg.visualization import MEMBRANE_RGB, PREDICTION_RGB, grey_rgb, side_by_side, tint, write_rgb_png


def summary(result: ScoreResult, at_validated: ScoreResult, n_slices: int, tta: bool) -> dict[str, Any]:
    """The scalar metrics of `metrics/evaluate.json`.

    Two scores named apart: `v_rand` etc. are the challenge's, the best over its 11
    thresholds of the scored slices themselves (`threshold` is where V_rand was best);
    `v_rand_at_val_threshold` etc. are taken at `val_threshold`, the one the model's
    own validation slices chose: the figure a user of the model gets.
    """
    return {
        "v_rand": result.v_rand,
        "v_info": result.v_info,
        "pixel_error": result.pixel_error,
        "pixel_error_plain": result.pixel_error_plain,
        "dice": result.dice,
        "iou": result.iou,
        "threshold": result.v_rand_threshold,
        "v_info_threshold": result.v_info_threshold,
        "pixel_error_threshold": result.pixel_error_threshold,
        "test_slices": n_slices,
        "tta": tta,
        "val_threshold": at_validated.v_rand_threshold,
        **{score_names.at_validated(key): getattr(at_validated, key) for key in VALIDATED_KEYS},
    }


def per_slice_rows(result: ScoreResult, at_validated: ScoreResult, slice_ids: list[int]) -> list[dict[str, float]]:
    """One row per scored slice: its scores at the challenge's threshold, then at the validated one."""
    rows = []
    for position, slice_id in enumerate(slice_ids):
        row: dict[str, float] = {"slice": slice_id}
        row.update({name: float(values[position]) for name, values in result.per_slice.items()})
        row.update({score_names.at_validated(key): float(at_validated.per_slice[key][position]) for key in VALIDATED_KEYS})
        rows.append(row)
    return rows


def threshold_rows(result: ScoreResult) -> list[dict[str, float]]:
    """One row per threshold: the stack's V_rand, V_info and pixel error there."""
    names = [name for name in ("v_rand", "v_info", "pixel_error") if name in result.per_threshold]
    return [
        {"threshold": round(float(t), 6), **{name: float(result.per_threshold[name][i]) for name in names}}
        for i, t in enumerate(result.thresholds)
    ]


def pr_curve_rows(labels: np.ndarray, cell_proba: np.ndarray, points: int) -> list[dict[str, float]]:
    """The precision-recall curve of the membrane class over the labelled test pixels, thinned to about `points` rows."""
    labelled = labels != UNLABELLED_VALUE
    membrane = labels[labelled] == 0
    membrane_score = 1.0 - cell_proba[labelled].astype(np.float64)
    precision, recall, _ = precision_recall_curve(membrane, membrane_score)
    keep = np.unique(np.linspace(0, len(precision) - 1, points).round().astype(int))
    return [{"recall": float(recall[i]), "precision": float(precision[i])} for i in keep]


def overlay_panel(image: np.ndarray, label: np.ndarray, cell_proba: np.ndarray, threshold: float) -> np.ndarray:
    """The image, its ground-truth membrane (red) and the membrane predicted at `threshold` (cyan), side by side."""
    return side_by_side([
        grey_rgb(image),
        tint(grey_rgb(image), label == 0, MEMBRANE_RGB),
        tint(grey_rgb(image), ~(cell_proba > threshold), PREDICTION_RGB),
    ])


@dataclass(frozen=True)
class SegmentJob:
    """The segmentation the evaluate stage chooses on the validation slices and applies to the test slices.

    The settings of `params`'s method that are lists form a grid; the best of it by V_rand
    on the validation slices is written to `path` (`segment.json` beside the model), from
    where `emseg predict` takes it too.
    """

    params: SegmentParams
    val_images: list[np.ndarray]
    val_labels: list[np.ndarray]
    path: Path


def choose_cell_step(
    predictor: Predictor, params: SegmentParams, images: list[np.ndarray], labels: list[np.ndarray], workers: int | None = None
) -> dict[str, Any]:
    """The settings of `params`'s cell method with the best cell V_rand on the given labelled slices (not the scored ones).

    Returns:
        As [`tune_cell_step`][emseg.evaluation.evaluate.tune_cell_step], of the predictor's predictions of `images`.
    """
    return tune_cell_step([predictor.predict(image) for image in images], params, labels, workers)


def tune_cell_step(predictions: list[Prediction], params: SegmentParams, labels: list[np.ndarray], workers: int | None = None) -> dict[str, Any]:
    """The settings of `params`'s cell method with the best cell V_rand on labelled slices, from their predictions.

    Returns:
        `method`, `settings`, `val_v_rand` (their V_rand there), `val_slices` (how many) and
        `tried` (every setting of the grid with its V_rand).
    """
    method = params.method
    settings, val_v_rand, tries = tune(
        method, params.given(), predictions, labels, lambda labels_, maps: score(labels_, maps, [0.5], workers=workers, unlabelled=UNLABELLED_VALUE).v_rand
    )
    return {"method": method, "settings": settings, "val_v_rand": val_v_rand, "val_slices": len(predictions), "tried": tries}


def choose_segmentation(predictor: Predictor, job: SegmentJob, workers: int | None) -> dict[str, Any]:
    """Tune `job`'s method on its validation slices; the content of `segment.json`."""
    return choose_cell_step(predictor, job.params, job.val_images, job.val_labels, workers)


def segmented(predictions: list[Prediction], labels: np.ndarray, chosen: dict[str, Any], workers: int | None) -> tuple[ScoreResult, np.ndarray, float]:
    """The chosen method's cells of each test slice, their scores, and the mean seconds per slice."""
    runs = [timed_segment(chosen["method"], prediction, chosen["settings"]) for prediction in predictions]
    cells = np.stack([labels_ for labels_, _ in runs])
    # a map with cell borders 0 and interiors 1: every threshold of the scorer gives these cells
    result = score(labels, np.stack([cell_map(c) for c in cells]), [0.5], workers=workers, unlabelled=UNLABELLED_VALUE)
    return result, cells, float(np.mean([seconds for _, seconds in runs]))


def evaluate(
    predictor: Predictor,
    test_images: list[np.ndarray],
    test_labels: list[np.ndarray],
    test_ids: list[int],
    unlabelled_images: list[np.ndarray] | None,
    metrics_path: str | os.PathLike[str],
    plots_dir: str | os.PathLike[str],
    eval_dir: str | os.PathLike[str],
    params: EvaluateParams = EvaluateParams(),
    segment_job: SegmentJob | None = None,
) -> dict[str, Any]:
    """Run the whole evaluate stage; return the summary written to `metrics_path`.

    Args:
        predictor: The model and how to apply it (made from the same `evaluate` block).
        test_images: The held-out test slices.
        test_labels: Their labels.
        test_ids: Their slice numbers.
        unlabelled_images: The unlabelled test volume; None: no test-volume map
            (cross-validation folds score their labelled test block only).
        metrics_path: Where the scalar metrics go (`metrics/evaluate.json`).
        plots_dir: Where the plot tables and overlay images go.
        eval_dir: Where the scored and predicted stacks go (`data/eval`).
        params: The `evaluate` block: the threads (torch CPU threads and scoring workers,
            0 = all cores), the number of overlay panels and of precision-recall points.
        segment_job: Also segment the test slices with a method chosen on the validation
            slices, and score its cells.

    Returns:
        The scalar metrics ([`summary`][emseg.evaluation.evaluate.summary]), with the chosen
        method's scores when `segment_job` is given.
    """
    plots, out = Path(plots_dir), Path(eval_dir)
    workers = params.threads or None
    if params.threads:
        torch.set_num_threads(params.threads)
    labels = np.stack(test_labels)
    predictions = [predictor.predict(image) for image in test_images]
    cell_proba = np.stack([membrane_to_cell(p.membrane) for p in predictions]).astype(np.float32)
    result = score(labels, cell_proba, workers=workers, unlabelled=UNLABELLED_VALUE)
    val_threshold, _ = predictor.config.threshold()
    at_validated = score(labels, cell_proba, [val_threshold], workers=workers, unlabelled=UNLABELLED_VALUE)
    write_tiff(out / EVAL_NAMES["labels"], labels)
    write_tiff(out / EVAL_NAMES["proba"], cell_proba)
    if unlabelled_images is not None:
        write_tiff(out / EVAL_NAMES["volume_proba"], predictor.cell_stack(unlabelled_images))
    metrics = summary(result, at_validated, len(test_ids), predictor.tta)
    rows = per_slice_rows(result, at_validated, test_ids)
    if segment_job is not None:
        chosen = choose_segmentation(predictor, segment_job, workers)
        seg_result, cells, seconds = segmented(predictions, labels, chosen, workers)
        # a timing varies run to run: it stays out of the metrics, which a forced repro reproduces byte for byte
        write_json(segment_job.path, {**chosen, "test_seconds_per_slice": seconds, "machine": machine_line(machine_info())})
        write_tiff(out / EVAL_NAMES["cells"], cells)
        metrics["segment_method"] = chosen["method"]
        metrics.update({of_cells(key): getattr(seg_result, key) for key in SEGMENTED_KEYS})
        for position, row in enumerate(rows):
            row.update({of_cells(key): float(seg_result.per_slice[key][position]) for key in SEGMENTED_KEYS})

    write_json(plots / "per_slice.json", rows)
    write_json(plots / "thresholds.json", threshold_rows(result))
    write_json(plots / "pr_curve.json", pr_curve_rows(labels, cell_proba, params.pr_points))
    for position in range(min(params.overlays, len(test_ids))):
        panel = overlay_panel(centre(test_images[position]), labels[position], cell_proba[position], result.v_rand_threshold)
        write_rgb_png(plots / "overlays" / slice_name(test_ids[position]), panel)
    write_json(metrics_path, metrics)
    return metrics
