"""The training loop: a [`Trainer`][emseg.training.loop.Trainer] handed its model, loss, optimiser, patch sampler, EMA and logger.

Its [`run`][emseg.training.loop.Trainer.run] is a few lines calling
[`train_step`][emseg.training.loop.Trainer.train_step],
[`validate`][emseg.training.loop.Trainer.validate], [`log`][emseg.training.loop.Trainer.log]
and [`checkpoint`][emseg.training.loop.Trainer.checkpoint].

Validation runs every `val_every` steps on the full validation slices
([`emseg.training.validation`][emseg.training.validation]); the model with the best validation
V_rand is kept. A run without validation slices (a final model trained on every labelled
slice, final/dvc.yaml) keeps the last step's; `train.stop_at` ends a run early on its
schedule (the final model stops at the step the cross-validation chose). Under torchrun (`train.processes` > 1,
[`emseg.training.distributed`][emseg.training.distributed]) every rank trains its share of
the global batch through `DistributedDataParallel`; rank 0 alone validates, logs, keeps the
best model and writes the checkpoint ([`emseg.training.checkpoints`][emseg.training.checkpoints]),
which holds every rank's patch stream so that a resumed run continues each of them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from emseg.config.params import TrainParams
from emseg.inference.predictor import Predictor
from emseg.networks.model_file import ModelConfig, save_model
from emseg.runtime.device import amp_dtype, autocast, uses_amp
from emseg.training.checkpoints import Progress, checkpoint_state, load_checkpoint, random_streams, restore_streams, write_checkpoint
from emseg.training.distributed import SINGLE_PROCESS, ProcessGroup
from emseg.training.logs import Logger
from emseg.training.losses import consistency_loss, consistency_ramp, supervised_loss
from emseg.training.malis import MALIS_WEIGHT, MalisLoss
from emseg.training.progress import TrainingProgress

#: a named phase of a step in a torch.profiler trace (a few microseconds when no profiler runs)
phase = torch.profiler.record_function
from emseg.training.sampler import ConsistencyBatch, PatchSampler, TrainingData
from emseg.training.validation import validate


def lr_factor(step: int, total: int, schedule: str, warmup: int) -> float:
    """The multiplier of the base learning rate at `step` (0-based).

    A linear warm-up over the first `warmup` steps, then `schedule`: `cosine` (from 1 to 0 at
    `total`), `poly` (`(1 - progress)^0.9`) or `constant`.
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if schedule == "poly":
        return (1.0 - min(1.0, progress)) ** 0.9
    return 1.0


@dataclass
class _Window:
    """The training losses and wall time since the last log line."""

    loss: float = 0.0
    count: int = 0
    start: float = field(default_factory=time.perf_counter)

    def add(self, loss: torch.Tensor) -> None:
        self.loss += float(loss.detach())
        self.count += 1


