"""The training loop: random patches, a registered network, a loss, Adam(W), an LR schedule.

Validation runs every ``val_every`` steps on the full validation slices through the
shared sliding-window path and the ISBI metrics; the checkpoint with the best
validation V_rand is kept. dvclive logs loss, validation metrics, learning rate and
throughput (and on CUDA the GPU memory and utilisation, through dvclive's own system
monitor).
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
from typing import Any

import numpy as np
import torch
from dvclive import Live
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch import nn

from emseg.allocator import keep_freed_memory
from emseg.dataset import PatchSampler, membrane_target
from emseg.errors import EmsegError
from emseg.io import atomic_output
from emseg.device import amp_dtype, autocast, select_device, uses_amp
from emseg.evaluation.metrics import membrane_to_cell, score
from emseg.inference.sliding_window import predict_membrane
from emseg.model_file import ModelConfig, save_model
from emseg.networks import build_network, count_parameters, resolve_kwargs
from emseg.normalization import DEFAULT_NORMALIZATION
from emseg.params import ModelParams, TrainParams
from emseg.training.border_weights import border_weight_map
from emseg.training.losses import build_loss, supervised_loss

_LOGIT_EPS = 1e-6


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


def validate(
    model: nn.Module,
    loss_fn: nn.Module,
    images: list[np.ndarray],
    labels: list[np.ndarray],
    patch_size: int,
    device: torch.device,
    amp: bool,
    tta: bool = False,
) -> dict[str, float]:
    """Full-slice validation: loss, and the ISBI metrics of the membrane map (with ``tta``,
    averaged over the 8 flips/rotations, the way evaluate predicts)."""
    model.eval()
    probabilities = [
        predict_membrane(model, image, patch_size, DEFAULT_NORMALIZATION, tta=tta, device=device, amp=amp) for image in images
    ]
    model.train()
    losses = []
    for proba, label in zip(probabilities, labels):
        p = torch.from_numpy(proba).clamp(_LOGIT_EPS, 1 - _LOGIT_EPS)
        logits = torch.log(p) - torch.log1p(-p)
        target = torch.from_numpy(membrane_target(label))
        losses.append(float(loss_fn(logits[None, None], target[None, None])))
    result = score(np.stack(labels), membrane_to_cell(np.stack(probabilities)))
    return {
        "loss": float(np.mean(losses)),
        "v_rand": result.v_rand,
        "v_info": result.v_info,
        "pixel_error": result.pixel_error,
        "dice": result.dice,
        # the V_rand threshold on the validation slices: `emseg predict` applies it by default
        "threshold": result.threshold,
    }


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def run_fingerprint(data: TrainingData, model_params: ModelParams, params: TrainParams, seed: int) -> str:
    """A digest of everything that decides a training run: params, seed and the data itself.

    A checkpoint is resumed only by a run with the same fingerprint.
    """
    digest = hashlib.sha256()
    settings = {"model": model_params.model_dump(), "train": params.model_dump(exclude={"resume", "checkpoint_every", "threads"}), "seed": seed}
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


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    sampler: PatchSampler,
    progress: Progress,
    ema: nn.Module | None = None,
) -> None:
    """Everything to continue bit-for-bit: weights, optimiser, AMP scaler, RNG states, progress.

    Only tensors and plain values, so it loads with ``weights_only=True``.
    """
    payload = {
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else {},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "sampler_rng": sampler.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "step": progress.step,
        "best": progress.best,
        "best_step": progress.best_step,
        "best_state": progress.best_state,
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    sampler: PatchSampler,
    ema: nn.Module | None = None,
) -> Progress:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        if ema is not None:
            ema.load_state_dict(payload["ema"])
    except Exception as exc:
        raise EmsegError(f"{path}: cannot resume from this checkpoint ({type(exc).__name__}); delete it to start afresh") from None
    scaler.load_state_dict(payload["scaler"])
    sampler.generator.set_state(payload["sampler_rng"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    return Progress(int(payload["step"]), dict(payload["best"]), int(payload["best_step"]), dict(payload["best_state"]))


def truncate_live_logs(live_dir: Path, step: int) -> None:
    """Drop dvclive rows logged after ``step``: a resumed run logs those steps again."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        kept = lines[:1] + [line for line in lines[1:] if int(line.split("\t", 1)[0]) <= step]
        with atomic_output(tsv) as tmp:
            tmp.write_text("\n".join(kept) + "\n")


def _with_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    model.load_state_dict(state)
    return model


