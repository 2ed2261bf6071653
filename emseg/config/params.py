"""The schema of `params.yaml`: one typed block per stage, plus a shared base.

Every key is validated (unknown keys too) so that a typo fails at once with one line
naming the key, before any data is loaded: types, ranges, `[low, high]` pairs in order,
and the rules between keys. The defaults here are the CPU profile and the source of every
default; `params.yaml` spells them out so that DVC tracks them (a test holds the two equal).
The [parameter reference](../../params.md) is generated from this schema.

The schema imports no registry, so that every stage can load it without depending on the
networks, losses or cell methods it does not run. Names that live in a registry
(`model.arch` and the `model.<arch>` blocks, `train.loss`, `segment.method` and the
`segment.<method>` blocks) are checked by the registry itself, in the stages that use it:
each registry offers a check of `ParamsCheck` type
([`check_model_params`][emseg.networks.architectures.check_model_params],
[`check_loss_params`][emseg.training.losses.check_loss_params],
[`check_segment_params`][emseg.segmentation.methods.check_segment_params]) that
[`load_params`][emseg.config.params.load_params] runs after the schema's own validation,
reporting a bad name the same way: one line naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emseg.config import defaults
from emseg.config.layout import RAW_NAMES
from emseg.errors import EmsegError

DEFAULT_PARAMS_FILE = "params.yaml"


class ParamsKeyError(EmsegError, ValueError):
    """A complaint about one params key, `key` its full dotted name (`model.arch`).

    Raised by a block's validator (a `ValueError`, so that pydantic reports it; the key is then
    relative to the block) or by a registry's `ParamsCheck` (the key from the root);
    [`parse_params`][emseg.config.params.parse_params] reports it as `<params file>: <key>: <message>`.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def one_of(names: Iterable[str], got: Any) -> str:
    """The message for a name outside `names`, worded as the schema words its own choices."""
    quoted = [repr(name) for name in names]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f"Input should be {listed} (got {got!r})"


@dataclass(frozen=True)
class Bounds:
    """The bounds on both ends of an [`interval`][emseg.config.params.interval] pair, as the parameter reference shows them."""

    above: float | None = None
    at_least: float | None = None

    def __str__(self) -> str:
        bound = f"> {self.above:g}" if self.above is not None else f">= {self.at_least:g}" if self.at_least is not None else ""
        return f"[low, high], low <= high{', both ' + bound if bound else ''}"


