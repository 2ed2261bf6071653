"""Stage split: train / validation / test lists of the labelled slices, seeded."""

from emseg.dataset import count_labelled
from emseg.io import write_json
from emseg.preprocessing.split import make_split
from emseg.stage import run_stage, stage_parser

parser = stage_parser("split", __doc__, "png", out="the split JSON file to write")


def body(args, params):
    parts = make_split(count_labelled(args.png), params.split, params.base.seed)
    write_json(args.out, {"strategy": params.split.strategy, "seed": params.base.seed, **parts})
    print(", ".join(f"{name}: {len(ids)} slices {ids[0]}..{ids[-1]}" for name, ids in parts.items()))


if __name__ == "__main__":
    run_stage(parser, body)
