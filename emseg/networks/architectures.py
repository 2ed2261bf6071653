"""The registry of 2-D MONAI segmentation networks, keyed by the name used in `params.yaml` (`model.arch`).

[`build_network`][emseg.networks.architectures.build_network] is the only way the pipeline makes a
model: it checks the name and every argument against the constructor before anything
else runs, fills in the defaults chosen for 512x512 EM slices (one input channel; one
output channel of membrane logits for a boundary model, one per offset for an affinity
model), and wraps the network so that any input size works (padded to the network's
divisibility, cropped back). `emseg models` lists the registry (`REGISTRY`) with each
network's defaults and parameter count.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks import nets
from torch import nn

from emseg.config.params import Params, ParamsKeyError, one_of
from emseg.errors import EmsegError

SPATIAL_DIMS = 2
IN_CHANNELS = 1
#: the output channels of a boundary model: one membrane map
OUT_CHANNELS = 1
#: Arguments fixed by the task, not settable from params.
_FIXED = ("spatial_dims", "in_channels", "out_channels")


@dataclass(frozen=True)
class NetworkSpec:
    """A registered network: its MONAI constructor, the defaults emseg chose, and the size its inputs must divide by.

    `description` is the one line `emseg models` and the parameter reference show; `divisor`
    computes, from the final arguments, the multiple that input sides are padded to.
    """

    constructor: Callable[..., nn.Module]
    defaults: dict[str, Any]
    #: input sizes must be multiples of this, computed from the final arguments
    divisor: Callable[[dict[str, Any]], int]
    description: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)


def _stride_product(kwargs: dict[str, Any]) -> int:
    return int(math.prod(int(s) for s in kwargs["strides"]))


REGISTRY: dict[str, NetworkSpec] = {
    "unet": NetworkSpec(
        nets.UNet,
        {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2, "dropout": 0.0},
        _stride_product,
        "MONAI UNet with residual units (Kerfoot et al. 2018)",
    ),
    "basic_unet": NetworkSpec(
        nets.BasicUNet,
        {"features": [16, 16, 32, 64, 128, 16], "dropout": 0.0},
        lambda kw: 16,
        "the original U-Net layout (two 3x3 convs per level, max-pool down)",
    ),
    "attention_unet": NetworkSpec(
        nets.AttentionUnet,
        {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "dropout": 0.0},
        _stride_product,
        "U-Net with attention gates on the skip connections (Oktay et al. 2018)",
    ),
    "segresnet": NetworkSpec(
        nets.SegResNet,
        {"init_filters": 16, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1], "dropout_prob": None},
        lambda kw: 2 ** (len(kw["blocks_down"]) - 1),
        "residual encoder-decoder (Myronenko 2018)",
    ),
    "dynunet": NetworkSpec(
        nets.DynUNet,
        {
            "kernel_size": [3, 3, 3, 3, 3],
            "strides": [1, 2, 2, 2, 2],
            "upsample_kernel_size": [2, 2, 2, 2],
            "filters": [16, 32, 64, 128, 256],
            "res_block": True,
            "deep_supervision": False,
            "deep_supr_num": 2,
        },
        _stride_product,
        "nnU-Net-style dynamic U-Net (Isensee et al. 2021); deep_supervision adds weighted loss heads",
    ),
    "swin_unetr": NetworkSpec(
        nets.SwinUNETR,
        {"feature_size": 12, "depths": [2, 2, 2, 2], "num_heads": [3, 6, 12, 24], "window_size": 8, "use_v2": False},
        # patch embedding (2) and four patch-merging stages halve the size five times; one
        # more factor 2 keeps the bottleneck at least 2x2, which its instance norm needs
        lambda kw: int(kw.get("patch_size", 2)) * 32,
        "Swin-transformer encoder with a convolutional decoder (Hatamizadeh et al. 2022), 2-D",
    ),
    "flexible_unet": NetworkSpec(
        nets.FlexibleUNet,
        # pretrained weights cannot be downloaded here: the backbone is trained from scratch
        {"backbone": "resnet10", "pretrained": False, "decoder_channels": [128, 64, 32, 16, 8]},
        lambda kw: 32,
        "U-Net decoder on a ResNet/EfficientNet encoder, trained from scratch",
    ),
    "unetplusplus": NetworkSpec(
        nets.BasicUNetPlusPlus,
        {"features": [16, 16, 32, 64, 128, 16], "deep_supervision": False},
        lambda kw: 16,
        "UNet++ nested skip pathways (Zhou et al. 2018); deep_supervision adds weighted loss heads",
    ),
}


def available() -> list[str]:
    """The registered network names, sorted."""
    return sorted(REGISTRY)


def resolve_kwargs(arch: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The registry defaults of `arch` updated by `overrides`, every name checked against the constructor.

    Raises:
        EmsegError: An unknown architecture or argument, in a message that the caller prefixes
            with where the arguments came from (a params key, a model file).
    """
    if arch not in REGISTRY:
        raise EmsegError(f"unknown architecture {arch!r}; registered: {', '.join(available())}")
    spec = REGISTRY[arch]
    overrides = dict(overrides or {})
    accepted = [name for name in inspect.signature(spec.constructor).parameters if name not in ("self", *_FIXED)]
    bad = sorted(set(overrides) - set(accepted))
    if bad:
        raise EmsegError(f"{', '.join(bad)} not accepted by {spec.constructor.__name__}; valid: {', '.join(accepted)}")
    return {**spec.defaults, **overrides}


