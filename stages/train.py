"""Stage train: train the network named in params model on the training (+ augmented) slices.

With ``--stop-at`` (final/dvc.yaml: a model trained on every labelled slice has no validation
block) the run stops at the step that stage choose_step wrote, on the same `train.steps` schedule.

With ``train.processes`` > 1 the stage starts itself again as that many torchrun workers
(DDP), after checking its inputs once here.
"""

import sys
import time
from typing import Any

from emseg.cli.stage import run_stage, stage_parser
from emseg.config.params import TrainParams
from emseg.errors import EmsegError
from emseg.io.atomic import read_json
from emseg.io.dataset import read_augmented, read_labelled, read_unlabelled
from emseg.networks.architectures import check_model_params
from emseg.preprocessing.split import read_split
from emseg.sharing.bundled import init_model
from emseg.training.distributed import launch, needs_launch, worker_exits
from emseg.training.losses import check_loss_params
from emseg.training.run import train
from emseg.training.sampler import TrainingData

parser = stage_parser("train", __doc__, "png", "split", "augmented", "model", "live", "checkpoints")
parser.add_argument("--stop-at", metavar="STEP_JSON", help="stop at the step this file names (stages/choose_step.py writes it)")


def read_data(args, context: int, unlabelled: bool) -> TrainingData:
    split = read_split(args.split)
    train_images, train_labels = read_labelled(args.png, split["train"], context)
    aug_images, aug_labels = read_augmented(args.augmented, context)
    val_images, val_labels = read_labelled(args.png, split["val"], context)
    # the unlabelled slices only for a consistency loss: they are never used to choose anything
    unlabelled_images = read_unlabelled(args.png, context) if unlabelled else []
    return TrainingData(train_images + aug_images, train_labels + aug_labels, val_images, val_labels, unlabelled_images)


def stopped_at(train: TrainParams, chosen: Any, path: str) -> TrainParams:
    step = chosen.get("step") if isinstance(chosen, dict) else None
    if not isinstance(step, int) or not 0 < step <= train.steps:
        raise EmsegError(f"{path}: no step within the schedule's {train.steps} (train.steps) under 'step', got {step!r}")
    print(f"train: stopping at step {step} of {train.steps} ({path})")
    return train.model_copy(update={"stop_at": step})


def body(args, params):
    if args.stop_at:
        params = params.model_copy(update={"train": stopped_at(params.train, read_json(args.stop_at), args.stop_at)})
    init = init_model(params.train.init_from)
    data = read_data(args, params.model.context, params.train.consistency_weight > 0)
    if data.unlabelled_images:
        print(f"train: a consistency loss on {len(data.unlabelled_images)} unlabelled slices, weight {params.train.consistency_weight}")
    if needs_launch(params.train.processes):
        del data  # checked here once, so that bad input is one line; each worker reads its own
        launch(params.train, sys.argv)
        return
    started = time.perf_counter()
    with worker_exits():
        result = train(
            data, params.model, params.train, params.base.seed, args.model, args.live, args.checkpoints, init, params.data.pixel_size
        )
    if result["rank"] != 0:
        return
    best = result["best_val"]
    on = result["device"] if result["processes"] == 1 else f"{result['processes']} processes ({result['device']})"
    started_from = f" from {init}" if init else ""
    kept = (f"best validation V_rand {best['v_rand']:.4f} at step {result['best_step']}" if best
            else f"no validation slices: the model of the last step, {result['best_step']}")
    print(f"trained {params.model.arch}{started_from} ({result['parameters']:,} parameters) on {on} "
          f"in {(time.perf_counter() - started) / 60:.1f} min: {kept}")


if __name__ == "__main__":
    run_stage(parser, body, checks=(check_model_params, check_loss_params))
