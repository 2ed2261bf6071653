"""The parts of a training run, made from params and seeded in the order that fixes its random streams.

[`build_trainer`][emseg.training.build.build_trainer] makes the network, the patch sampler,
the loss, the optimiser and the EMA of one run (one rank of a DDP job), and hands them to a
[`Trainer`][emseg.training.loop.Trainer].
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from emseg.config.params import ModelParams, TrainParams
from emseg.errors import EmsegError
from emseg.io.sections import section_count
from emseg.networks.architectures import resolve_kwargs
from emseg.networks.lsd import LSD_CHANNELS
from emseg.networks.model_file import ModelConfig, load_model
from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION
from emseg.runtime.device import select_device
from emseg.training.border_weights import border_weight_map
from emseg.training.distributed import SINGLE_PROCESS, ProcessGroup, data_parallel, rank_device, rank_seed
from emseg.training.loop import Trainer
from emseg.training.losses import build_loss
from emseg.training.sampler import PatchSampler, TrainingData


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global random generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    """The optimiser `params.optimizer` names (Adam or AdamW), with the base learning rate and weight decay."""
    optimizer_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[params.optimizer]
    return optimizer_class(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)


def model_config(model_params: ModelParams, kwargs: dict[str, Any], patch_size: int, pixel_size: Sequence[float] | None = None) -> ModelConfig:
    """What the model file says of the network: architecture, arguments, normalisation, patch size, target, offsets, context and pixel size."""
    size = None if pixel_size is None else [float(v) for v in pixel_size]
    context = {"context": model_params.context, "in_channels": section_count(model_params.context),
               "aux_channels": LSD_CHANNELS if model_params.lsd_sigma else 0, "auto_context": model_params.auto_context}
    # the head's sigma is how it was trained, not how it predicts (it does not): recorded so that a fine-tune trains it alike
    info = {LSD_SIGMA_KEY: model_params.lsd_sigma} if model_params.lsd_sigma else {}
    if model_params.target == "affinities":
        offsets = [list(o) for o in model_params.offsets]
        return ModelConfig(
            model_params.arch, kwargs, dict(DEFAULT_NORMALIZATION), patch_size, out_channels=len(offsets), target="affinities", offsets=offsets,
            pixel_size=size, info=info, **context,
        )
    return ModelConfig(model_params.arch, kwargs, dict(DEFAULT_NORMALIZATION), patch_size, pixel_size=size, info=info, **context)


#: the key of a model file's `info` that records the sigma its descriptor head was trained with
LSD_SIGMA_KEY = "lsd_sigma"


def network_params(config: ModelConfig, path: Path) -> ModelParams:
    """The `model` block that builds the network of a model file's `config` (read from `path`): a fine-tune trains that network.

    Raises:
        EmsegError: The file has a descriptor head but does not record its sigma (one line naming `path`).
    """
    sigma = 0.0
    if config.aux_channels:
        if LSD_SIGMA_KEY not in config.info:
            raise EmsegError(f"{path}: cannot start from this model: it has an auxiliary head of {config.aux_channels} channels "
                             f"but does not record the {LSD_SIGMA_KEY} it was trained with")
        sigma = float(config.info[LSD_SIGMA_KEY])
    block: dict[str, Any] = {"arch": config.arch, config.arch: dict(config.kwargs), "target": config.target,
                             "context": config.context, LSD_SIGMA_KEY: sigma, "auto_context": config.auto_context}
    if config.target == "affinities" and config.offsets:
        block["offsets"] = [list(o) for o in config.offsets]
    return ModelParams.model_validate(block)


#: what must agree between a model file and the run that starts from its weights
_INIT_FIELDS = ("arch", "kwargs", "target", "offsets", "out_channels", "context", "aux_channels", "auto_context", "auto_context_kwargs",
                "normalization")


def network_differences(model_params: ModelParams, config: ModelConfig) -> list[str]:
    """The fields of the network that `model_params` builds which differ from the model file's `config` (none: its weights fit)."""
    ours = model_config(model_params, resolve_kwargs(model_params.arch, model_params.overrides()), config.patch_size)
    return [name for name in _INIT_FIELDS if getattr(ours, name) != getattr(config, name)]


