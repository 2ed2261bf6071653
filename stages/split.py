"""Stage split: train / validation / test lists of the labelled slices, seeded (with --fold: a cross-validation fold's;
with --all: every slice for training, the final model's)."""

from emseg.cli.stage import run_stage, stage_parser
from emseg.io.atomic import write_json
from emseg.io.dataset import count_labelled
from emseg.preprocessing.split import ALL_SLICES, all_split, cv_split, make_split

parser = stage_parser("split", __doc__, "png", out="the split JSON file to write")
parser.add_argument("--fold", type=int, help="the cross-validation fold of params cv to write (cv/dvc.yaml)")
parser.add_argument("--all", action="store_true", help="every labelled slice for training, none held out (final/dvc.yaml)")


def body(args, params):
    n_slices = count_labelled(args.png)
    if args.all:
        parts = all_split(n_slices)
        header = {"strategy": ALL_SLICES}
    elif args.fold is None:
        parts = make_split(n_slices, params.split, params.base.seed)
        header = {"strategy": params.split.strategy, "seed": params.base.seed}
    else:
        parts = cv_split(n_slices, params.cv, args.fold)
        header = {"strategy": "cv", "fold": args.fold, "folds": len(params.cv.folds)}
    write_json(args.out, {**header, **parts})
    print(", ".join(f"{name}: {len(ids)} slices {ids[0]}..{ids[-1]}" for name, ids in parts.items() if ids))


if __name__ == "__main__":
    run_stage(parser, body)
