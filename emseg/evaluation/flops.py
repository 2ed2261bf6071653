"""FLOPs counted, not timed: what a training step, a tile and a whole pipeline run cost on any machine.

A time depends on the CPU (the same 2-core size has been an AVX-512 BF16 machine and an
AVX2-only one, several times apart: see [Speed](../../../results/speed.md)); the
floating-point operations of the same work do not. They are counted by
`torch.utils.flop_counter` on the network itself (convolutions and matrix products,
forward and backward; the loss and the optimiser add under 1%), and the pipeline's total
follows from its params: training steps, the validations, and the tiles the evaluate stage
predicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from emseg.config.defaults import OVERLAP
from emseg.config.params import Params
from emseg.inference.sliding_window import count_tiles
from emseg.io.sections import section_count
from emseg.networks.architectures import build_network, resolve_kwargs
from emseg.networks.lsd import LSD_CHANNELS


def out_channels(model: Any) -> int:
    """The network's output channels for a `model` params block: one per offset for affinities, else one map."""
    return len(model.offsets) if model.target == "affinities" else 1


def train_step_flops(
    arch: str, kwargs: dict[str, Any], out_channels: int, batch: int, patch: int, in_channels: int = 1, auto_context: bool = False,
) -> int:
    """The FLOPs of forward and backward of one batch of `batch` patches of `patch` x `patch` pixels through the network."""
    with torch.random.fork_rng(devices=[]):
        model = build_network(arch, kwargs, out_channels, in_channels, auto_context=auto_context).train()
    x = torch.zeros(batch, in_channels, patch, patch)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return int(counter.get_total_flops())


def forward_flops(arch: str, kwargs: dict[str, Any], out_channels: int, tile: int, in_channels: int = 1, auto_context: bool = False) -> int:
    """The FLOPs of one forward pass of one `tile` x `tile` tile (inference)."""
    with torch.random.fork_rng(devices=[]):
        model = build_network(arch, kwargs, out_channels, in_channels, auto_context=auto_context).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, in_channels, tile, tile))
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class PipelineFlops:
    """A pipeline run's FLOPs by part: training, validation and evaluate, with one training step's and one tile's."""

    train: int
    validation: int
    evaluate: int
    per_train_step: int
    per_tile: int

    @property
    def total(self) -> int:
        """The FLOPs of the whole run."""
        return self.train + self.validation + self.evaluate

    def as_dict(self) -> dict[str, float]:
        """The figures in TFLOP (the parts) and GFLOP (a step, a tile), for JSON."""
        return {"train_tflop": self.train / 1e12, "validation_tflop": self.validation / 1e12, "evaluate_tflop": self.evaluate / 1e12,
                "total_tflop": self.total / 1e12, "train_step_gflop": self.per_train_step / 1e9, "tile_gflop": self.per_tile / 1e9}


def pipeline_flops(params: Params, slice_shape: tuple[int, int], val_slices: int, test_slices: int, unlabelled_slices: int) -> PipelineFlops:
    """The FLOPs of one `dvc repro` of `params` on slices of `slice_shape`.

    A step trains `train.batch_size` patches, and with a consistency loss its unlabelled
    patches too, each predicted once more by the teacher. Validation predicts `val_slices`
    every `val_every` steps (and after the last);
    evaluate predicts the validation slices (to choose the segmentation), the test slices
    and the unlabelled ones; TTA multiplies a tile by 8.

    Args:
        params: The pipeline's params.
        slice_shape: The slices' (height, width).
        val_slices: The validation slices.
        test_slices: The labelled test slices.
        unlabelled_slices: The unlabelled test volume's slices.
    """
    model, train = params.model, params.train
    kwargs = resolve_kwargs(model.arch, model.overrides())
    channels, inputs = out_channels(model), section_count(model.context)
    # an auxiliary head's channels are trained, then dropped: they count in training only
    trained = channels + (LSD_CHANNELS if model.lsd_sigma else 0)
    # with a consistency loss the perturbed unlabelled patches train with the batch, and the teacher predicts them once more
    unlabelled = train.consistency_batch if train.consistency_weight else 0
    cascade = model.auto_context
    step = train_step_flops(model.arch, kwargs, trained, train.batch_size + unlabelled, train.patch_size, inputs, cascade)
    if unlabelled:
        step += unlabelled * forward_flops(model.arch, kwargs, trained, train.patch_size, inputs, cascade)
    tile = forward_flops(model.arch, kwargs, channels, min(train.patch_size, *slice_shape), inputs, cascade)
    validations = math.ceil(train.last_step / train.val_every)
    val_tiles = count_tiles(slice_shape, train.patch_size, OVERLAP) * (8 if train.val_tta else 1)
    eval_tiles = count_tiles(slice_shape, train.patch_size, params.evaluate.overlap) * (8 if params.evaluate.tta else 1)
    return PipelineFlops(
        train=train.last_step * step,  # a run stopped early (train.stop_at) trains its steps only
        validation=validations * val_slices * val_tiles * tile,
        evaluate=(val_slices + test_slices + unlabelled_slices) * eval_tiles * tile,
        per_train_step=step,
        per_tile=tile,
    )
