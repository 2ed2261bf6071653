"""Cross-validation results over every labelled slice: the per-slice table, and the figures with their intervals.

Each fold's evaluate stage scored its own test block twice (see
[`summary`][emseg.evaluation.evaluate.summary]): at the threshold its validation block chose
(`*_at_val_threshold`: what a user gets, comparable with anything whose settings were
chosen without the test slices) and at the challenge's best of 11 thresholds on the test
block itself. Here the folds' per-slice rows become one table over all slices, and the
figures are the means over all slices with block-bootstrap intervals
([`emseg.evaluation.statistics`][emseg.evaluation.statistics]); the challenge's figures are
reported per fold and as their slice-weighted mean; `segmented` holds the scores of the
segmentation method's cells (settings chosen on each fold's validation block).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
from typing import Any

from emseg.config.layout import cv_fold_file
from emseg.config.params import CVParams
from emseg.errors import EmsegError
from emseg.evaluation.score_names import CHALLENGE_KEYS, SEGMENTED_KEYS, VALIDATED_KEYS, at_validated, of_cells
from emseg.evaluation.statistics import mean_interval
from emseg.io.atomic import read_json


def fold_rows(folds_root: str | os.PathLike[str], fold: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One fold's per-slice rows (each with its fold) and its evaluate metrics, checked against its split.

    Raises:
        EmsegError: A file is missing or not JSON, or the rows are not the fold's test slices.
    """
    split = read_json(cv_fold_file(folds_root, fold, "split"))
    metrics = read_json(cv_fold_file(folds_root, fold, "metrics"))
    per_slice_path = cv_fold_file(folds_root, fold, "per_slice")
    rows = read_json(per_slice_path)
    if not isinstance(rows, list) or [row.get("slice") for row in rows] != split.get("test"):
        raise EmsegError(f"{per_slice_path}: its slices are not the test slices of fold {fold}'s split {split.get('test')}")
    return [{"slice": row["slice"], "fold": fold, **{k: v for k, v in row.items() if k != "slice"}} for row in rows], metrics


def collect(folds_root: str | os.PathLike[str], params: CVParams) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """All folds' rows in slice order, and each fold's metrics.

    Raises:
        EmsegError: The folds' test blocks do not test every labelled slice exactly once.
    """
    rows: list[dict[str, Any]] = []
    metrics: dict[int, dict[str, Any]] = {}
    for fold in params.folds:
        fold_table, metrics[fold] = fold_rows(folds_root, fold)
        rows += fold_table
    slices = sorted(row["slice"] for row in rows)
    if slices != list(range(len(slices))):
        raise EmsegError(f"{folds_root}: the folds' test blocks do not cover the labelled slices exactly once ({slices})")
    return sorted(rows, key=lambda row: row["slice"]), metrics


def summarise(rows: list[dict[str, Any]], metrics: dict[int, dict[str, Any]], params: CVParams) -> dict[str, Any]:
    """`cv/metrics.json`: the validated-threshold figures with intervals, the challenge's per fold, and the thresholds."""
    slice_ids = [row["slice"] for row in rows]
    sizes = {fold: sum(1 for row in rows if row["fold"] == fold) for fold in metrics}

    def validated(name: str) -> dict[str, Any]:
        interval = mean_interval([row[name] for row in rows], slice_ids, params.block, params.confidence, params.resamples)
        per_fold = {str(fold): metrics[fold][name] for fold in metrics}
        return {"mean": interval.mean, "ci_low": interval.low, "ci_high": interval.high, "per_fold": per_fold}

    def challenge(key: str) -> dict[str, Any]:
        per_fold = {str(fold): metrics[fold][key] for fold in metrics}
        mean = sum(metrics[fold][key] * sizes[fold] for fold in metrics) / len(rows)
        return {"mean": mean, "per_fold": per_fold}

    def segmented() -> dict[str, Any]:
        methods = {str(fold): metrics[fold]["segment_method"] for fold in metrics}
        return {
            "method": next(iter(methods.values())) if len(set(methods.values())) == 1 else methods,
            **{key: validated(of_cells(key)) for key in SEGMENTED_KEYS},
        }

    v_rand = mean_interval([row["v_rand"] for row in rows], slice_ids, params.block, params.confidence, params.resamples)
    return {
        "slices": len(rows),
        "folds": len(metrics),
        "confidence": params.confidence,
        "block": params.block,
        "validated": {key: validated(at_validated(key)) for key in VALIDATED_KEYS},
        "challenge": {
            **{key: challenge(key) for key in CHALLENGE_KEYS},
            "v_rand_per_slice_ci": [v_rand.low, v_rand.high],
        },
        "threshold": {
            "validated": {str(fold): metrics[fold]["val_threshold"] for fold in metrics},
            "challenge": {str(fold): metrics[fold]["threshold"] for fold in metrics},
        },
        **({"segmented": segmented()} if all(of_cells("v_rand") in m for m in metrics.values()) else {}),
    }


