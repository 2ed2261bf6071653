"""The training loop as composed parts: a :class:`Trainer` handed its model, loss, optimiser,
patch sampler, EMA and logger, whose :meth:`Trainer.run` is a few lines calling
:meth:`~Trainer.train_step`, :meth:`~Trainer.validate`, :meth:`~Trainer.log` and
:meth:`~Trainer.checkpoint`.

Validation runs every ``val_every`` steps on the full validation slices through the
shared inference path and the ISBI metrics; the model with the best validation V_rand
is kept. The logger is dvclive's ``Live`` in the train stage (loss, validation metrics,
learning rate, throughput, and on CUDA the GPU memory and utilisation through dvclive's
own system monitor); anything with ``log_metric``, ``step``, ``next_step`` and
``summary`` will do.

Under torchrun (``train.processes`` > 1, :mod:`emseg.training.distributed`) every rank
trains its share of the global batch through ``DistributedDataParallel``; rank 0 alone
validates, logs, keeps the best model and writes the checkpoint, which holds every rank's
patch stream so that a resumed run continues each of them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from dvclive import Live
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from emseg.affinities import Offset, affinity_targets
from emseg.allocator import keep_freed_memory
from emseg.dataset import PatchSampler, membrane_target
from emseg.device import amp_dtype, autocast, select_device, uses_amp
from emseg.errors import EmsegError
from emseg.evaluation.metrics import score
from emseg.inference.predictor import Predictor
from emseg.io import atomic_output, staged_directory
from emseg.model_file import ModelConfig, save_model
from emseg.networks import build_network, count_parameters, resolve_kwargs
from emseg.normalization import DEFAULT_NORMALIZATION
from emseg.params import ModelParams, TrainParams
from emseg.postprocessing import membrane_to_cell
from emseg.training.border_weights import border_weight_map
from emseg.training.distributed import SINGLE_PROCESS, ProcessGroup, data_parallel, join, leave, rank_device, rank_seed
from emseg.training.progress import TrainingProgress
from emseg.losses import build_loss, supervised_loss


class Logger(Protocol):
    """What the trainer logs through (dvclive's ``Live`` is one)."""

    step: int
    summary: dict[str, Any]

    def log_metric(self, name: str, val: float) -> None: ...

    def next_step(self) -> None: ...


class SilentLogger:
    """The logger of the ranks other than 0: rank 0 logs for the whole job."""

    def __init__(self) -> None:
        self.step = 0
        self.summary: dict[str, Any] = {}

    def log_metric(self, name: str, val: float) -> None:
        pass

    def next_step(self) -> None:
        pass


@dataclass
class TrainingData:
    train_images: list[np.ndarray]
    train_labels: list[np.ndarray]
    val_images: list[np.ndarray]
    val_labels: list[np.ndarray]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, total: int, schedule: str, warmup: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if schedule == "poly":
        return (1.0 - min(1.0, progress)) ** 0.9
    return 1.0


def build_optimizer(model: nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    optimizer_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[params.optimizer]
    return optimizer_class(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)


def validation_loss(loss_fn: nn.Module, logits: torch.Tensor, label: np.ndarray, offsets: tuple[Offset, ...] | None) -> float:
    """The loss of one whole slice's blended logits against its label's target (an affinity model's, masked)."""
    if offsets is None:
        return float(loss_fn(logits, torch.from_numpy(membrane_target(label))[None, None]))
    target, mask = affinity_targets(label, offsets)
    return float(loss_fn(logits, torch.from_numpy(target)[None], torch.from_numpy(mask)[None]))


def validate(predictor: Predictor, loss_fn: nn.Module, images: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    """Full-slice validation: the loss of the blended logits, and the ISBI metrics of the membrane map
    (with the predictor's ``tta``, averaged over the 8 flips/rotations, the way evaluate predicts)."""
    predictor.model.eval()
    passes = [predictor.predict_with_logits(image) for image in images]
    predictor.model.train()
    losses = [validation_loss(loss_fn, logits, label, predictor.offsets) for (_, logits), label in zip(passes, labels)]
    result = score(np.stack(labels), membrane_to_cell(np.stack([prediction.membrane for prediction, _ in passes])))
    return {
        "loss": float(np.mean(losses)),
        "v_rand": result.v_rand,
        "v_info": result.v_info,
        "pixel_error": result.pixel_error,
        "dice": result.dice,
        # the V_rand threshold on the validation slices: `emseg predict` applies it by default
        "threshold": result.v_rand_threshold,
    }


def run_fingerprint(data: TrainingData, model_params: ModelParams, params: TrainParams, seed: int, world_size: int = 1) -> str:
    """A digest of everything that decides a training run: params, seed, the number of processes
    (all nodes' together) and the data itself.

    A checkpoint is resumed only by a run with the same fingerprint.
    """
    digest = hashlib.sha256()
    train = params.model_dump(exclude={"resume", "checkpoint_every", "threads", "processes"})
    settings: dict[str, Any] = {"model": model_params.model_dump(), "train": train, "seed": seed}
    if world_size > 1:
        settings["world_size"] = world_size
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for array in (*data.train_images, *data.train_labels, *data.val_images, *data.val_labels):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()[:16]


@dataclass
class Progress:
    """What a resumed run needs besides weights and optimiser: where it was and its best so far."""

    step: int = 0
    best: dict[str, float] = field(default_factory=lambda: {"v_rand": -1.0})
    best_step: int = -1
    #: weights of the best-validation model, kept because DVC removes models/model.pt before re-running train
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)


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
    """One training run of ``model`` on ``sampler``'s patches, validated on ``data``'s validation slices.

    ``ema`` (an ``AveragedModel``), when given, is what gets validated, kept and saved;
    ``config`` describes the model for the saved file at ``model_path``; ``checkpoint``
    is the resumable checkpoint's path (None: no checkpoints). Under DDP, ``group`` is this
    rank's place in the job and ``parallel`` the model's ``DistributedDataParallel`` wrapper,
    through which the training steps run.
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

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated, kept and saved: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def run(self) -> Progress:
        """Train from ``progress.step`` to ``params.steps``; the best validation so far in the returned progress."""
        if self.logger is None:
            raise ValueError("Trainer.run needs a logger (dvclive's Live, or anything of the Logger protocol)")
        self.model.train()
        self._window = _Window()
        for step in range(self.progress.step, self.params.steps):
            self._window.add(self.train_step(step))
            done = step + 1
            validating = self._is_validation_step(done)
            if done % self.params.log_every == 0 or validating:
                figures = self.training_figures(done)  # before validating: its time is not training time
                self.log(done, figures, self.validate() if validating and self.group.is_main else None)
                if validating:
                    self.group.barrier()  # the other ranks wait for rank 0's validation
            if done % self.params.checkpoint_every == 0 and done < self.params.steps:
                self.checkpoint(done)
        self.logger.summary["best_step"] = self.progress.best_step
        for name, value in self.progress.best.items():
            self.logger.summary[f"best_val/{name}"] = value
        return self.progress

    def _is_validation_step(self, done: int) -> bool:
        return done % self.params.val_every == 0 or done == self.params.steps

    def learning_rate(self, step: int) -> float:
        params = self.params
        return params.lr * lr_factor(step, params.steps, params.schedule, params.warmup_steps)

    def train_step(self, step: int) -> torch.Tensor:
        """One optimiser step on a freshly sampled batch; returns the loss (a tensor, not yet synchronised)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        batch = self.sampler.sample(self.local_batch).to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.params.amp, self.params.cpu_bf16):
            heads = self.model.forward_heads(batch.image) if self.parallel is None else self.parallel(batch.image)
        loss = supervised_loss(self.loss_fn, heads, batch.target, batch.weights, batch.mask)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss

    def validate(self) -> dict[str, float]:
        """The validation metrics of :attr:`evaluated` (see :func:`validate`)."""
        predictor = Predictor(self.evaluated, self.config, tta=self.params.val_tta, device=self.device, amp=self.params.amp)
        return validate(predictor, self.loss_fn, self.data.val_images, self.data.val_labels)

    def training_figures(self, done: int) -> dict[str, float]:
        """Loss, learning rate and throughput of the steps since the last log line (and GPU memory on CUDA).

        Under DDP: the loss is the mean over the ranks, the throughput the whole job's, and
        each rank's own throughput (and GPU memory) is logged beside them.
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
        """Log step ``done``'s training figures and validation ``metrics``; keep the model when it improved."""
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
        config.info = {"step": progress.best_step, "val": progress.best, "steps": self.params.steps, "seed": self.seed}
        return config

    def checkpoint(self, done: int) -> None:
        """Write the resumable checkpoint (if the trainer has a path for one) as of step ``done``.

        Under DDP every rank hands rank 0 its random streams, rank 0 writes, the others wait.
        """
        if self.checkpoint_path is None:
            return
        self.progress.step = done
        streams = self.group.gather(self.random_streams())
        if self.group.is_main:
            with atomic_output(self.checkpoint_path) as tmp:
                torch.save(self.state_dict(streams), tmp)
        self.group.barrier()

    def random_streams(self) -> dict[str, Any]:
        """This rank's random generators: its patch stream, torch's, CUDA's."""
        return {
            "sampler_rng": self.sampler.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def state_dict(self, streams: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Everything to continue bit-for-bit: weights, optimiser, AMP scaler, RNG states, progress.

        ``streams``: every rank's :meth:`random_streams` (a DDP run's); a single process's are
        its own. Only tensors and plain values, so it loads with ``weights_only=True``.
        """
        progress = self.progress
        streams = streams or [self.random_streams()]
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            **streams[0],
            "rank_streams": streams[1:],
            "step": progress.step,
            "best": progress.best,
            "best_step": progress.best_step,
            "best_state": progress.best_state,
        }

    def resume(self, path: Path) -> None:
        """Continue from the checkpoint at ``path``; the best model so far is written to ``model_path`` again."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            if self.ema is not None:
                self.ema.load_state_dict(payload["ema"])
        except Exception as exc:
            raise EmsegError(f"{path}: cannot resume from this checkpoint ({type(exc).__name__}); delete it to start afresh") from None
        self.scaler.load_state_dict(payload["scaler"])
        rank = self.group.rank
        streams = payload if rank == 0 else payload["rank_streams"][rank - 1]
        self.sampler.generator.set_state(streams["sampler_rng"])
        torch.set_rng_state(streams["torch_rng"])
        if streams["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(streams["cuda_rng"])
        self.progress = Progress(int(payload["step"]), dict(payload["best"]), int(payload["best_step"]), dict(payload["best_state"]))
        if self.progress.best_state and self.group.is_main:
            best = build_network(self.config.arch, self.config.kwargs, self.config.out_channels)
            best.load_state_dict(self.progress.best_state)
            save_model(self.model_path, best, self.best_config())


def truncate_live_logs(live_dir: Path, step: int) -> None:
    """Drop dvclive rows logged after ``step``: a resumed run logs those steps again."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        kept = lines[:1] + [line for line in lines[1:] if int(line.split("\t", 1)[0]) <= step]
        with atomic_output(tsv) as tmp:
            tmp.write_text("\n".join(kept) + "\n")


def model_config(model_params: ModelParams, kwargs: dict[str, Any], patch_size: int) -> ModelConfig:
    """What the model file says of the network: architecture, arguments, normalisation, patch, target and offsets."""
    if model_params.target == "affinities":
        offsets = [list(o) for o in model_params.offsets]
        return ModelConfig(model_params.arch, kwargs, dict(DEFAULT_NORMALIZATION), patch_size, out_channels=len(offsets), target="affinities", offsets=offsets)
    return ModelConfig(model_params.arch, kwargs, dict(DEFAULT_NORMALIZATION), patch_size)


def build_trainer(
    data: TrainingData,
    model_params: ModelParams,
    params: TrainParams,
    seed: int,
    model_path: Path,
    checkpoint: Path | None = None,
    group: ProcessGroup = SINGLE_PROCESS,
) -> Trainer:
    """The parts of a training run made from params, seeded, in the order that fixes its random streams.

    Every rank of a DDP job builds the same network from the same seed; each samples its
    patches from a stream of its own (rank 0's is the single-process stream), and only
    rank 0 keeps the EMA it validates and saves.
    """
    device = rank_device(select_device(params.device), group)
    seed_everything(seed)
    arch = model_params.arch
    # the full argument set, defaults included, goes into the model file
    kwargs = resolve_kwargs(arch, model_params.overrides())
    config = model_config(model_params, kwargs, params.patch_size)
    offsets = config.offset_tuples()
    model = build_network(arch, kwargs, config.out_channels).to(device)
    weights = None
    if params.border_weight > 0:
        weights = [border_weight_map(label, params.border_weight, params.border_sigma) for label in data.train_labels]
    sampler = PatchSampler.from_arrays(
        data.train_images, data.train_labels, params.patch_size, params.random_dihedral, rank_seed(seed, group.rank), weights, offsets
    )
    loss_fn = build_loss(params.loss, config.target)
    optimizer = build_optimizer(model, params)
    # an exponential moving average of the weights: validated, kept and saved in place of
    # the raw weights, it smooths the last steps' noise out of the membrane map
    ema = None
    if params.ema_decay > 0 and group.is_main:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(params.ema_decay), use_buffers=True)
    parallel = data_parallel(model, group, device) if group.distributed else None
    return Trainer(
        model, loss_fn, optimizer, sampler, data, params, config,
        device=device, model_path=Path(model_path), ema=ema, checkpoint=checkpoint, seed=seed, group=group, parallel=parallel,
    )


def train(
    data: TrainingData,
    model_params: ModelParams,
    params: TrainParams,
    seed: int,
    model_path: str | os.PathLike[str],
    live_dir: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train, keep the best-validation model at ``model_path``; return a summary.

    dvclive writes its logs as training goes into a staging folder beside ``live_dir``
    (watch it there), which replaces ``live_dir`` when training completes. With
    ``checkpoint_dir``, a resumable checkpoint is written atomically every
    ``params.checkpoint_every`` steps and removed when training completes; a run with the
    same params, seed and data finds it and continues from it (when ``params.resume``).
    In a torchrun worker the run is one rank of a DDP job (:func:`emseg.training.distributed.join`).
    """
    group = join(params)
    try:
        return _train(data, model_params, params, seed, Path(model_path), Path(live_dir), checkpoint_dir, group)
    finally:
        leave(group)


def _train(
    data: TrainingData,
    model_params: ModelParams,
    params: TrainParams,
    seed: int,
    model_path: Path,
    live_dir: Path,
    checkpoint_dir: str | os.PathLike[str] | None,
    group: ProcessGroup,
) -> dict[str, Any]:
    if params.threads:
        torch.set_num_threads(params.threads)
    keep_freed_memory()
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = Path(checkpoint_dir) / f"train-{run_fingerprint(data, model_params, params, seed, group.world_size)}.pt"
    resuming = bool(checkpoint and params.resume and checkpoint.is_file())
    trainer = build_trainer(data, model_params, params, seed, model_path, checkpoint, group)
    if not group.is_main:
        if resuming:
            trainer.resume(checkpoint)
        trainer.logger = SilentLogger()
        progress = trainer.run()
    else:
        with staged_directory(live_dir, fresh=not resuming, keep_partial=True) as staging:
            if resuming:
                trainer.resume(checkpoint)
                truncate_live_logs(staging, trainer.progress.step)
                print(f"resuming training from step {trainer.progress.step} ({checkpoint})")
            with Live(dir=str(staging), resume=resuming, dvcyaml=None, save_dvc_exp=False, monitor_system=trainer.device.type == "cuda") as live:
                trainer.logger = live
                run_params = {"arch": model_params.arch, "parameters": count_parameters(trainer.model), "device": str(trainer.device), "amp": trainer.use_amp}
                if group.distributed:
                    run_params["processes"] = group.world_size
                live.log_params(run_params)
                trainer.reporter = TrainingProgress(params.steps, trainer.progress.step)
                try:
                    progress = trainer.run()
                finally:
                    trainer.reporter.close()
    group.barrier()  # no rank removes the checkpoint or leaves before all are done
    if checkpoint and group.is_main:
        checkpoint.unlink(missing_ok=True)
    return {
        "best_step": progress.best_step,
        "best_val": progress.best,
        "parameters": count_parameters(trainer.model),
        "device": str(trainer.device),
        "rank": group.rank,
        "processes": group.world_size,
    }
