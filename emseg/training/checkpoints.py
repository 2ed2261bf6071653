"""Resumable checkpoints: what a killed training run needs to continue bit for bit, and which run may.

A checkpoint holds the weights, the EMA, the optimiser and AMP scaler states, every rank's
random streams and the [`Progress`][emseg.training.checkpoints.Progress] (the step, the best
validation so far and its weights). It is written atomically and read with
`weights_only=True`: only tensors and plain values.
[`run_fingerprint`][emseg.training.checkpoints.run_fingerprint] names it, so that only a run
with the same params, seed, process count and data resumes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from emseg.config.params import ModelParams, TrainParams
from emseg.errors import EmsegError
from emseg.io.atomic import atomic_output
from emseg.training.sampler import TrainingData


@dataclass
class Progress:
    """What a resumed run needs besides weights and optimiser: where it was, and its best so far."""

    step: int = 0
    best: dict[str, float] = field(default_factory=lambda: {"v_rand": -1.0})
    best_step: int = -1
    #: weights of the best-validation model, kept because DVC removes models/model.pt before re-running train
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)


class Resumable(Protocol):
    """The parts of a training run that a checkpoint saves and restores (a [`Trainer`][emseg.training.loop.Trainer] has them)."""

    model: nn.Module
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    progress: Progress


def run_fingerprint(data: TrainingData, model_params: ModelParams, params: TrainParams, seed: int, world_size: int = 1) -> str:
    """A digest of everything that decides a training run; a checkpoint is resumed only by a run with the same one.

    Args:
        data: The training and validation slices (their pixels are hashed).
        model_params: The `model` block.
        params: The `train` block; `resume`, `checkpoint_every`, `threads` and `processes`
            do not change the run and are left out.
        seed: `base.seed`.
        world_size: The number of processes, all nodes' together.

    Returns:
        16 hex digits of a SHA-256.
    """
    digest = hashlib.sha256()
    train = params.model_dump(exclude={"resume", "checkpoint_every", "threads", "processes"})
    settings: dict[str, Any] = {"model": model_params.model_dump(), "train": train, "seed": seed}
    if world_size > 1:
        settings["world_size"] = world_size
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    # the unlabelled slices only where a run trains on them, so that other runs keep their fingerprints
    unlabelled = data.unlabelled_images if params.consistency_weight else []
    for array in (*data.train_images, *data.train_labels, *data.val_images, *data.val_labels, *unlabelled):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()[:16]


def checkpoint_file(folder: str | Path, fingerprint: str) -> Path:
    """The checkpoint of the run with `fingerprint` in `folder`."""
    return Path(folder) / f"train-{fingerprint}.pt"


def random_streams(generator: torch.Generator) -> dict[str, Any]:
    """This rank's random generators' states: its patch stream (`generator`), torch's and CUDA's."""
    return {
        "sampler_rng": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_streams(generator: torch.Generator, streams: dict[str, Any]) -> None:
    """Set this rank's random generators to `streams` (one entry of [`random_streams`][emseg.training.checkpoints.random_streams])."""
    generator.set_state(streams["sampler_rng"])
    torch.set_rng_state(streams["torch_rng"])
    if streams["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(streams["cuda_rng"])


def checkpoint_state(run: Resumable, streams: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything to continue bit for bit: weights, EMA, optimiser, AMP scaler, random streams, progress.

    Args:
        run: The training run's parts.
        streams: Every rank's [`random_streams`][emseg.training.checkpoints.random_streams], rank 0's
            first (a single process: its own).
    """
    progress = run.progress
    return {
        "model": run.model.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else {},
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
        **streams[0],
        "rank_streams": streams[1:],
        "step": progress.step,
        "best": progress.best,
        "best_step": progress.best_step,
        "best_state": progress.best_state,
    }


def write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save `state` (from [`checkpoint_state`][emseg.training.checkpoints.checkpoint_state]) at `path`, atomically."""
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, run: Resumable, rank: int = 0) -> dict[str, Any]:
    """Restore `run`'s weights, EMA, optimiser and scaler, and `run.progress`, from the checkpoint at `path`.

    Returns:
        Rank `rank`'s random streams, for [`restore_streams`][emseg.training.checkpoints.restore_streams].

    Raises:
        EmsegError: The file does not load into this run (one line naming it).
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        run.model.load_state_dict(payload["model"])
        run.optimizer.load_state_dict(payload["optimizer"])
        if run.ema is not None:
            run.ema.load_state_dict(payload["ema"])
    except Exception as exc:
        raise EmsegError(f"{path}: cannot resume from this checkpoint ({type(exc).__name__}); delete it to start afresh") from None
    run.scaler.load_state_dict(payload["scaler"])
    run.progress = Progress(int(payload["step"]), dict(payload["best"]), int(payload["best_step"]), dict(payload["best_state"]))
    return payload if rank == 0 else payload["rank_streams"][rank - 1]
