"""Stage train: train the network named in params model on the training (+ augmented) slices."""

import time

from emseg.dataset import read_augmented, read_labelled
from emseg.preprocessing.split import read_split
from emseg.stage import run_stage, stage_parser
from emseg.training.trainer import TrainingData, train

parser = stage_parser("train", __doc__, "png", "split", "augmented", "model", "live", "checkpoints")


def body(args, params):
    split = read_split(args.split)
    train_images, train_labels = read_labelled(args.png, split["train"])
    aug_images, aug_labels = read_augmented(args.augmented)
    val_images, val_labels = read_labelled(args.png, split["val"])
    data = TrainingData(train_images + aug_images, train_labels + aug_labels, val_images, val_labels)
    started = time.perf_counter()
    result = train(data, params.model, params.train, params.base.seed, args.model, args.live, args.checkpoints)
    best = result["best_val"]
    print(
        f"trained {params.model.arch} ({result['parameters']:,} parameters) on {result['device']} "
        f"in {(time.perf_counter() - started) / 60:.1f} min: "
        f"best validation V_rand {best['v_rand']:.4f} at step {result['best_step']}"
    )


if __name__ == "__main__":
    run_stage(parser, body)
