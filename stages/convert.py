"""Stage convert: each raw TIFF stack -> one lossless PNG per slice, verified."""

from emseg.cli.stage import run_stage, stage_parser
from emseg.preprocessing.convert import convert

parser = stage_parser("convert", __doc__, "raw", out="folder for the PNG slices")


def body(args, params):
    for folder, count in convert(args.raw, args.out).items():
        print(f"wrote {count} slices to {args.out}/{folder}")


if __name__ == "__main__":
    run_stage(parser, body)