def _best_config(config: ModelConfig, progress: Progress, params: TrainParams, seed: int) -> ModelConfig:
    config.info = {"step": progress.best_step, "val": progress.best, "steps": params.steps, "seed": seed}
    return config


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

    With ``checkpoint_dir``, a resumable checkpoint is written atomically every
    ``params.checkpoint_every`` steps and removed when training completes; a run with the
    same params, seed and data finds it and continues from it (when ``params.resume``).
    """
    device = select_device(params.device)
    if params.threads:
        torch.set_num_threads(params.threads)
    keep_freed_memory()
    seed_everything(seed)
    arch = model_params.arch
    # the full argument set, defaults included, goes into the model file
    kwargs = resolve_kwargs(arch, model_params.kwargs_for(arch))
    model = build_network(arch, kwargs).to(device)
    weights = None
    if params.border_weight > 0:
        weights = [border_weight_map(label, params.border_weight, params.border_sigma) for label in data.train_labels]
    sampler = PatchSampler.from_arrays(
        data.train_images, data.train_labels, params.patch_size, params.random_dihedral, seed, weights
    )
    loss_fn = build_loss(params.loss)
    optimizer = build_optimizer(model, params)
    use_amp = uses_amp(device, params.amp, params.cpu_bf16)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype(device) == torch.float16)
    config = ModelConfig(arch, kwargs, dict(DEFAULT_NORMALIZATION), params.patch_size)

    # dvclive writes its logs as training goes; they live in a staging folder beside
    # ``live_dir`` (watch it there) and replace ``live_dir`` only when training completes
    final_live_dir = Path(live_dir)
    live_dir = final_live_dir.with_name(f".{final_live_dir.name}.partial")
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = Path(checkpoint_dir) / f"train-{run_fingerprint(data, model_params, params, seed)}.pt"
    # an exponential moving average of the weights: validated, kept and saved in place of
    # the raw weights, it smooths the last steps' noise out of the membrane map
    ema = None
    if params.ema_decay > 0:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(params.ema_decay), use_buffers=True)
    evaluated = ema.module if ema is not None else model
    progress = Progress()
    resuming = bool(checkpoint and params.resume and checkpoint.is_file())
    if not resuming:
        shutil.rmtree(live_dir, ignore_errors=True)
    if resuming:
        progress = load_checkpoint(checkpoint, model, optimizer, scaler, sampler, ema)
        if progress.best_state:
            save_model(model_path, _with_weights(build_network(arch, kwargs), progress.best_state), _best_config(config, progress, params, seed))
        truncate_live_logs(live_dir, progress.step)
        print(f"resuming training from step {progress.step} ({checkpoint})")
    model.train()
    with Live(dir=str(live_dir), resume=resuming, dvcyaml=None, save_dvc_exp=False, monitor_system=device.type == "cuda") as live:
        live.log_params({"arch": arch, "parameters": count_parameters(model), "device": str(device), "amp": use_amp})
        window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
        for step in range(progress.step, params.steps):
            lr = params.lr * lr_factor(step, params.steps, params.schedule, params.warmup_steps)
            _set_lr(optimizer, lr)
            x, y, pixel_weights = sampler.sample(params.batch_size)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if pixel_weights is not None:
                pixel_weights = pixel_weights.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, params.amp, params.cpu_bf16):
                heads = model.forward_heads(x)
            loss = supervised_loss(loss_fn, heads, y, pixel_weights)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update_parameters(model)
            window_loss += float(loss.detach())
            window_count += 1

            done = step + 1
            is_val = done % params.val_every == 0 or done == params.steps
            if done % params.log_every == 0 or is_val:
                elapsed = time.perf_counter() - window_start
                live.step = done
                live.log_metric("train/loss", window_loss / window_count)
                live.log_metric("train/lr", lr)
                live.log_metric("train/patches_per_s", window_count * params.batch_size / max(elapsed, 1e-9))
                if device.type == "cuda":
                    live.log_metric("gpu/max_allocated_gib", torch.cuda.max_memory_allocated(device) / 2**30)
                if is_val:
                    metrics = validate(
                        evaluated, loss_fn, data.val_images, data.val_labels, params.patch_size, device, params.amp, params.val_tta
                    )
                    for name, value in metrics.items():
                        live.log_metric(f"val/{name}", value)
                    if metrics["v_rand"] > progress.best["v_rand"]:
                        progress.best, progress.best_step = metrics, done
                        progress.best_state = {k: v.detach().cpu().clone() for k, v in evaluated.state_dict().items()}
                        save_model(model_path, evaluated, _best_config(config, progress, params, seed))
                live.next_step()
                window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
            if checkpoint and (done % params.checkpoint_every == 0) and done < params.steps:
                progress.step = done
                save_checkpoint(checkpoint, model, optimizer, scaler, sampler, progress, ema)
        live.summary["best_step"] = progress.best_step
        for name, value in progress.best.items():
            live.summary[f"best_val/{name}"] = value
    shutil.rmtree(final_live_dir, ignore_errors=True)
    os.replace(live_dir, final_live_dir)
    if checkpoint:
        checkpoint.unlink(missing_ok=True)
    return {"best_step": progress.best_step, "best_val": progress.best, "parameters": count_parameters(model), "device": str(device)}
