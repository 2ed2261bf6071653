"""The emseg model file: weights plus everything needed to apply them.

It holds only tensors and plain Python values, so that it loads with
`torch.load(..., weights_only=True)`: a file that would need arbitrary unpickling
(and so could run code) is refused. [`save_model`][emseg.networks.model_file.save_model]
writes it, [`load_model`][emseg.networks.model_file.load_model] rebuilds the network from it;
files of format versions 1 to 3 are read.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emseg.config.defaults import FALLBACK_THRESHOLD
from emseg.errors import EmsegError
from emseg.io.atomic import atomic_output
from emseg.io.sections import section_count
from emseg.networks.architectures import AUTO_CONTEXT_KWARGS, IN_CHANNELS, OUT_CHANNELS, PadToMultiple, build_network

FORMAT = "emseg-model"
#: 2: the validated threshold is a field of the config (version 1 kept it in ``info.val``);
#: 3: the pixel size the model was trained at, and the cell step chosen for it
FORMAT_VERSION = 3
#: the key of a model file's `info` with the cell step chosen for stacks other than its own, over two labs' stacks
#: (`emseg models` prints it; `emseg predict` draws the model's own step unless told otherwise)
CELLS_ELSEWHERE_KEY = "cells_for_other_stacks"
READABLE_VERSIONS = (1, 2, 3)
#: the first bytes of files that ``--model`` is sometimes pointed at by mistake
_NOT_MODELS = {
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"{": "a JSON or text file",
}


@dataclass
class ModelConfig:
    """What a model file says besides the weights: the network, its input normalisation, its patch and its target.

    `arch` and `kwargs` rebuild the network ([`build_network`][emseg.networks.architectures.build_network]);
    `normalization` is the input normalisation
    ([`normalize`][emseg.preprocessing.normalization.normalize]); `patch_size` the training patch
    side, the default sliding window; `target` is `boundary` (one membrane map) or `affinities`
    (one channel per offset of `offsets`); `val_threshold` the best V_rand threshold on the
    validation slices, if training recorded one; `pixel_size` the `[z, y, x]` size of a voxel of
    the training data in nm (`params.yaml: data.pixel_size`), which `emseg predict` rescales its
    inputs to; `cells` the cell step chosen for the model on labelled slices it was not trained
    on (`method`, `settings`, and where they were chosen); `info` what training noted (the
    step, the validation scores, the seed). `context` is how many neighbouring sections on
    each side of a slice the network reads (its `in_channels` are `2 * context + 1`, the slice
    in the middle; 0: the slice alone).
    """

    arch: str
    kwargs: dict[str, Any]
    normalization: dict[str, Any]
    patch_size: int
    in_channels: int = IN_CHANNELS
    out_channels: int = OUT_CHANNELS
    #: "boundary" (one membrane map) or "affinities" (one channel per offset of ``offsets``)
    target: str = "boundary"
    offsets: list[list[int]] | None = None
    #: the best V_rand threshold on the validation slices of the kept checkpoint, if training recorded one
    val_threshold: float | None = None
    #: [z, y, x] of a voxel of the training data, nm; None for files of format 1-2 (then unknown)
    pixel_size: list[float] | None = None
    #: the cell step chosen for this model: {"method", "settings", "chosen_on", "v_rand"}; None: not chosen
    cells: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: sections on each side of a slice that the network reads as more input channels (0: the slice alone)
    context: int = 0
    #: channels of an auxiliary training head after the outputs (6: local shape descriptors), which predictions drop
    aux_channels: int = 0
    #: a small second network reads the input and the first one's prediction ([`AutoContext`][emseg.networks.architectures.AutoContext])
    auto_context: bool = False
    #: that second network's constructor arguments; None without one (files that predate the field: `AUTO_CONTEXT_KWARGS`)
    auto_context_kwargs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # a file written before the second network's arguments were recorded was built with the constant's (unchanged since)
        if not self.auto_context:
            self.auto_context_kwargs = None
        elif self.auto_context_kwargs is None:
            self.auto_context_kwargs = dict(AUTO_CONTEXT_KWARGS)

    def build_network(self) -> PadToMultiple:
        """The network this config describes, with fresh weights.

        Raises:
            EmsegError: The architecture or its arguments are not buildable.
        """
        return build_network(self.arch, self.kwargs, self.out_channels, self.in_channels, self.aux_channels, self.auto_context,
                             self.auto_context_kwargs)

    def expected_in_channels(self) -> int:
        """The input channels the context needs: the slice and `context` sections on each side."""
        return section_count(self.context)

    def pixel_size_yx(self) -> tuple[float, float] | None:
        """The in-plane pixel size `(y, x)` in nm the model was trained at, or None when the file does not say."""
        if not self.pixel_size:
            return None
        return float(self.pixel_size[-2]), float(self.pixel_size[-1])

    def cell_step(self) -> tuple[str, dict[str, Any]] | None:
        """The cell method and settings chosen for this model, or None when none was chosen."""
        if not self.cells:
            return None
        return str(self.cells["method"]), dict(self.cells.get("settings") or {})

    def threshold(self, given: float | None = None) -> tuple[float, str]:
        """The cell/membrane threshold to apply, and where it came from.

        Returns:
            `given` when one is given (source `"given"`); else the validated threshold
            (`"the model's validated one"`); else `FALLBACK_THRESHOLD` of
            [`emseg.config.defaults`][emseg.config.defaults] (`"default"`).
        """
        if given is not None:
            return float(given), "given"
        if self.val_threshold is not None:
            return self.val_threshold, "the model's validated one"
        return FALLBACK_THRESHOLD, "default"

    def window(self, tile: int | None = None) -> int:
        """The sliding window's side: `tile` when given (`emseg predict --tile`), else the training patch size."""
        return tile or self.patch_size

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict."""
        return asdict(self)

    def expected_out_channels(self) -> int:
        """The output channels the target needs: one per offset for affinities, else one."""
        return len(self.offsets or ()) if self.target == "affinities" else OUT_CHANNELS

    def offset_tuples(self) -> tuple[tuple[int, int], ...] | None:
        """An affinity model's offsets as `(dy, dx)` tuples; None for a boundary model."""
        return tuple((int(o[0]), int(o[1])) for o in self.offsets) if self.target == "affinities" and self.offsets else None

    @classmethod
    def from_payload(cls, raw: dict[str, Any], version: int) -> ModelConfig:
        """The config of a model file of any readable format version."""
        raw = dict(raw)
        if raw.get("target") == "membrane":  # what format 1 called a boundary model
            raw["target"] = "boundary"
        if version == 1:  # the threshold sat in info.val.threshold
            raw.setdefault("val_threshold", (raw.get("info", {}).get("val") or {}).get("threshold"))
        config = cls(**raw)
        size = config.pixel_size
        if not (isinstance(size, (list, tuple)) and len(size) == 3 and all(isinstance(v, (int, float)) and v > 0 for v in size)):
            config.pixel_size = None
        if not (isinstance(config.cells, dict) and isinstance(config.cells.get("method"), str)):
            config.cells = None
        value = config.val_threshold
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0):
            config.val_threshold = None
        return config


