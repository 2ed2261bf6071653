"""Stage fetch: fill data/raw/ with the three TIFF stacks named in params data."""

from emseg.preprocessing.fetch import fetch
from emseg.stage import run_stage, stage_parser

parser = stage_parser("fetch", __doc__)
parser.add_argument("--out", required=True, help="folder for the raw stacks")


def body(args, params):
    data = params.data
    names = {"train_images": data.train_images, "train_labels": data.train_labels, "test_images": data.test_images}
    info = fetch(data.source, args.out, names, data.sha256)
    for stack in info.values():
        print(f"fetched {stack.name}: {stack.shape} {stack.dtype}")


if __name__ == "__main__":
    run_stage(parser, body)
