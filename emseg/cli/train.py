"""`emseg train`: train or fine-tune a model on a lab's own labelled slices, without DVC.

The command's `--help` text is this module's `HELP`; the
[command-line reference](../../cli.md) shows it for every subcommand. The work is
[`fit`][emseg.training.fit.fit]'s, on the pipeline's trainer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emseg.config.defaults import DEVICES
from emseg.errors import EmsegError

#: the `--help` text
HELP = """emseg train IMAGES LABELS --out MODEL.pt: train a model on your own labelled slices, or fine-tune one.

IMAGES and LABELS are a multi-page TIFF, a TIFF/PNG slice, a folder of slices (one per file,
matched by name), an OME-Zarr image or an HDF5 dataset (file.h5:/raw). The labels are
membrane masks (two values; --membrane-value says which is membrane, by default the rarer)
or instance labels (--labels instances: one integer per cell, membranes drawn on the borders
between cells); with --unlabelled V, pixels of value V are nobody's label and are ignored
(sparse labels: whole slices or regions left unlabelled).

--init bundled (or a model file) starts from that model's weights and trains on the
fine-tuning schedule (params train.finetune: fewer steps, a lower learning rate), and
trains that model's network (architecture, offsets, sections of context, heads); --init
none trains from random weights on the full schedule, the network params.yaml's model
block (--params), by default the CPU profile's.

With 3 or more labelled slices the last fifth (at least one) are held out: they pick the
best checkpoint and choose the cell step (method and settings); with fewer, the training
slices pick the checkpoint and a fine-tuned model keeps the --init model's cell step
(--val N holds out N). The model file (its folder made if missing) records the pixel size (--pixel-size,
else the files', else the --init model's) and the cell step, so that emseg predict
rescales new images to it and draws cells the same way. Nothing is written unless
training completes: the model file appears under its name at the end.