def interval(*, above: float | None = None, at_least: float | None = None) -> Any:
    """The type of a `[low, high]` pair: low <= high, both ends above a bound (or at least one).

    Args:
        above: Both ends must be strictly greater than this.
        at_least: Both ends must be greater than or equal to this.

    Returns:
        An annotated `tuple[float, float]` type for a schema field; its validator names the pair
        in the error.
    """

    def check(value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        pair = f"[{low:g}, {high:g}]"
        if low > high:
            raise ValueError(f"{pair} must be [low, high] with low <= high")
        if above is not None and low <= above:
            raise ValueError(f"{pair}: both ends must be above {above:g}")
        if at_least is not None and low < at_least:
            raise ValueError(f"{pair}: both ends must be at least {at_least:g}")
        return value

    return Annotated[tuple[float, float], AfterValidator(check), Bounds(above, at_least)]


def check_offsets(offsets: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Affinity offsets as a tuple of `(dy, dx)` pairs, checked.

    The first two must be the nearest neighbours `(-1, 0)` and `(0, -1)` (a boundary map is made
    of them); the offsets must be distinct and non-zero.

    Raises:
        EmsegError: The offsets are not `[dy, dx]` pairs, do not start with the nearest
            neighbours, repeat or include `(0, 0)`.
    """
    if any(len(o) != 2 for o in offsets):
        raise EmsegError(f"offsets must be [dy, dx] pairs, got {list(offsets)}")
    out = tuple((int(o[0]), int(o[1])) for o in offsets)
    if out[:2] != ((-1, 0), (0, -1)):
        raise EmsegError(f"the first two offsets must be the nearest neighbours [-1, 0] and [0, -1], got {[list(o) for o in out[:2]]}")
    if len(set(out)) != len(out) or any(o == (0, 0) for o in out):
        raise EmsegError(f"offsets must be distinct and non-zero, got {[list(o) for o in out]}")
    return out


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseParams(_Block):
    """What several stages share."""

    seed: int = Field(42, ge=0, description="seed of the split (random strategy), augmentation, patch sampling and initialisation")


class DataParams(_Block):
    """Where the fetch stage finds the labelled slices and the unlabelled ones, what they are called there, and what they hold.

    Images and labels may be multi-page TIFFs, folders of TIFF/PNG slices (one slice per file,
    in name order), OME-Zarr or HDF5 (`file.h5:/dataset`); the labels are membrane masks
    (binary) or instance labels (one integer per cell), optionally sparse (`unlabelled`).
    """

    source: str = Field("../shared/isbi2012", description="local folder or http(s) base URL holding the stacks")
    train_images: str = Field(
        RAW_NAMES["train_images"], description="the labelled slices' images at the source: a multi-page TIFF, a folder of slices, OME-Zarr or HDF5"
    )
    train_labels: str = Field(RAW_NAMES["train_labels"], description="their labels, in one of the same forms (see labels)")
    test_images: str = Field(RAW_NAMES["test_images"], description="unlabelled slices the evaluate stage predicts ('' = none)")
    sha256: dict[str, str] = Field(default_factory=dict, description="optional {file name: sha256} checked on fetch")
    labels: Literal["membrane", "instances"] = Field(
        "membrane",
        description="membrane: a binary mask (membrane_value says which value is membrane); instances: one integer per cell, "
        "membranes derived from the borders between cells",
    )
    membrane_value: int | Literal["auto"] = Field(
        "auto", description="membrane masks: the value that marks membrane; auto: the rarer of the two values (membranes are the minority)"
    )
    unlabelled: int | None = Field(
        None, description="label value of pixels nobody labelled (sparse labels): ignored by the loss and the scores; null = all labelled"
    )
    pixel_size: tuple[float, float, float] = Field(
        defaults.ISBI_PIXEL_SIZE, description="[z, y, x] size of a voxel in nm (section thickness, pixel side); recorded in the model file"
    )

    @field_validator("pixel_size")
    @classmethod
    def _sizes_are_positive(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError(f"{list(value)}: every size must be positive (nm)")
        return value

    @model_validator(mode="after")
    def _unlabelled_is_no_label(self) -> DataParams:
        if self.unlabelled is not None and self.labels == "membrane" and self.unlabelled == self.membrane_value:
            raise ParamsKeyError("unlabelled", f"{self.unlabelled} is also membrane_value")
        return self

    def source_names(self) -> dict[str, str]:
        """The file name of each stack at the source, keyed as `RAW_NAMES` of [`emseg.config.layout`][emseg.config.layout]; no test stack when none is named."""
        return {stack: getattr(self, stack) for stack in RAW_NAMES if getattr(self, stack)}


class SplitParams(_Block):
    """How the labelled slices are split into training, validation and test (seeded)."""

    strategy: Literal["contiguous", "random", "kfold"] = Field(
        "contiguous",
        description="contiguous: held-out blocks of neighbouring slices; random: a seeded shuffle; "
        "kfold: a contiguous test block, validation fold `fold` of `n_folds` over the rest",
    )
    test_size: int = Field(5, ge=1, description="slices held out for test (ISBI: 25-29, the last block)")
    val_size: int = Field(3, ge=1, description="slices held out for validation (the block before the test slices)")
    n_folds: int = Field(5, ge=2, description="kfold only: folds over the slices left after the test block")
    fold: int = Field(0, ge=0, description="kfold only: the fold that validates")

    @model_validator(mode="after")
    def _fold_in_range(self) -> SplitParams:
        if self.fold >= self.n_folds:
            raise ValueError(f"fold {self.fold} must be below n_folds {self.n_folds}")
        return self


class GammaParams(_Block):
    """A random gamma (contrast curve) change."""

    prob: float = Field(0.3, ge=0.0, le=1.0, description="probability per augmented copy")
    range: interval(above=0.0) = Field((0.7, 1.5), description="gamma exponents [low, high], above 0")  # type: ignore[valid-type]


class ContrastParams(_Block):
    """A random contrast scaling around the mean."""

    prob: float = Field(0.3, ge=0.0, le=1.0, description="probability per augmented copy")
    range: interval(above=0.0) = Field((0.8, 1.2), description="contrast factors around the mean [low, high], above 0")  # type: ignore[valid-type]


class BlurParams(_Block):
    """A random Gaussian blur."""

    prob: float = Field(0.15, ge=0.0, le=1.0, description="probability per augmented copy")
    range: interval(at_least=0.0) = Field((0.5, 1.0), description="Gaussian blur sigmas [low, high], pixels")  # type: ignore[valid-type]


class NoiseParams(_Block):
    """Random Gaussian noise."""

    prob: float = Field(0.15, ge=0.0, le=1.0, description="probability per augmented copy")
    std: float = Field(0.03, ge=0.0, description="noise std is drawn from [0, std] (image range 0..1)")


class ElasticParams(_Block):
    """Elastic deformation as in the U-Net paper: a coarse grid of random displacements, smoothly interpolated."""

    prob: float = Field(0.9, ge=0.0, le=1.0, description="probability per augmented copy")
    grid_spacing: int = Field(96, ge=8, description="pixels between control points of the displacement grid")
    magnitude: interval(at_least=0.0) = Field((5.0, 15.0), description="displacement std range [low, high] of control points, pixels")  # type: ignore[valid-type]
    rotate_range: float = Field(0.0, ge=0.0, description="max random rotation, radians, applied with the deformation")
    scale_range: float = Field(0.0, ge=0.0, description="max relative zoom, applied with the deformation")


class AugmentParams(_Block):
    """The augmented training set that the augment stage materialises (seeded MONAI transforms, image and label together)."""

    copies: int = Field(8, ge=0, description="augmented copies materialised per training slice")
    elastic: ElasticParams = ElasticParams()
    flip_prob: float = Field(0.5, ge=0.0, le=1.0, description="probability of a flip, along each axis")
    rotate90_prob: float = Field(0.75, ge=0.0, le=1.0, description="probability of a random quarter turn")
    gamma: GammaParams = GammaParams()
    contrast: ContrastParams = ContrastParams()
    noise: NoiseParams = NoiseParams()
    blur: BlurParams = BlurParams()
    preview_samples: int = Field(4, ge=1, le=16, description="rows of the preview grid (original beside augmented)")


class _NamedBlocks(_Block):
    """A block whose extra keys are registry names, each holding a mapping: `model.<arch>`, `segment.<method>`."""

    model_config = ConfigDict(extra="allow", frozen=True)
    #: what each named block holds, for the error on one that is no mapping
    _holds: ClassVar[str] = "settings"

    @model_validator(mode="after")
    def _blocks_are_mappings(self) -> _NamedBlocks:
        for name, value in self.blocks().items():
            if not isinstance(value, dict):
                raise ParamsKeyError(name, f"must be a mapping of {self._holds} ({{}} for the defaults), got {value!r}")
        return self

    def blocks(self) -> dict[str, dict[str, Any]]:
        """The named blocks given, by name."""
        return dict(self.model_extra or {})

    def block(self, name: str) -> dict[str, Any]:
        """The block given for `name` (empty when none was)."""
        return dict(self.blocks().get(name) or {})


class ModelParams(_NamedBlocks):
    """`arch` picks a registered network; the block of the same name (`model.<arch>`) holds its arguments.

    The blocks are extra keys, one per network named: the network registry checks their
    names and arguments ([`check_model_params`][emseg.networks.architectures.check_model_params]).
    """

    _holds: ClassVar[str] = "constructor arguments"

    arch: str = Field("unet", description="a registered network (`emseg models` lists them)")
    target: Literal["boundary", "affinities"] = Field("affinities", description="what the network predicts: one membrane map, or affinities")
    offsets: list[list[int]] = Field(
        [list(o) for o in defaults.DEFAULT_OFFSETS], description="affinity offsets [dy, dx]; the nearest neighbours first"
    )
    context: int = Field(
        0, ge=0, le=4,
        description="sections on each side of a slice given to the network as more input channels (2.5-D); 0 = the slice alone",
    )
    lsd_sigma: float = Field(
        0.0, ge=0.0, le=64.0,
        description="train an auxiliary head of local shape descriptors with this Gaussian sigma in pixels (10-15); 0 = none; "
        "affinity models only; dropped at inference",
    )
    auto_context: bool = Field(
        False, description="follow the network with a small second U-Net that reads the slice and the first one's prediction "
        "(auto-context), both trained at once",
    )

    @model_validator(mode="after")
    def _descriptors_beside_affinities(self) -> ModelParams:
        if self.lsd_sigma > 0 and self.target != "affinities":
            raise ParamsKeyError("lsd_sigma", "local shape descriptors train beside affinities: set model.target: affinities")
        return self

    @field_validator("offsets")
    @classmethod
    def _offsets_are_pairs(cls, value: list[list[int]]) -> list[list[int]]:
        try:
            check_offsets(value)
        except EmsegError as exc:
            raise ValueError(str(exc)) from None
        return value

    def overrides(self, arch: str | None = None) -> dict[str, Any]:
        """The constructor arguments given for `arch` (default: the chosen network)."""
        return self.block(arch or self.arch)


#: what train.init_from takes besides a model file's path
INIT_CHOICES = ("none", "bundled")


class FinetuneParams(_Block):
    """The schedule of a run that starts from a model's weights (`train.init_from`): it replaces the matching `train` keys."""

    lr: float = Field(3e-4, gt=0.0, description="base learning rate of a fine-tuning run")
    steps: int = Field(300, gt=0, description="optimiser steps of a fine-tuning run")
    val_every: int = Field(50, gt=0, description="steps between validations of a fine-tuning run")


class TrainParams(_Block):
    """The train stage: loss, optimiser, schedule, patches, validation, checkpoints and where it runs."""

    loss: str = Field("dice_ce", description="a registered loss (emseg.training.losses)")
    border_weight: float = Field(0.0, ge=0.0, description="U-Net border weighting w0 (0 = off)")
    border_sigma: float = Field(5.0, gt=0.0, description="U-Net border weighting sigma, pixels")
    malis_steps: int = Field(
        0, ge=0,
        description="the last N steps add a constrained MALIS loss of the nearest-neighbour affinities (topology-aware "
        "fine-tuning; affinity models); 0 = off",
    )
    consistency_weight: float = Field(
        0.0, ge=0.0,
        description="weight of a mean-teacher consistency loss on patches of the unlabelled slices (data.test_images): the "
        "EMA network's prediction of a clean patch is the target of the trained network's on the same patch perturbed; "
        "ramped up over the first quarter of the steps; needs ema_decay > 0; 0 = off",
    )
    consistency_batch: int = Field(
        2, gt=0, description="unlabelled patches per step when consistency_weight > 0 (under DDP the global number, split over the processes)"
    )
    optimizer: Literal["adam", "adamw"] = Field("adam", description="the optimiser")
    lr: float = Field(1e-3, gt=0.0, description="base learning rate")
    weight_decay: float = Field(0.0, ge=0.0, description="weight decay (decoupled with adamw)")
    schedule: Literal["cosine", "constant", "poly"] = Field("cosine", description="learning-rate schedule after the warm-up")
    warmup_steps: int = Field(0, ge=0, description="steps of linear learning-rate warm-up")
    steps: int = Field(2100, gt=0, description="optimiser steps: the training budget")
    stop_at: int = Field(
        0, ge=0, description="end the run after this step of the `steps`-long schedule (a final model stops where the "
        "cross-validation's folds chose, final/dvc.yaml); 0 = at `steps`"
    )
    batch_size: int = Field(4, gt=0, description="patches per step (under DDP the global batch, split over the processes)")
    patch_size: int = Field(256, ge=16, description="square patch side, pixels; also the inference window of the model")
    random_dihedral: bool = Field(True, description="random flips/90-degree rotations of each patch, on the fly")
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0, description="exponential moving average of the weights (0 = off)")
    val_every: int = Field(250, gt=0, description="steps between validations on the whole validation slices")
    val_tta: bool = Field(False, description="validate with the 8 flips/rotations, as evaluate predicts")
    log_every: int = Field(25, gt=0, description="steps between log lines (dvclive rows)")
    checkpoint_every: int = Field(250, gt=0, description="steps between resumable checkpoints; a multiple of log_every")
    resume: bool = Field(True, description="continue from a checkpoint of a killed run with the same params, seed and data")
    device: Literal[defaults.DEVICES] = Field("auto", description="where training runs; auto: CUDA when present")  # type: ignore[valid-type]
    amp: bool = Field(True, description="mixed precision on CUDA")
    cpu_bf16: bool | Literal["auto"] = Field(
        "auto", description="train in bf16 autocast on CPU too (fast only with native bf16: AVX-512 BF16, AMX); auto: where the CPU has it"
    )
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 = all cores")
    processes: int = Field(
        1, ge=1, description="DDP processes per node under torchrun (one per GPU on CUDA); batch_size is the global batch split over them"
    )
    init_from: str = Field(
        "none", description="none: random weights; bundled: the bundled model's weights; or a model file's path: start from its weights (same network and target)"
    )
    finetune: FinetuneParams = FinetuneParams()

    @property
    def fine_tuning(self) -> bool:
        """Whether the run starts from a model's weights."""
        return self.init_from != "none"

    @property
    def last_step(self) -> int:
        """The step the run ends at: `stop_at` when set (never past `steps`), else `steps`."""
        return min(self.stop_at, self.steps) if self.stop_at else self.steps

    def schedule_of_run(self) -> TrainParams:
        """These params with the `finetune` schedule in place of `lr`, `steps` and `val_every` when fine-tuning; else themselves."""
        if not self.fine_tuning:
            return self
        return self.model_copy(update=self.finetune.model_dump())

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
            raise ParamsKeyError("batch_size", f"{self.batch_size} patches cannot be split evenly over {self.processes} processes (processes)")
        if self.consistency_weight and self.consistency_batch % self.processes:
            raise ParamsKeyError(
                "consistency_batch", f"{self.consistency_batch} patches cannot be split evenly over {self.processes} processes (processes)"
            )
        return self

    @model_validator(mode="after")
    def _stops_within_the_schedule(self) -> TrainParams:
        if self.stop_at > self.steps:
            raise ParamsKeyError("stop_at", f"{self.stop_at} is past the schedule's {self.steps} steps (train.steps)")
        return self

    @model_validator(mode="after")
    def _consistency_has_a_teacher(self) -> TrainParams:
        if self.consistency_weight and not self.ema_decay:
            raise ParamsKeyError("consistency_weight", "the consistency's teacher is the moving average of the weights: set train.ema_decay > 0")
        return self


class EvaluateParams(_Block):
    """The evaluate stage: how it predicts the test slices and what it writes besides the scores."""

    tta: bool = Field(True, description="average the 8 flips/rotations")
    overlap: float = Field(defaults.OVERLAP, ge=0.0, lt=1.0, description="sliding-window overlap")
    batch_size: int = Field(defaults.TILE_BATCH, gt=0, description="tiles per forward pass")
    device: Literal[defaults.DEVICES] = Field("auto", description="where evaluate predicts; auto: CUDA when present")  # type: ignore[valid-type]
    amp: bool = Field(True, description="mixed precision on CUDA")
    overlays: int = Field(3, ge=0, description="overlay panels written (image, ground truth, prediction)")
    pr_points: int = Field(200, ge=10, description="points kept on the membrane precision-recall curve")
    threads: int = Field(0, ge=0, description="torch CPU threads and scoring workers; 0 = all cores")


class SegmentParams(_NamedBlocks):
    """`method` picks a registered cell method; the block of the same name (`segment.<method>`) holds its settings.

    A setting given as a list is a grid that the evaluate stage searches. The blocks are extra
    keys, one per method named: the cell-method registry checks their names and settings
    ([`check_segment_params`][emseg.segmentation.methods.check_segment_params]).
    """

    method: str = Field("gasp", description="a registered cell method: how cells are drawn from the prediction")

    def given(self, method: str | None = None) -> dict[str, Any]:
        """The settings given for `method` (default: the chosen method)."""
        return self.block(method or self.method)


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
    """All of `params.yaml`: one block per stage, and the shared base."""

    base: BaseParams = BaseParams()
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    augment: AugmentParams = AugmentParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    segment: SegmentParams = SegmentParams()
    cv: CVParams = CVParams()

    @model_validator(mode="after")
    def _train_fits_the_target(self) -> Params:
        if self.model.target == "affinities" and self.train.border_weight > 0:
            raise ParamsKeyError("train.border_weight", "the U-Net border weights are for a boundary model (model.target: boundary)")
        if self.train.malis_steps and self.model.target != "affinities":  # an affinity model's first two offsets are the nearest
            raise ParamsKeyError("train.malis_steps", "MALIS trains the nearest-neighbour affinities: set model.target: affinities")
        if self.train.consistency_weight and not self.data.test_images:
            raise ParamsKeyError("train.consistency_weight", "the consistency trains on the unlabelled slices, and data.test_images is ''")
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
        if isinstance(error, ParamsKeyError):
            key = error.key if key == "(top level)" else f"{key}.{error.key}"
            message = error.message
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: {key}: {message}{more}"


#: a registry's check of the params it reads: raises :class:`ParamsKeyError` naming the key
ParamsCheck = Callable[["Params"], None]


def parse_params(raw: Any, path: str | os.PathLike[str] = DEFAULT_PARAMS_FILE, checks: Sequence[ParamsCheck] = ()) -> Params:
    """Validate an already-loaded params mapping, then run the registries' checks on it.

    Args:
        raw: The mapping read from the params file (None: every default).
        path: The file it came from, named in errors.
        checks: The registry checks (`ParamsCheck`) of the blocks the caller uses.

    Returns:
        The validated params.

    Raises:
        EmsegError: One line, `<path>: <key>: <what is wrong>`, for the first bad key.
    """
    path = Path(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise EmsegError(f"{path}: must hold a mapping of params blocks")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise EmsegError(_format_error(path, exc)) from None
    for check in checks:
        try:
            check(params)
        except ParamsKeyError as exc:
            raise EmsegError(f"{path}: {exc.key}: {exc.message}") from None
    return params


def load_params(path: str | os.PathLike[str] = DEFAULT_PARAMS_FILE, checks: Sequence[ParamsCheck] = ()) -> Params:
    """Read a params file with safe YAML loading, validate every key and run the registries' checks.

    Args:
        path: The params file (`params.yaml`).
        checks: The registry checks (`ParamsCheck`) of the blocks the caller uses.

    Returns:
        The validated params.

    Raises:
        EmsegError: The file is missing or not valid YAML, or a key is wrong (one line naming
            it, as [`parse_params`][emseg.config.params.parse_params] words it).
    """
    return parse_params(read_params_file(path), path, checks)


def read_params_file(path: str | os.PathLike[str] = DEFAULT_PARAMS_FILE) -> Any:
    """The mapping a params file holds, read with safe YAML loading and not yet validated.

    Raises:
        EmsegError: The file is missing or not valid YAML (one line naming it).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise EmsegError(f"{path}: params file not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EmsegError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
