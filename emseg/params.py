"""The schema of ``params.yaml``: one typed block per stage plus a shared base.

Every key is validated (unknown keys too) so that a typo fails at once with one line
naming the key, before any data is loaded. Names that the code keeps in a registry are
typed from it: ``model.arch`` and the ``model.<arch>`` blocks from the network registry
(each block's arguments checked against its constructor), ``train.loss`` from the
losses. The defaults here are the CPU profile, the source of every default;
``params.yaml`` spells them out so that DVC tracks them (a test holds the two equal).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from emseg import defaults
from emseg.errors import EmsegError
from emseg.layout import RAW_NAMES
from emseg.affinities import DEFAULT_OFFSETS, check_offsets
from emseg.losses import AFFINITY_LOSSES, LOSSES
from emseg.networks import REGISTRY, check_network, resolve_kwargs
from emseg.segmentation import METHODS, check_settings, settings_grid

DEFAULT_PARAMS_FILE = "params.yaml"


class BlockKeyError(ValueError):
    """A block validator's complaint about one of its keys, reported under that key's full name."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseParams(_Block):
    seed: int = Field(42, ge=0, description="seed shared by split, augment and train")


class DataParams(_Block):
    source: str = Field("../shared/isbi2012", description="local folder or http(s) base URL holding the three TIFFs")
    train_images: str = RAW_NAMES["train_images"]
    train_labels: str = RAW_NAMES["train_labels"]
    test_images: str = RAW_NAMES["test_images"]
    sha256: dict[str, str] = Field(default_factory=dict, description="optional file name -> expected sha256")

    def source_names(self) -> dict[str, str]:
        """The file name of each stack at the source, keyed as :data:`~emseg.layout.RAW_NAMES`."""
        return {stack: getattr(self, stack) for stack in RAW_NAMES}


class SplitParams(_Block):
    strategy: Literal["contiguous", "random", "kfold"] = "contiguous"
    test_size: int = Field(5, ge=1)
    val_size: int = Field(3, ge=1)
    n_folds: int = Field(5, ge=2)
    fold: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _fold_in_range(self) -> SplitParams:
        if self.fold >= self.n_folds:
            raise ValueError(f"fold {self.fold} must be below n_folds {self.n_folds}")
        return self