Example (a second lab's stack, 4.6 nm pixels, fine-tuned from the bundled model):

  emseg train vnc/raw vnc/membranes --init bundled --pixel-size 4.6nm --out vnc-model.pt
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `emseg train` parser to `subparsers` (its description is `HELP`)."""
    parser = subparsers.add_parser(
        "train", help="train or fine-tune a model on your own labelled slices", description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", metavar="IMAGES", help="the raw slices: TIFF stack, slice, folder of slices, OME-Zarr or file.h5:/dataset")
    parser.add_argument("labels", metavar="LABELS", help="their labels, in any of the same forms")
    parser.add_argument("--out", type=Path, required=True, metavar="MODEL.pt", help="the model file to write")
    parser.add_argument("--init", default="none", metavar="none|bundled|MODEL.pt", help="start from this model's weights (default: %(default)s)")
    parser.add_argument("--pixel-size", metavar="SIZE", help="the side of a pixel with its unit, e.g. 4.6nm (default: what the files say)")
    parser.add_argument("--labels", choices=("membrane", "instances"), default="membrane", dest="kind", help="what the labels are (default: %(default)s)")
    parser.add_argument("--membrane-value", default="auto", metavar="auto|V", help="membrane masks: the membrane's value (default: the rarer value)")
    parser.add_argument("--unlabelled", type=int, metavar="V", help="label value of unlabelled pixels, ignored by the loss and the scores")
    parser.add_argument("--val", type=int, metavar="N", help="hold out the last N labelled slices for validation (default: the last fifth from 3 slices)")
    parser.add_argument("--params", type=Path, help="params.yaml whose model, train, augment, evaluate and segment blocks to use (default: the CPU profile)")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: train.steps, or train.finetune.steps with --init)")
    parser.add_argument("--lr", type=float, help="base learning rate (default: train.lr, or train.finetune.lr with --init)")
    parser.add_argument("--device", choices=DEVICES, help="where training runs (default: the params', auto)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the params', 0 = all cores)")
    parser.set_defaults(handler=run)


def _membrane_value(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise EmsegError(f"--membrane-value {text!r}: give auto or an integer label value") from None


def _params(args: argparse.Namespace):
    """The params of the run: the file's (or the defaults), with the command line's overrides, checked."""
    from emseg.training.fit import load_run_params

    params = load_run_params(args.params)
    train = params.train
    schedule = "finetune" if args.init != "none" else None
    overrides = {key: value for key, value in (("steps", args.steps), ("lr", args.lr)) if value is not None}
    for key, value in overrides.items():
        if not value > 0:
            raise EmsegError(f"--{key} must be positive, got {value}")
    if schedule:
        train = train.model_copy(update={"finetune": train.finetune.model_copy(update=overrides)})
    else:
        train = train.model_copy(update=overrides)
    machine = {key: value for key, value in (("device", args.device), ("threads", args.threads)) if value is not None}
    if machine.get("threads", 0) < 0:
        raise EmsegError(f"--threads must be 0 (one per core) or more, got {args.threads}")
    train = train.model_copy(update=machine)
    evaluate = params.evaluate.model_copy(update=machine)
    return params.model_copy(update={"train": train, "evaluate": evaluate})


def run(args: argparse.Namespace) -> int:
    """Run `emseg train` with its parsed arguments; the exit status."""
    from emseg.io.stacks import VoxelSize
    from emseg.preprocessing.labels import load_labelled
    from emseg.segmentation.measurements import UNITS, parse_pixel_size
    from emseg.sharing.bundled import init_model
    from emseg.training.fit import fit, starting_point

    if args.out.is_dir():
        raise EmsegError(f"--out {args.out}: is a folder; give the model file to write")
    blocking = next((p for p in (args.out.parent, *args.out.parent.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise EmsegError(f"--out {args.out}: {blocking} is a file, not a folder")
    params = _params(args)
    init = init_model(args.init)
    init_config = None
    if init is not None:  # the network is the model's; a file that is no model is refused before any data is read
        params, init_config, differs = starting_point(init, params)
        if differs and args.params:
            print(f"emseg train: note: fine-tuning trains the --init model's network; {args.params}'s model block differs in "
                  f"{', '.join(differs)} and is not used", file=sys.stderr)
    given = None
    if args.pixel_size is not None:
        side = parse_pixel_size(args.pixel_size)
        nm = side.value * UNITS[side.unit] * 1e3
        thickness = (init_config.pixel_size if init_config and init_config.pixel_size else params.data.pixel_size)[0]
        given = VoxelSize(nm, nm, thickness)
    data = load_labelled(args.images, args.labels, args.kind, _membrane_value(args.membrane_value), args.unlabelled, given)
    print(f"emseg train: {data.summary()}", file=sys.stderr)
    pixel_size = data.pixel_size.as_list() if data.pixel_size else None
    if pixel_size is None and init_config is not None and init_config.pixel_size:
        pixel_size = init_config.pixel_size
        print(f"emseg train: note: the files carry no pixel size: taken to be the --init model's, {pixel_size[1]:g} nm (give --pixel-size)", file=sys.stderr)
    elif pixel_size is None:
        print("emseg train: note: pixel size unknown (give --pixel-size): the model will not record one, and emseg predict "
              "will not rescale images for it", file=sys.stderr)
    elif len(pixel_size) == 2:  # the files know the pixel but not the section: the model's thickness, else the params'
        pixel_size = [(init_config.pixel_size if init_config and init_config.pixel_size else params.data.pixel_size)[0], *pixel_size]
    run = params.train.schedule_of_run() if init is None else params.train.model_copy(update={"init_from": str(init)}).schedule_of_run()
    start = f"from {init}" if init else "from random weights"
    print(f"emseg train: {start}, {run.steps} steps at learning rate {run.lr:g}", file=sys.stderr)
    result = fit(data.images, data.labels, args.out, params, init, pixel_size, args.val)
    print(result.line())
    return 0