def output_heads(out: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """A network's outputs as a list, the main (finest) prediction first.

    DynUNet with deep supervision stacks its heads on dim 1 in training mode, main first;
    BasicUNetPlusPlus returns a list whose *last* element is the main output.
    """
    if isinstance(out, (list, tuple)):
        return list(reversed(out))
    if out.ndim == 5:
        return list(out.unbind(dim=1))
    return [out]


class PadToMultiple(nn.Module):
    """Pad the input up to a multiple of `divisor`, at least two of them, and crop the output back.

    The padding reflects the input, or repeats its edge where the input is smaller than the
    padding. At a single multiple the coarsest level of a U-Net is 1x1, where instance norm
    has no statistics to take; two multiples keep it at least 2x2, so that inputs of any size,
    down to a single pixel, work. [`forward`][emseg.networks.architectures.PadToMultiple.forward]
    returns the main prediction;
    [`forward_heads`][emseg.networks.architectures.PadToMultiple.forward_heads] every
    deep-supervision head (main first), for the loss. With `outputs`, `forward` keeps the
    first `outputs` channels and `forward_heads` all: the others are an auxiliary training
    target (local shape descriptors, [`emseg.networks.lsd`][emseg.networks.lsd]) that no
    prediction uses.
    """

    def __init__(self, net: nn.Module, divisor: int, outputs: int | None = None) -> None:
        super().__init__()
        self.net = net
        self.divisor = int(divisor)
        #: the channels a prediction keeps (None: all); the rest are the loss's only
        self.outputs = outputs

    def padded_size(self, size: int) -> int:
        """The side the network sees for an input side of `size` pixels."""
        return max(-(-size // self.divisor), 2) * self.divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The main prediction (B, C, H, W) for a (B, 1, H, W) batch of any height and width (an auxiliary head's channels left out)."""
        main = self.forward_heads(x)[0]
        return main if self.outputs is None else main[:, : self.outputs]

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every head's prediction (B, C, H, W), the main one first, cropped back to the input's size.

        Raises:
            ValueError: The input is not a (batch, channel, height, width) tensor.
        """
        if x.ndim != 4:
            raise ValueError(f"expected a (batch, channel, height, width) tensor, got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        pad_h = self.padded_size(height) - height
        pad_w = self.padded_size(width) - width
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return [head[..., :height, :width] for head in output_heads(self.net(x))]


#: the second network of an auto-context model: a thin U-Net of the default's depth (half its channels, one residual
#: unit a level), 13% of its parameters and 23% of its training FLOPs a step; the full-resolution layers cost most,
#: so the channels are halved rather than levels dropped: the second network still sees as far as the first
AUTO_CONTEXT_ARCH = "unet"
AUTO_CONTEXT_KWARGS: dict[str, Any] = {"channels": [8, 16, 32, 64, 128], "strides": [2, 2, 2, 2], "num_res_units": 1, "dropout": 0.0}


class AutoContext(nn.Module):
    """Two networks in a row: the second reads the input and the first's prediction, and predicts again (auto-context).

    Tu and Bai's auto-context (2010), as cascaded CNNs: the second network sees, beside the
    raw slice, where the first one put membranes and how sure it was (the sigmoid of its
    affinities; the raw values of an auxiliary head's channels), so it can close a gap the
    first left or drop a membrane it drew through a cell. Both are trained at once: the
    loss weighs the second network's prediction (the model's) and the first's (a
    deep-supervision head, [`deep_supervision_weights`][emseg.training.losses.deep_supervision_weights]),
    and the gradient flows through the first's prediction into it.

    `forward` returns the heads coarsest first, as MONAI's deep-supervision lists do
    ([`output_heads`][emseg.networks.architectures.output_heads] reverses them): the
    first network's, then the second's (the main prediction).
    """

    def __init__(self, first: nn.Module, second: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.first = first
        self.second = second
        #: the channels of the first prediction given through a sigmoid (the others, an auxiliary head's, as they are)
        self.out_channels = int(out_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The first network's heads (coarsest first) and the second network's prediction last."""
        first = output_heads(self.first(x))
        main = first[0]
        seen = torch.cat([x, torch.sigmoid(main[:, : self.out_channels]).to(x.dtype), main[:, self.out_channels :].to(x.dtype)], dim=1)
        return [*reversed(first), self.second(seen)]


def build_network(
    arch: str,
    overrides: dict[str, Any] | None = None,
    out_channels: int = OUT_CHANNELS,
    in_channels: int = IN_CHANNELS,
    aux_channels: int = 0,
    auto_context: bool = False,
    auto_context_kwargs: dict[str, Any] | None = None,
) -> PadToMultiple:
    """Construct the registered network `arch` for 2-D input: one slice, or a slice with its neighbouring sections.

    Args:
        arch: A registered network name.
        overrides: Constructor arguments that replace the registry's defaults.
        out_channels: The output channels: 1 for a boundary model (the membrane map), one per
            offset for an affinity model.
        in_channels: The input channels: 1, or `2 * context + 1` for a model that reads
            `context` sections on each side of the slice.
        aux_channels: Channels of an auxiliary training target after the `out_channels`, which
            only `forward_heads` returns.
        auto_context: Follow the network with a small second one that reads the input and the
            first's prediction ([`AutoContext`][emseg.networks.architectures.AutoContext]).
        auto_context_kwargs: The second network's constructor arguments (a model file records
            them); None: `AUTO_CONTEXT_KWARGS`.

    Returns:
        The network wrapped in [`PadToMultiple`][emseg.networks.architectures.PadToMultiple].

    Raises:
        EmsegError: An unknown name or argument, or arguments the constructor refuses.
    """
    kwargs = resolve_kwargs(arch, overrides)
    spec = REGISTRY[arch]
    try:
        net = spec.constructor(spatial_dims=SPATIAL_DIMS, in_channels=in_channels, out_channels=out_channels + aux_channels, **kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as exc:
        raise EmsegError(f"invalid arguments for {spec.constructor.__name__} ({exc})") from None
    divisor = spec.divisor(kwargs)
    if auto_context:
        second_spec, second_kwargs = REGISTRY[AUTO_CONTEXT_ARCH], auto_context_kwargs or AUTO_CONTEXT_KWARGS
        second = second_spec.constructor(spatial_dims=SPATIAL_DIMS, in_channels=in_channels + out_channels + aux_channels,
                                         out_channels=out_channels + aux_channels, **second_kwargs)
        net = AutoContext(net, second, out_channels)
        divisor = math.lcm(divisor, second_spec.divisor(second_kwargs))
    return PadToMultiple(net, divisor, out_channels if aux_channels else None)


def check_network(arch: str, overrides: dict[str, Any] | None = None) -> None:
    """Check that `arch` builds with `overrides`, leaving the random state as it was.

    Raises:
        EmsegError: As [`build_network`][emseg.networks.architectures.build_network].
    """
    with torch.random.fork_rng(devices=[]):
        build_network(arch, overrides)


def check_model_params(params: Params) -> None:
    """The network registry's check of `params.model` (a `ParamsCheck`, see [`load_params`][emseg.config.params.load_params]).

    `arch` must be registered, every `model.<name>` block must name a registered network, and
    the chosen network (and every network given a block) must build with its arguments.

    Raises:
        ParamsKeyError: Naming the key, e.g. `model.unett: not a registered architecture (...)`.
    """
    model = params.model
    if model.arch not in REGISTRY:
        raise ParamsKeyError("model.arch", one_of(available(), model.arch))
    for name in model.blocks():
        if name not in REGISTRY:
            raise ParamsKeyError(f"model.{name}", f"not a registered architecture (registered: {', '.join(available())})")
    for arch in REGISTRY:
        block = model.overrides(arch)
        if block or arch == model.arch:
            try:
                resolve_kwargs(arch, block)
                check_network(arch, block)
            except EmsegError as exc:
                raise ParamsKeyError(f"model.{arch}", str(exc)) from None


def count_parameters(model: nn.Module) -> int:
    """The number of parameters of `model` (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
