"""Training on a lab's own labelled slices without DVC: the one entry of `emseg train` (and of a GUI).

It runs the pipeline's own parts in memory, on the same trainer as the train stage: the
augmented copies of the augment stage ([`augment_slices`][emseg.preprocessing.augment.augment_slices]),
the training run ([`train`][emseg.training.run.train], from a model's weights when fine-tuning,
on `train.finetune`'s schedule), and the cell step chosen as the evaluate stage chooses it
([`tune_cell_step`][emseg.evaluation.evaluate.tune_cell_step], on predictions without
test-time augmentation, as `emseg predict` makes them by default, over the grid of
`segment.method` and of `ALSO_TRIED`), recorded in the model file.

Which slices validate (`hold_out`): with at least `MIN_FOR_HOLD_OUT` labelled slices, the
last fifth of them (at least one) are held out of training, pick the best checkpoint and
choose the cell step; with fewer, every slice trains and the same slices validate. Then a
fine-tuned model keeps the cell step of the model it started from (a step chosen on the
slices the network has just fitted is biased: on the VNC stack it chose a threshold of 0.7
where the base model's 0.4 scored higher on held-out sections, docs/results/transfer.md),
and a model from random weights, having none, chooses on its training slices; the model
file says which.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emseg.config.params import Params, SegmentParams
from emseg.errors import EmsegError
from emseg.evaluation.evaluate import tune_cell_step
from emseg.inference.predictor import Predictor
from emseg.io.sections import with_neighbours
from emseg.networks.model_file import ModelConfig, load_model, with_cell_step
from emseg.preprocessing.augment import augment_slices
from emseg.runtime.device import select_device
from emseg.training.build import network_differences, network_params
from emseg.training.progress import TrainingStatus
from emseg.training.run import train
from emseg.training.sampler import TrainingData


def load_run_params(params_file: str | Path | None) -> Params:
    """The params of a `fit` run: a params file's (a project's params.yaml), else emseg's defaults, checked.

    Checked as the pipeline checks them: the network's arguments, the loss and the cell
    method against their registries.

    Raises:
        EmsegError: A key or value that does not validate (one line naming it).
    """
    from emseg.config.params import load_params, parse_params
    from emseg.networks.architectures import check_model_params
    from emseg.segmentation.methods import check_segment_params
    from emseg.training.losses import check_loss_params

    checks = (check_model_params, check_loss_params, check_segment_params)
    return load_params(params_file, checks) if params_file else parse_params({}, "defaults", checks)


def starting_point(init: Path, params: Params) -> tuple[Params, ModelConfig, list[str]]:
    """The params of a run that starts from the model file `init`: its network in place of the `model` block.

    A fine-tune trains the network it starts from (its architecture, arguments, offsets,
    context and descriptor head), whatever the params' `model` block says; the pipeline's
    train stage, whose params DVC tracks, refuses a mismatch instead.

    Returns:
        The run's params, the model file's config, and the fields of the params' network that
        differed from the file's (none: the block already described it).

    Raises:
        EmsegError: No loadable model file, or a network that emseg's training cannot make
            (one line naming `init`).
    """
    _, config = load_model(init)
    run = params.model_copy(update={"model": network_params(config, init)})
    left = network_differences(run.model, config)
    if left:  # e.g. an input normalisation that training does not make
        raise EmsegError(f"{init}: cannot start from this model: its {left[0]} is {getattr(config, left[0])!r}, which emseg's training does not make")
    return run, config, network_differences(params.model, config)


#: the fewest labelled slices from which some are held out for validation
MIN_FOR_HOLD_OUT = 3


def hold_out(n_slices: int, val: int | None = None) -> tuple[list[int], list[int]]:
    """The training and the validation slices of `n_slices` labelled ones (the module's rule, or `val` held out).

    Args:
        n_slices: How many labelled slices there are.
        val: Hold out this many (the last ones); None: the rule. 0: hold out none (the
            training slices validate).

    Returns:
        The training slices' indices and the validation slices' (the training ones when none
        is held out).

    Raises:
        EmsegError: No slices, or `val` leaves no slice to train on.
    """
    if n_slices < 1:
        raise EmsegError("no labelled slices to train on")
    if val is None:
        val = max(1, n_slices // 5) if n_slices >= MIN_FOR_HOLD_OUT else 0
    if not 0 <= val < n_slices:
        raise EmsegError(f"--val {val}: must leave at least one of the {n_slices} labelled slices to train on")
    ids = list(range(n_slices))
    if val == 0:
        return ids, ids
    return ids[:-val], ids[-val:]


@dataclass(frozen=True)
class FitResult:
    """What [`fit`][emseg.training.fit.fit] made: the model file, the slices used, the best step and the cell step."""

    model_path: Path
    train_slices: list[int]
    val_slices: list[int]
    held_out: bool
    best_step: int
    best_val: dict[str, float]
    cells: dict[str, Any]
    minutes: float

    def line(self) -> str:
        """One line for the end of `emseg train`."""
        return (
            f"trained on slices {self.train_slices} in {self.minutes:.1f} min: best step {self.best_step}, validation V_rand "
            f"{self.best_val['v_rand']:.4f}; cells {self.cells['method']} {self.cells['settings']}, chosen on {self.cells['chosen_on']} "
            f"-> {self.model_path}"
        )


#: methods whose grids fit searches besides params' segment.method: thresholded cells are the cell step that carried
#: over best from ISBI 2012 to another lab's stack (docs/results/transfer.md), and they cost little to try
ALSO_TRIED = ("components",)


def _best_cell_step(predictor: Predictor, segment: SegmentParams, images: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, Any]:
    """The best of `segment.method`'s grid and the grids of `ALSO_TRIED` on the given slices."""
    predictions = [predictor.predict(image) for image in images]
    methods = [segment] + [SegmentParams(method=method) for method in ALSO_TRIED if method != segment.method]
    return max((tune_cell_step(predictions, params, labels) for params in methods), key=lambda chosen: chosen["val_v_rand"])


def fit(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    out: str | Path,
    params: Params,
    init: Path | None = None,
    pixel_size: Sequence[float] | None = None,
    val: int | None = None,
    live_dir: str | Path | None = None,
    listener: Callable[[TrainingStatus], object] | None = None,
    provenance: dict[str, Any] | None = None,
) -> FitResult:
    """Train a model on labelled slices (from `init`'s weights when given) and write it, with its cell step, to `out`.

    Args:
        images: The raw slices, 2-D each (sizes may differ; each at least `train.patch_size`).
        labels: Their canonical labels (0 membrane, 255 cell, 128 unlabelled; see
            [`emseg.config.layout`][emseg.config.layout]).
        out: The model file to write (atomically, once training and the cell step are done).
        params: The `base`, `augment`, `model`, `train`, `evaluate` and `segment` blocks.
        init: A model file to start from (fine-tuning its network on `train.finetune`'s schedule;
            see [`starting_point`][emseg.training.fit.starting_point]); None: random weights.
        pixel_size: The data's `[z, y, x]` voxel size in nm, recorded in the model file.
        val: How many slices to hold out for validation ([`hold_out`][emseg.training.fit.hold_out]).
        live_dir: Where dvclive's training logs go; None: a temporary folder, removed after.
        listener: Called with a [`TrainingStatus`][emseg.training.progress.TrainingStatus] as
            training goes (a GUI's progress bar and ETA); it may raise
            [`Cancelled`][emseg.errors.Cancelled] to stop: then nothing is written.
        provenance: What the caller knows of the data (e.g. the image and its slices used),
            recorded with the model it started from, the slices and the steps in the model
            file's `info.provenance`.

    Returns:
        What was made.

    Raises:
        EmsegError: As the trainer (a slice smaller than the patch), or an `init` that is no model file.
    """
    started = time.perf_counter()
    out = Path(out)
    if len(images) != len(labels):
        raise EmsegError(f"{len(images)} images but {len(labels)} label slices")
    train_ids, val_ids = hold_out(len(images), val)
    if init is not None:  # before anything is augmented or trained: the sections each slice needs are the model's
        params, _, _ = starting_point(init, params)
    train_params = params.train.model_copy(update={"init_from": str(init) if init else "none"})
    if params.model.context:  # each slice with its neighbouring sections of the same stack, as the model will read them
        images = [with_neighbours(images, i, params.model.context) for i in range(len(images))]
    train_images, train_labels = [images[i] for i in train_ids], [labels[i] for i in train_ids]
    copies = augment_slices(train_images, train_labels, params.augment, params.base.seed)
    data = TrainingData(
        train_images + [image for _, image, _ in copies],
        train_labels + [label for _, _, label in copies],
        [images[i] for i in val_ids],
        [labels[i] for i in val_ids],
    )
    with tempfile.TemporaryDirectory(prefix=".emseg-train-", dir=out.parent if out.parent.is_dir() else None) as tmp:
        network = Path(tmp) / "network.pt"
        result = train(
            data, params.model, train_params, params.base.seed, network, live_dir or Path(tmp) / "dvclive", None, init, pixel_size, listener,
        )
        device = select_device(params.evaluate.device)
        model, config = load_model(network, device)
        held_out = val_ids != train_ids
        if not held_out and config.cells:  # the network fits its training slices: a step chosen there is biased
            cells = {**config.cells, "chosen_on": f"{config.cells['chosen_on']}; kept: no labelled slice left to hold out"}
        else:
            # without test-time augmentation: the predictions emseg predict makes by default, at an eighth of the cost
            predictor = Predictor(model, config, params.evaluate.overlap, False, params.evaluate.batch_size, device, params.evaluate.amp)
            chosen = _best_cell_step(predictor, params.segment, data.val_images, data.val_labels)
            cells = {
                "method": chosen["method"],
                "settings": chosen["settings"],
                "chosen_on": f"held-out labelled slices {val_ids}" if held_out else f"the training slices {train_ids} (none held out)",
                "v_rand": chosen["val_v_rand"],
            }
        out.parent.mkdir(parents=True, exist_ok=True)  # only now: a run that fails earlier leaves nothing behind
        made = {
            "base_model": str(init) if init else None,
            "train_slices": train_ids,
            "val_slices": val_ids if held_out else [],
            "steps": train_params.schedule_of_run().steps,
        }
        with_cell_step(network, out, cells, {"provenance": {**made, **(provenance or {})}})
    return FitResult(out, train_ids, val_ids, held_out, result["best_step"], result["best_val"], cells, (time.perf_counter() - started) / 60)
