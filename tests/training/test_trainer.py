import json
from pathlib import Path

import pytest
import torch

import numpy as np

from emseg.dataset import membrane_target
from emseg.errors import EmsegError
from emseg.inference.predictor import Predictor
from emseg.losses import LOSSES, build_loss
from emseg.model_file import ModelConfig, load_model
from emseg.normalization import DEFAULT_NORMALIZATION, normalize
from emseg.params import ModelParams, TrainParams
from emseg.training.trainer import TrainingData, build_trainer, lr_factor, train, validate

from conftest import TINY_UNET, synthetic_stack

TINY_MODEL = ModelParams(arch="unet", unet=TINY_UNET)


def _data() -> TrainingData:
    images, labels = synthetic_stack(4, 48, 48)
    return TrainingData(list(images[:3]), list(labels[:3]), [images[3]], [labels[3]])


def _tiny_train(tmp_path: Path, name: str, **overrides) -> tuple[dict, Path]:
    params = TrainParams(steps=6, batch_size=2, patch_size=32, val_every=3, log_every=2, **overrides)
    model_path = tmp_path / name / "model.pt"
    return train(_data(), TINY_MODEL, params, seed=5, model_path=model_path, live_dir=tmp_path / name / "live"), model_path


def test_training_logs_validates_and_saves_a_loadable_model(tmp_path: Path) -> None:
    result, model_path = _tiny_train(tmp_path, "run")
    assert result["best_step"] in (3, 6)
    model, config = load_model(model_path)
    assert config.arch == "unet" and config.kwargs["channels"] == [4, 8, 16]
    assert config.info["val"]["v_rand"] == result["best_val"]["v_rand"]
    assert config.val_threshold == result["best_val"]["threshold"]
    live = tmp_path / "run" / "live"
    for metric in ("train/loss", "train/lr", "train/patches_per_s", "val/loss", "val/v_rand", "val/v_info"):
        rows = (live / "plots" / "metrics" / f"{metric}.tsv").read_text().splitlines()
        assert len(rows) >= 2, metric
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["best_step"] == result["best_step"]


