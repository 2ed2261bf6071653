"""The evaluate stage: predict the held-out test slices, score them the ISBI way, plot.

Writes the scalar metrics (for ``dvc metrics``), the per-slice, per-threshold and
precision-recall tables and overlay images (for ``dvc plots``), the exact stacks it
scored (so anyone can re-score them elsewhere), and the probability map of the
unlabelled test volume in the challenge's convention (high = cell interior).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import precision_recall_curve

from emseg.evaluation.metrics import ScoreResult, membrane_to_cell, score
from emseg.inference.sliding_window import predict_membrane
from emseg.io import atomic_output, write_json, write_tiff
from emseg.model_file import ModelConfig
from emseg.params import EvaluateParams

SUMMARY_KEYS = ("v_rand", "v_info", "pixel_error", "pixel_error_plain", "dice", "iou", "threshold")
MEMBRANE_RGB = np.array([255, 40, 40], dtype=np.float32)
PREDICTION_RGB = np.array([40, 220, 255], dtype=np.float32)


@dataclass
class Predictor:
    """A loaded model and how to apply it; the one inference path with its settings."""

    model: torch.nn.Module
    config: ModelConfig
    params: EvaluateParams
    device: torch.device

    def membrane(self, image: np.ndarray) -> np.ndarray:
        return predict_membrane(
            self.model,
            image,
            self.config.patch_size,
            self.config.normalization,
            overlap=self.params.overlap,
            tta=self.params.tta,
            batch_size=self.params.batch_size,
            device=self.device,
        )

    def cell_stack(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack([membrane_to_cell(self.membrane(image)) for image in images]).astype(np.float32)


def summary(result: ScoreResult, n_slices: int, tta: bool) -> dict[str, Any]:
    full = result.to_dict()
    out = {key: full[key] for key in SUMMARY_KEYS}
    out["v_info_threshold"] = result.v_info_threshold
    out["pixel_error_threshold"] = result.pixel_error_threshold
    out["test_slices"] = n_slices
    out["tta"] = tta
    return out


def per_slice_rows(result: ScoreResult, slice_ids: list[int]) -> list[dict[str, float]]:
    rows = []
    for position, slice_id in enumerate(slice_ids):
        row: dict[str, float] = {"slice": slice_id}
        row.update({name: float(values[position]) for name, values in result.per_slice.items()})
        rows.append(row)
    return rows


def threshold_rows(result: ScoreResult) -> list[dict[str, float]]:
    names = [name for name in ("v_rand", "v_info", "pixel_error") if name in result.per_threshold]
    return [
        {"threshold": round(float(t), 6), **{name: float(result.per_threshold[name][i]) for name in names}}
        for i, t in enumerate(result.thresholds)
    ]


def pr_curve_rows(labels: np.ndarray, cell_proba: np.ndarray, points: int) -> list[dict[str, float]]:
    """Precision-recall of the membrane class over all test pixels, thinned to about ``points`` rows."""
    membrane = (labels == 0).ravel()
    membrane_score = 1.0 - cell_proba.ravel().astype(np.float64)
    precision, recall, _ = precision_recall_curve(membrane, membrane_score)
    keep = np.unique(np.linspace(0, len(precision) - 1, points).round().astype(int))
    return [{"recall": float(recall[i]), "precision": float(precision[i])} for i in keep]


def _tint(grey: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    rgb[mask] = 0.45 * rgb[mask] + 0.55 * colour
    return rgb.astype(np.uint8)


def overlay_panel(image: np.ndarray, label: np.ndarray, cell_proba: np.ndarray, threshold: float) -> np.ndarray:
    """image | ground-truth membrane (red) | predicted membrane at ``threshold`` (cyan), side by side."""
    grey = image if image.dtype == np.uint8 else (image / max(1, image.max()) * 255).astype(np.uint8)
    gap = np.full((grey.shape[0], 6, 3), 255, np.uint8)
    panels = [
        np.repeat(grey[..., None], 3, axis=-1),
        _tint(grey, label == 0, MEMBRANE_RGB),
        _tint(grey, ~(cell_proba > threshold), PREDICTION_RGB),
    ]
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def write_png_rgb(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    with atomic_output(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")


def evaluate(
    predictor: Predictor,
    test_images: list[np.ndarray],
    test_labels: list[np.ndarray],
    test_ids: list[int],
    unlabelled_images: list[np.ndarray],
    metrics_path: str | os.PathLike[str],
    plots_dir: str | os.PathLike[str],
    eval_dir: str | os.PathLike[str],
) -> dict[str, Any]:
    """Run the whole stage; return the summary written to ``metrics_path``."""
    plots, out = Path(plots_dir), Path(eval_dir)
    threads = predictor.params.threads
    if threads:
        torch.set_num_threads(threads)
    labels = np.stack(test_labels)
    cell_proba = predictor.cell_stack(test_images)
    result = score(labels, cell_proba, workers=threads or None)
    write_tiff(out / "test-labels.tif", labels)
    write_tiff(out / "test-proba.tif", cell_proba)
    write_tiff(out / "test-volume-proba.tif", predictor.cell_stack(unlabelled_images))

    write_json(plots / "per_slice.json", per_slice_rows(result, test_ids))
    write_json(plots / "thresholds.json", threshold_rows(result))
    write_json(plots / "pr_curve.json", pr_curve_rows(labels, cell_proba, predictor.params.pr_points))
    for position in range(min(predictor.params.overlays, len(test_ids))):
        panel = overlay_panel(test_images[position], labels[position], cell_proba[position], result.threshold)
        write_png_rgb(plots / "overlays" / f"slice_{test_ids[position]:03d}.png", panel)

    metrics = summary(result, len(test_ids), predictor.params.tta)
    write_json(metrics_path, metrics)
    return metrics