def pooled_cell_step(folds_root: str | os.PathLike[str], folds: list[int]) -> dict[str, Any]:
    """The cell step the folds' validation blocks choose together: for a model trained on every labelled slice.

    Each fold's evaluate stage tried the same settings of one cell method on its own
    validation block (`segment.json`, its `tried` list); the pooled choice is the settings of
    the highest mean V_rand over the folds (ties: the first tried). No test block counts.

    Returns:
        `{"method", "settings", "chosen_on", "v_rand", "per_fold"}`: the cell step, what chose
        it, its mean validation V_rand and each fold's at those settings.

    Raises:
        EmsegError: A fold's `segment.json` is missing or not JSON, or the folds tried another
            method or other settings (one line naming the file).
    """
    tables: list[dict[str, float]] = []
    method, order = None, None
    for fold in folds:
        path = cv_fold_file(folds_root, fold, "segment")
        chosen = read_json(path)
        tried = chosen.get("tried") if isinstance(chosen, dict) else None
        if not tried:
            raise EmsegError(f"{path}: no settings tried (an evaluate stage's segment.json lists them under 'tried')")
        keys = [json.dumps(entry["settings"], sort_keys=True) for entry in tried]
        if method is None:
            method, order = chosen["method"], keys
        elif chosen["method"] != method or sorted(keys) != sorted(order):
            raise EmsegError(f"{path}: fold {fold} tried another cell method or other settings than fold {folds[0]}; rerun its evaluate stage")
        tables.append({key: float(entry["v_rand"]) for key, entry in zip(keys, tried)})
    assert order is not None
    means = {key: sum(table[key] for table in tables) / len(tables) for key in order}
    best = max(order, key=lambda key: means[key])  # max keeps the first of equal means
    return {
        "method": method,
        "settings": json.loads(best),
        "chosen_on": f"the validation blocks of cross-validation folds {', '.join(map(str, folds))} (mean V_rand)",
        "v_rand": means[best],
        "per_fold": {str(fold): table[best] for fold, table in zip(folds, tables)},
    }


def pooled_step(folds_root: str | os.PathLike[str], folds: list[int]) -> dict[str, Any]:
    """The training step the folds' validation blocks choose together: where a final model's run stops.

    Each fold's training validated its model every `val_every` steps on its validation block
    (dvclive's `val/v_rand` table, `val_curve`) and kept its own best step; a model trained on
    every labelled slice has no validation block, so it stops at the step of the highest mean
    validation V_rand over the folds (ties: the earliest). No test block counts.

    Returns:
        `{"step", "chosen_on", "v_rand", "per_fold", "per_fold_best"}`: the step, what chose it,
        its mean validation V_rand, each fold's there, and each fold's own best step.

    Raises:
        EmsegError: A fold's table is missing or unreadable, or the folds validated at other steps
            (one line naming the file).
    """
    curves: list[dict[int, float]] = []
    for fold in folds:
        path = cv_fold_file(folds_root, fold, "val_curve")
        curve = _read_curve(path)
        if curves and sorted(curve) != sorted(curves[0]):
            raise EmsegError(f"{path}: fold {fold} validated at other steps than fold {folds[0]}; rerun its train stage")
        curves.append(curve)
    steps = sorted(curves[0])
    means = {step: sum(curve[step] for curve in curves) / len(curves) for step in steps}
    best = max(steps, key=lambda step: means[step])  # max keeps the earliest of equal means
    return {
        "step": best,
        "chosen_on": f"the validation blocks of cross-validation folds {', '.join(map(str, folds))} (mean V_rand by step)",
        "v_rand": means[best],
        "per_fold": {str(fold): curve[best] for fold, curve in zip(folds, curves)},
        "per_fold_best": {str(fold): max(sorted(curve), key=lambda step: curve[step]) for fold, curve in zip(folds, curves)},
    }


def _read_curve(path: os.PathLike[str]) -> dict[int, float]:
    # dvclive's metric table: a header "step v_rand", one tab-separated row per validation
    try:
        with open(path, newline="") as table:
            rows = list(csv.DictReader(table, delimiter="\t"))
        curve = {int(row["step"]): float(row["v_rand"]) for row in rows}
    except FileNotFoundError:
        raise EmsegError(f"{path}: missing (a fold's train stage writes its validation V_rand there)") from None
    except (KeyError, TypeError, ValueError) as error:
        raise EmsegError(f"{path}: not a table of step and v_rand columns ({error})") from None
    if not curve:
        raise EmsegError(f"{path}: no validation rows (the fold's training had no validation slices?)")
    return curve


def pooled_threshold(folds_root: str | os.PathLike[str], folds: list[int]) -> float:
    """The median of the folds' validated thresholds (`val_threshold` of each fold's metrics): a final model's own.

    Raises:
        EmsegError: A fold's metrics are missing or lack it.
    """
    values = []
    for fold in folds:
        path = cv_fold_file(folds_root, fold, "metrics")
        value = read_json(path).get("val_threshold")
        if value is None:
            raise EmsegError(f"{path}: no val_threshold (an evaluate stage's metrics hold it)")
        values.append(float(value))
    return float(statistics.median(values))