def load_initial_weights(model: nn.Module, config: ModelConfig, path: Path) -> ModelConfig:
    """Copy the weights of the model file at `path` into `model`, the network `config` describes (fine-tuning).

    Returns:
        The model file's config (its cell step and pixel size are the run's starting point).

    Raises:
        EmsegError: The file is no loadable model, or its network differs from the run's: one
            line naming the file and the first field that differs (architecture, arguments,
            target, offsets, channels, context, normalisation).
    """
    network, init = load_model(path)
    for name in _INIT_FIELDS:
        theirs, ours = getattr(init, name), getattr(config, name)
        if theirs != ours:
            raise EmsegError(f"{path}: cannot start from this model: its {name} is {theirs!r}, the run's is {ours!r} (params model block)")
    model.load_state_dict(network.state_dict())
    return init


def build_trainer(
    data: TrainingData,
    model_params: ModelParams,
    params: TrainParams,
    seed: int,
    model_path: Path,
    checkpoint: Path | None = None,
    group: ProcessGroup = SINGLE_PROCESS,
    init: Path | None = None,
    pixel_size: Sequence[float] | None = None,
) -> Trainer:
    """The parts of a training run made from params, seeded, in the order that fixes its random streams.

    Every rank of a DDP job builds the same network from the same seed; each samples its
    patches from a stream of its own (rank 0's is the single-process stream), and only
    rank 0 keeps the EMA it validates and saves (every rank keeps one when it is the consistency loss's teacher).

    Args:
        data: The training and validation slices.
        model_params: The `model` block: network, target, offsets.
        params: The `train` block.
        seed: `base.seed`.
        model_path: Where the best model file is written.
        checkpoint: The resumable checkpoint's path; None: no checkpoints.
        group: This process's place in a DDP job.
        init: A model file whose weights the network starts from (`train.init_from`); None:
            random weights.
        pixel_size: The `[z, y, x]` voxel size of the data in nm (`data.pixel_size`), recorded in
            the model file.

    Returns:
        A [`Trainer`][emseg.training.loop.Trainer] ready to run (or to resume first).
    """
    if params.consistency_weight and not data.unlabelled_images:
        raise EmsegError("params train.consistency_weight: there are no unlabelled slices to train the consistency on (data.test_images)")
    device = rank_device(select_device(params.device), group)
    seed_everything(seed)
    arch = model_params.arch
    # the full argument set, defaults included, goes into the model file
    kwargs = resolve_kwargs(arch, model_params.overrides())
    config = model_config(model_params, kwargs, params.patch_size, pixel_size)
    offsets = config.offset_tuples()
    model = config.build_network()
    if init is not None:  # after the seeded build, so that the random streams that follow are those of a fresh run
        config.info["init_from"] = str(init)
        config.cells = load_initial_weights(model, config, init).cells
    model = model.to(device)
    weights = None
    if params.border_weight > 0:
        weights = [border_weight_map(label, params.border_weight, params.border_sigma) for label in data.train_labels]
    sampler = PatchSampler.from_arrays(
        data.train_images, data.train_labels, params.patch_size, params.random_dihedral, rank_seed(seed, group.rank), weights, offsets,
        lsd_sigma=model_params.lsd_sigma, unlabelled=data.unlabelled_images if params.consistency_weight else None,
    )
    loss_fn = build_loss(params.loss, config.target, config.aux_channels)
    optimizer = build_optimizer(model, params)
    # an exponential moving average of the weights: validated, kept and saved in place of
    # the raw weights, it smooths the last steps' noise out of the membrane map
    ema = None
    # the consistency loss's teacher is the EMA, on every rank (DDP keeps the ranks' weights, so their EMAs, equal)
    if params.ema_decay > 0 and (group.is_main or params.consistency_weight):
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(params.ema_decay), use_buffers=True)
    parallel = data_parallel(model, group, device) if group.distributed else None
    return Trainer(
        model, loss_fn, optimizer, sampler, data, params, config,
        device=device, model_path=Path(model_path), ema=ema, checkpoint=checkpoint, seed=seed, group=group, parallel=parallel,
    )