def save_model(path: str | os.PathLike[str], model: nn.Module, config: ModelConfig) -> None:
    """Write `model`'s weights and `config` as an emseg model file, atomically.

    The weights go to the CPU; the same weights and config always give the same bytes.
    """
    _write(path, config, {key: value.detach().cpu() for key, value in model.state_dict().items()})


def _write(path: str | os.PathLike[str], config: ModelConfig, state: dict[str, torch.Tensor]) -> None:
    # JSON round trip: the config holds only plain values (numpy scalars become floats),
    # which is what lets the file load with weights_only=True
    plain_config = json.loads(json.dumps(config.to_dict(), default=float))
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "config": plain_config, "state_dict": state}
    # through a buffer: saved to a path, torch names the zip's root folder after the (random)
    # temporary file name, and the same weights would give a different file
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_output(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _not_a_model(path: Path) -> str | None:
    """What the file is instead, when its first bytes say it is no PyTorch file at all."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if head == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save's zip (also a cut one), or a legacy pickle
        return None
    return next((what for magic, what in _NOT_MODELS.items() if head.startswith(magic)), "not a PyTorch file")


def read_model_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a model file's raw payload safely (`weights_only=True`) and check that it is an emseg model.

    Raises:
        EmsegError: The file is missing, empty, of another kind (a TIFF, a PNG, JSON, ...),
            damaged, holds objects other than tensors and plain values, or is not an emseg model
            of a readable format version.
    """
    path = Path(path)
    if not path.is_file():
        raise EmsegError(f"{path}: model file not found")
    if path.stat().st_size == 0:
        raise EmsegError(f"{path}: model file is empty")
    instead = _not_a_model(path)
    if instead is not None:
        raise EmsegError(f"{path}: not an emseg model file ({instead})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refusals are UnpicklingError; corrupt files vary
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it holds objects other than tensors and plain values, refused for safety"
        else:  # torch's own words for a cut file ("[Errno 22] Invalid argument") say little
            reason = f"truncated, damaged or not a PyTorch file: {reason}"
        raise EmsegError(f"{path}: not a loadable emseg model ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise EmsegError(f"{path}: not an emseg model file (no '{FORMAT}' header)")
    if payload.get("version") not in READABLE_VERSIONS:
        raise EmsegError(
            f"{path}: emseg model format version {payload.get('version')} is not supported "
            f"(this emseg reads {', '.join(map(str, READABLE_VERSIONS))})"
        )
    return payload


def load_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> tuple[nn.Module, ModelConfig]:
    """Rebuild the network from a model file's config and load its weights, in eval mode.

    Args:
        path: The model file.
        device: Where the network is put.

    Returns:
        The network and its [`ModelConfig`][emseg.networks.model_file.ModelConfig].

    Raises:
        EmsegError: As [`read_model_file`][emseg.networks.model_file.read_model_file]; also a
            malformed config, an unknown target, channels that do not fit the target, or weights
            that do not fit the architecture.
    """
    payload = read_model_file(path)
    try:
        config = ModelConfig.from_payload(payload["config"], payload["version"])
    except (TypeError, AttributeError) as exc:
        raise EmsegError(f"{path}: malformed model config ({exc})") from None
    if config.target not in ("boundary", "affinities"):
        raise EmsegError(f"{path}: unknown model target {config.target!r} (boundary, affinities)")
    if config.in_channels != config.expected_in_channels() or config.out_channels != config.expected_out_channels():
        raise EmsegError(
            f"{path}: model takes {config.in_channels} input / {config.out_channels} output channels; its context of "
            f"{config.context} and {config.target} target need {config.expected_in_channels()} input / {config.expected_out_channels()} output channels"
        )
    try:
        model = config.build_network()
    except EmsegError as exc:
        raise EmsegError(f"{path}: {exc}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise EmsegError(f"{path}: weights do not fit architecture {config.arch!r} ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), config


def with_cell_step(
    source: str | os.PathLike[str], target: str | os.PathLike[str], cells: dict[str, Any], info: dict[str, Any] | None = None,
    val_threshold: float | None = None,
) -> ModelConfig:
    """Write `source`'s model file again at `target`, its weights untouched, with the cell step `cells` in its config.

    Args:
        source: A model file.
        target: Where the file with the cell step goes (may be `source`).
        cells: `{"method", "settings", "chosen_on", "v_rand"}`: the cell method and settings chosen
            for the model, and where.
        info: Entries added to the config's `info` (e.g. `provenance`: the model a fine-tune
            started from, the slices and steps it used).
        val_threshold: A validated membrane threshold to record (a model trained without
            validation slices gets one chosen elsewhere); None: the file's stays.

    Returns:
        The new config.
    """
    payload = read_model_file(source)
    config = ModelConfig.from_payload(payload["config"], payload["version"])
    config.cells = json.loads(json.dumps(cells, default=float))
    if val_threshold is not None:
        config.val_threshold = float(val_threshold)
    if info:
        config.info = {**config.info, **json.loads(json.dumps(info, default=str))}
    _write(target, config, payload["state_dict"])
    return config