def test_same_seed_same_result_on_cpu(tmp_path: Path) -> None:
    a, path_a = _tiny_train(tmp_path, "a")
    b, path_b = _tiny_train(tmp_path, "b")
    assert a["best_val"] == b["best_val"]
    sa, sb = torch.load(path_a, weights_only=True)["state_dict"], torch.load(path_b, weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("schedule", ["cosine", "poly", "constant"])
def test_lr_schedules_start_at_base_and_warm_up(schedule: str) -> None:
    assert lr_factor(0, 100, schedule, 0) == 1.0
    assert lr_factor(0, 100, schedule, 10) == pytest.approx(0.1)
    if schedule != "constant":
        assert lr_factor(99, 100, schedule, 0) < 0.05


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_accept_logits_and_binary_targets(name: str) -> None:
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    loss = build_loss(name)(logits, target)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_unknown_loss() -> None:
    with pytest.raises(EmsegError, match="unknown loss 'l2' for a boundary model; registered: bce, dice"):
        build_loss("l2")


def test_border_weighted_training_runs(tmp_path: Path) -> None:
    result, model_path = _tiny_train(tmp_path, "weighted", border_weight=10.0, border_sigma=3.0)
    assert model_path.is_file() and 0.0 <= result["best_val"]["v_rand"] <= 1.0


def test_ema_weights_are_what_gets_saved(tmp_path: Path) -> None:
    result, model_path = _tiny_train(tmp_path, "ema", ema_decay=0.9)
    plain, plain_path = _tiny_train(tmp_path, "plain")
    ema_state = torch.load(model_path, weights_only=True)["state_dict"]
    plain_state = torch.load(plain_path, weights_only=True)["state_dict"]
    assert any(not torch.equal(ema_state[k], plain_state[k]) for k in plain_state)
    assert 0.0 <= result["best_val"]["v_rand"] <= 1.0


def _predictor(model: torch.nn.Module, tta: bool) -> Predictor:
    return Predictor(model, ModelConfig("unet", {}, dict(DEFAULT_NORMALIZATION), 32), tta=tta, amp=False)


def test_validation_with_tta_scores_the_dihedral_average() -> None:
    images, labels = synthetic_stack(2, 40, 48, seed=3)
    loss_fn = build_loss("dice_ce")
    torch.manual_seed(0)
    pointwise = torch.nn.Conv2d(1, 1, 1)  # commutes with flips and rotations: TTA changes nothing
    args = (loss_fn, list(images), list(labels))
    plain, tta = validate(_predictor(pointwise, False), *args), validate(_predictor(pointwise, True), *args)
    assert tta == pytest.approx(plain, abs=1e-5)
    spatial = torch.nn.Conv2d(1, 1, 3, padding=1)  # a 3x3 kernel does not: TTA must differ
    assert validate(_predictor(spatial, True), *args)["loss"] != pytest.approx(validate(_predictor(spatial, False), *args)["loss"], abs=1e-6)


def test_validation_loss_is_computed_from_the_logits() -> None:
    """Confident logits (|x| >> 14) saturate the probability map; a loss rebuilt from the
    clamped map would be capped, the loss of the logits themselves is not."""
    images, labels = synthetic_stack(1, 40, 48, seed=6)
    confident = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        confident.weight.fill_(40.0)  # dark membranes called cell, bright cells membrane: wrong and sure
        confident.bias.fill_(0.0)
    loss_fn = build_loss("bce")
    result = validate(_predictor(confident, False), loss_fn, list(images), list(labels))
    x = torch.from_numpy(normalize(images[0]))[None, None]
    with torch.no_grad():
        direct = float(loss_fn(confident(x), torch.from_numpy(membrane_target(labels[0]))[None, None]))
    assert result["loss"] == pytest.approx(direct, rel=1e-4)
    assert result["loss"] > -np.log(1e-6)  # beyond what a map clamped at 1e-6 can express


class _RecordingLogger:
    """A logger of the trainer's protocol that keeps every call."""

    def __init__(self) -> None:
        self.step = 0
        self.summary: dict = {}
        self.metrics: list[tuple[int, str, float]] = []
        self.steps = 0

    def log_metric(self, name: str, val: float) -> None:
        self.metrics.append((self.step, name, val))

    def next_step(self) -> None:
        self.steps += 1


def test_the_trainer_runs_with_an_injected_logger_and_keeps_the_best_model(tmp_path: Path) -> None:
    params = TrainParams(steps=6, batch_size=2, patch_size=32, val_every=3, log_every=2, ema_decay=0.0)
    trainer = build_trainer(_data(), TINY_MODEL, params, seed=5, model_path=tmp_path / "model.pt")
    trainer.logger = logger = _RecordingLogger()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    progress = trainer.run()
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    logged_steps = sorted({step for step, name, _ in logger.metrics if name == "train/loss"})
    assert logged_steps == [2, 3, 4, 6] and logger.steps == 4
    assert sorted({step for step, name, _ in logger.metrics if name == "val/v_rand"}) == [3, 6]
    assert logger.summary["best_step"] == progress.best_step in (3, 6)
    _, config = load_model(tmp_path / "model.pt")
    assert config.val_threshold == progress.best["threshold"]


def test_a_trainer_without_logger_says_so(tmp_path: Path) -> None:
    trainer = build_trainer(_data(), TINY_MODEL, TrainParams(steps=2, patch_size=32), seed=0, model_path=tmp_path / "m.pt")
    with pytest.raises(ValueError, match="needs a logger"):
        trainer.run()


def test_bf16_training_on_cpu_keeps_fp32_weights_and_is_seeded(tmp_path: Path) -> None:
    a, path_a = _tiny_train(tmp_path, "bf16_a", cpu_bf16=True, device="cpu")
    b, path_b = _tiny_train(tmp_path, "bf16_b", cpu_bf16=True, device="cpu")
    plain, plain_path = _tiny_train(tmp_path, "fp32", cpu_bf16=False, device="cpu")
    state_a = torch.load(path_a, weights_only=True)["state_dict"]
    state_b = torch.load(path_b, weights_only=True)["state_dict"]
    state_plain = torch.load(plain_path, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float32 for v in state_a.values() if v.is_floating_point())
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert any(not torch.equal(state_a[k], state_plain[k]) for k in state_a)
    assert a["best_val"] == b["best_val"]
