"""A whole training run: the trainer built from params, dvclive's staged logs, resumable checkpoints, DDP ranks."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emseg.config.params import ModelParams, TrainParams
from emseg.io.atomic import staged_directory
from emseg.networks.architectures import count_parameters
from emseg.runtime.allocator import keep_freed_memory
from emseg.training.build import build_trainer
from emseg.training.checkpoints import checkpoint_file, run_fingerprint
from emseg.training.distributed import ProcessGroup, join, leave
from emseg.training.logs import SilentLogger, open_live, truncate_live_logs
from emseg.training.progress import TrainingProgress, TrainingStatus
from emseg.training.sampler import TrainingData


def train(
    data: TrainingData,
    model_params: ModelParams,
    params: TrainParams,
    seed: int,
    model_path: str | os.PathLike[str],
    live_dir: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str] | None = None,
    init: str | os.PathLike[str] | None = None,
    pixel_size: Sequence[float] | None = None,
    listener: Callable[[TrainingStatus], object] | None = None,
) -> dict[str, Any]:
    """Train, keeping the best-validation model at `model_path`; return a summary.

    dvclive writes its logs as training goes into a staging folder beside `live_dir`
    (watch it there), which replaces `live_dir` when training completes. With
    `checkpoint_dir`, a resumable checkpoint is written atomically every
    `params.checkpoint_every` steps and removed when training completes; a run with the
    same params, seed and data finds it and continues from it (when `params.resume`).
    In a torchrun worker the run is one rank of a DDP job ([`join`][emseg.training.distributed.join]).

    Args:
        data: The training and validation slices.
        model_params: The `model` block.
        params: The `train` block.
        seed: `base.seed`.
        model_path: Where the best model file is written.
        live_dir: dvclive's folder (`dvclive/`).
        checkpoint_dir: The folder of resumable checkpoints; None: no checkpoints.
        init: The model file to start from (`train.init_from` resolved to a path); None:
            random weights. Fine-tuning runs on `params.finetune`'s schedule.
        pixel_size: The data's `[z, y, x]` voxel size in nm, recorded in the model file.
        listener: Called with a [`TrainingStatus`][emseg.training.progress.TrainingStatus] at
            every progress update (the napari plugin's bar); it may raise to stop the run.

    Returns:
        The best step and its validation scores, the parameter count, the device, this
        process's rank and the number of processes.
    """
    params = params.schedule_of_run()
    group = join(params)
    start = _Start(None if init is None else Path(init), pixel_size, listener)
    try:
        return _train(data, model_params, params, seed, Path(model_path), Path(live_dir), checkpoint_dir, group, start)
    finally:
        leave(group)


@dataclass(frozen=True)
class _Start:
    """Where a run's weights start (a model file, or None: random) and the data's voxel size it records."""

    init: Path | None
    pixel_size: Sequence[float] | None
    #: called at every progress update (emseg.training.progress.TrainingProgress)
    listener: Callable[[TrainingStatus], object] | None = None


def _train(
    data: TrainingData,
    model_params: ModelParams,
    params: TrainParams,
    seed: int,
    model_path: Path,
    live_dir: Path,
    checkpoint_dir: str | os.PathLike[str] | None,
    group: ProcessGroup,
    start: _Start,
) -> dict[str, Any]:
    if params.threads:
        torch.set_num_threads(params.threads)
    keep_freed_memory()
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = checkpoint_file(checkpoint_dir, run_fingerprint(data, model_params, params, seed, group.world_size))
    resuming = bool(checkpoint and params.resume and checkpoint.is_file())
    trainer = build_trainer(data, model_params, params, seed, model_path, checkpoint, group, start.init, start.pixel_size)
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
            with open_live(staging, resuming, monitor_system=trainer.device.type == "cuda") as live:
                trainer.logger = live
                run_params = {"arch": model_params.arch, "parameters": count_parameters(trainer.model), "device": str(trainer.device), "amp": trainer.use_amp}
                if group.distributed:
                    run_params["processes"] = group.world_size
                live.log_params(run_params)
                trainer.reporter = TrainingProgress(params.last_step, trainer.progress.step, listener=start.listener)
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