class Trainer:
    """One training run of `model` on `sampler`'s patches, validated on `data`'s validation slices.

    [`build_trainer`][emseg.training.build.build_trainer] makes one from params.

    Args:
        model: The network being trained.
        loss_fn: The loss ([`build_loss`][emseg.training.losses.build_loss]).
        optimizer: The optimiser of `model`'s parameters.
        sampler: Where the training patches come from.
        data: The training and validation slices.
        params: The `train` block.
        config: Describes the model for the saved file.
        logger: What the figures are logged through (dvclive's `Live`); it must be set before
            [`run`][emseg.training.loop.Trainer.run].
        device: Where training runs.
        model_path: Where the best model file is written.
        ema: An `AveragedModel` of `model`; when given, it is what gets validated, kept and saved.
        checkpoint: The resumable checkpoint's path (None: no checkpoints).
        seed: `base.seed`, noted in the model file.
        progress: Reports how far training has got; None: silent.
        group: This rank's place in a DDP job.
        parallel: The model's `DistributedDataParallel` wrapper, through which the training
            steps run under DDP.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        sampler: PatchSampler,
        data: TrainingData,
        params: TrainParams,
        config: ModelConfig,
        *,
        logger: Logger | None = None,
        device: torch.device,
        model_path: Path,
        ema: AveragedModel | None = None,
        checkpoint: Path | None = None,
        seed: int = 0,
        progress: TrainingProgress | None = None,
        group: ProcessGroup = SINGLE_PROCESS,
        parallel: nn.Module | None = None,
    ) -> None:
        self.model, self.loss_fn, self.optimizer, self.sampler = model, loss_fn, optimizer, sampler
        self.data, self.params, self.config, self.logger = data, params, config, logger
        self.device, self.model_path, self.ema, self.checkpoint_path, self.seed = device, model_path, ema, checkpoint, seed
        self.use_amp = uses_amp(device, params.amp, params.cpu_bf16)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.use_amp and amp_dtype(device) == torch.float16)
        self.progress = Progress()
        self._window = _Window()
        #: reports how far training has got (a bar, or a line every few percent); None: silent
        self.reporter = progress
        self.group, self.parallel = group, parallel
        #: this rank's share of the global batch ``params.batch_size``
        self.local_batch = params.batch_size // group.world_size
        #: the topology-aware term of the last `train.malis_steps` steps (validation's loss stays the plain one)
        self.malis = MalisLoss() if params.malis_steps else None
        #: this rank's share of ``params.consistency_batch``: unlabelled patches a step (0: no consistency loss)
        self.local_consistency = params.consistency_batch // group.world_size if params.consistency_weight else 0
        if self.local_consistency and ema is None:
            raise ValueError("a consistency loss needs the EMA teacher on every rank (build_trainer makes one)")

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated, kept and saved: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def run(self) -> Progress:
        """Train from `progress.step` to `params.last_step` (`steps`, or `stop_at` of the same schedule).

        Returns:
            The progress, holding the best validation so far and its step.

        Raises:
            ValueError: No logger was set.
        """
        if self.logger is None:
            raise ValueError("Trainer.run needs a logger (dvclive's Live, or anything of the Logger protocol)")
        self.model.train()
        self._window = _Window()
        for step in range(self.progress.step, self.params.last_step):
            self._window.add(self.train_step(step))
            done = step + 1
            validating = self._is_validation_step(done)
            if done % self.params.log_every == 0 or validating:
                figures = self.training_figures(done)  # before validating: its time is not training time
                self.log(done, figures, self.validate() if validating and self.group.is_main else None)
                if validating:
                    self.group.barrier()  # the other ranks wait for rank 0's validation
            if done % self.params.checkpoint_every == 0 and done < self.params.last_step:
                self.checkpoint(done)
        if not self.data.val_images and self.group.is_main and self.progress.best_step != self.params.last_step:
            self._keep(self.params.last_step, {})  # nothing to choose on: the model is the last step's
        self.logger.summary["best_step"] = self.progress.best_step
        for name, value in self.progress.best.items():
            self.logger.summary[f"best_val/{name}"] = value
        return self.progress

    def _is_validation_step(self, done: int) -> bool:
        # a run without validation slices (every labelled slice trains: a final model) never validates
        return bool(self.data.val_images) and (done % self.params.val_every == 0 or done == self.params.last_step)

    def learning_rate(self, step: int) -> float:
        """The learning rate at `step` (0-based): the base rate times [`lr_factor`][emseg.training.loop.lr_factor]."""
        params = self.params
        return params.lr * lr_factor(step, params.steps, params.schedule, params.warmup_steps)

    def train_step(self, step: int) -> torch.Tensor:
        """One optimiser step on a freshly sampled batch; the loss (a tensor, not yet synchronised).

        Its phases are named for `torch.profiler` (`train/sample`, `train/forward`, `train/loss`,
        `train/backward`, `train/optimizer`): benchmarks/profile_train_step.py reads them.
        """
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        with phase("train/sample"):
            batch = self.sampler.sample(self.local_batch).to(self.device)
            unlabelled = self.sampler.sample_unlabelled(self.local_consistency).to(self.device) if self.local_consistency else None
        self.optimizer.zero_grad(set_to_none=True)
        with phase("train/forward"), autocast(self.device, self.params.amp, self.params.cpu_bf16):
            # the perturbed unlabelled patches ride in the same batch: one forward, shared batch statistics
            image = batch.image if unlabelled is None else torch.cat([batch.image, unlabelled.perturbed])
            heads = self.model.forward_heads(image) if self.parallel is None else self.parallel(image)
            teacher = None if unlabelled is None else self.teacher_probabilities(unlabelled)
        with phase("train/loss"):
            if unlabelled is not None:  # the labelled patches' heads for the supervised terms, the others for the consistency
                labelled = len(batch.image)
                student = heads[0][labelled:, : self.config.out_channels]
                heads = [head[:labelled] for head in heads]
            loss = supervised_loss(self.loss_fn, heads, batch.target, batch.weights, batch.mask)
            if self.malis is not None and step >= self.params.steps - self.params.malis_steps:
                loss = loss + MALIS_WEIGHT * self.malis(heads[0], batch.target, batch.mask)
            if teacher is not None:
                weight = self.params.consistency_weight * consistency_ramp(step, self.params.steps)
                loss = loss + weight * consistency_loss(student, teacher)
        with phase("train/backward"):
            self.scaler.scale(loss).backward()
        with phase("train/optimizer"):
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
        return loss

    @torch.no_grad()
    def teacher_probabilities(self, unlabelled: ConsistencyBatch) -> torch.Tensor:
        """The EMA network's probabilities of the clean unlabelled patches: the consistency loss's target.

        The teacher predicts as it validates: in eval mode, with its averaged batch-norm statistics.
        """
        teacher = self.ema.module
        teacher.eval()
        return torch.sigmoid(teacher.forward_heads(unlabelled.clean)[0][:, : self.config.out_channels].float())

    def validate(self) -> dict[str, float]:
        """The validation metrics of [`evaluated`][emseg.training.loop.Trainer.evaluated] (see [`validate`][emseg.training.validation.validate])."""
        predictor = Predictor(self.evaluated, self.config, tta=self.params.val_tta, device=self.device, amp=self.params.amp)
        return validate(predictor, self.loss_fn, self.data.val_images, self.data.val_labels)

    def training_figures(self, done: int) -> dict[str, float]:
        """The loss, learning rate and throughput of the steps since the last log line (and the GPU memory on CUDA).

        Under DDP the loss is the mean over the ranks and the throughput the whole job's; each
        rank's own throughput (and GPU memory) is logged beside them.
        """
        window, group = self._window, self.group
        elapsed = time.perf_counter() - window.start
        own = {"loss": window.loss / window.count, "patches_per_s": window.count * self.local_batch / max(elapsed, 1e-9)}
        if self.device.type == "cuda":
            own["max_allocated_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        ranks = group.gather(own)  # one collective per log line, whatever is logged
        figures = {
            "train/loss": float(np.mean([r["loss"] for r in ranks])),
            "train/lr": self.learning_rate(done - 1),
            "train/patches_per_s": window.count * self.params.batch_size / max(elapsed, 1e-9),
        }
        if not group.distributed:
            if "max_allocated_gib" in own:
                figures["gpu/max_allocated_gib"] = own["max_allocated_gib"]
            return figures
        for rank, figures_of_rank in enumerate(ranks):
            figures[f"train/rank{rank}/patches_per_s"] = figures_of_rank["patches_per_s"]
            if "max_allocated_gib" in figures_of_rank:
                figures[f"gpu/rank{rank}/max_allocated_gib"] = figures_of_rank["max_allocated_gib"]
        return figures

    def log(self, done: int, figures: dict[str, float], metrics: dict[str, float] | None = None) -> None:
        """Log step `done`'s training figures and validation `metrics`; keep the model when it improved."""
        self.logger.step = done
        for name, value in figures.items():
            self.logger.log_metric(name, value)
        if self.reporter is not None:
            self.reporter.update(done, figures["train/loss"], None if metrics is None else metrics["v_rand"])
        if metrics is not None:
            for name, value in metrics.items():
                self.logger.log_metric(f"val/{name}", value)
            if metrics["v_rand"] > self.progress.best["v_rand"]:
                self._keep(done, metrics)
        self.logger.next_step()
        self._window = _Window()

    def _keep(self, done: int, metrics: dict[str, float]) -> None:
        progress = self.progress
        progress.best, progress.best_step = metrics, done
        progress.best_state = {k: v.detach().cpu().clone() for k, v in self.evaluated.state_dict().items()}
        save_model(self.model_path, self.evaluated, self.best_config())

    def best_config(self) -> ModelConfig:
        """The model file's config for the best model so far."""
        config, progress = self.config, self.progress
        config.val_threshold = progress.best.get("threshold")
        # what build put there (the model a fine-tuning run started from) stays
        config.info = {**config.info, "step": progress.best_step, "val": progress.best, "steps": self.params.steps, "seed": self.seed}
        return config

    def checkpoint(self, done: int) -> None:
        """Write the resumable checkpoint (if the trainer has a path for one) as of step `done`.

        Under DDP every rank hands rank 0 its random streams, rank 0 writes, the others wait.
        """
        if self.checkpoint_path is None:
            return
        self.progress.step = done
        streams = self.group.gather(random_streams(self.sampler.generator))
        if self.group.is_main:
            write_checkpoint(self.checkpoint_path, checkpoint_state(self, streams))
        self.group.barrier()

    def resume(self, path: Path) -> None:
        """Continue from the checkpoint at `path`; the best model so far is written to `model_path` again."""
        restore_streams(self.sampler.generator, load_checkpoint(path, self, self.group.rank))
        if self.progress.best_state and self.group.is_main:
            best = self.config.build_network()
            best.load_state_dict(self.progress.best_state)
            save_model(self.model_path, best, self.best_config())
