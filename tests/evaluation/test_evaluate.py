import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from emseg.config.params import EvaluateParams, SegmentParams
from emseg.evaluation.evaluate import SegmentJob, evaluate, overlay_panel, pr_curve_rows
from emseg.evaluation.metrics import score
from emseg.inference.predictor import Predictor
from emseg.networks.architectures import build_network
from emseg.networks.model_file import ModelConfig
from emseg.networks.prediction import Prediction
from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION
from emseg.training.sampler import membrane_target

from conftest import TINY_UNET, synthetic_stack

CONFIG = ModelConfig("unet", TINY_UNET, dict(DEFAULT_NORMALIZATION), 32)


class OraclePredictor(Predictor):
    """Predicts each test image's own ground-truth membrane: every score must be perfect."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        super().__init__(torch.nn.Identity(), CONFIG, tta=True)
        object.__setattr__(self, "truth", {image.tobytes(): label for image, label in zip(images, labels)})

    def predict(self, image: np.ndarray, progress=None) -> Prediction:  # noqa: ANN001
        return Prediction(membrane_target(self.truth[image.tobytes()]).astype(np.float32))


def _run(tmp_path: Path, predictor: Predictor, images, labels, unlabelled, **settings) -> dict:
    ids = [10 + i for i in range(len(images))]
    return evaluate(
        predictor, list(images), list(labels), ids, None if unlabelled is None else list(unlabelled),
        tmp_path / "metrics.json", tmp_path / "plots", tmp_path / "eval", EvaluateParams(**settings),
    )


def test_a_perfect_map_scores_perfectly_and_every_output_is_written(tmp_path: Path) -> None:
    images, labels = synthetic_stack(3, 48, 40, seed=2)
    unlabelled, unlabelled_labels = synthetic_stack(2, 48, 40, seed=9)
    oracle = OraclePredictor(np.concatenate([images, unlabelled]), np.concatenate([labels, unlabelled_labels]))
    metrics = _run(tmp_path, oracle, images, labels, unlabelled, overlays=2, pr_points=10)

    assert metrics["v_rand"] == pytest.approx(1.0) and metrics["v_info"] == pytest.approx(1.0)
    assert metrics["pixel_error"] == pytest.approx(0.0) and metrics["dice"] == pytest.approx(1.0)
    assert metrics["test_slices"] == 3 and metrics["tta"] is True
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics

    per_slice = json.loads((tmp_path / "plots" / "per_slice.json").read_text())
    assert [row["slice"] for row in per_slice] == [10, 11, 12]
    assert len(json.loads((tmp_path / "plots" / "thresholds.json").read_text())) == 11
    assert sorted(p.name for p in (tmp_path / "plots" / "overlays").iterdir()) == ["slice_010.png", "slice_011.png"]

    volume = tifffile.imread(tmp_path / "eval" / "test-volume-proba.tif")
    assert volume.shape == (2, 48, 40) and volume.dtype == np.float32
    # the challenge's convention: high = cell interior
    np.testing.assert_array_equal(volume, (unlabelled_labels > 0).astype(np.float32))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "eval" / "test-labels.tif"), labels)


def test_a_real_network_runs_through_with_its_thread_setting(tmp_path: Path) -> None:
    images, labels = synthetic_stack(2, 40, 48, seed=4)
    model = build_network("unet", TINY_UNET).eval()
    before = torch.get_num_threads()
    try:
        predictor = Predictor.from_params(model, CONFIG, EvaluateParams(tta=False), torch.device("cpu"))
        metrics = _run(tmp_path, predictor, images, labels, images[:1], threads=1, overlays=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert 0.0 <= metrics["v_rand"] <= 1.0 and metrics["tta"] is False
    proba = tifffile.imread(tmp_path / "eval" / "test-proba.tif")
    assert proba.shape == (2, 40, 48) and 0.0 <= proba.min() and proba.max() <= 1.0
    panel = np.asarray(Image.open(tmp_path / "plots" / "overlays" / "slice_010.png"))
    assert panel.shape == (40, 3 * 48 + 2 * 6, 3)


def test_overlay_panel_marks_membranes_in_colour() -> None:
    image = np.full((8, 10), 100, np.uint8)
    label = np.full((8, 10), 255, np.uint8)
    label[:, 4] = 0
    cell = np.ones((8, 10), np.float32)
    cell[2, :] = 0.0
    panel = overlay_panel(image, label, cell, threshold=0.5)
    truth, prediction = panel[:, 16:26], panel[:, 32:42]
    assert (truth[:, 4, 0] > truth[:, 4, 2]).all() and (truth[:, 0] == 100).all()  # red ground truth
    assert (prediction[2, :, 2] > prediction[2, :, 0]).all() and (prediction[5, 0] == 100).all()  # cyan prediction


def test_pr_curve_is_thinned_and_within_bounds() -> None:
    rng = np.random.default_rng(0)
    labels = np.where(rng.random((2, 30, 30)) > 0.3, 255, 0).astype(np.uint8)
    cell = rng.random((2, 30, 30)).astype(np.float32)
    rows = pr_curve_rows(labels, cell, points=20)
    assert 2 <= len(rows) <= 20
    assert all(0.0 <= r["precision"] <= 1.0 and 0.0 <= r["recall"] <= 1.0 for r in rows)
    recalls = [r["recall"] for r in rows]
    assert recalls == sorted(recalls, reverse=True)


def test_two_scores_named_apart_the_validated_threshold_and_the_challenges(tmp_path: Path) -> None:
    """The challenge's V_rand picks its threshold on the scored slices; the validated one comes from the model."""
    images, labels = synthetic_stack(2, 40, 48, seed=5)
    model = build_network("unet", TINY_UNET).eval()
    config = ModelConfig("unet", TINY_UNET, dict(DEFAULT_NORMALIZATION), 32, val_threshold=0.9)
    predictor = Predictor.from_params(model, config, EvaluateParams(tta=False), torch.device("cpu"))
    metrics = _run(tmp_path, predictor, images, labels, None, overlays=0)
    assert metrics["val_threshold"] == 0.9
    at_validated = score(labels, tifffile.imread(tmp_path / "eval" / "test-proba.tif"), [0.9])
    assert metrics["v_rand_at_val_threshold"] == at_validated.v_rand and metrics["v_rand"] >= at_validated.v_rand
    rows = json.loads((tmp_path / "plots" / "per_slice.json").read_text())
    assert [row["v_rand_at_val_threshold"] for row in rows] == at_validated.per_slice["v_rand"]
    assert {"v_info_at_val_threshold", "pixel_error_at_val_threshold", "v_rand", "pixel_error"} <= set(rows[0])
    assert not (tmp_path / "eval" / "test-volume-proba.tif").exists()  # no unlabelled slices given: no volume map


