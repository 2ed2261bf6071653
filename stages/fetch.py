"""Stage fetch: fill data/raw/ with the three TIFF stacks named in params data."""

from emseg.cli.stage import run_stage, stage_parser
from emseg.preprocessing.fetch import fetch

parser = stage_parser("fetch", __doc__, out="folder for the raw stacks")


def body(args, params):
    data = params.data
    for stack in fetch(data.source, args.out, data.source_names(), data.sha256).values():
        print(f"fetched {stack.name}: {stack.shape} {stack.dtype}")


if __name__ == "__main__":
    run_stage(parser, body)