class ProbRange(_Block):
    prob: float = Field(0.0, ge=0.0, le=1.0)
    range: tuple[float, float] = (1.0, 1.0)

    @field_validator("range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"range {list(value)} must be [low, high]")
        return value


class NoiseParams(_Block):
    prob: float = Field(0.15, ge=0.0, le=1.0)
    std: float = Field(0.03, ge=0.0, description="noise std is drawn from [0, std] (image range 0..1)")


class ElasticParams(_Block):
    """Elastic deformation as in the U-Net paper: a coarse grid of random displacements, smoothly interpolated."""

    prob: float = Field(0.9, ge=0.0, le=1.0)
    grid_spacing: int = Field(96, ge=8, description="pixels between control points of the displacement grid")
    magnitude: tuple[float, float] = Field((5.0, 15.0), description="displacement std range of control points, pixels")
    rotate_range: float = Field(0.0, ge=0.0, description="max random rotation, radians, applied with the deformation")
    scale_range: float = Field(0.0, ge=0.0, description="max relative zoom, applied with the deformation")


class AugmentParams(_Block):
    copies: int = Field(8, ge=0, description="augmented copies materialised per training slice")
    elastic: ElasticParams = ElasticParams()
    flip_prob: float = Field(0.5, ge=0.0, le=1.0)
    rotate90_prob: float = Field(0.75, ge=0.0, le=1.0)
    # range: gamma exponents / contrast factors around the mean / blur sigmas (pixels)
    gamma: ProbRange = ProbRange(prob=0.3, range=(0.7, 1.5))
    contrast: ProbRange = ProbRange(prob=0.3, range=(0.8, 1.2))
    noise: NoiseParams = NoiseParams()
    blur: ProbRange = ProbRange(prob=0.15, range=(0.5, 1.0))
    preview_samples: int = Field(4, ge=1, le=16)


class _ModelBlock(_Block):
    """``arch`` picks a registered network; the block of the same name holds its arguments."""

    @model_validator(mode="before")
    @classmethod
    def _blocks_are_architectures(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            unknown = sorted(set(raw) - set(cls.model_fields))
            if unknown:
                raise BlockKeyError(unknown[0], f"not a registered architecture (registered: {', '.join(sorted(REGISTRY))})")
        return raw

    @field_validator("offsets", check_fields=False)
    @classmethod
    def _offsets_are_pairs(cls, value: list[list[int]]) -> list[list[int]]:
        try:
            check_offsets(value)
        except EmsegError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _arguments_build(self) -> _ModelBlock:
        for arch in REGISTRY:
            block = getattr(self, arch)
            if block or arch == self.arch:
                try:
                    resolve_kwargs(arch, block)
                    check_network(arch, block)
                except EmsegError as exc:
                    raise BlockKeyError(arch, str(exc)) from None
        return self

    def overrides(self, arch: str | None = None) -> dict[str, Any]:
        """The constructor arguments given for ``arch`` (default: the chosen one)."""
        return dict(getattr(self, arch or self.arch))


#: ``arch``, the target, then one block of constructor arguments per registered network
ModelParams = create_model(
    "ModelParams",
    __base__=_ModelBlock,
    __doc__=_ModelBlock.__doc__,
    arch=(Literal[tuple(sorted(REGISTRY))], "unet"),  # type: ignore[valid-type]
    target=(Literal["boundary", "affinities"], Field("affinities", description="what the network predicts: one membrane map, or affinities")),
    offsets=(list[list[int]], Field([list(o) for o in DEFAULT_OFFSETS], description="affinity offsets [dy, dx]; the nearest neighbours first")),
    **{name: (dict[str, Any], Field(default_factory=dict, description=spec.description)) for name, spec in REGISTRY.items()},
)


class TrainParams(_Block):
    loss: Literal[tuple(LOSSES)] = "dice_ce"  # type: ignore[valid-type]
    border_weight: float = Field(0.0, ge=0.0, description="U-Net border weighting w0 (0 = off)")
    border_sigma: float = Field(5.0, gt=0.0, description="U-Net border weighting sigma, pixels")
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    schedule: Literal["cosine", "constant", "poly"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    steps: int = Field(2100, gt=0)
    batch_size: int = Field(4, gt=0)
    patch_size: int = Field(256, ge=16)
    random_dihedral: bool = Field(True, description="random flips/90-degree rotations of each patch, on the fly")
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0, description="exponential moving average of the weights (0 = off)")
    val_every: int = Field(250, gt=0)
    val_tta: bool = Field(False, description="validate with the 8 flips/rotations, as evaluate predicts")
    log_every: int = Field(25, gt=0)
    checkpoint_every: int = Field(250, gt=0, description="steps between resumable checkpoints; a multiple of log_every")
    resume: bool = Field(True, description="continue from a checkpoint of a killed run with the same params, seed and data")
    device: Literal[defaults.DEVICES] = "auto"  # type: ignore[valid-type]
    amp: bool = Field(True, description="mixed precision on CUDA")
    cpu_bf16: bool | Literal["auto"] = Field(
        "auto", description="train in bf16 autocast on CPU too (fast only with native bf16: AVX-512 BF16, AMX); auto: where the CPU has it"
    )
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 = all cores")
    processes: int = Field(
        1, ge=1, description="DDP processes per node under torchrun (one per GPU on CUDA); batch_size is the global batch split over them"
    )

    @field_validator("cpu_bf16", mode="before")
    @classmethod
    def _true_false_or_auto(cls, value: Any) -> Any:
        if value == "auto" or isinstance(value, bool):
            return value
        raise ValueError(f"must be true, false or auto, got {value!r}")

    @model_validator(mode="after")
    def _checkpoints_on_log_steps(self) -> TrainParams:
        # a resumed run restarts its logging window at the checkpoint: keep windows aligned
        if self.checkpoint_every % self.log_every:
            raise ValueError(f"checkpoint_every ({self.checkpoint_every}) must be a multiple of log_every ({self.log_every})")
        return self

    @model_validator(mode="after")
    def _batch_splits_over_processes(self) -> TrainParams:
        if self.batch_size % self.processes:
            raise BlockKeyError("batch_size", f"{self.batch_size} patches cannot be split evenly over {self.processes} processes (processes)")
        return self


class EvaluateParams(_Block):
    tta: bool = Field(True, description="average the 8 flips/rotations")
    overlap: float = Field(defaults.OVERLAP, ge=0.0, lt=1.0, description="sliding-window overlap")
    batch_size: int = Field(defaults.TILE_BATCH, gt=0, description="tiles per forward pass")
    device: Literal[defaults.DEVICES] = "auto"  # type: ignore[valid-type]
    amp: bool = Field(True, description="mixed precision on CUDA")
    overlays: int = Field(3, ge=0)
    pr_points: int = Field(200, ge=10)
    threads: int = Field(0, ge=0, description="torch CPU threads and scoring workers; 0 = all cores")


#: the most settings combinations a segment block may ask the evaluate stage to try
MAX_GRID = 200


class _SegmentBlock(_Block):
    """``method`` picks a registered segmentation method; the block of the same name holds its settings (lists: a grid)."""

    @model_validator(mode="before")
    @classmethod
    def _blocks_are_methods(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            unknown = sorted(set(raw) - set(cls.model_fields))
            if unknown:
                raise BlockKeyError(unknown[0], f"not a registered segmentation method (registered: {', '.join(METHODS)})")
        return raw

    @model_validator(mode="after")
    def _settings_exist(self) -> _SegmentBlock:
        for method in METHODS:
            block = getattr(self, method)
            try:
                check_settings(method, block)
            except EmsegError as exc:
                raise BlockKeyError(method, str(exc)) from None
            if len(settings_grid(method, block)) > MAX_GRID:
                raise BlockKeyError(method, f"a grid of {len(settings_grid(method, block))} settings; at most {MAX_GRID}")
        return self

    def given(self, method: str | None = None) -> dict[str, Any]:
        """The settings given for ``method`` (default: the chosen one)."""
        return dict(getattr(self, method or self.method))


#: ``method``, ``tune``, then one block of settings per registered segmentation method
SegmentParams = create_model(
    "SegmentParams",
    __base__=_SegmentBlock,
    __doc__=_SegmentBlock.__doc__,
    method=(Literal[tuple(METHODS)], "gasp"),  # type: ignore[valid-type]
    **{name: (dict[str, Any], Field(default_factory=dict, description=spec.description)) for name, spec in METHODS.items()},
)


class CVParams(_Block):
    """The cross-validation pipeline (cv/dvc.yaml): folds of contiguous test blocks that test every labelled slice once."""

    folds: list[int] = Field([0, 1, 2, 3, 4], description="the folds, 0..n-1 (a list: DVC's foreach runs one stage per entry)")
    guard: int = Field(1, ge=0, description="slices on each side of a test block kept out of its training and validation")
    val_size: int = Field(3, ge=1, description="slices of each fold's validation block")
    block: int = Field(defaults.BLOCK_SLICES, ge=1, description="contiguous slices resampled together by the bootstrap")
    confidence: float = Field(defaults.CONFIDENCE, gt=0.0, lt=1.0, description="confidence level of the intervals")
    resamples: int = Field(9999, ge=100, description="bootstrap resamples")

    @field_validator("folds")
    @classmethod
    def _folds_count_from_zero(cls, value: list[int]) -> list[int]:
        if value != list(range(len(value))) or len(value) < 2:
            raise ValueError(f"{value} must be the fold numbers 0, 1, ..., n-1 of at least 2 folds")
        return value


class Params(_Block):
    base: BaseParams = BaseParams()
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    augment: AugmentParams = AugmentParams()
    model: ModelParams = ModelParams()  # type: ignore[valid-type]
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    segment: SegmentParams = SegmentParams()  # type: ignore[valid-type]
    cv: CVParams = CVParams()

    @model_validator(mode="after")
    def _target_fits_loss_and_segmentation(self) -> Params:
        if self.model.target == "affinities" and self.train.loss not in AFFINITY_LOSSES:
            raise BlockKeyError("train.loss", f"{self.train.loss} does not take affinities; use one of {', '.join(AFFINITY_LOSSES)}")
        if self.model.target == "boundary" and METHODS[self.segment.method].needs_affinities:
            raise BlockKeyError("segment.method", f"{self.segment.method} needs an affinity model (model.target: affinities)")
        if self.model.target == "affinities" and self.train.border_weight > 0:
            raise BlockKeyError("train.border_weight", "the U-Net border weights are for a boundary model (model.target: boundary)")
        return self


def _format_error(path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "literal_error":
        message = f"{message} (got {first['input']!r})"
    elif first["type"] == "value_error":
        error = first["ctx"]["error"]
        message = str(error)
        if isinstance(error, BlockKeyError):
            key = error.key if key == "(top level)" else f"{key}.{error.key}"
            message = error.message
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: {key}: {message}{more}"


def parse_params(raw: Any, path: str | os.PathLike[str] = DEFAULT_PARAMS_FILE) -> Params:
    """Validate an already-loaded params mapping."""
    path = Path(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise EmsegError(f"{path}: must hold a mapping of params blocks")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise EmsegError(_format_error(path, exc)) from None


def load_params(path: str | os.PathLike[str] = DEFAULT_PARAMS_FILE) -> Params:
    """Read ``params.yaml`` with safe YAML loading and validate every key."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise EmsegError(f"{path}: params file not found") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EmsegError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_params(raw, path)