def test_the_segmentation_is_chosen_on_the_validation_slices_and_scored_on_the_test_slices(tmp_path: Path) -> None:
    images, labels = synthetic_stack(4, 48, 40, seed=12)
    oracle = OraclePredictor(images, labels)
    job = SegmentJob(SegmentParams(method="components", components={"threshold": [0.2, 0.8]}), list(images[2:]), list(labels[2:]), tmp_path / "segment.json")
    ids = [10, 11]
    metrics = evaluate(oracle, list(images[:2]), list(labels[:2]), ids, None, tmp_path / "m.json", tmp_path / "plots", tmp_path / "eval", EvaluateParams(overlays=0), job)
    chosen = json.loads((tmp_path / "segment.json").read_text())
    assert chosen["method"] == "components" and [t["settings"]["threshold"] for t in chosen["tried"]] == [0.2, 0.8]
    assert metrics["segment_method"] == "components" and metrics["segment_v_rand"] == pytest.approx(1.0)
    assert chosen["test_seconds_per_slice"] >= 0 and "segment_seconds_per_slice" not in metrics  # a timing is no metric
    rows = json.loads((tmp_path / "plots" / "per_slice.json").read_text())
    assert [row["segment_v_rand"] for row in rows] == pytest.approx([1.0, 1.0])
    cells = tifffile.imread(tmp_path / "eval" / "test-cells.tif")
    assert cells.shape == (2, 48, 40) and cells.dtype == np.uint32
