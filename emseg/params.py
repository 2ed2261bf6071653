"""The schema of ``params.yaml``: one typed block per stage plus a shared base.

Every key is validated (unknown keys too) so that a typo fails at once with one line
naming the key, before any data is loaded. The defaults here are those of the CPU
profile; ``params.yaml`` spells them out so that DVC tracks them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emseg.errors import EmsegError

DEFAULT_PARAMS_FILE = "params.yaml"


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseParams(_Block):
    seed: int = Field(42, ge=0, description="seed shared by split, augment and train")


class DataParams(_Block):
    source: str = Field("../shared/isbi2012", description="local folder or http(s) base URL holding the three TIFFs")
    train_images: str = "train-volume.tif"
    train_labels: str = "train-labels.tif"
    test_images: str = "test-volume.tif"
    sha256: dict[str, str] = Field(default_factory=dict, description="optional file name -> expected sha256")


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
    grid_spacing: int = Field(128, ge=8, description="pixels between control points of the displacement grid")
    magnitude: tuple[float, float] = Field((0.0, 10.0), description="displacement std range of control points, pixels")
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


class ModelParams(_Block):
    """``arch`` picks a registered network; the block of the same name holds its arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    arch: str = "unet"

    def kwargs_for(self, arch: str) -> dict[str, Any]:
        extra = self.model_extra or {}
        block = extra.get(arch) or {}
        if not isinstance(block, dict):
            raise EmsegError(f"params: model.{arch} must be a mapping of constructor arguments")
        return dict(block)


class TrainParams(_Block):
    loss: str = "dice_ce"
    border_weight: float = Field(0.0, ge=0.0, description="U-Net border weighting w0 (0 = off)")
    border_sigma: float = Field(5.0, gt=0.0, description="U-Net border weighting sigma, pixels")
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    schedule: Literal["cosine", "constant", "poly"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    steps: int = Field(3000, gt=0)
    batch_size: int = Field(4, gt=0)
    patch_size: int = Field(256, ge=16)
    random_dihedral: bool = Field(True, description="random flips/90-degree rotations of each patch, on the fly")
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0, description="exponential moving average of the weights (0 = off)")
    val_every: int = Field(500, gt=0)
    val_tta: bool = Field(False, description="validate with the 8 flips/rotations, as evaluate predicts")
    log_every: int = Field(25, gt=0)
    checkpoint_every: int = Field(250, gt=0, description="steps between resumable checkpoints; a multiple of log_every")
    resume: bool = Field(True, description="continue from a checkpoint of a killed run with the same params, seed and data")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    cpu_bf16: bool = Field(False, description="train in bf16 autocast on CPU too (fast only with native bf16: AVX-512 BF16, AMX)")
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 = all cores")


    @model_validator(mode="after")
    def _checkpoints_on_log_steps(self) -> TrainParams:
        # a resumed run restarts its logging window at the checkpoint: keep windows aligned
        if self.checkpoint_every % self.log_every:
            raise ValueError(f"checkpoint_every ({self.checkpoint_every}) must be a multiple of log_every ({self.log_every})")
        return self


class EvaluateParams(_Block):
    tta: bool = True
    overlap: float = Field(0.5, ge=0.0, lt=1.0)
    batch_size: int = Field(4, gt=0)
    overlays: int = Field(3, ge=0)
    pr_points: int = Field(200, ge=10)
    threads: int = Field(0, ge=0, description="torch CPU threads and scoring workers; 0 = all cores")


class Params(_Block):
    base: BaseParams = BaseParams()
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    augment: AugmentParams = AugmentParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()


def _format_error(path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
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
