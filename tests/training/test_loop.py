"""emseg.training.loop: the learning-rate schedules and the Trainer's run with an injected logger."""

import math
from pathlib import Path

import pytest
import torch

from emseg.config.params import ModelParams, TrainParams
from emseg.networks.model_file import load_model
from emseg.training.build import build_trainer
from emseg.training.loop import lr_factor

from conftest import TINY_UNET, tiny_training_data

TINY_MODEL = ModelParams(arch="unet", unet=TINY_UNET)


@pytest.mark.parametrize("schedule", ["cosine", "poly", "constant"])
def test_lr_schedules_start_at_base_and_warm_up(schedule: str) -> None:
    assert lr_factor(0, 100, schedule, 0) == 1.0
    assert lr_factor(0, 100, schedule, 10) == pytest.approx(0.1)
    if schedule != "constant":
        assert lr_factor(99, 100, schedule, 0) < 0.05


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
    trainer = build_trainer(tiny_training_data(), TINY_MODEL, params, seed=5, model_path=tmp_path / "model.pt")
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
    trainer = build_trainer(tiny_training_data(), TINY_MODEL, TrainParams(steps=2, patch_size=32), seed=0, model_path=tmp_path / "m.pt")
    with pytest.raises(ValueError, match="needs a logger"):
        trainer.run()


def test_the_last_malis_steps_add_the_topology_term_to_the_training_loss_only(tmp_path: Path) -> None:
    from emseg.training.malis import MALIS_WEIGHT, MalisLoss

    params = TrainParams(steps=4, batch_size=2, patch_size=32, val_every=4, log_every=1, ema_decay=0.0, malis_steps=2)
    trainer = build_trainer(tiny_training_data(), ModelParams(arch="unet", target="affinities", unet=TINY_UNET), params, seed=1,
                            model_path=tmp_path / "m.pt")
    assert isinstance(trainer.malis, MalisLoss) and MALIS_WEIGHT > 0
    calls: list[int] = []
    trainer.malis = _Counting(trainer.malis, calls)
    seen = []
    for step in range(4):
        trainer.train_step(step)
        seen.append(len(calls))
    assert seen == [0, 0, 1, 2]  # the last two of the 4 steps
    plain = build_trainer(tiny_training_data(), TINY_MODEL, params.model_copy(update={"malis_steps": 0}), seed=1, model_path=tmp_path / "p.pt")
    assert plain.malis is None


class _Counting(torch.nn.Module):
    """A loss that records each call and returns the wrapped loss's value."""

    def __init__(self, loss: torch.nn.Module, calls: list) -> None:
        super().__init__()
        self.loss, self.calls = loss, calls

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        self.calls.append(1)
        value = self.loss(*args)
        assert value.requires_grad and value > 0
        return value


def _consistency_run(tmp_path: Path, name: str, **train: object):
    data = tiny_training_data()
    data.unlabelled_images = [data.train_images[0][::-1].copy(), data.val_images[0].T.copy()]
    settings = {"steps": 4, "batch_size": 2, "patch_size": 32, "val_every": 4, "log_every": 1, "checkpoint_every": 2, "ema_decay": 0.9,
                "consistency_weight": 1.0, "consistency_batch": 2}
    params = TrainParams(**{**settings, **train})
    model = ModelParams(arch="unet", target="affinities", unet=TINY_UNET)
    return build_trainer(data, model, params, seed=3, model_path=tmp_path / f"{name}.pt", checkpoint=tmp_path / f"{name}.ckpt")


def test_a_consistency_loss_trains_the_unlabelled_patches_beside_the_batch_against_the_ema_teacher(tmp_path: Path) -> None:
    trainer = _consistency_run(tmp_path, "run")
    seen: list[int] = []
    forward_heads = trainer.model.forward_heads
    trainer.model.forward_heads = lambda image: seen.append(len(image)) or forward_heads(image)
    teacher_before = {k: v.clone() for k, v in trainer.ema.module.state_dict().items()}
    losses = [float(trainer.train_step(step).detach()) for step in range(2)]
    assert seen == [4, 4]  # 2 labelled + 2 unlabelled patches in one forward; the teacher's forward is its own module's
    assert all(p.grad is None for p in trainer.ema.module.parameters())
    assert any(not torch.equal(teacher_before[k], v) for k, v in trainer.ema.module.state_dict().items())  # only the EMA moves it
    plain = _consistency_run(tmp_path, "plain", consistency_weight=0.0)
    assert plain.local_consistency == 0 and all(math.isfinite(loss) for loss in losses)


def test_a_consistency_run_resumes_from_its_checkpoint_bit_for_bit(tmp_path: Path) -> None:
    straight = _consistency_run(tmp_path, "straight")
    for step in range(4):
        straight.train_step(step)
    first = _consistency_run(tmp_path, "split")
    for step in range(2):
        first.train_step(step)
    first.checkpoint(2)
    second = _consistency_run(tmp_path, "split")
    second.resume(tmp_path / "split.ckpt")
    for step in range(second.progress.step, 4):
        second.train_step(step)
    for key, value in straight.ema.module.state_dict().items():
        assert torch.equal(value, second.ema.module.state_dict()[key]), key


def test_a_run_without_validation_slices_keeps_the_last_steps_model(tmp_path: Path) -> None:
    data = tiny_training_data()
    data.val_images, data.val_labels = [], []
    params = TrainParams(steps=4, batch_size=2, patch_size=32, val_every=2, log_every=2, ema_decay=0.9)
    trainer = build_trainer(data, TINY_MODEL, params, seed=5, model_path=tmp_path / "model.pt")
    trainer.logger = logger = _RecordingLogger()
    progress = trainer.run()
    assert progress.best_step == 4 and progress.best == {} and not any(name.startswith("val/") for _, name, _ in logger.metrics)
    network, config = load_model(tmp_path / "model.pt")
    assert config.info["step"] == 4 and config.val_threshold is None
    for key, value in trainer.ema.module.state_dict().items():
        torch.testing.assert_close(network.state_dict()[key].float(), value.float())


def test_a_run_stopped_early_ends_there_on_the_whole_schedule(tmp_path: Path) -> None:
    data = tiny_training_data()
    data.val_images, data.val_labels = [], []
    params = TrainParams(steps=6, stop_at=3, batch_size=2, patch_size=32, val_every=2, log_every=1, ema_decay=0.9)
    trainer = build_trainer(data, TINY_MODEL, params, seed=5, model_path=tmp_path / "model.pt")
    trainer.logger = logger = _RecordingLogger()
    progress = trainer.run()
    assert progress.best_step == 3 and [step for step, name, _ in logger.metrics if name == "train/loss"] == [1, 2, 3]
    assert trainer.learning_rate(2) == pytest.approx(params.lr * lr_factor(2, 6, "cosine", 0))  # the 6-step cosine, not a 3-step one
    _, config = load_model(tmp_path / "model.pt")
    assert config.info["step"] == 3 and config.info["steps"] == 6
